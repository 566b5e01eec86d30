//! Times UNet forward passes and prints a table.
//!
//! `cargo run --release -p reverie-diffusion --example unet_bench [UNET_DIR] [--latents 32,64]
//! [--batch 2] [--runs 3] [--f16] [--channels 320,640,1280,1280]`
//!
//! Without `UNET_DIR` it builds a UNet of the SD 1.5 shape (or of `--channels`) with random
//! weights in a temporary folder: the time of a forward pass depends on the shapes only. The
//! default batch of 2 is one classifier-free-guidance step; `--latents 64` is a 512x512 image.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use reverie_diffusion::unet::{AttentionPlan, UNetConfig};
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

/// Random weights named and shaped as diffusers names a `UNet2DConditionModel`'s tensors.
struct RandomWeights {
    tensors: HashMap<String, Tensor>,
    linear_projection: bool,
}

impl RandomWeights {
    /// Values spread over +-1/sqrt(fan_in) by a cheap quasi-random sequence (a PRNG would take
    /// longer than the forward passes being timed).
    fn put_random(&mut self, name: String, shape: &[usize], fan_in: usize) -> Result<()> {
        let bound = 1.0 / (fan_in as f64).sqrt();
        let count: usize = shape.iter().product();
        let index = Tensor::arange(0u32, count as u32, &Device::Cpu)?.to_dtype(DType::F32)?;
        let phase = (index.affine(0.618_034, 0.0)? - index.affine(0.618_034, 0.0)?.floor()?)?;
        let tensor = phase.affine(2.0 * bound, -bound)?.reshape(shape)?;
        self.tensors.insert(name, tensor);
        Ok(())
    }

    fn put_zeros(&mut self, name: String, size: usize) -> Result<()> {
        let tensor = Tensor::zeros(size, DType::F32, &Device::Cpu)?;
        self.tensors.insert(name, tensor);
        Ok(())
    }

    fn conv(&mut self, name: &str, input: usize, output: usize, kernel: usize) -> Result<()> {
        let shape = [output, input, kernel, kernel];
        self.put_random(format!("{name}.weight"), &shape, input * kernel * kernel)?;
        self.put_zeros(format!("{name}.bias"), output)
    }

    fn linear(&mut self, name: &str, input: usize, output: usize, bias: bool) -> Result<()> {
        self.put_random(format!("{name}.weight"), &[output, input], input)?;
        if bias {
            self.put_zeros(format!("{name}.bias"), output)?;
        }
        Ok(())
    }

    fn norm(&mut self, name: &str, channels: usize) -> Result<()> {
        let ones = Tensor::ones(channels, DType::F32, &Device::Cpu)?;
        self.tensors.insert(format!("{name}.weight"), ones);
        self.put_zeros(format!("{name}.bias"), channels)
    }

    fn resnet(&mut self, name: &str, input: usize, output: usize, temb: usize) -> Result<()> {
        self.norm(&format!("{name}.norm1"), input)?;
        self.conv(&format!("{name}.conv1"), input, output, 3)?;
        self.linear(&format!("{name}.time_emb_proj"), temb, output, true)?;
        self.norm(&format!("{name}.norm2"), output)?;
        self.conv(&format!("{name}.conv2"), output, output, 3)?;
        if input != output {
            self.conv(&format!("{name}.conv_shortcut"), input, output, 1)?;
        }
        Ok(())
    }

    fn projection(&mut self, name: &str, input: usize, output: usize) -> Result<()> {
        if self.linear_projection {
            self.linear(name, input, output, true)
        } else {
            self.conv(name, input, output, 1)
        }
    }

    fn transformer(&mut self, name: &str, channels: usize, plan: &AttentionPlan) -> Result<()> {
        let inner = plan.heads * plan.head_dim;
        self.norm(&format!("{name}.norm"), channels)?;
        self.projection(&format!("{name}.proj_in"), channels, inner)?;
        for block in 0..plan.depth {
            let b = format!("{name}.transformer_blocks.{block}");
            for norm in ["norm1", "norm2", "norm3"] {
                self.norm(&format!("{b}.{norm}"), inner)?;
            }
            let first_context = if plan.only_cross_attention {
                plan.context_dim
            } else {
                inner
            };
            for (attn, context) in [("attn1", first_context), ("attn2", plan.context_dim)] {
                self.linear(&format!("{b}.{attn}.to_q"), inner, inner, false)?;
                self.linear(&format!("{b}.{attn}.to_k"), context, inner, false)?;
                self.linear(&format!("{b}.{attn}.to_v"), context, inner, false)?;
                self.linear(&format!("{b}.{attn}.to_out.0"), inner, inner, true)?;
            }
            self.linear(&format!("{b}.ff.net.0.proj"), inner, 8 * inner, true)?;
            self.linear(&format!("{b}.ff.net.2"), 4 * inner, inner, true)?;
        }
        self.projection(&format!("{name}.proj_out"), inner, channels)
    }

    fn unet(config: &UNetConfig) -> Result<Self> {
        let plan = config.plan(Path::new("config.json"))?;
        let mut w = Self {
            tensors: HashMap::new(),
            linear_projection: config.use_linear_projection,
        };
        let channels = &config.block_out_channels;
        let temb = plan.time_embed_dim;
        let kernel_in = config.conv_in_kernel;
        w.conv("conv_in", config.in_channels, channels[0], kernel_in)?;
        w.linear("time_embedding.linear_1", channels[0], temb, true)?;
        w.linear("time_embedding.linear_2", temb, temb, true)?;
        for (i, block) in plan.down.iter().enumerate() {
            for layer in 0..block.layers {
                let input = if layer == 0 {
                    block.in_channels
                } else {
                    block.out_channels
                };
                let prefix = format!("down_blocks.{i}");
                w.resnet(
                    &format!("{prefix}.resnets.{layer}"),
                    input,
                    block.out_channels,
                    temb,
                )?;
                if let Some(attention) = &block.attention {
                    let name = format!("{prefix}.attentions.{layer}");
                    w.transformer(&name, block.out_channels, attention)?;
                }
            }
            if block.downsample {
                let name = format!("down_blocks.{i}.downsamplers.0.conv");
                w.conv(&name, block.out_channels, block.out_channels, 3)?;
            }
        }
        if let Some(attention) = &plan.mid {
            let c = channels[channels.len() - 1];
            w.resnet("mid_block.resnets.0", c, c, temb)?;
            w.transformer("mid_block.attentions.0", c, attention)?;
            w.resnet("mid_block.resnets.1", c, c, temb)?;
        }
        for (i, block) in plan.up.iter().enumerate() {
            for layer in 0..block.layers {
                let skip = if layer + 1 == block.layers {
                    block.in_channels
                } else {
                    block.out_channels
                };
                let input = if layer == 0 {
                    block.prev_output_channels
                } else {
                    block.out_channels
                };
                let prefix = format!("up_blocks.{i}");
                w.resnet(
                    &format!("{prefix}.resnets.{layer}"),
                    input + skip,
                    block.out_channels,
                    temb,
                )?;
                if let Some(attention) = &block.attention {
                    let name = format!("{prefix}.attentions.{layer}");
                    w.transformer(&name, block.out_channels, attention)?;
                }
            }
            if block.upsample {
                let name = format!("up_blocks.{i}.upsamplers.0.conv");
                w.conv(&name, block.out_channels, block.out_channels, 3)?;
            }
        }
        w.norm("conv_norm_out", channels[0])?;
        let kernel_out = config.conv_out_kernel;
        w.conv("conv_out", channels[0], config.out_channels, kernel_out)?;
        Ok(w)
    }
}

fn random_unet_dir(channels: Option<&[usize]>) -> Result<PathBuf> {
    let mut config: serde_json::Value = serde_json::from_str(SD15_UNET_CONFIG)?;
    if let Some(channels) = channels {
        config["block_out_channels"] = serde_json::json!(channels);
    }
    let parsed: UNetConfig = serde_json::from_value(config.clone())?;
    let dir = std::env::temp_dir().join(format!("reverie-unet-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("config.json"), config.to_string())?;
    let weights = RandomWeights::unet(&parsed)?;
    candle_core::safetensors::save(
        &weights.tensors,
        dir.join("diffusion_pytorch_model.safetensors"),
    )?;
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
