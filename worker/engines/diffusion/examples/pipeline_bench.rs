//! Times whole generations and prints a table: what a batch costs, what skipping the
//! unconditional branch of unguided samples saves, decoding, and registry hashing.
//!
//! `cargo run --release -p reverie-diffusion --example pipeline_bench [MODEL_DIR] [--size 64]
//! [--steps 10] [--f16] [--device cpu|cuda|cuda:N]`
//!
//! Without `MODEL_DIR` it runs the sd-tiny fixture (random weights, tiny shapes): the table then
//! shows pipeline overheads rather than real-model speed.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Device};
use reverie_diffusion::pipeline::{GenerationRequest, SampleSpec, StableDiffusion};
use reverie_diffusion::registry::hash_model_dir;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

struct Options {
    model: PathBuf,
    size: usize,
    steps: usize,
    dtype: DType,
    device: Device,
}

fn options() -> Result<Options> {
    let mut options = Options {
        model: PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../tests/fixtures/sd-tiny/model"
        )),
        size: 64,
        steps: 10,
        dtype: DType::F32,
        device: Device::Cpu,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--size" => options.size = args.next().ok_or("--size N")?.parse()?,
            "--steps" => options.steps = args.next().ok_or("--steps N")?.parse()?,
            "--f16" => options.dtype = DType::F16,
            "--device" => {
                options.device = match args.next().ok_or("--device cpu|cuda|cuda:N")?.as_str() {
                    "cpu" => Device::Cpu,
                    "cuda" => Device::new_cuda(0)?,
                    other => match other.strip_prefix("cuda:") {
                        Some(n) => Device::new_cuda(n.parse()?)?,
                        None => return Err(format!("--device {other}: cpu, cuda or cuda:N").into()),
                    },
                }
            }
            path => options.model = PathBuf::from(path),
        }
    }
    Ok(options)
}

/// `guidance` per sample; returns (UNet rows per step, seconds for the whole run).
fn time_run(model: &StableDiffusion, options: &Options, guidance: &[f64]) -> Result<(usize, f64)> {
    let samples = guidance
        .iter()
        .enumerate()
        .map(|(i, &g)| SampleSpec::new("a lighthouse on a cliff at sunset", i as u64, g))
        .collect::<Vec<_>>();
    let rows = samples.len() + samples.iter().filter(|s| s.uses_guidance()).count();
    let mut request = GenerationRequest::new(samples);
    request.width = options.size;
    request.height = options.size;
    request.steps = options.steps;
    let start = Instant::now();
    model.generate(&request, &mut |_| ControlFlow::Continue(()))?;
    Ok((rows, start.elapsed().as_secs_f64()))
}

fn main() -> Result<()> {
    let options = options()?;
    let load = Instant::now();
    let model = StableDiffusion::from_dir(&options.model, &options.device, options.dtype)?;
    println!(
        "model {} ({:?}, {:?}) loaded in {:.2} s; {}x{}, {} steps, {} threads",
        options.model.display(),
        options.dtype,
        options.device.location(),
        load.elapsed().as_secs_f64(),
        options.size,
        options.size,
        options.steps,
        candle_core::utils::get_num_threads()
    );
    // Warm-up: first-touch allocations and lazily built kernels.
    time_run(&model, &options, &[7.5])?;

    println!("| batch | guidance | UNet rows/step | total s | ms/step | ms/image |");
    println!("|---|---|---|---|---|---|");
    let cases: [(&str, Vec<f64>); 5] = [
        ("1", vec![7.5]),
        ("1", vec![0.0]),
        ("4", vec![7.5; 4]),
        ("4", vec![7.5, 7.5, 1.0, 1.0]),
        ("4", vec![0.0; 4]),
    ];
    for (batch, guidance) in &cases {
        let (rows, seconds) = time_run(&model, &options, guidance)?;
        let label = guidance
            .iter()
            .map(|g| g.to_string())
            .collect::<Vec<_>>()
            .join(",");
        println!(
            "| {batch} | {label} | {rows} | {seconds:.3} | {:.1} | {:.1} |",
            seconds * 1000.0 / options.steps as f64,
            seconds * 1000.0 / guidance.len() as f64
        );
    }

    let latents = candle_core::Tensor::zeros(
        (1, 4, options.size / 8, options.size / 8),
        DType::F32,
        &options.device,
    )?;
    let decode = Instant::now();
    // Copied back so that a GPU's asynchronous kernels are inside the timing.
    model.decode(&latents)?.to_device(&Device::Cpu)?;
    println!(
        "\nVAE decode of one image: {:.1} ms",
        decode.elapsed().as_secs_f64() * 1000.0
    );

    let hashing = Instant::now();
    let files = hash_model_dir(&options.model)?;
    let bytes: u64 = files
        .keys()
        .map(|path| std::fs::metadata(options.model.join(path)).map_or(0, |m| m.len()))
        .sum();
    let seconds = hashing.elapsed().as_secs_f64();
    println!(
        "registry verification (SHA-256 of {} files, {:.1} MB): {:.2} s, {:.0} MB/s",
        files.len(),
        bytes as f64 / 1e6,
        seconds,
        bytes as f64 / 1e6 / seconds
    );
    Ok(())
}
