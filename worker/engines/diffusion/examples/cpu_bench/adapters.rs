//! What LoRAs and an IP-Adapter cost per denoising step, on the sdxl-tiny fixture (the only model
//! its LoRA and IP-Adapter files fit).
//!
//! Ours fuses LoRAs into the weights at load, so a step should cost what it costs without them;
//! diffusers by default runs them through PEFT's low-rank side path (two extra small matmuls per
//! adapted layer and step), or fused after `fuse_lora`. Both are measured in the same run, with
//! the same step timing (the interval between consecutive step callbacks) and the same
//! interleaved rounds on both sides.

use std::ops::ControlFlow;
use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device};
use image::RgbImage;
use reverie_diffusion::ip_adapter::ImagePrompt;
use reverie_diffusion::lora::LoraSpec;
use reverie_diffusion::pipeline::{Adapters, StableDiffusion};
use serde::{Deserialize, Serialize};

use crate::{
    generation_request, median, our_child, parse_child_output, render, runs_factor,
    sdxl_fixture_dir, torch_child, ImageSize, Options, Progress, Result, GUIDANCE,
    OUR_IMPLEMENTATION,
};

pub const SDXL_TINY_LABEL: &str = "sdxl-tiny fixture base, 64x48px";
/// The sdxl-tiny fixture's picture size (latents 6x8, as its cases).
pub const SDXL_TINY_SIZE: ImageSize = ImageSize {
    width: 64,
    height: 48,
};
/// The fixture's two LoRAs (PEFT-named and kohya-named) at the weights of its
/// `lora_subject_and_style` case.
const LORAS: [(&str, f64); 2] = [
    ("loras/subject_peft.safetensors", 0.7),
    ("loras/style_kohya.safetensors", 1.2),
];
/// The plain IP-Adapter (projection to 4 tokens), its reference photo and scale.
const IP_ADAPTER: &str = "ip-adapter/ip_adapter_sdxl.safetensors";
const IP_PHOTO: &str = "cases/ip_photo.png";
const IP_SCALE: f64 = 0.5;

/// How a variant runs its adapters; torch_bench.py writes the same names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum AdapterKind {
    NoAdapters,
    /// LoRA as PEFT runs it by default: base layer plus `up(down(x))` at every step.
    LoraSidePath,
    /// LoRA merged into the base weights (ours at load; diffusers after `fuse_lora`).
    LoraFused,
    IpAdapter,
}

#[derive(Serialize, Deserialize)]
struct VariantMeasurement {
    kind: AdapterKind,
    label: String,
    step_s: f64,
    image_s: f64,
    /// Load time the adapters add to loading the model.
    extra_load_s: f64,
}

/// What one implementation measured (one process).
#[derive(Serialize, Deserialize)]
pub struct AdapterMeasurement {
    implementation: String,
    threads: usize,
    variants: Vec<VariantMeasurement>,
}

impl AdapterMeasurement {
    fn step_s(&self, kind: AdapterKind) -> Option<f64> {
        let variant = self.variants.iter().find(|v| v.kind == kind)?;
        Some(variant.step_s)
    }
}

fn lora_specs() -> Vec<LoraSpec> {
    LORAS
        .iter()
        .map(|(file, weight)| LoraSpec::file(sdxl_fixture_dir().join(file), *weight))
        .collect()
}

fn lora_label() -> String {
    let names: Vec<String> = LORAS
        .iter()
        .map(|(file, weight)| {
            let stem = Path::new(file).file_stem().unwrap_or_default();
            format!("{} {weight}", stem.to_string_lossy())
        })
        .collect();
    names.join(" + ")
}

struct Variant {
    kind: AdapterKind,
    label: String,
    adapters: Adapters,
}

fn our_variants() -> Vec<Variant> {
    vec![
        Variant {
            kind: AdapterKind::NoAdapters,
            label: "none".into(),
            adapters: Adapters::default(),
        },
        Variant {
            kind: AdapterKind::LoraFused,
            label: format!("LoRAs {}, fused at load", lora_label()),
            adapters: Adapters {
                loras: lora_specs(),
                ip_adapter: None,
            },
        },
        Variant {
            kind: AdapterKind::IpAdapter,
            label: format!("IP-Adapter (plain), scale {IP_SCALE}"),
            adapters: Adapters {
                loras: Vec::new(),
                ip_adapter: Some(sdxl_fixture_dir().join(IP_ADAPTER)),
            },
        },
    ]
}

/// Seconds of whole pictures and of their denoising steps. A step is the interval between two
/// consecutive progress callbacks: one UNet forward (batch 2 with guidance) and the scheduler
/// step, without the prompt encoding before the loop and the VAE decode after it, so what an
/// adapter costs per step shows undiluted.
#[derive(Default)]
struct RenderTimings {
    image_s: Vec<f64>,
    step_s: Vec<f64>,
}

impl RenderTimings {
    fn record(&mut self, render: impl FnOnce(&mut Progress<'_>) -> Result<()>) -> Result<()> {
        let mut stamps = Vec::new();
        let start = Instant::now();
        render(&mut |_| {
            stamps.push(Instant::now());
            ControlFlow::Continue(())
        })?;
        self.image_s.push(start.elapsed().as_secs_f64());
        let intervals = stamps.windows(2).map(|w| (w[1] - w[0]).as_secs_f64());
        self.step_s.extend(intervals);
        Ok(())
    }
}

/// A variant's model, loaded.
struct LoadedVariant {
    variant: Variant,
    model: StableDiffusion,
    load_s: f64,
}

impl LoadedVariant {
    fn render(
        &self,
        size: ImageSize,
        steps: usize,
        photo: &RgbImage,
        progress: &mut Progress<'_>,
    ) -> Result<()> {
        let mut request = generation_request(size, steps);
        if self.variant.kind == AdapterKind::IpAdapter {
            // Encoded per picture, as diffusers does with `ip_adapter_image`.
            let embeds = self.model.encode_image_prompt(photo)?;
            request.samples[0].image_prompt = Some(ImagePrompt {
                embeds,
                scale: IP_SCALE,
            });
        }
        render(&self.model, &request, progress)
    }
}

/// Every variant's model, loaded in `runs` interleaved rounds after a warm-up round (as the
/// renders are timed) and kept from the last round; `load_s` is the median.
fn load_variants(dir: &Path, runs: usize) -> Result<Vec<LoadedVariant>> {
    let variants = our_variants();
    let mut load_times: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    let mut models = Vec::new();
    for round in 0..=runs {
        models = variants
            .iter()
            .zip(&mut load_times)
            .map(|(variant, times)| {
                let start = Instant::now();
                let model = StableDiffusion::from_dir_with(
                    dir,
                    &Device::Cpu,
                    DType::F32,
                    &variant.adapters,
                )?;
                if round > 0 {
                    times.push(start.elapsed().as_secs_f64());
                }
                Ok(model)
            })
            .collect::<Result<Vec<_>>>()?;
    }
    let loaded = variants.into_iter().zip(models).zip(load_times);
    loaded
        .map(|((variant, model), times)| {
            Ok(LoadedVariant {
                variant,
                model,
                load_s: median(times)?,
            })
        })
        .collect()
}

/// `runs` rounds that each render every variant once, after a warm-up round, so that a change of
/// load on a shared machine hits all variants alike.
fn time_in_rounds(
    variants: &[LoadedVariant],
    size: ImageSize,
    options: &Options,
) -> Result<Vec<RenderTimings>> {
    let photo = image::open(sdxl_fixture_dir().join(IP_PHOTO))?.to_rgb8();
    let mut timings: Vec<RenderTimings> = variants.iter().map(|_| Default::default()).collect();
    for round in 0..=options.image_runs {
        for (variant, timing) in variants.iter().zip(&mut timings) {
            let render =
                |progress: &mut Progress<'_>| variant.render(size, options.steps, &photo, progress);
            if round == 0 {
                render(&mut |_| ControlFlow::Continue(()))?;
            } else {
                timing.record(render)?;
            }
        }
    }
    Ok(timings)
}

/// Our side, run in a child process: every variant on the model at `dir`.
pub fn measure_ours(dir: &Path, size: ImageSize, options: &Options) -> Result<AdapterMeasurement> {
    let loaded = load_variants(dir, options.image_runs)?;
    let timings = time_in_rounds(&loaded, size, options)?;
    let plain_load_s = loaded[0].load_s;
    let variants = loaded
        .into_iter()
        .zip(timings)
        .map(|(loaded, timing)| {
            Ok(VariantMeasurement {
                kind: loaded.variant.kind,
                label: loaded.variant.label,
                step_s: median(timing.step_s)?,
                image_s: median(timing.image_s)?,
                extra_load_s: loaded.load_s - plain_load_s,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(AdapterMeasurement {
        implementation: OUR_IMPLEMENTATION.into(),
        threads: candle_core::utils::get_num_threads(),
        variants,
    })
}

fn run_ours(dir: &Path, options: &Options) -> Result<AdapterMeasurement> {
    let mut command = our_child("--measure-adapters", dir, SDXL_TINY_SIZE, options)?;
    parse_child_output(command.output()?, "our adapter measurement")
}

fn run_torch(python: &Path, dir: &Path, options: &Options) -> Result<AdapterMeasurement> {
    let mut command = torch_child(python, dir, SDXL_TINY_SIZE, options);
    command.arg("--adapter-overhead");
    for spec in lora_specs() {
        let lora = format!("{}:{}", spec.source.label().display(), spec.weight);
        command.args(["--lora", &lora]);
    }
    command
        .arg("--ip-adapter")
        .arg(sdxl_fixture_dir().join(IP_ADAPTER))
        .arg("--ip-image")
        .arg(sdxl_fixture_dir().join(IP_PHOTO))
        .args(["--ip-scale", &IP_SCALE.to_string()]);
    parse_child_output(command.output()?, "torch_bench.py --adapter-overhead")
}

fn print_rows(measurement: &AdapterMeasurement) {
    let none_step_s = measurement.step_s(AdapterKind::NoAdapters);
    for variant in &measurement.variants {
        let versus_none = none_step_s.map_or("?".into(), |s| format!("{:.2}", variant.step_s / s));
        println!(
            "| {SDXL_TINY_LABEL} | {} | {} | {} | {:.4} | {versus_none} | {:.3} | {:.3} |",
            measurement.implementation,
            measurement.threads,
            variant.label,
            variant.step_s,
            variant.image_s,
            variant.extra_load_s
        );
    }
}

/// `a / b` of two optional timings, for the summary.
fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}", a / b),
        _ => "?".into(),
    }
}

/// The fused-versus-side-path comparison in one line.
fn print_lora_summary(ours: &AdapterMeasurement, torch: Option<&AdapterMeasurement>) {
    use AdapterKind::{LoraFused, LoraSidePath, NoAdapters};
    let ours_fused = ratio(ours.step_s(LoraFused), ours.step_s(NoAdapters));
    let Some(torch) = torch else {
        println!("\nLoRA s / step, fused / none: {ours_fused} (ours)");
        return;
    };
    println!(
        "\nLoRA s / step: low-rank side path / fused = **{}** (diffusers: PEFT's default against \
         fuse_lora); fused / none = {ours_fused} (ours), {} (diffusers); side path / none = {} \
         (diffusers); ours fused / diffusers side path = {}",
        ratio(torch.step_s(LoraSidePath), torch.step_s(LoraFused)),
        ratio(torch.step_s(LoraFused), torch.step_s(NoAdapters)),
        ratio(torch.step_s(LoraSidePath), torch.step_s(NoAdapters)),
        ratio(ours.step_s(LoraFused), torch.step_s(LoraSidePath)),
    );
}

/// The adapter overhead table (and the LoRA summary under it).
pub fn print_table(
    python: Option<&Path>,
    options: &Options,
    notes: &mut Vec<String>,
) -> Result<()> {
    let dir = sdxl_fixture_dir().join("base");
    let runs = options.image_runs * runs_factor(SDXL_TINY_SIZE);
    println!(
        "Adapter overhead on the {SDXL_TINY_LABEL}, {} Euler steps at guidance {GUIDANCE}, each \
         implementation in its own process with every variant loaded, timed in {runs} interleaved \
         rounds after a warm-up round: s / step = median interval between consecutive step \
         callbacks (one batch-2 UNet forward + scheduler step); x none = that over the same \
         implementation's s / step without adapters; s / image = median whole picture (the \
         IP-Adapter rows encode the photo in each); extra load = loading with the adapters minus \
         without (ours: medians of {runs} loads; diffusers: the adapter calls on a loaded \
         pipeline, once). LoRAs: {}; IP-Adapter: {IP_ADAPTER}, photo {IP_PHOTO}.\n",
        options.steps,
        lora_label()
    );
    println!(
        "| config | implementation | threads | adapters | s / step | x none | s / image | extra \
         load (s) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let ours = run_ours(&dir, options)?;
    print_rows(&ours);
    let torch = match python.map(|python| run_torch(python, &dir, options)) {
        Some(Ok(torch)) => Some(torch),
        Some(Err(error)) => {
            notes.push(format!("adapter overhead: diffusers run failed: {error}"));
            None
        }
        None => {
            println!("| {SDXL_TINY_LABEL} | PyTorch diffusers | absent | - | - | - | - | - |");
            None
        }
    };
    if let Some(torch) = &torch {
        print_rows(torch);
    }
    print_lora_summary(&ours, torch.as_ref());
    Ok(())
}
