//! Benchmark: faces per second for detection and for descriptors on CPU, over the
//! fixture images. Run optimised:
//! `cargo run --release -p reverie-faces --example bench_faces -- MODELS_DIR IMAGES_DIR`.
//! dlib's own column runs `bench/dlib_bench.py` on the same images in the same run with the
//! Python named by `REVERIE_DLIB_PYTHON` (default `python3`; `pip install dlib numpy pillow` builds
//! dlib from source, about 15 minutes); when dlib is absent the table says so instead of inventing
//! numbers.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use reverie_faces::chip::{chip_details, extract_chip};
use reverie_faces::shape_predictor::GrayPlane;
use reverie_faces::FaceModels;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    let [models_dir, images_dir] = args.as_slice() else {
        return Err("usage: bench_faces MODELS_DIR IMAGES_DIR".into());
    };
    let models = FaceModels::load(models_dir)?;
    let mut images = Vec::new();
    for entry in std::fs::read_dir(images_dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "png" || e == "jpg") {
            images.push(image::open(&path)?.to_rgb8());
        }
    }
    let start = Instant::now();
    let mut detections = Vec::new();
    for img in &images {
        detections.push(models.detector.detect(img)?);
    }
    let detect_secs = start.elapsed().as_secs_f64();
    let faces: usize = detections.iter().map(Vec::len).sum();
    // The worker's path: all photos of a shard in one call, batched across photos.
    let refs: Vec<&image::RgbImage> = images.iter().collect();
    let start = Instant::now();
    let batched = models.detector.detect_batch(&refs)?;
    let batch_secs = start.elapsed().as_secs_f64();
    let batched_faces: usize = batched.iter().map(Vec::len).sum();
    if batched_faces != faces {
        return Err(
            format!("batched detection found {batched_faces} faces, one by one {faces}").into(),
        );
    }
    let mut chips = Vec::new();
    for (img, dets) in images.iter().zip(&detections) {
        let gray = GrayPlane::from_rgb(img);
        for d in dets {
            let landmarks = models.shape_predictor.predict(&gray, &d.rect);
            chips.push(extract_chip(img, &chip_details(&landmarks, 150, 0.25)));
        }
    }
    let start = Instant::now();
    for batch in chips.chunks(32) {
        let refs: Vec<&image::RgbImage> = batch.iter().collect();
        models.descriptor.descriptors(&refs)?;
    }
    let desc_secs = start.elapsed().as_secs_f64();
    let dlib = dlib_column(models_dir, images_dir);
    println!(
        "{} images, {faces} faces, CPU, {} threads",
        images.len(),
        candle_core::utils::get_num_threads()
    );
    println!("| stage | reverie faces/s | dlib faces/s | reverie / dlib |");
    println!("|---|---|---|---|");
    let ours = [
        (
            "detection (one photo per call)",
            faces as f64 / detect_secs,
            "detection_faces_per_s",
        ),
        (
            "detection (batched, worker path)",
            faces as f64 / batch_secs,
            "detection_faces_per_s",
        ),
        (
            "descriptor",
            chips.len() as f64 / desc_secs,
            "descriptor_faces_per_s",
        ),
    ];
    for (stage, rate, key) in ours {
        match &dlib {
            Ok(theirs) => {
                let theirs = theirs[key].as_f64().unwrap_or(f64::NAN);
                println!(
                    "| {stage} | {rate:.2} | {theirs:.2} | {:.2} |",
                    rate / theirs
                );
            }
            Err(note) => println!("| {stage} | {rate:.2} | n/a | {note} |"),
        }
    }
    Ok(())
}

/// dlib's numbers on the same images, or why there are none.
fn dlib_column(
    models_dir: &std::path::Path,
    images_dir: &std::path::Path,
) -> Result<serde_json::Value, String> {
    let python = std::env::var("REVERIE_DLIB_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/dlib_bench.py");
    let output = Command::new(&python)
        .arg(&script)
        .arg(models_dir)
        .arg(images_dir)
        .output()
        .map_err(|e| format!("{python} not runnable: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().last().unwrap_or("").to_string();
        return Err(format!("dlib not available to {python} ({last})"));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| format!("dlib_bench output: {e}"))
}
