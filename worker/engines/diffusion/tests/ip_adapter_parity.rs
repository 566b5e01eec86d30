//! IP-Adapter image prompts against diffusers on the sdxl-tiny fixture: the CLIP vision tower, the
//! preprocessing in front of it, and whole sampling loops with the plain and the Plus adapter on
//! SDXL (two scales) and the plain adapter on SD 1.x; then the adapters that must be refused.

mod common;

use std::ops::ControlFlow;
use std::path::PathBuf;

use candle_core::{DType, Tensor};
use reverie_diffusion::clip_vision::ClipVisionEncoder;
use reverie_diffusion::ip_adapter::{ImagePrompt, ImagePromptEmbeds};
use reverie_diffusion::pipeline::{
    Adapters, GenerationRequest, SampleSpec, StableDiffusion, StepProgress,
};
use reverie_diffusion::{DiffusionError, SchedulerKind};

use common::{assert_close, max_abs_diff, repo_root, test_device, Case};

fn fixture() -> PathBuf {
    repo_root().join("tests/fixtures/sdxl-tiny")
}

fn case(name: &str) -> Case {
    Case::load_in(&fixture(), name)
}

fn photo() -> image::RgbImage {
    image::open(fixture().join("cases/ip_photo.png"))
        .expect("photo")
        .to_rgb8()
}

#[test]
fn the_vision_tower_matches() {
    let case = case("image_encoder");
    let encoder =
        ClipVisionEncoder::from_dir(&fixture().join("ip-adapter/image_encoder"), &test_device())
            .expect("image encoder");
    let pixels = case.input("in.pixel_values");
    let output = encoder.forward(&pixels).expect("forward");
    case.assert_close("out.image_embeds", &output.image_embeds);
    case.assert_close("out.penultimate", &output.penultimate);
    let zeros = encoder
        .forward(&pixels.zeros_like().expect("zeros"))
        .expect("forward");
    case.assert_close("out.zeros_penultimate", &zeros.penultimate);
}

/// Our resize and crop against CLIPImageProcessor's (Pillow's fixed-point bicubic, reproduced bit
/// for bit): the pixel values agree to f32 rounding.
#[test]
fn preprocessing_matches_clip_image_processor() {
    let case = case("image_encoder");
    let encoder =
        ClipVisionEncoder::from_dir(&fixture().join("ip-adapter/image_encoder"), &test_device())
            .expect("image encoder");
    let ours = encoder
        .preprocess(&photo(), &test_device())
        .expect("preprocess");
    let expected = case.input("in.pixel_values");
    assert_eq!(ours.dims(), expected.dims());
    let tolerance = 1e-6;
    let worst = max_abs_diff(&ours, &expected);
    assert!(
        worst <= tolerance,
        "pixels differ by {worst} (at most {tolerance})"
    );
}

fn no_progress(_: &StepProgress<'_>) -> ControlFlow<()> {
    ControlFlow::Continue(())
}

/// A case's embeddings in the shapes our encoder produces: `(1, dim)` or `(1, tokens, dim)`.
fn embeds(case: &Case, name: &str) -> Tensor {
    let tensor = case.input(name);
    let dims = tensor.dims().to_vec();
    tensor.reshape(&dims[1..]).expect("drop the image axis")
}

fn check_image_prompt(name: &str) {
    let case = case(name);
    let params = &case.params;
    let model_dir = match params["model"].as_str() {
        Some(relative) => fixture().join(relative),
        None => fixture().join("base"),
    };
    let adapters = Adapters {
        loras: Vec::new(),
        ip_adapter: Some(fixture().join(params["adapter"].as_str().expect("adapter"))),
    };
    let model = StableDiffusion::from_dir_with(&model_dir, &test_device(), DType::F32, &adapters)
        .expect("model with IP-Adapter");
    let mut sample = SampleSpec::new(
        params["prompt"].as_str().expect("prompt"),
        0,
        params["guidance_scale"].as_f64().expect("guidance"),
    );
    sample.negative_prompt = params["negative_prompt"].as_str().map(str::to_string);
    sample.noise.initial_latents = Some(case.input("in.latents"));
    sample.image_prompt = Some(ImagePrompt {
        embeds: ImagePromptEmbeds {
            positive: embeds(&case, "in.image_embeds"),
            negative: embeds(&case, "in.negative_image_embeds"),
        },
        scale: params["scale"].as_f64().expect("scale"),
    });
    let mut request = GenerationRequest::new(vec![sample]);
    request.width = params["width"].as_u64().expect("width") as usize;
    request.height = params["height"].as_u64().expect("height") as usize;
    request.steps = params["num_inference_steps"].as_u64().expect("steps") as usize;
    request.scheduler = Some(SchedulerKind::Euler);
    let generation = model
        .generate(&request, &mut no_progress)
        .expect("generate");
    case.assert_close("out.final_latents", &generation.latents);

    // Our own preprocessing and encoder on the photo give the embeddings diffusers used.
    let ours = model.encode_image_prompt(&photo()).expect("encode");
    assert_close(
        "positive",
        &ours.positive,
        &embeds(&case, "in.image_embeds"),
        case.atol,
        case.rtol,
    );
    assert_close(
        "negative",
        &ours.negative,
        &embeds(&case, "in.negative_image_embeds"),
        case.atol,
        case.rtol,
    );
}

#[test]
fn sdxl_ip_adapter_at_half_scale() {
    check_image_prompt("ip_adapter_sdxl_scale05");
}

#[test]
fn sdxl_ip_adapter_at_full_scale() {
    check_image_prompt("ip_adapter_sdxl_scale10");
}

#[test]
fn sdxl_ip_adapter_plus() {
    check_image_prompt("ip_adapter_plus_sdxl_scale07");
}

#[test]
fn sd15_ip_adapter() {
    check_image_prompt("ip_adapter_sd15_scale06");
}

fn load_error(model: &str, adapter: PathBuf) -> String {
    let adapters = Adapters {
        loras: Vec::new(),
        ip_adapter: Some(adapter),
    };
    let error = StableDiffusion::from_dir_with(
        &fixture().join(model),
        &test_device(),
        DType::F32,
        &adapters,
    )
    .expect_err("refused");
    assert!(matches!(error, DiffusionError::IpAdapter { .. }), "{error}");
    error.to_string()
}

#[test]
fn an_adapter_without_its_image_encoder_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let lone = dir.path().join("ip_adapter_sdxl.safetensors");
    std::fs::copy(
        fixture().join("ip-adapter/ip_adapter_sdxl.safetensors"),
        &lone,
    )
    .expect("copy");
    let message = load_error("base", lone);
    assert!(message.contains("image encoder"), "{message}");
}

#[test]
fn an_adapter_for_another_base_model_is_refused() {
    let message = load_error(
        "base",
        fixture().join("ip-adapter/ip_adapter_sd15.safetensors"),
    );
    assert!(message.contains("another base model"), "{message}");
}

#[test]
fn a_model_without_an_adapter_refuses_image_prompts() {
    let model = StableDiffusion::from_dir(&fixture().join("base"), &test_device(), DType::F32)
        .expect("base");
    let error = model.encode_image_prompt(&photo()).expect_err("no adapter");
    assert!(
        error.to_string().contains("without an IP-Adapter"),
        "{error}"
    );
}
