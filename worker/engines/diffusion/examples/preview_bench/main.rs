//! What a live preview costs per denoising step (issue 19: under 2% of a step at 512x512 on the
//! mid-size config).
//!
//! `cargo run --release -p reverie-diffusion --example preview_bench -- [--size 512] [--steps 4]
//! [--mid | --tiny] [--preview-reps 20]`
//!
//! One text-to-image generation, batch 1, guidance 7.5 (so every UNet step is a batch-2 forward),
//! Euler, on the mid-size random-weight model that `cpu_bench` writes (UNet [128, 256, 256], VAE
//! [64, 128, 256, 256]; `--tiny` runs the sd-tiny fixture instead, for a quick check). In the
//! progress callback of every step it makes the preview exactly as the worker does: `step.preview(0)`
//! (the latents mapped to colour, 64x64 for 512x512) and the PNG encoding of `worker/src/previews.rs`
//! (`RgbImage::write_to(Cursor, Png)`), `--preview-reps` times per step so the median rests on more
//! than a handful of samples. A step's time is the time between two callbacks less the previews
//! made in between; the first step (which also encodes the prompt and touches fresh memory) is left
//! out of the step median when there are at least two.

#[allow(dead_code)]
#[path = "../cpu_bench/random_weights.rs"]
mod random_weights;

use std::io::Cursor;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use candle_core::{DType, Device};
use image::ImageFormat;
use reverie_diffusion::pipeline::{GenerationRequest, SampleSpec, StableDiffusion};

use random_weights::{MID_UNET_CHANNELS, MID_VAE_CHANNELS};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const PROMPT: &str = "a lighthouse on a cliff at sunset";
const GUIDANCE: f64 = 7.5;
/// The worker's default `worker.preview_interval_ms`.
const PREVIEW_INTERVAL: Duration = Duration::from_millis(500);

fn tiny_model_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../tests/fixtures/sd-tiny/model")
}

struct Options {
    size: usize,
    steps: usize,
    mid: bool,
    preview_reps: usize,
}

fn parse_args() -> Result<Options> {
    let mut options = Options {
        size: 512,
        steps: 4,
        mid: true,
        preview_reps: 20,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().ok_or(format!("{flag} needs a value"));
        match arg.as_str() {
            "--size" => options.size = value(&arg)?.parse()?,
            "--steps" => options.steps = value(&arg)?.parse()?,
            "--preview-reps" => options.preview_reps = value(&arg)?.parse::<usize>()?.max(1),
            "--mid" => options.mid = true,
            "--tiny" => options.mid = false,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if !options.size.is_multiple_of(64) || options.steps == 0 {
        return Err("--size must be a multiple of 64 and --steps at least 1".into());
    }
    Ok(options)
}

/// The worker's preview of one step: latents to colour, then PNG (`worker/src/previews.rs`).
fn preview_png(
    step: &reverie_diffusion::pipeline::StepProgress<'_>,
) -> Result<(Vec<u8>, Duration, Duration)> {
    let start = Instant::now();
    let picture = step.preview(0)?;
    let mapped = start.elapsed();
    let mut out = Cursor::new(Vec::new());
    picture.write_to(&mut out, ImageFormat::Png)?;
    let total = start.elapsed();
    Ok((out.into_inner(), mapped, total - mapped))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

#[derive(Default)]
struct Timings {
    /// Per step: the time since the previous callback (or the start), less the previews made there.
    steps_ms: Vec<f64>,
    /// Per preview made: colour mapping, PNG encoding, both.
    map_ms: Vec<f64>,
    png_ms: Vec<f64>,
    preview_ms: Vec<f64>,
    /// The first preview of each step (latents not yet in cache from an earlier preview).
    first_ms: Vec<f64>,
    bytes: Vec<usize>,
    error: Option<String>,
}

fn run(model: &StableDiffusion, options: &Options) -> Result<Timings> {
    let mut request = GenerationRequest::new(vec![SampleSpec::new(PROMPT, 1, GUIDANCE)]);
    request.width = options.size;
    request.height = options.size;
    request.steps = options.steps;
    let mut timings = Timings::default();
    let mut last = Instant::now();
    model.generate(&request, &mut |step| {
        let step_time = last.elapsed();
        timings.steps_ms.push(ms(step_time));
        for rep in 0..options.preview_reps {
            match preview_png(step) {
                Ok((png, map, encode)) => {
                    if rep == 0 {
                        timings.first_ms.push(ms(map + encode));
                    }
                    timings.map_ms.push(ms(map));
                    timings.png_ms.push(ms(encode));
                    timings.preview_ms.push(ms(map + encode));
                    timings.bytes.push(png.len());
                }
                Err(error) => {
                    timings.error = Some(error.to_string());
                    return ControlFlow::Break(());
                }
            }
        }
        // The previews are not the step's: the next step's clock starts after them.
        last = Instant::now();
        ControlFlow::Continue(())
    })?;
    if let Some(error) = timings.error.take() {
        return Err(error.into());
    }
    Ok(timings)
}

fn main() -> Result<()> {
    let options = parse_args()?;
    let temp = std::env::temp_dir().join(format!("reverie-preview-bench-{}", std::process::id()));
    let (dir, config) = if options.mid {
        random_weights::write_mid_model(&tiny_model_dir(), &temp, options.size)?;
        let label = format!("mid UNet {MID_UNET_CHANNELS:?}, VAE {MID_VAE_CHANNELS:?}");
        (temp.clone(), label)
    } else {
        (tiny_model_dir(), "sd-tiny fixture".to_string())
    };
    let model = StableDiffusion::from_dir(&dir, &Device::Cpu, DType::F32);
    if options.mid {
        std::fs::remove_dir_all(&temp)?;
    }
    let model = model?;
    eprintln!(
        "{config}: {}x{}, {} steps, guidance {GUIDANCE}, batch 1, {} threads, {} previews per step",
        options.size,
        options.size,
        options.steps,
        candle_core::utils::get_num_threads(),
        options.preview_reps
    );
    let mut timings = run(&model, &options)?;

    let counted = if timings.steps_ms.len() >= 2 {
        &mut timings.steps_ms[1..]
    } else {
        &mut timings.steps_ms[..]
    };
    let step_ms = median(counted);
    let preview_ms = median(&mut timings.preview_ms);
    let map_ms = median(&mut timings.map_ms);
    let png_ms = median(&mut timings.png_ms);
    let first_ms = median(&mut timings.first_ms);
    let slowest_ms = timings.preview_ms.last().copied().unwrap_or(f64::NAN);
    let mut bytes = timings.bytes.clone();
    bytes.sort_unstable();
    let (min_bytes, max_bytes) = (bytes[0], bytes[bytes.len() - 1]);
    let every_step = preview_ms / step_ms * 100.0;
    // With the worker's throttle a job gets at most one preview per interval: one per step when a
    // step takes longer than the interval, else one per interval.
    let interval_ms = ms(PREVIEW_INTERVAL);
    let throttled = preview_ms / step_ms.max(interval_ms) * 100.0;

    println!(
        "| config | size | steps | median ms per UNet step | median ms per preview (map+PNG) | \
         preview bytes | preview / step (%) |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {config} | {0}x{0} | {1} | {step_ms:.1} | {preview_ms:.3} | {2} | {every_step:.3} |",
        options.size,
        options.steps,
        if min_bytes == max_bytes {
            min_bytes.to_string()
        } else {
            format!("{min_bytes}-{max_bytes}")
        },
    );
    println!();
    println!(
        "preview = {map_ms:.3} ms colour map + {png_ms:.3} ms PNG ({} previews of {}x{} px; the \
         first of each step {first_ms:.3} ms, the slowest {slowest_ms:.3} ms); steps timed: {:?} ms",
        timings.preview_ms.len(),
        options.size / 8,
        options.size / 8,
        timings
            .steps_ms
            .iter()
            .map(|t| (t * 10.0).round() / 10.0)
            .collect::<Vec<_>>()
    );
    println!(
        "a preview at every step: {every_step:.3}% of the step; with the worker's throttle (one per \
         {} ms per job, the default worker.preview_interval_ms): {throttled:.3}% of the render time \
         ({})",
        PREVIEW_INTERVAL.as_millis(),
        if step_ms >= interval_ms {
            "a step outlasts the interval, so every step but the last still gets one"
        } else {
            "one preview per interval"
        }
    );
    Ok(())
}
