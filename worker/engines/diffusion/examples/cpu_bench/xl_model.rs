//! The mid-size random-weight SDXL: SDXL's structure at the widths of the mid-size SD model, so
//! both implementations run it in seconds on two cores.

use std::path::Path;

use crate::random_weights::{
    copy_files, mid_vae_config, read_json, set_keys, write_mid_vae, write_unet, MID_UNET_CHANNELS,
};
use crate::Result;

/// Transformer blocks per level of the mid-size SDXL UNet: the first level is a `DownBlock2D` (no
/// attention at full resolution), then deeper stacks towards the lowest resolution, as SDXL's
/// `[1, 2, 10]` but shallower.
pub const MID_XL_TRANSFORMER_DEPTHS: [usize; 3] = [1, 2, 4];
/// SDXL's attention head size; the number of heads per level follows from the width.
const XL_HEAD_DIM: usize = 64;
/// SDXL's VAE latent scale (SD 1.x: 0.18215).
const XL_SCALING_FACTOR: f64 = 0.13025;

/// Writes the mid-size SDXL folder into `dir`: both text encoders, tokenizers and the scheduler of
/// the tiny SDXL base at `tiny_xl`; a UNet with SDXL's structure (`DownBlock2D` first, text_time
/// added conditioning, deepening transformer stacks, 64-wide heads) at the mid-size SD widths; the
/// mid-size SD VAE with SDXL's latent scale. Random weights, for `size`-pixel pictures.
pub fn write_mid_xl_model(tiny_xl: &Path, dir: &Path, size: usize) -> Result<()> {
    copy_files(
        tiny_xl,
        dir,
        &[
            "model_index.json",
            "text_encoder/config.json",
            "text_encoder/model.safetensors",
            "text_encoder_2/config.json",
            "text_encoder_2/model.safetensors",
            "tokenizer/tokenizer.json",
            "tokenizer/tokenizer_config.json",
            "tokenizer_2/tokenizer.json",
            "tokenizer_2/tokenizer_config.json",
            "scheduler/scheduler_config.json",
        ],
    )?;
    // The block types, the text_time conditioning and the cross-attention width stay the tiny
    // base's: they match the copied text encoders.
    let mut unet = read_json(&tiny_xl.join("unet/config.json"))?;
    let keys = serde_json::json!({
        "block_out_channels": MID_UNET_CHANNELS,
        "attention_head_dim": MID_UNET_CHANNELS.map(|channels| channels / XL_HEAD_DIM),
        "transformer_layers_per_block": MID_XL_TRANSFORMER_DEPTHS,
        "norm_num_groups": 32,
        "sample_size": size / 8,
    });
    set_keys(&mut unet, keys);
    write_unet(dir, unet)?;
    let mut vae = mid_vae_config(&tiny_xl.join("vae/config.json"), size)?;
    set_keys(
        &mut vae,
        serde_json::json!({ "scaling_factor": XL_SCALING_FACTOR }),
    );
    write_mid_vae(dir, vae)
}
