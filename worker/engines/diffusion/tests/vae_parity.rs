//! AutoencoderKL parity with diffusers on the sd-tiny fixture (`vae_decode`, `vae_encode`), and
//! the loader's handling of old tensor names, bad configs and bad weights.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};
use common::{assert_close, max_abs_diff, model_dir, test_device, Case};
use reverie_diffusion::{AutoencoderKl, DiffusionError, VaeConfig};

fn fixture_vae() -> AutoencoderKl {
    AutoencoderKl::from_dir(&model_dir("vae"), &test_device(), DType::F32).expect("VAE loads")
}

/// A scratch folder holding a copy of the fixture VAE with edited config and/or tensors.
struct EditedVae {
    dir: PathBuf,
}

impl EditedVae {
    fn new(
        tag: &str,
        edit_config: impl FnOnce(&mut serde_json::Value),
        edit_tensors: impl FnOnce(&mut HashMap<String, Tensor>),
    ) -> Self {
        let source = model_dir("vae");
        let dir = std::env::temp_dir().join(format!("reverie-vae-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let text = std::fs::read_to_string(source.join("config.json")).expect("config");
        let mut config: serde_json::Value = serde_json::from_str(&text).expect("config json");
        edit_config(&mut config);
        std::fs::write(dir.join("config.json"), config.to_string()).expect("write config");
        let mut tensors = candle_core::safetensors::load(
            source.join("diffusion_pytorch_model.safetensors"),
            &test_device(),
        )
        .expect("weights");
        edit_tensors(&mut tensors);
        candle_core::safetensors::save(&tensors, dir.join("diffusion_pytorch_model.safetensors"))
            .expect("write weights");
        Self { dir }
    }

    fn path(&self) -> &Path {
        &self.dir
    }

    fn load(&self) -> Result<AutoencoderKl, DiffusionError> {
        AutoencoderKl::from_dir(&self.dir, &test_device(), DType::F32)
    }
}

impl Drop for EditedVae {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn decode_matches_diffusers() {
    let case = Case::load("vae_decode");
    let image = fixture_vae()
        .decode(&case.input("in.latents"))
        .expect("decode");
    eprintln!(
        "vae_decode max |ours - diffusers| = {:e}",
        max_abs_diff(&image, &case.expected("out.image"))
    );
    case.assert_close("out.image", &image);
}

#[test]
fn encode_matches_diffusers() {
    let case = Case::load("vae_encode");
    let distribution = fixture_vae()
        .encode(&case.input("in.image"))
        .expect("encode");
    eprintln!(
        "vae_encode max |ours - diffusers|: mean {:e}, std {:e}",
        max_abs_diff(&distribution.mean, &case.expected("out.mean")),
        max_abs_diff(&distribution.std, &case.expected("out.std"))
    );
    case.assert_close("out.mean", &distribution.mean);
    case.assert_close("out.std", &distribution.std);
}

#[test]
fn config_is_read_from_the_folder() {
    let vae = fixture_vae();
    let config = vae.config();
    assert_eq!(config.block_out_channels, vec![32, 32, 64, 64]);
    assert_eq!(config.latent_channels, 4);
    assert_eq!(config.norm_num_groups, 8);
    assert_eq!(config.scaling_factor, 0.18215);
    assert_eq!(config.shift_factor, None);
    assert_eq!(config.downsampling_steps(), 3);
}

/// Checkpoints saved before diffusers 0.15 call the mid-block projections query/key/value/proj_attn.
#[test]
fn old_attention_names_load_and_decode_the_same() {
    let renamed = EditedVae::new(
        "old-names",
        |_| {},
        |tensors| {
            let old: HashMap<String, Tensor> = tensors
                .drain()
                .map(|(name, tensor)| {
                    let name = name
                        .replace(".to_q.", ".query.")
                        .replace(".to_k.", ".key.")
                        .replace(".to_v.", ".value.")
                        .replace(".to_out.0.", ".proj_attn.");
                    (name, tensor)
                })
                .collect();
            assert!(old.contains_key("decoder.mid_block.attentions.0.proj_attn.weight"));
            *tensors = old;
        },
    );
    let old = renamed.load().expect("old names load");
    let case = Case::load("vae_decode");
    let latents = case.input("in.latents");
    let expected = fixture_vae().decode(&latents).expect("decode");
    assert_close(
        "old names",
        &old.decode(&latents).expect("decode"),
        &expected,
        0.0,
        0.0,
    );
}

#[test]
fn missing_tensor_names_file_and_tensor() {
    let edited = EditedVae::new(
        "missing",
        |_| {},
        |tensors| {
            tensors.remove("decoder.up_blocks.2.resnets.0.conv_shortcut.weight");
        },
    );
    let message = edited.load().err().expect("must fail").to_string();
    assert!(
        message.contains("decoder.up_blocks.2.resnets.0.conv_shortcut.weight")
            && message.contains(&edited.path().display().to_string()),
        "{message}"
    );
}

#[test]
fn missing_attention_names_both_spellings() {
    let edited = EditedVae::new(
        "no-attention",
        |_| {},
        |tensors| tensors.retain(|name, _| !name.starts_with("encoder.mid_block.attentions")),
    );
    let message = edited.load().err().expect("must fail").to_string();
    assert!(
        message.contains("encoder.mid_block.attentions.0.to_q.weight") && message.contains("query"),
        "{message}"
    );
}

#[test]
fn config_disagreeing_with_weights_names_the_tensor() {
    let edited = EditedVae::new(
        "wrong-shape",
        |config| config["latent_channels"] = 8.into(),
        |_| {},
    );
    let message = edited.load().err().expect("must fail").to_string();
    assert!(
        message.contains("diffusion_pytorch_model.safetensors")
            && message.contains("quant_conv.weight")
            && message.contains("expected"),
        "{message}"
    );
}

#[test]
fn unsupported_block_type_names_the_option() {
    let edited = EditedVae::new(
        "block-type",
        |config| config["down_block_types"][1] = "AttnDownEncoderBlock2D".into(),
        |_| {},
    );
    let error = edited.load().err().expect("must fail");
    let message = error.to_string();
    assert!(
        matches!(error, DiffusionError::ModelConfig { .. })
            && message.contains("down_block_types")
            && message.contains("AttnDownEncoderBlock2D")
            && message.contains("config.json"),
        "{message}"
    );
}

#[test]
fn block_lists_of_different_lengths_are_rejected() {
    let edited = EditedVae::new(
        "lengths",
        |config| {
            config["up_block_types"].as_array_mut().expect("list").pop();
        },
        |_| {},
    );
    let message = edited.load().err().expect("must fail").to_string();
    assert!(message.contains("up_block_types"), "{message}");
}

#[test]
fn mid_block_without_attention_needs_no_attention_tensors() {
    let edited = EditedVae::new(
        "no-mid-attention",
        |config| config["mid_block_add_attention"] = false.into(),
        |tensors| tensors.retain(|name, _| !name.contains(".attentions.")),
    );
    let vae = edited.load().expect("loads without attention");
    let image = vae
        .decode(&Tensor::zeros((1, 4, 2, 3), DType::F32, &test_device()).expect("zeros"))
        .expect("decode");
    assert_eq!(image.dims(), &[1, 3, 16, 24]);
}

#[test]
fn without_quant_convs_the_moments_come_straight_from_the_encoder() {
    // With identity quant convs the output must equal the model without them.
    let identity = |tensors: &mut HashMap<String, Tensor>, name: &str, channels: usize| {
        let eye = Tensor::eye(channels, DType::F32, &test_device())
            .and_then(|t| t.reshape((channels, channels, 1, 1)))
            .expect("eye");
        tensors.insert(format!("{name}.weight"), eye);
        tensors.insert(
            format!("{name}.bias"),
            Tensor::zeros(channels, DType::F32, &test_device()).expect("zeros"),
        );
    };
    let with_identity = EditedVae::new(
        "identity-quant",
        |_| {},
        |tensors| {
            identity(tensors, "quant_conv", 8);
            identity(tensors, "post_quant_conv", 4);
        },
    );
    let without = EditedVae::new(
        "no-quant",
        |config| {
            config["use_quant_conv"] = false.into();
            config["use_post_quant_conv"] = false.into();
        },
        |tensors| {
            tensors.remove("quant_conv.weight");
            tensors.remove("post_quant_conv.weight");
        },
    );
    let (a, b) = (
        with_identity.load().expect("loads"),
        without.load().expect("loads"),
    );
    let image = Case::load("vae_encode").input("in.image");
    let (ma, mb) = (
        a.encode(&image).expect("encode").mean,
        b.encode(&image).expect("encode").mean,
    );
    assert_close("no quant_conv", &mb, &ma, 1e-6, 0.0);
    let decoded_a = a.decode(&ma).expect("decode");
    let decoded_b = b.decode(&ma).expect("decode");
    assert_close("no post_quant_conv", &decoded_b, &decoded_a, 1e-6, 0.0);
}

#[test]
fn odd_sized_images_encode_to_the_rounded_latent_grid() {
    let vae = fixture_vae();
    let image = Tensor::zeros((2, 3, 40, 24), DType::F32, &test_device()).expect("zeros");
    let latents = vae.encode(&image).expect("encode");
    assert_eq!(latents.mean.dims(), &[2, 4, 5, 3]);
    assert_eq!(latents.std.dims(), &[2, 4, 5, 3]);
}

#[test]
fn wrong_input_shapes_are_errors_not_panics() {
    let vae = fixture_vae();
    let device = test_device();
    let two_channels = Tensor::zeros((1, 2, 16, 16), DType::F32, &device).expect("zeros");
    assert!(matches!(
        vae.encode(&two_channels),
        Err(DiffusionError::InvalidInput(_))
    ));
    let three_dims = Tensor::zeros((4, 8, 8), DType::F32, &device).expect("zeros");
    assert!(matches!(
        vae.decode(&three_dims),
        Err(DiffusionError::InvalidInput(_))
    ));
}

#[test]
fn force_upcast_runs_f16_requests_in_f32() {
    let vae =
        AutoencoderKl::from_dir(&model_dir("vae"), &test_device(), DType::F16).expect("loads");
    assert_eq!(vae.dtype(), DType::F32);
    let case = Case::load("vae_decode");
    let image = vae.decode(&case.input("in.latents")).expect("decode");
    case.assert_close("out.image", &image);
}

/// Without `force_upcast` an f16 request computes in f16. (bf16 is not tested here: candle's CPU
/// matmul has no bf16 kernel; it runs on CUDA.)
#[test]
fn f16_without_force_upcast_stays_near_f32() {
    let edited = EditedVae::new(
        "f16",
        |config| config["force_upcast"] = false.into(),
        |_| {},
    );
    let vae = AutoencoderKl::from_dir(edited.path(), &test_device(), DType::F16).expect("loads");
    assert_eq!(vae.dtype(), DType::F16);
    let case = Case::load("vae_decode");
    let image = vae.decode(&case.input("in.latents")).expect("decode");
    assert_eq!(image.dtype(), DType::F16);
    // f16 keeps 11 bits of mantissa: errors around 1e-3 are expected, not a bug.
    assert_close("f16", &image, &case.expected("out.image"), 1e-2, 1e-2);
}

#[test]
fn scaling_round_trips_with_and_without_shift() {
    let mut config: VaeConfig = fixture_vae().config().clone();
    let raw = Tensor::new(&[[-1.5f32, 0.0, 2.25]], &test_device()).expect("tensor");
    for shift in [None, Some(0.1159)] {
        config.shift_factor = shift;
        let scaled = config.scale_latents(&raw).expect("scale");
        let expected = ((raw.clone() - shift.unwrap_or(0.0)).expect("sub") * 0.18215).expect("mul");
        assert_close("scaled", &scaled, &expected, 1e-6, 0.0);
        let back = config.unscale_latents(&scaled).expect("unscale");
        assert_close("round trip", &back, &raw, 1e-5, 0.0);
    }
}

#[test]
fn sampling_uses_mean_plus_std_times_noise() {
    let case = Case::load("vae_encode");
    let distribution = fixture_vae()
        .encode(&case.input("in.image"))
        .expect("encode");
    let noise = Tensor::ones(distribution.mean.dims(), DType::F32, &test_device()).expect("ones");
    let sample = distribution.sample(&noise).expect("sample");
    let expected = (&case.expected("out.mean") + &case.expected("out.std")).expect("sum");
    assert_close("sample", &sample, &expected, 1e-4, 1e-3);
}
