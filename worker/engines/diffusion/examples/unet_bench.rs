//! Times UNet forward passes and prints a table.
//!
//! `cargo run --release -p reverie-diffusion --example unet_bench [UNET_DIR] [--latents 32,64]
//! [--batch 2] [--runs 3] [--f16] [--channels 320,640,1280,1280]`
//!
//! Without `UNET_DIR` it builds a UNet of the SD 1.5 shape (or of `--channels`) with random
//! weights (`cpu_bench/random_weights.rs`) in a temporary folder: the time of a forward pass depends on the shapes only. The
//! default batch of 2 is one classifier-free-guidance step; `--latents 64` is a 512x512 image.

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use reverie_diffusion::unet::UNetConfig;
use reverie_diffusion::UNet2DConditionModel;

/// SD 1.5's `unet/config.json` (the fields that differ from diffusers' defaults included).
const SD15_UNET_CONFIG: &str = r#"{
  "_class_name": "UNet2DConditionModel",
  "act_fn": "silu", "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280],
  "center_input_sample": false, "cross_attention_dim": 768,
  "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
  "downsample_padding": 1, "flip_sin_to_cos": true, "freq_shift": 0, "in_channels": 4,
  "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32,
  "out_channels": 4, "sample_size": 64,
  "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]
}"#;

/// Text tokens of the CLIP encoder.
const TEXT_TOKENS: usize = 77;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The same synthetic weights as `cpu_bench` (its VAE half is not used here).
#[allow(dead_code)]
#[path = "cpu_bench/random_weights.rs"]
mod random_weights;
use random_weights::RandomWeights;

fn random_unet_dir(channels: Option<&[usize]>) -> Result<PathBuf> {
    let mut config: serde_json::Value = serde_json::from_str(SD15_UNET_CONFIG)?;
    if let Some(channels) = channels {
        config["block_out_channels"] = serde_json::json!(channels);
    }
    let parsed: UNetConfig = serde_json::from_value(config.clone())?;
    let dir = std::env::temp_dir().join(format!("reverie-unet-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("config.json"), config.to_string())?;
    RandomWeights::unet(&parsed)?.save(&dir.join("diffusion_pytorch_model.safetensors"))?;
    Ok(dir)
}

struct Options {
    latents: Vec<usize>,
    batch: usize,
    runs: usize,
    dtype: DType,
}

fn run(dir: &Path, options: &Options) -> Result<()> {
    let device = Device::cuda_if_available(0)?;
    let start = Instant::now();
    let unet = UNet2DConditionModel::from_dir(dir, &device, options.dtype)?;
    let config = unet.config();
    println!(
        "UNet {} (channels {:?}) on {:?} in {:?}; load {:.2} s; batch {}, {} text tokens",
        dir.display(),
        config.block_out_channels,
        device,
        unet.dtype(),
        start.elapsed().as_secs_f64(),
        options.batch,
        TEXT_TOKENS,
    );
    println!(
        "| latents | image | first run (s) | median of {} (s) |",
        options.runs
    );
    println!("|---|---|---|---|");
    let batch = options.batch;
    for &size in &options.latents {
        let sample = Tensor::randn(0f32, 1f32, (batch, config.in_channels, size, size), &device)?;
        let text = Tensor::randn(
            0f32,
            1f32,
            (batch, TEXT_TOKENS, config.context_dim()),
            &device,
        )?;
        let timesteps: Vec<f32> = (0..batch).map(|i| 999.0 - 250.0 * i as f32).collect();
        let timesteps = Tensor::from_vec(timesteps, batch, &device)?;
        let mut times = Vec::with_capacity(options.runs + 1);
        for _ in 0..=options.runs {
            let start = Instant::now();
            let out = unet.forward(&sample, &timesteps, &text)?;
            // Reading a value back waits for asynchronous devices to finish.
            out.flatten_all()?
                .get(0)?
                .to_dtype(DType::F32)?
                .to_scalar::<f32>()?;
            times.push(start.elapsed().as_secs_f64());
        }
        let first = times.remove(0);
        times.sort_by(f64::total_cmp);
        let median = times.get(times.len() / 2).copied().unwrap_or(first);
        let pixels = size * 8;
        println!("| {size}x{size} | {pixels}x{pixels} | {first:.3} | {median:.3} |");
    }
    Ok(())
}

fn parse_list(list: Option<String>, flag: &str) -> Result<Vec<usize>> {
    let list = list.ok_or_else(|| format!("{flag} needs a comma-separated list"))?;
    Ok(list
        .split(',')
        .map(|s| s.trim().parse::<usize>())
        .collect::<std::result::Result<_, _>>()?)
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mut dir = None;
    let mut channels = None;
    let mut options = Options {
        latents: vec![32, 64],
        batch: 2,
        runs: 3,
        dtype: DType::F32,
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--latents" => options.latents = parse_list(args.next(), "--latents")?,
            "--channels" => channels = Some(parse_list(args.next(), "--channels")?),
            "--batch" => options.batch = args.next().ok_or("--batch needs a number")?.parse()?,
            "--runs" => options.runs = args.next().ok_or("--runs needs a number")?.parse()?,
            "--f16" => options.dtype = DType::F16,
            _ => dir = Some(PathBuf::from(arg)),
        }
    }
    match dir {
        Some(dir) => run(&dir, &options),
        None => {
            let dir = random_unet_dir(channels.as_deref())?;
            let outcome = run(&dir, &options);
            std::fs::remove_dir_all(&dir)?;
            outcome
        }
    }
}
