//! Times VAE encode and decode and prints a table.
//!
//! `cargo run -p reverie-diffusion --example vae_bench [VAE_DIR] [--sizes 256,512] [--f16]`
//!
//! Without `VAE_DIR` it builds a VAE of the SD 1.x shape (channels 128/256/512/512, two resnets
//! per block, 32 groups) with random weights in a temporary folder: the time of a forward pass
//! depends on the shapes only, not on the weight values.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use reverie_diffusion::AutoencoderKl;

const SD1_VAE_CONFIG: &str = r#"{
  "_class_name": "AutoencoderKL",
  "act_fn": "silu",
  "block_out_channels": [128, 256, 512, 512],
  "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
  "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
  "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2,
  "norm_num_groups": 32, "sample_size": 512, "scaling_factor": 0.18215, "force_upcast": true
}"#;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Random weights with the tensor names and shapes of a diffusers SD 1.x VAE.
struct RandomWeights {
    tensors: HashMap<String, Tensor>,
}

impl RandomWeights {
    fn conv(&mut self, name: &str, input: usize, output: usize, kernel: usize) -> Result<()> {
        let std = 1.0 / ((input * kernel * kernel) as f64).sqrt();
        let shape = (output, input, kernel, kernel);
        self.put(
            &format!("{name}.weight"),
            Tensor::randn(0f32, std as f32, shape, &Device::Cpu)?,
        );
        self.put(
            &format!("{name}.bias"),
            Tensor::zeros(output, DType::F32, &Device::Cpu)?,
        );
        Ok(())
    }

    fn linear(&mut self, name: &str, channels: usize) -> Result<()> {
        let std = 1.0 / (channels as f64).sqrt();
        let shape = (channels, channels);
        self.put(
            &format!("{name}.weight"),
            Tensor::randn(0f32, std as f32, shape, &Device::Cpu)?,
        );
        self.put(
            &format!("{name}.bias"),
            Tensor::zeros(channels, DType::F32, &Device::Cpu)?,
        );
        Ok(())
    }

    fn norm(&mut self, name: &str, channels: usize) -> Result<()> {
        self.put(
            &format!("{name}.weight"),
            Tensor::ones(channels, DType::F32, &Device::Cpu)?,
        );
        self.put(
            &format!("{name}.bias"),
            Tensor::zeros(channels, DType::F32, &Device::Cpu)?,
        );
        Ok(())
    }

    fn put(&mut self, name: &str, tensor: Tensor) {
        self.tensors.insert(name.to_string(), tensor);
    }

    fn resnet(&mut self, name: &str, input: usize, output: usize) -> Result<()> {
        self.norm(&format!("{name}.norm1"), input)?;
        self.conv(&format!("{name}.conv1"), input, output, 3)?;
        self.norm(&format!("{name}.norm2"), output)?;
        self.conv(&format!("{name}.conv2"), output, output, 3)?;
        if input != output {
            self.conv(&format!("{name}.conv_shortcut"), input, output, 1)?;
        }
        Ok(())
    }

    fn mid_block(&mut self, name: &str, channels: usize) -> Result<()> {
        self.resnet(&format!("{name}.resnets.0"), channels, channels)?;
        let attention = format!("{name}.attentions.0");
        self.norm(&format!("{attention}.group_norm"), channels)?;
        for projection in ["to_q", "to_k", "to_v", "to_out.0"] {
            self.linear(&format!("{attention}.{projection}"), channels)?;
        }
        self.resnet(&format!("{name}.resnets.1"), channels, channels)
    }

    fn sd1_vae() -> Result<Self> {
        let mut w = Self {
            tensors: HashMap::new(),
        };
        let widths = [128, 256, 512, 512];
        w.conv("encoder.conv_in", 3, widths[0], 3)?;
        let mut input = widths[0];
        for (i, &output) in widths.iter().enumerate() {
            for layer in 0..2 {
                let from = if layer == 0 { input } else { output };
                w.resnet(
                    &format!("encoder.down_blocks.{i}.resnets.{layer}"),
                    from,
                    output,
                )?;
            }
            if i + 1 < widths.len() {
                w.conv(
                    &format!("encoder.down_blocks.{i}.downsamplers.0.conv"),
                    output,
                    output,
                    3,
                )?;
            }
            input = output;
        }
        w.mid_block("encoder.mid_block", 512)?;
        w.norm("encoder.conv_norm_out", 512)?;
        w.conv("encoder.conv_out", 512, 8, 3)?;
        w.conv("quant_conv", 8, 8, 1)?;
        w.conv("post_quant_conv", 4, 4, 1)?;
        w.conv("decoder.conv_in", 4, 512, 3)?;
        w.mid_block("decoder.mid_block", 512)?;
        let mut input = 512;
        for (i, &output) in widths.iter().rev().enumerate() {
            for layer in 0..3 {
                let from = if layer == 0 { input } else { output };
                w.resnet(
                    &format!("decoder.up_blocks.{i}.resnets.{layer}"),
                    from,
                    output,
                )?;
            }
            if i + 1 < widths.len() {
                w.conv(
                    &format!("decoder.up_blocks.{i}.upsamplers.0.conv"),
                    output,
                    output,
                    3,
                )?;
            }
            input = output;
        }
        w.norm("decoder.conv_norm_out", widths[0])?;
        w.conv("decoder.conv_out", widths[0], 3, 3)?;
        Ok(w)
    }
}

fn random_sd1_vae_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("reverie-vae-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("config.json"), SD1_VAE_CONFIG)?;
    let weights = RandomWeights::sd1_vae()?;
    candle_core::safetensors::save(
        &weights.tensors,
        dir.join("diffusion_pytorch_model.safetensors"),
    )?;
    Ok(dir)
}

fn seconds<T>(work: impl FnOnce() -> reverie_diffusion::error::Result<T>) -> Result<(T, f64)> {
    let start = Instant::now();
    let value = work()?;
    Ok((value, start.elapsed().as_secs_f64()))
}

fn run(dir: &Path, sizes: &[usize], dtype: DType) -> Result<()> {
    let device = Device::cuda_if_available(0)?;
    let (vae, load_s) = seconds(|| AutoencoderKl::from_dir(dir, &device, dtype))?;
    println!(
        "VAE {} on {:?}, computing in {:?}; load {:.2} s",
        dir.display(),
        device,
        vae.dtype(),
        load_s
    );
    println!("| image | encode (s) | decode (s) |");
    println!("|---|---|---|");
    for &size in sizes {
        let image = Tensor::rand(-1f32, 1f32, (1, 3, size, size), &device)?;
        let (latents, encode_s) = seconds(|| vae.encode(&image))?;
        let (decoded, decode_s) = seconds(|| vae.decode(&latents.mean))?;
        // Reading a value back waits for asynchronous devices to finish.
        decoded
            .flatten_all()?
            .get(0)?
            .to_dtype(DType::F32)?
            .to_scalar::<f32>()?;
        println!("| {size}x{size} | {encode_s:.2} | {decode_s:.2} |");
    }
    Ok(())
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mut dir = None;
    let mut sizes = vec![256];
    let mut dtype = DType::F32;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--sizes" => {
                let list = args.next().ok_or("--sizes needs a list like 256,512")?;
                sizes = list
                    .split(',')
                    .map(|s| s.trim().parse::<usize>())
                    .collect::<std::result::Result<_, _>>()?;
            }
            "--f16" => dtype = DType::F16,
            _ => dir = Some(PathBuf::from(arg)),
        }
    }
    match dir {
        Some(dir) => run(&dir, &sizes, dtype),
        None => {
            let dir = random_sd1_vae_dir()?;
            let outcome = run(&dir, &sizes, dtype);
            std::fs::remove_dir_all(&dir)?;
            outcome
        }
    }
}
