//! CPU benchmark against PyTorch diffusers: seconds per UNet step, per image and peak memory, then
//! the per-step cost of LoRAs and IP-Adapters.
//!
//! `cargo run --release -p reverie-diffusion --example cpu_bench -- [--install-torch]
//! [--python PATH] [--threads 2] [--steps 10] [--unet-runs 3] [--image-runs 1]
//! [--mid-size 256] [--sdxl-mid-size 128]`
//!
//! Four configs: (a) the sd-tiny fixture at 64x64 pixels; (b) a mid-size model written to a
//! temporary diffusers folder: the sd-tiny text encoder, tokenizer and scheduler with a UNet of
//! channels [128, 256, 256] (32 groups) and a VAE of channels [64, 128, 256, 256] (two resnets per
//! block), random weights (the cost does not depend on the values); (c) the sdxl-tiny fixture's base
//! at 64x48 pixels; (d) a mid-size SDXL (`xl_model.rs`: sdxl-tiny's two text encoders, tokenizers
//! and scheduler, a UNet with SDXL's structure at the widths of (b), the VAE of (b) with SDXL's
//! latent scale) at `--sdxl-mid-size` pixels (0 leaves it out). Both implementations load the very
//! same folder, each in its own process so peak memory (VmHWM) is its own.
//!
//! Then the adapter overhead on sdxl-tiny (`adapters.rs`): seconds per denoising step and per
//! image without adapters, with the fixture's two LoRAs (ours: fused at load; diffusers: PEFT's
//! unfused side path and fused) and with its IP-Adapter and an image prompt.
//!
//! The PyTorch side is `bench/torch_bench.py`, run with `--python`, else
//! `$CARGO_TARGET_DIR/bench-venv/bin/python` (or `target/bench-venv`), else `python3`, whichever
//! imports torch and diffusers. `--install-torch` first creates that venv and pip-installs torch,
//! diffusers, transformers, peft and safetensors into it (several GB: PyPI's Linux torch brings
//! CUDA libraries). Without a usable torch the tables say so and show our rows only.

mod adapters;
mod random_weights;
mod xl_model;

use std::fmt;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use reverie_diffusion::pipeline::images::tensor_to_rgb;
use reverie_diffusion::pipeline::{GenerationRequest, SampleSpec, StableDiffusion, StepProgress};
use reverie_diffusion::unet::{AddedConditions, Conditions, TextTimePlan};
use reverie_diffusion::UNet2DConditionModel;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use random_weights::{MID_UNET_CHANNELS, MID_VAE_CHANNELS};
use xl_model::MID_XL_TRANSFORMER_DEPTHS;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const PROMPT: &str = "a lighthouse on a cliff at sunset";
const TEXT_TOKENS: usize = 77;
const GUIDANCE: f64 = 7.5;
/// SDXL base's time ids: original size, crop top-left, target size (the refiner has 5).
const XL_TIME_IDS: usize = 6;

fn manifest_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn tiny_model_dir() -> PathBuf {
    manifest_path("../../../tests/fixtures/sd-tiny/model")
}

fn sdxl_fixture_dir() -> PathBuf {
    manifest_path("../../../tests/fixtures/sdxl-tiny")
}

/// The size of the generated pictures in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ImageSize {
    width: usize,
    height: usize,
}

impl ImageSize {
    fn square(side: usize) -> Self {
        Self {
            width: side,
            height: side,
        }
    }

    /// `W` (square) or `WxH`, as `--size` takes it (torch_bench.py reads the same).
    fn parse(text: &str) -> Result<Self> {
        let (width, height) = text.split_once('x').unwrap_or((text, text));
        Ok(Self {
            width: width.parse()?,
            height: height.parse()?,
        })
    }

    fn arg(self) -> String {
        format!("{}x{}", self.width, self.height)
    }

    /// Tiny models run in milliseconds, where a loaded shared machine adds most noise.
    fn is_tiny(self) -> bool {
        self.width.max(self.height) <= 64
    }
}

impl fmt::Display for ImageSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.width == self.height {
            write!(f, "{}px", self.width)
        } else {
            write!(f, "{}x{}px", self.width, self.height)
        }
    }
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
    /// 0: no mid-size SDXL row.
    sdxl_mid_size: usize,
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

fn median(mut values: Vec<f64>) -> Result<f64> {
    if values.is_empty() {
        return Err("no timings to take the median of".into());
    }
    values.sort_by(f64::total_cmp);
    Ok(values[values.len() / 2])
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
    median(times)
}

type Progress<'a> = dyn FnMut(&StepProgress<'_>) -> ControlFlow<()> + 'a;

/// One text-to-image sample with guidance, the request both implementations run.
fn generation_request(size: ImageSize, steps: usize) -> GenerationRequest {
    let mut request = GenerationRequest::new(vec![SampleSpec::new(PROMPT, 1, GUIDANCE)]);
    request.width = size.width;
    request.height = size.height;
    request.steps = steps;
    request
}

/// A whole picture: sampling, then the VAE decode to 8-bit RGB (diffusers' `output_type="pil"`).
fn render(
    model: &StableDiffusion,
    request: &GenerationRequest,
    progress: &mut Progress<'_>,
) -> Result<()> {
    let generation = model.generate(request, progress)?;
    tensor_to_rgb(&model.decode(&generation.latents)?)?;
    Ok(())
}

/// Random inputs of one UNet step with classifier-free guidance (batch 2).
struct UNetStepInputs {
    sample: Tensor,
    timesteps: Tensor,
    text: Tensor,
    /// SDXL's pooled text and time ids; `None` for SD 1.x / 2.x.
    added: Option<AddedConditions>,
}

impl UNetStepInputs {
    fn random(unet: &UNet2DConditionModel, size: ImageSize, device: &Device) -> Result<Self> {
        let config = unet.config();
        let latent_shape = (2, config.in_channels, size.height / 8, size.width / 8);
        let text_shape = (2, TEXT_TOKENS, config.context_dim());
        let added = unet
            .text_time_plan()
            .map(|plan| xl_added_conditions(plan, size, device))
            .transpose()?;
        Ok(Self {
            sample: Tensor::randn(0f32, 1f32, latent_shape, device)?,
            timesteps: Tensor::new(&[999f32, 749.0], device)?,
            text: Tensor::randn(0f32, 1f32, text_shape, device)?,
            added,
        })
    }

    fn conditions(&self) -> Conditions<'_> {
        Conditions {
            text: &self.text,
            added: self.added.as_ref(),
            image: None,
        }
    }
}

/// SDXL base's added conditioning for a batch of 2: random pooled text and the time ids of an
/// uncropped picture of `size` (what the pipeline passes by default).
fn xl_added_conditions(
    plan: TextTimePlan,
    size: ImageSize,
    device: &Device,
) -> Result<AddedConditions> {
    let pooled = plan
        .input_dim
        .checked_sub(XL_TIME_IDS * plan.time_embed_dim)
        .ok_or("the UNet's text_time input is narrower than SDXL base's time ids")?;
    let (h, w) = (size.height as f32, size.width as f32);
    let time_ids = Tensor::new(&[[h, w, 0.0, 0.0, h, w], [h, w, 0.0, 0.0, h, w]], device)?;
    Ok(AddedConditions {
        text_embeds: Tensor::randn(0f32, 1f32, (2, pooled), device)?,
        time_ids,
    })
}

/// Seconds per UNet step of a standalone UNet, dropped before the pipeline is loaded, so the
/// process's peak is that of one model.
fn unet_step_seconds(unet_dir: &Path, size: ImageSize, runs: usize) -> Result<f64> {
    let device = Device::Cpu;
    let unet = UNet2DConditionModel::from_dir(unet_dir, &device, DType::F32)?;
    let inputs = UNetStepInputs::random(&unet, size, &device)?;
    median_seconds(runs, || {
        unet.forward_with(&inputs.sample, &inputs.timesteps, &inputs.conditions())?;
        Ok(())
    })
}

/// Our side, run in a child process: a standalone UNet first, then whole generations.
fn measure_ours(dir: &Path, size: ImageSize, options: &Options) -> Result<Measurement> {
    let unet_step_s = unet_step_seconds(&dir.join("unet"), size, options.unet_runs)?;
    let model = StableDiffusion::from_dir(dir, &Device::Cpu, DType::F32)?;
    let request = generation_request(size, options.steps);
    let image_s = median_seconds(options.image_runs, || {
        render(&model, &request, &mut |_| ControlFlow::Continue(()))
    })?;
    Ok(Measurement {
        implementation: OUR_IMPLEMENTATION.into(),
        threads: candle_core::utils::get_num_threads(),
        unet_step_s,
        image_s,
        peak_rss_mb: peak_rss_mb(),
    })
}

const OUR_IMPLEMENTATION: &str = "reverie-diffusion (candle)";

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
    // peft: diffusers' LoRA loading (the adapter overhead rows).
    let packages = ["torch", "diffusers", "transformers", "peft", "safetensors"];
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

/// The JSON line a child process printed last.
fn parse_child_output<T: DeserializeOwned>(output: std::process::Output, who: &str) -> Result<T> {
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

/// How many times `--unet-runs` and `--image-runs` a model of this picture size is run.
fn runs_factor(size: ImageSize) -> usize {
    if size.is_tiny() {
        TINY_RUNS_FACTOR
    } else {
        1
    }
}

/// The arguments both implementations' child processes take.
fn common_args(command: &mut Command, dir: &Path, size: ImageSize, options: &Options) {
    let factor = runs_factor(size);
    command
        .arg(dir)
        .args(["--size", &size.arg()])
        .args(["--steps", &options.steps.to_string()])
        .args(["--unet-runs", &(options.unet_runs * factor).to_string()])
        .args(["--image-runs", &(options.image_runs * factor).to_string()])
        .args(["--threads", &options.threads.to_string()]);
}

/// This executable in measuring mode (`--measure` or `--measure-adapters`).
fn our_child(mode: &str, dir: &Path, size: ImageSize, options: &Options) -> Result<Command> {
    let mut command = Command::new(std::env::current_exe()?);
    command
        .arg(mode)
        .env("RAYON_NUM_THREADS", options.threads.to_string());
    common_args(&mut command, dir, size, options);
    Ok(command)
}

fn torch_child(python: &Path, dir: &Path, size: ImageSize, options: &Options) -> Command {
    let mut command = Command::new(python);
    command.arg(manifest_path("bench/torch_bench.py"));
    common_args(&mut command, dir, size, options);
    command
}

fn run_ours(dir: &Path, size: ImageSize, options: &Options) -> Result<Measurement> {
    let mut command = our_child("--measure", dir, size, options)?;
    parse_child_output(command.output()?, "our measurement")
}

fn run_torch(python: &Path, dir: &Path, size: ImageSize, options: &Options) -> Result<Measurement> {
    let mut command = torch_child(python, dir, size, options);
    parse_child_output(command.output()?, "torch_bench.py")
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

/// One model both implementations load, at one picture size.
struct BenchConfig {
    label: String,
    dir: PathBuf,
    size: ImageSize,
}

/// The fixtures, and the mid-size models written into `scratch`.
fn bench_configs(options: &Options, scratch: &Path) -> Result<Vec<BenchConfig>> {
    let mid_dir = scratch.join("mid-sd");
    random_weights::write_mid_model(&tiny_model_dir(), &mid_dir, options.mid_size)?;
    let mid_size = ImageSize::square(options.mid_size);
    let xl_tiny_dir = sdxl_fixture_dir().join("base");
    let mut configs = vec![
        BenchConfig {
            label: "sd-tiny fixture, 64px".into(),
            dir: tiny_model_dir(),
            size: ImageSize::square(64),
        },
        BenchConfig {
            label: format!("mid UNet {MID_UNET_CHANNELS:?}, VAE {MID_VAE_CHANNELS:?}, {mid_size}"),
            dir: mid_dir,
            size: mid_size,
        },
        BenchConfig {
            label: adapters::SDXL_TINY_LABEL.into(),
            dir: xl_tiny_dir.clone(),
            size: adapters::SDXL_TINY_SIZE,
        },
    ];
    if options.sdxl_mid_size > 0 {
        let mid_xl_dir = scratch.join("mid-sdxl");
        xl_model::write_mid_xl_model(&xl_tiny_dir, &mid_xl_dir, options.sdxl_mid_size)?;
        let size = ImageSize::square(options.sdxl_mid_size);
        configs.push(BenchConfig {
            label: format!(
                "mid SDXL UNet {MID_UNET_CHANNELS:?} x {MID_XL_TRANSFORMER_DEPTHS:?} transformer \
                 blocks, VAE {MID_VAE_CHANNELS:?}, {size}"
            ),
            dir: mid_xl_dir,
            size,
        });
    }
    Ok(configs)
}

fn print_model_table(
    configs: &[BenchConfig],
    python: &std::result::Result<PathBuf, String>,
    options: &Options,
    notes: &mut Vec<String>,
) -> Result<()> {
    println!(
        "CPU, f32, {} threads; UNet step = one batch-2 (CFG) forward with {TEXT_TOKENS} text tokens \
         (SDXL: plus pooled text and time ids), median of {} ({}x on the tiny fixtures); image = \
         prompt encoding + {} Euler steps at guidance {GUIDANCE} + VAE decode to RGB, median of {} \
         ({}x on the tiny fixtures); peak = VmHWM of the process that ran both.\n",
        options.threads,
        options.unet_runs,
        TINY_RUNS_FACTOR,
        options.steps,
        options.image_runs,
        TINY_RUNS_FACTOR
    );
    println!("| config | implementation | threads | s / UNet step | s / image | peak RSS (MB) |");
    println!("|---|---|---|---|---|---|");
    for BenchConfig { label, dir, size } in configs {
        let ours = run_ours(dir, *size, options)?;
        println!("{}", row(label, &ours));
        match python {
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
    Ok(())
}

/// The machine's 1-minute load average: work of other processes on the same cores skews timings.
fn load_average() -> String {
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    loadavg.split_whitespace().next().unwrap_or("?").to_string()
}

fn compare(options: &Options) -> Result<()> {
    let load_at_start = load_average();
    if options.install_torch && find_python(options).is_err() {
        install_torch(&bench_venv())?;
    }
    let python = find_python(options);
    // Removed when dropped, also when a measurement fails.
    let scratch = tempfile::Builder::new()
        .prefix("reverie-cpu-bench-")
        .tempdir()?;
    let configs = bench_configs(options, scratch.path())?;
    let mut notes = Vec::new();
    print_model_table(&configs, &python, options, &mut notes)?;
    println!();
    adapters::print_table(python.as_deref().ok(), options, &mut notes)?;
    if let Err(absent) = &python {
        notes.push(absent.clone());
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    notes.push(format!(
        "{cores} cores, 1-minute load average {load_at_start} at the start and {} at the end \
         (other processes on these cores skew the timings)",
        load_average()
    ));
    for note in notes {
        println!("\nnote: {note}");
    }
    Ok(())
}

/// What this process does: the comparison, or one measurement as a child of it.
enum Mode {
    Compare,
    Measure { dir: PathBuf, size: ImageSize },
    MeasureAdapters { dir: PathBuf, size: ImageSize },
}

fn parse_args() -> Result<(Options, Mode)> {
    let mut options = Options {
        install_torch: false,
        python: None,
        threads: 2,
        steps: 10,
        unet_runs: 3,
        image_runs: 1,
        mid_size: 256,
        // At 256 px the mid-size SDXL rows take nearly as long as all the other rows together.
        sdxl_mid_size: 128,
    };
    let mut child_mode = None;
    let mut dir = None;
    let mut size = ImageSize::square(64);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().ok_or(format!("{flag} needs a value"));
        match arg.as_str() {
            "--install-torch" => options.install_torch = true,
            "--measure" | "--measure-adapters" => child_mode = Some(arg),
            "--python" => options.python = Some(PathBuf::from(value(&arg)?)),
            "--threads" => options.threads = value(&arg)?.parse()?,
            "--steps" => options.steps = value(&arg)?.parse()?,
            "--unet-runs" => options.unet_runs = value(&arg)?.parse()?,
            "--image-runs" => options.image_runs = value(&arg)?.parse()?,
            "--mid-size" => options.mid_size = value(&arg)?.parse()?,
            "--sdxl-mid-size" => options.sdxl_mid_size = value(&arg)?.parse()?,
            "--size" => size = ImageSize::parse(&value(&arg)?)?,
            flag if flag.starts_with("--") => return Err(format!("unknown flag {flag}").into()),
            path => dir = Some(PathBuf::from(path)),
        }
    }
    for (flag, pixels) in [
        ("--mid-size", options.mid_size),
        ("--sdxl-mid-size", options.sdxl_mid_size),
    ] {
        if !pixels.is_multiple_of(64) {
            return Err(format!("{flag} must be a multiple of 64 pixels").into());
        }
    }
    if options.steps < 2 {
        // A step's time is the interval between two progress callbacks.
        return Err("--steps must be at least 2".into());
    }
    let mode = match (child_mode.as_deref(), dir) {
        (None, _) => Mode::Compare,
        (Some(_), None) => {
            return Err("--measure and --measure-adapters need a model folder".into())
        }
        (Some("--measure"), Some(dir)) => Mode::Measure { dir, size },
        (Some(_), Some(dir)) => Mode::MeasureAdapters { dir, size },
    };
    Ok((options, mode))
}

fn main() -> Result<()> {
    let (options, mode) = parse_args()?;
    match mode {
        Mode::Compare => compare(&options),
        Mode::Measure { dir, size } => {
            let measurement = measure_ours(&dir, size, &options)?;
            println!("{}", serde_json::to_string(&measurement)?);
            Ok(())
        }
        Mode::MeasureAdapters { dir, size } => {
            let measurement = adapters::measure_ours(&dir, size, &options)?;
            println!("{}", serde_json::to_string(&measurement)?);
            Ok(())
        }
    }
}
