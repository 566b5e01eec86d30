//! CPU benchmark against PyTorch diffusers: seconds per UNet step, per image and peak memory.
//!
//! `cargo run --release -p reverie-diffusion --example cpu_bench -- [--install-torch]
//! [--python PATH] [--threads 2] [--steps 10] [--unet-runs 3] [--image-runs 1]
//! [--mid-size 256]`
//!
//! Two configs: (a) the sd-tiny fixture at 64x64 pixels; (b) a mid-size model written to a
//! temporary diffusers folder: the sd-tiny text encoder, tokenizer and scheduler with a UNet of
//! channels [128, 256, 256] (32 groups) and a VAE of channels [64, 128, 256, 256] (two resnets per
//! block), random weights (the cost does not depend on the values). Both implementations load the
//! very same folder, each in its own process so peak memory (VmHWM) is its own.
//!
//! The PyTorch side is `bench/torch_bench.py`, run with `--python`, else
//! `$CARGO_TARGET_DIR/bench-venv/bin/python` (or `target/bench-venv`), else `python3`, whichever
//! imports torch and diffusers. `--install-torch` first creates that venv and pip-installs torch,
//! diffusers, transformers and safetensors into it (several GB: PyPI's Linux torch brings CUDA
//! libraries). Without a usable torch the table says so and shows our rows only.

mod random_weights;

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use reverie_diffusion::pipeline::{GenerationRequest, SampleSpec, StableDiffusion};
use reverie_diffusion::UNet2DConditionModel;
use serde::{Deserialize, Serialize};

use random_weights::{MID_UNET_CHANNELS, MID_VAE_CHANNELS};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const PROMPT: &str = "a lighthouse on a cliff at sunset";
const TEXT_TOKENS: usize = 77;
const GUIDANCE: f64 = 7.5;

fn manifest_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn tiny_model_dir() -> PathBuf {
    manifest_path("../../../tests/fixtures/sd-tiny/model")
}

#[derive(Clone)]
struct Options {
    install_torch: bool,
    python: Option<PathBuf>,
    threads: usize,
    steps: usize,
    unet_runs: usize,
    image_runs: usize,
    mid_size: usize,
}

/// What one implementation measured on one config (one process).
#[derive(Serialize, Deserialize)]
struct Measurement {
    implementation: String,
    threads: usize,
    unet_step_s: f64,
    image_s: f64,
    peak_rss_mb: Option<f64>,
}

fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Median of `runs` timed calls after one warm-up call.
fn median_seconds(runs: usize, mut work: impl FnMut() -> Result<()>) -> Result<f64> {
    work()?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        work()?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Our side, run in a child process: a standalone UNet first (dropped before the pipeline is
/// loaded, so the peak is that of one model), then whole generations.
fn measure_ours(dir: &Path, size: usize, options: &Options) -> Result<Measurement> {
    let device = Device::Cpu;
    let unet_step_s = {
        let unet = UNet2DConditionModel::from_dir(&dir.join("unet"), &device, DType::F32)?;
        let config = unet.config();
        let latent = size / 8;
        let sample = Tensor::randn(0f32, 1f32, (2, config.in_channels, latent, latent), &device)?;
        let text_shape = (2, TEXT_TOKENS, config.context_dim());
        let text = Tensor::randn(0f32, 1f32, text_shape, &device)?;
        let timesteps = Tensor::new(&[999f32, 749.0], &device)?;
        median_seconds(options.unet_runs, || {
            unet.forward(&sample, &timesteps, &text)?;
            Ok(())
        })?
    };
    let model = StableDiffusion::from_dir(dir, &device, DType::F32)?;
    let mut request = GenerationRequest::new(vec![SampleSpec::new(PROMPT, 1, GUIDANCE)]);
    request.width = size;
    request.height = size;
    request.steps = options.steps;
    let image_s = median_seconds(options.image_runs, || {
        model.generate(&request, &mut |_| ControlFlow::Continue(()))?;
        Ok(())
    })?;
    Ok(Measurement {
        implementation: "reverie-diffusion (candle)".into(),
        threads: candle_core::utils::get_num_threads(),
        unet_step_s,
        image_s,
        peak_rss_mb: peak_rss_mb(),
    })
}

fn bench_venv() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_path("../../../target"));
    target.join("bench-venv")
}

fn run_checked(command: &mut Command) -> Result<()> {
    let status = command.status()?;
    if !status.success() {
        return Err(format!("{command:?} failed with {status}").into());
    }
    Ok(())
}

fn install_torch(venv: &Path) -> Result<()> {
    eprintln!("installing torch and diffusers into {} ...", venv.display());
    run_checked(Command::new("python3").arg("-m").arg("venv").arg(venv))?;
    let pip = venv.join("bin/pip");
    let packages = ["torch", "diffusers", "transformers", "safetensors"];
    run_checked(
        Command::new(pip)
            .arg("install")
            .arg("--quiet")
            .args(packages),
    )
}

fn imports_torch(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import torch, diffusers, transformers"])
        .output()
        .is_ok_and(|out| out.status.success())
}

/// The Python to run the diffusers side with, or why there is none.
fn find_python(options: &Options) -> std::result::Result<PathBuf, String> {
    let venv_python = bench_venv().join("bin/python");
    let candidates: Vec<PathBuf> = match &options.python {
        Some(python) => vec![python.clone()],
        None => vec![venv_python, PathBuf::from("python3")],
    };
    candidates
        .iter()
        .find(|python| imports_torch(python))
        .cloned()
        .ok_or_else(|| {
            format!(
                "PyTorch diffusers absent: none of {candidates:?} imports torch, diffusers and \
                 transformers; rerun with --install-torch (creates {})",
                bench_venv().display()
            )
        })
}

fn parse_measurement(output: std::process::Output, who: &str) -> Result<Measurement> {
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: String = stderr.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
        return Err(format!("{who} failed ({}): {tail}", output.status).into());
    }
    let stdout = String::from_utf8(output.stdout)?;
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| format!("{who} printed no JSON result"))?;
    Ok(serde_json::from_str(line)?)
}

/// Tiny models run in milliseconds, where a loaded shared machine adds most noise: more runs.
const TINY_RUNS_FACTOR: usize = 5;

fn common_args(command: &mut Command, dir: &Path, size: usize, options: &Options) {
    let factor = if size <= 64 { TINY_RUNS_FACTOR } else { 1 };
    command
        .arg(dir)
        .args(["--size", &size.to_string()])
        .args(["--steps", &options.steps.to_string()])
        .args(["--unet-runs", &(options.unet_runs * factor).to_string()])
        .args(["--image-runs", &(options.image_runs * factor).to_string()])
        .args(["--threads", &options.threads.to_string()]);
}

fn run_ours(dir: &Path, size: usize, options: &Options) -> Result<Measurement> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .arg("--measure")
        .env("RAYON_NUM_THREADS", options.threads.to_string());
    common_args(&mut command, dir, size, options);
    parse_measurement(command.output()?, "our measurement")
}

fn run_torch(python: &Path, dir: &Path, size: usize, options: &Options) -> Result<Measurement> {
    let mut command = Command::new(python);
    command.arg(manifest_path("bench/torch_bench.py"));
    common_args(&mut command, dir, size, options);
    parse_measurement(command.output()?, "torch_bench.py")
}

fn row(config: &str, m: &Measurement) -> String {
    let peak = m
        .peak_rss_mb
        .map_or("?".to_string(), |mb| format!("{mb:.0}"));
    format!(
        "| {config} | {} | {} | {:.4} | {:.3} | {peak} |",
        m.implementation, m.threads, m.unet_step_s, m.image_s
    )
}

fn ratio_row(config: &str, ours: &Measurement, torch: &Measurement) -> String {
    let peak = match (ours.peak_rss_mb, torch.peak_rss_mb) {
        (Some(a), Some(b)) => format!("{:.2}", a / b),
        _ => "?".into(),
    };
    format!(
        "| {config} | **ours / torch** | | **{:.2}** | **{:.2}** | **{peak}** |",
        ours.unet_step_s / torch.unet_step_s,
        ours.image_s / torch.image_s
    )
}

fn compare(options: &Options) -> Result<()> {
    if options.install_torch && find_python(options).is_err() {
        install_torch(&bench_venv())?;
    }
    let python = find_python(options);
    let mid_dir = std::env::temp_dir().join(format!("reverie-cpu-bench-{}", std::process::id()));
    random_weights::write_mid_model(&tiny_model_dir(), &mid_dir, options.mid_size)?;
    let mid_label = format!(
        "mid UNet {:?}, VAE {:?}, {}px",
        MID_UNET_CHANNELS, MID_VAE_CHANNELS, options.mid_size
    );
    let configs = [
        ("sd-tiny fixture, 64px".to_string(), tiny_model_dir(), 64),
        (mid_label, mid_dir.clone(), options.mid_size),
    ];
    println!(
        "CPU, f32, {} threads; UNet step = one batch-2 (CFG) forward, median of {} ({}x on \
         sd-tiny); image = prompt encoding + {} Euler steps at guidance {GUIDANCE} + VAE decode, \
         median of {} ({}x on sd-tiny); peak = VmHWM of the process that ran both.\n",
        options.threads,
        options.unet_runs,
        TINY_RUNS_FACTOR,
        options.steps,
        options.image_runs,
        TINY_RUNS_FACTOR
    );
    println!("| config | implementation | threads | s / UNet step | s / image | peak RSS (MB) |");
    println!("|---|---|---|---|---|---|");
    let mut notes = Vec::new();
    for (label, dir, size) in &configs {
        let ours = run_ours(dir, *size, options)?;
        println!("{}", row(label, &ours));
        match &python {
            Ok(python) => match run_torch(python, dir, *size, options) {
                Ok(torch) => {
                    println!("{}", row(label, &torch));
                    println!("{}", ratio_row(label, &ours, &torch));
                }
                Err(error) => notes.push(format!("{label}: diffusers run failed: {error}")),
            },
            Err(_) => println!("| {label} | PyTorch diffusers | absent | - | - | - |"),
        }
    }
    if let Err(absent) = &python {
        notes.push(absent.clone());
    }
    for note in notes {
        println!("\nnote: {note}");
    }
    std::fs::remove_dir_all(&mid_dir)?;
    Ok(())
}

fn parse_args() -> Result<(Options, Option<(PathBuf, usize)>)> {
    let mut options = Options {
        install_torch: false,
        python: None,
        threads: 2,
        steps: 10,
        unet_runs: 3,
        image_runs: 1,
        mid_size: 256,
    };
    let mut measure = false;
    let mut dir = None;
    let mut size = 64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().ok_or(format!("{flag} needs a value"));
        match arg.as_str() {
            "--install-torch" => options.install_torch = true,
            "--measure" => measure = true,
            "--python" => options.python = Some(PathBuf::from(value(&arg)?)),
            "--threads" => options.threads = value(&arg)?.parse()?,
            "--steps" => options.steps = value(&arg)?.parse()?,
            "--unet-runs" => options.unet_runs = value(&arg)?.parse()?,
            "--image-runs" => options.image_runs = value(&arg)?.parse()?,
            "--mid-size" => options.mid_size = value(&arg)?.parse()?,
            "--size" => size = value(&arg)?.parse()?,
            flag if flag.starts_with("--") => return Err(format!("unknown flag {flag}").into()),
            path => dir = Some(PathBuf::from(path)),
        }
    }
    if !options.mid_size.is_multiple_of(64) {
        return Err("--mid-size must be a multiple of 64 pixels".into());
    }
    let measure = match (measure, dir) {
        (true, Some(dir)) => Some((dir, size)),
        (true, None) => return Err("--measure needs a model folder".into()),
        (false, _) => None,
    };
    Ok((options, measure))
}

fn main() -> Result<()> {
    let (options, measure) = parse_args()?;
    match measure {
        Some((dir, size)) => {
            let measurement = measure_ours(&dir, size, &options)?;
            println!("{}", serde_json::to_string(&measurement)?);
            Ok(())
        }
        None => compare(&options),
    }
}
