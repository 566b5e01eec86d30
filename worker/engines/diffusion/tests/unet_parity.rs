//! UNet2DConditionModel parity with diffusers on the sd-tiny fixture: one forward pass, batch 2
//! with a different timestep per sample, integer and fractional timesteps, 8x8 latents and 5x7
//! latents (not a multiple of the downsampling, so upsampling must follow the skip sizes).

mod common;

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use common::{model_dir, test_device, Case};
use reverie_diffusion::{DiffusionError, UNet2DConditionModel};

fn load_unet(dtype: DType) -> UNet2DConditionModel {
    UNet2DConditionModel::from_dir(&model_dir("unet"), &test_device(), dtype).expect("UNet loads")
}

fn run_case(unet: &UNet2DConditionModel, name: &str) {
    let case = Case::load(name);
    let latents = case.input("in.latents");
    let (_, _, height, width) = latents.dims4().expect("latents are 4-D");
    let size: Vec<u64> = serde_json::from_value(case.params["latent_size"].clone()).expect("size");
    assert_eq!(
        size,
        vec![height as u64, width as u64],
        "{name}: latent_size"
    );
    let noise = unet
        .forward(
            &latents,
            &case.input("in.timesteps"),
            &case.input("in.encoder_hidden_states"),
        )
        .expect("forward");
    let diff = common::max_abs_diff(&noise, &case.expected("out.noise_pred"));
    eprintln!(
        "{name}: max |ours - diffusers| = {diff:.3e} (atol {:.3e})",
        case.atol
    );
    case.assert_close("out.noise_pred", &noise);
}

#[test]
fn unet_8x8_int_timesteps() {
    run_case(&load_unet(DType::F32), "unet_8x8_int_timesteps");
}

#[test]
fn unet_8x8_float_timesteps() {
    run_case(&load_unet(DType::F32), "unet_8x8_float_timesteps");
}

#[test]
fn unet_5x7_int_timesteps() {
    run_case(&load_unet(DType::F32), "unet_5x7_int_timesteps");
}

#[test]
fn unet_5x7_float_timesteps() {
    run_case(&load_unet(DType::F32), "unet_5x7_float_timesteps");
}

/// Half precision cannot meet the f32 tolerance; it must stay close in relative terms.
#[test]
fn f16_compute_stays_close_to_f32() {
    let case = Case::load("unet_8x8_float_timesteps");
    let expected = case.expected("out.noise_pred");
    let out = load_unet(DType::F16)
        .forward(
            &case.input("in.latents"),
            &case.input("in.timesteps"),
            &case.input("in.encoder_hidden_states"),
        )
        .expect("forward");
    assert_eq!(out.dtype(), DType::F16);
    let out = out.to_dtype(DType::F32).expect("f32");
    assert_relatively_close("f16 compute", &out, &expected, 0.01);
}

/// Checkpoints stored in f16 or bf16 load into an f32 model (converted once, at load).
#[test]
fn f16_and_bf16_weight_files_load() {
    let case = Case::load("unet_5x7_int_timesteps");
    let expected = case.expected("out.noise_pred");
    let source = model_dir("unet").join("diffusion_pytorch_model.safetensors");
    let tensors = candle_core::safetensors::load(&source, &test_device()).expect("weights");
    for (dtype, limit) in [(DType::F16, 0.01), (DType::BF16, 0.05)] {
        let dir = edited_unet_dir(&format!("{dtype:?}"), |_| {});
        let converted: std::collections::HashMap<String, Tensor> = tensors
            .iter()
            .map(|(name, t)| (name.clone(), t.to_dtype(dtype).expect("convert")))
            .collect();
        candle_core::safetensors::save(&converted, dir.join("diffusion_pytorch_model.safetensors"))
            .expect("save");
        let unet = UNet2DConditionModel::from_dir(&dir, &test_device(), DType::F32).expect("loads");
        let out = unet
            .forward(
                &case.input("in.latents"),
                &case.input("in.timesteps"),
                &case.input("in.encoder_hidden_states"),
            )
            .expect("forward");
        assert_eq!(out.dtype(), DType::F32);
        assert_relatively_close(&format!("{dtype:?} weights"), &out, &expected, limit);
        std::fs::remove_dir_all(&dir).ok();
    }
}

/// SD 2.x checkpoints store proj_in/proj_out as linear maps (`use_linear_projection`): the
/// same weights in that form must give the same prediction.
#[test]
fn linear_projection_checkpoints_match_the_conv_form() {
    let case = Case::load("unet_5x7_float_timesteps");
    let source = model_dir("unet").join("diffusion_pytorch_model.safetensors");
    let tensors = candle_core::safetensors::load(&source, &test_device()).expect("weights");
    let dir = edited_unet_dir("linear", |config| {
        config["use_linear_projection"] = true.into()
    });
    let linear: std::collections::HashMap<String, Tensor> = tensors
        .into_iter()
        .map(|(name, t)| {
            let is_projection =
                name.ends_with("proj_in.weight") || name.ends_with("proj_out.weight");
            let t = if is_projection {
                t.squeeze(3).and_then(|t| t.squeeze(2)).expect("1x1 kernel")
            } else {
                t
            };
            (name, t)
        })
        .collect();
    candle_core::safetensors::save(&linear, dir.join("diffusion_pytorch_model.safetensors"))
        .expect("save");
    let unet = UNet2DConditionModel::from_dir(&dir, &test_device(), DType::F32).expect("loads");
    let noise = unet
        .forward(
            &case.input("in.latents"),
            &case.input("in.timesteps"),
            &case.input("in.encoder_hidden_states"),
        )
        .expect("forward");
    case.assert_close("out.noise_pred", &noise);
    std::fs::remove_dir_all(&dir).ok();
}

/// `upcast_attention` (SD 2.1) computes the scores of an f16 model in f32.
#[test]
fn upcast_attention_in_f16_stays_close() {
    let case = Case::load("unet_8x8_int_timesteps");
    let dir = edited_unet_dir("upcast", |config| config["upcast_attention"] = true.into());
    let unet = UNet2DConditionModel::from_dir(&dir, &test_device(), DType::F16).expect("loads");
    let out = unet
        .forward(
            &case.input("in.latents"),
            &case.input("in.timesteps"),
            &case.input("in.encoder_hidden_states"),
        )
        .expect("forward")
        .to_dtype(DType::F32)
        .expect("f32");
    assert_relatively_close("f16 upcast", &out, &case.expected("out.noise_pred"), 0.01);
    std::fs::remove_dir_all(&dir).ok();
}

/// Max |ours - expected| is within `limit` times the largest |expected|.
fn assert_relatively_close(what: &str, ours: &Tensor, expected: &Tensor, limit: f64) {
    let scale = expected
        .abs()
        .and_then(|a| a.max_all())
        .and_then(|m| m.to_scalar::<f32>());
    let scale = f64::from(scale.expect("max"));
    let diff = common::max_abs_diff(ours, expected);
    assert!(
        diff <= limit * scale,
        "{what}: max diff {diff} vs scale {scale}"
    );
}

#[test]
fn bf16_compute_on_the_cpu_is_a_clear_error() {
    let err = UNet2DConditionModel::from_dir(&model_dir("unet"), &Device::Cpu, DType::BF16)
        .expect_err("rejected");
    assert!(err.to_string().contains("bf16"), "{err}");
}

#[test]
fn one_timestep_is_shared_by_the_batch() {
    let case = Case::load("unet_8x8_int_timesteps");
    let unet = load_unet(DType::F32);
    let latents = case.input("in.latents");
    let text = case.input("in.encoder_hidden_states");
    let shared = Tensor::new(&[999f32], &test_device()).expect("timestep");
    let both = Tensor::new(&[999f32, 999.0], &test_device()).expect("timesteps");
    let a = unet.forward(&latents, &shared, &text).expect("forward");
    let b = unet.forward(&latents, &both, &text).expect("forward");
    assert_eq!(common::max_abs_diff(&a, &b), 0.0);
}

#[test]
fn mismatched_inputs_are_rejected() {
    let unet = load_unet(DType::F32);
    let timesteps = Tensor::new(&[1f32, 2.0], &test_device()).expect("timesteps");
    let latents = Tensor::zeros((2, 4, 8, 8), DType::F32, &test_device()).expect("latents");
    let wrong_channels = Tensor::zeros((2, 3, 8, 8), DType::F32, &test_device()).expect("latents");
    let text = Tensor::zeros((2, 77, 32), DType::F32, &test_device()).expect("text");
    let wrong_text = Tensor::zeros((2, 77, 16), DType::F32, &test_device()).expect("text");
    let three = Tensor::new(&[1f32, 2.0, 3.0], &test_device()).expect("timesteps");
    for (sample, t, context) in [
        (&wrong_channels, &timesteps, &text),
        (&latents, &timesteps, &wrong_text),
        (&latents, &three, &text),
    ] {
        let err = unet.forward(sample, t, context).expect_err("rejected");
        assert!(matches!(err, DiffusionError::InvalidInput(_)), "{err}");
    }
}

/// Copies the fixture UNet folder with its config edited by `edit`.
fn edited_unet_dir(tag: &str, edit: impl FnOnce(&mut serde_json::Value)) -> std::path::PathBuf {
    let source = model_dir("unet");
    let dir = std::env::temp_dir().join(format!("reverie-unet-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let text = std::fs::read_to_string(source.join("config.json")).expect("config");
    let mut config: serde_json::Value = serde_json::from_str(&text).expect("json");
    edit(&mut config);
    std::fs::write(dir.join("config.json"), config.to_string()).expect("write config");
    let weights = "diffusion_pytorch_model.safetensors";
    let link = dir.join(weights);
    if !link.exists() {
        std::fs::copy(source.join(weights), &link).expect("copy weights");
    }
    dir
}

fn load_error(dir: &Path) -> String {
    UNet2DConditionModel::from_dir(dir, &test_device(), DType::F32)
        .expect_err("load fails")
        .to_string()
}

#[test]
fn unsupported_config_options_are_named() {
    let cases: [(&str, &str, serde_json::Value); 3] = [
        ("class", "class_embed_type", "timestep".into()),
        ("addition", "addition_embed_type", "image".into()),
        ("dual", "dual_cross_attention", true.into()),
    ];
    for (tag, field, value) in cases {
        let dir = edited_unet_dir(tag, |config| config[field] = value);
        let message = load_error(&dir);
        assert!(
            message.contains(field) && message.contains("unsupported"),
            "{message}"
        );
        assert!(message.contains("config.json"), "{message}");
        std::fs::remove_dir_all(&dir).ok();
    }
}

#[test]
fn a_config_that_disagrees_with_the_weights_names_file_and_tensor() {
    // 4 heads instead of 8 keeps every weight shape; more layers per block needs tensors the
    // file does not have.
    let dir = edited_unet_dir("layers", |config| config["layers_per_block"] = 3.into());
    let message = load_error(&dir);
    assert!(
        message.contains("diffusion_pytorch_model.safetensors"),
        "{message}"
    );
    assert!(message.contains("down_blocks.0.resnets.2"), "{message}");
    std::fs::remove_dir_all(&dir).ok();

    let missing = std::env::temp_dir().join(format!("reverie-unet-none-{}", std::process::id()));
    let message = load_error(&missing);
    assert!(message.contains("config.json"), "{message}");
}
