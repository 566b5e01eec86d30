//! Random weights named and shaped as diffusers names a `UNet2DConditionModel`'s and an
//! `AutoencoderKL`'s tensors, so both implementations can load one synthetic folder. Values are
//! normal with std 1/sqrt(fan_in): activations stay finite and away from denormals, which would
//! slow CPUs down and skew the timing.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use reverie_diffusion::unet::{AttentionPlan, UNetConfig};

use crate::Result;

#[derive(Default)]
pub struct RandomWeights {
    pub tensors: HashMap<String, Tensor>,
    linear_projection: bool,
}

impl RandomWeights {
    pub fn save(&self, path: &Path) -> Result<()> {
        candle_core::safetensors::save(&self.tensors, path)?;
        Ok(())
    }

    fn normal(&mut self, name: String, shape: &[usize], fan_in: usize) -> Result<()> {
        let std = 1.0 / (fan_in as f32).sqrt();
        let tensor = Tensor::randn(0f32, std, shape, &Device::Cpu)?;
        self.tensors.insert(name, tensor);
        Ok(())
    }

    fn zeros(&mut self, name: String, size: usize) -> Result<()> {
        let tensor = Tensor::zeros(size, DType::F32, &Device::Cpu)?;
        self.tensors.insert(name, tensor);
        Ok(())
    }

    fn conv(&mut self, name: &str, input: usize, output: usize, kernel: usize) -> Result<()> {
        let shape = [output, input, kernel, kernel];
        self.normal(format!("{name}.weight"), &shape, input * kernel * kernel)?;
        self.zeros(format!("{name}.bias"), output)
    }

    fn linear(&mut self, name: &str, input: usize, output: usize, bias: bool) -> Result<()> {
        self.normal(format!("{name}.weight"), &[output, input], input)?;
        if bias {
            self.zeros(format!("{name}.bias"), output)?;
        }
        Ok(())
    }

    fn norm(&mut self, name: &str, channels: usize) -> Result<()> {
        let ones = Tensor::ones(channels, DType::F32, &Device::Cpu)?;
        self.tensors.insert(format!("{name}.weight"), ones);
        self.zeros(format!("{name}.bias"), channels)
    }

    /// `temb`: the time-embedding width of UNet resnets; `None` for VAE resnets.
    fn resnet(
        &mut self,
        name: &str,
        input: usize,
        output: usize,
        temb: Option<usize>,
    ) -> Result<()> {
        self.norm(&format!("{name}.norm1"), input)?;
        self.conv(&format!("{name}.conv1"), input, output, 3)?;
        if let Some(temb) = temb {
            self.linear(&format!("{name}.time_emb_proj"), temb, output, true)?;
        }
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
            let self_context = if plan.only_cross_attention {
                plan.context_dim
            } else {
                inner
            };
            for (attn, context) in [("attn1", self_context), ("attn2", plan.context_dim)] {
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

    pub fn unet(config: &UNetConfig) -> Result<Self> {
        let plan = config.plan(Path::new("config.json"))?;
        let mut w = Self {
            tensors: HashMap::new(),
            linear_projection: config.use_linear_projection,
        };
        let channels = &config.block_out_channels;
        let temb = plan.time_embed_dim;
        w.conv(
            "conv_in",
            config.in_channels,
            channels[0],
            config.conv_in_kernel,
        )?;
        w.linear("time_embedding.linear_1", channels[0], temb, true)?;
        w.linear("time_embedding.linear_2", temb, temb, true)?;
        if let Some(text_time) = &plan.text_time {
            // SDXL's pooled-text and time-id MLP (`add_time_proj` has no weights).
            w.linear("add_embedding.linear_1", text_time.input_dim, temb, true)?;
            w.linear("add_embedding.linear_2", temb, temb, true)?;
        }
        for (i, block) in plan.down.iter().enumerate() {
            for layer in 0..block.layers {
                let input = if layer == 0 {
                    block.in_channels
                } else {
                    block.out_channels
                };
                let prefix = format!("down_blocks.{i}");
                let name = format!("{prefix}.resnets.{layer}");
                w.resnet(&name, input, block.out_channels, Some(temb))?;
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
            w.resnet("mid_block.resnets.0", c, c, Some(temb))?;
            w.transformer("mid_block.attentions.0", c, attention)?;
            w.resnet("mid_block.resnets.1", c, c, Some(temb))?;
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
                let name = format!("{prefix}.resnets.{layer}");
                w.resnet(&name, input + skip, block.out_channels, Some(temb))?;
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

    fn vae_mid_block(&mut self, name: &str, channels: usize) -> Result<()> {
        self.resnet(&format!("{name}.resnets.0"), channels, channels, None)?;
        let attention = format!("{name}.attentions.0");
        self.norm(&format!("{attention}.group_norm"), channels)?;
        for projection in ["to_q", "to_k", "to_v", "to_out.0"] {
            let name = format!("{attention}.{projection}");
            self.linear(&name, channels, channels, true)?;
        }
        self.resnet(&format!("{name}.resnets.1"), channels, channels, None)
    }

    /// An `AutoencoderKL` with `DownEncoderBlock2D`/`UpDecoderBlock2D` blocks of `widths`,
    /// `layers` resnets per encoder block (one more per decoder block), 4 latent channels.
    pub fn vae(widths: &[usize], layers: usize) -> Result<Self> {
        let mut w = Self::default();
        let last = widths[widths.len() - 1];
        w.conv("encoder.conv_in", 3, widths[0], 3)?;
        let mut input = widths[0];
        for (i, &output) in widths.iter().enumerate() {
            for layer in 0..layers {
                let from = if layer == 0 { input } else { output };
                let name = format!("encoder.down_blocks.{i}.resnets.{layer}");
                w.resnet(&name, from, output, None)?;
            }
            if i + 1 < widths.len() {
                let name = format!("encoder.down_blocks.{i}.downsamplers.0.conv");
                w.conv(&name, output, output, 3)?;
            }
            input = output;
        }
        w.vae_mid_block("encoder.mid_block", last)?;
        w.norm("encoder.conv_norm_out", last)?;
        w.conv("encoder.conv_out", last, 8, 3)?;
        w.conv("quant_conv", 8, 8, 1)?;
        w.conv("post_quant_conv", 4, 4, 1)?;
        w.conv("decoder.conv_in", 4, last, 3)?;
        w.vae_mid_block("decoder.mid_block", last)?;
        let mut input = last;
        for (i, &output) in widths.iter().rev().enumerate() {
            for layer in 0..=layers {
                let from = if layer == 0 { input } else { output };
                let name = format!("decoder.up_blocks.{i}.resnets.{layer}");
                w.resnet(&name, from, output, None)?;
            }
            if i + 1 < widths.len() {
                let name = format!("decoder.up_blocks.{i}.upsamplers.0.conv");
                w.conv(&name, output, output, 3)?;
            }
            input = output;
        }
        w.norm("decoder.conv_norm_out", widths[0])?;
        w.conv("decoder.conv_out", widths[0], 3, 3)?;
        Ok(w)
    }
}

/// UNet and VAE widths of the mid-size benchmark models (SD, and SDXL in `xl_model.rs`).
pub const MID_UNET_CHANNELS: [usize; 3] = [128, 256, 256];
pub const MID_VAE_CHANNELS: [usize; 4] = [64, 128, 256, 256];

/// Copies `files` (paths relative to both folders) from `from` into `to`, creating folders.
pub fn copy_files(from: &Path, to: &Path, files: &[&str]) -> Result<()> {
    for file in files {
        let target = to.join(file);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(from.join(file), target)?;
    }
    Ok(())
}

pub fn read_json(path: &Path) -> Result<serde_json::Value> {
    Ok(serde_json::from_str(&std::fs::read_to_string(path)?)?)
}

/// Replaces (or adds) the top-level keys of `json` that `keys` has.
pub fn set_keys(json: &mut serde_json::Value, keys: serde_json::Value) {
    if let serde_json::Value::Object(keys) = keys {
        for (key, value) in keys {
            json[key] = value;
        }
    }
}

/// `unet/` in `dir`: `config` and random weights of its shape.
pub fn write_unet(dir: &Path, config: serde_json::Value) -> Result<()> {
    std::fs::create_dir_all(dir.join("unet"))?;
    std::fs::write(dir.join("unet/config.json"), config.to_string())?;
    let config: UNetConfig = serde_json::from_value(config)?;
    RandomWeights::unet(&config)?.save(&dir.join("unet/diffusion_pytorch_model.safetensors"))
}

/// The VAE config at `tiny_config` made [`MID_VAE_CHANNELS`] wide, two resnets per block.
pub fn mid_vae_config(tiny_config: &Path, size: usize) -> Result<serde_json::Value> {
    let mut vae = read_json(tiny_config)?;
    let keys = serde_json::json!({
        "block_out_channels": MID_VAE_CHANNELS,
        "layers_per_block": 2,
        "norm_num_groups": 32,
        "sample_size": size,
    });
    set_keys(&mut vae, keys);
    Ok(vae)
}

/// `vae/` in `dir`: `config` (a [`mid_vae_config`]) and random weights of its shape.
pub fn write_mid_vae(dir: &Path, config: serde_json::Value) -> Result<()> {
    std::fs::create_dir_all(dir.join("vae"))?;
    std::fs::write(dir.join("vae/config.json"), config.to_string())?;
    RandomWeights::vae(&MID_VAE_CHANNELS, 2)?
        .save(&dir.join("vae/diffusion_pytorch_model.safetensors"))
}

/// Writes the mid-size folder into `dir`: the text side and scheduler of the tiny model at `tiny`,
/// a wider UNet and VAE with random weights, for `size`-pixel pictures.
pub fn write_mid_model(tiny: &Path, dir: &Path, size: usize) -> Result<()> {
    copy_files(
        tiny,
        dir,
        &[
            "model_index.json",
            "text_encoder/config.json",
            "text_encoder/model.safetensors",
            "tokenizer/tokenizer.json",
            "tokenizer/tokenizer_config.json",
            "scheduler/scheduler_config.json",
        ],
    )?;
    let mut unet = read_json(&tiny.join("unet/config.json"))?;
    let keys = serde_json::json!({
        "block_out_channels": MID_UNET_CHANNELS,
        "norm_num_groups": 32,
        "sample_size": size / 8,
    });
    set_keys(&mut unet, keys);
    write_unet(dir, unet)?;
    write_mid_vae(dir, mid_vae_config(&tiny.join("vae/config.json"), size)?)
}
