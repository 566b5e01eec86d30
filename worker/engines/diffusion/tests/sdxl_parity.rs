//! SDXL, its refiner and LoRAs against diffusers on the sdxl-tiny fixture (`tests/fixtures/sdxl-tiny`,
//! made by its make_fixture.py): both text encoders, the UNet with micro-conditioning, whole
//! sampling loops with guidance, zero negative prompts, turbo, the refiner's aesthetic score, and
//! LoRAs in the PEFT and kohya namings at several weights and together.

mod common;

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use candle_core::{DType, Tensor};
use reverie_diffusion::lora::LoraSpec;
use reverie_diffusion::pipeline::{
    Adapters, GenerationRequest, MicroConditioning, ModelFamily, SampleSpec, StableDiffusion,
    StepProgress,
};
use reverie_diffusion::unet::{AddedConditions, Conditions};
use reverie_diffusion::{ClipTextEncoder, DiffusionError, SchedulerKind, UNet2DConditionModel};

use common::{repo_root, test_device, Case};

fn fixture() -> PathBuf {
    repo_root().join("tests/fixtures/sdxl-tiny")
}

fn case(name: &str) -> Case {
    Case::load_in(&fixture(), name)
}

fn base() -> Arc<StableDiffusion> {
    static MODEL: OnceLock<Arc<StableDiffusion>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            Arc::new(
                StableDiffusion::from_dir(&fixture().join("base"), &test_device(), DType::F32)
                    .expect("sdxl-tiny base loads"),
            )
        })
        .clone()
}

fn no_progress(_: &StepProgress<'_>) -> ControlFlow<()> {
    ControlFlow::Continue(())
}

fn text(case: &Case, key: &str) -> String {
    case.params[key].as_str().unwrap_or_default().to_string()
}

fn number(case: &Case, key: &str) -> f64 {
    case.params[key]
        .as_f64()
        .unwrap_or_else(|| panic!("param {key}"))
}

fn pair(case: &Case, key: &str) -> Option<(usize, usize)> {
    let values = case.params[key].as_array()?;
    Some((values[0].as_u64()? as usize, values[1].as_u64()? as usize))
}

#[test]
fn both_text_encoders_and_the_pooled_projection() {
    let case = case("text_encoders");
    let device = test_device();
    let ids = |name: &str| case.input(name).to_dtype(DType::U32).expect("ids");
    let first = ClipTextEncoder::from_dir(&fixture().join("base/text_encoder"), &device)
        .expect("text_encoder");
    let second = ClipTextEncoder::from_dir(&fixture().join("base/text_encoder_2"), &device)
        .expect("text_encoder_2");
    let one = first.forward(&ids("in.input_ids_1")).expect("forward");
    let two = second.forward(&ids("in.input_ids_2")).expect("forward");
    assert!(!first.has_projection() && second.has_projection());
    case.assert_close("out.penultimate_1", &one.penultimate);
    case.assert_close("out.penultimate_2", &two.penultimate);
    case.assert_close("out.text_embeds_2", &two.pooled);
}

/// The UNet forward a case describes: its latents, timesteps, text, pooled text and time ids.
fn forward_case(unet: &UNet2DConditionModel, case: &Case) -> Tensor {
    let added = AddedConditions {
        text_embeds: case.input("in.text_embeds"),
        time_ids: case.input("in.time_ids"),
    };
    let conditions = Conditions {
        text: &case.input("in.encoder_hidden_states"),
        added: Some(&added),
        image: None,
    };
    unet.forward_with(
        &case.input("in.latents"),
        &case.input("in.timesteps"),
        &conditions,
    )
    .expect("forward")
}

fn check_unet(name: &str) {
    let case = case(name);
    let unet =
        UNet2DConditionModel::from_dir(&fixture().join("base/unet"), &test_device(), DType::F32)
            .expect("unet");
    case.assert_close("out.noise_pred", &forward_case(&unet, &case));
    // The UNet refuses to run without the conditioning it was trained with.
    let error = unet
        .forward(
            &case.input("in.latents"),
            &case.input("in.timesteps"),
            &case.input("in.encoder_hidden_states"),
        )
        .expect_err("needs added conditioning");
    assert!(error.to_string().contains("time ids"), "{error}");
}

#[test]
fn unet_with_micro_conditioning() {
    check_unet("unet_6x8");
}

#[test]
fn unet_with_micro_conditioning_on_odd_latents() {
    check_unet("unet_5x7");
}

fn scheduler_of(case: &Case) -> SchedulerKind {
    match case.params["scheduler"].as_str() {
        Some("DPMSolverMultistepScheduler") => SchedulerKind::DpmSolverPp2m,
        Some("EulerDiscreteScheduler") => SchedulerKind::Euler,
        other => panic!("scheduler {other:?}"),
    }
}

/// The request a text-to-image case describes.
fn txt2img_request(case: &Case) -> GenerationRequest {
    let mut sample = SampleSpec::new(text(case, "prompt"), 0, number(case, "guidance_scale"));
    sample.negative_prompt = case.params["negative_prompt"].as_str().map(str::to_string);
    sample.noise.initial_latents = Some(case.input("in.latents"));
    let mut request = GenerationRequest::new(vec![sample]);
    request.width = number(case, "width") as usize;
    request.height = number(case, "height") as usize;
    request.steps = number(case, "num_inference_steps") as usize;
    request.scheduler = Some(scheduler_of(case));
    if case.params["scheduler_config"]["timestep_spacing"] == "trailing" {
        request.overrides.timestep_spacing = Some(reverie_diffusion::TimestepSpacing::Trailing);
    }
    request.micro = MicroConditioning {
        original_size: pair(case, "original_size"),
        crop_top_left: pair(case, "crops_coords_top_left").unwrap_or((0, 0)),
        target_size: pair(case, "target_size"),
        ..MicroConditioning::default()
    };
    request
}

/// Runs a text-to-image case on `model`: final latents, and where the case has them the decoded
/// image and diffusers' PNG (within one level).
fn check_txt2img(name: &str, model: &StableDiffusion) {
    let case = case(name);
    let generation = model
        .generate(&txt2img_request(&case), &mut no_progress)
        .expect("generation");
    case.assert_close("out.final_latents", &generation.latents);
    if case.tensors.contains_key("out.image") {
        let image = model.decode(&generation.latents).expect("decode");
        case.assert_close("out.image", &image);
        let ours = reverie_diffusion::pipeline::images::tensor_to_rgb(&image)
            .expect("rgb")
            .remove(0);
        let png = image::open(fixture().join(text(&case, "png")))
            .expect("png")
            .to_rgb8();
        let worst = ours
            .as_raw()
            .iter()
            .zip(png.as_raw())
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap_or(0);
        assert!(worst <= 1, "{name}: PNG differs by {worst} levels");
    }
}

#[test]
fn txt2img_euler_with_a_negative_prompt() {
    check_txt2img("txt2img_euler_cfg", &base());
}

#[test]
fn txt2img_dpmpp_with_zero_negatives_and_explicit_micro_conditioning() {
    check_txt2img("txt2img_dpmpp_zero_negative", &base());
}

#[test]
fn turbo_one_step_without_guidance() {
    check_txt2img("turbo_1step", &base());
}

fn refiner() -> StableDiffusion {
    StableDiffusion::from_dir(&fixture().join("refiner"), &test_device(), DType::F32)
        .expect("refiner loads")
}

#[test]
fn refiner_img2img_with_aesthetic_scores() {
    let case = case("refiner_img2img");
    let model = refiner();
    assert!(model.is_refiner());
    let mut sample = SampleSpec::new(text(&case, "prompt"), 0, number(&case, "guidance_scale"));
    sample.negative_prompt = Some(text(&case, "negative_prompt"));
    sample.init_image = Some(case.input("in.init_image"));
    sample.noise.vae_sample = Some(case.input("in.noise_0"));
    sample.noise.added_noise = Some(case.input("in.noise_1"));
    let mut request = GenerationRequest::new(vec![sample]);
    let (_, _, height, width) = case.input("in.init_image").dims4().expect("image");
    (request.height, request.width) = (height, width);
    request.steps = number(&case, "steps") as usize;
    request.strength = number(&case, "strength");
    request.scheduler = Some(SchedulerKind::Euler);
    request.micro.aesthetic_score = number(&case, "aesthetic_score");
    request.micro.negative_aesthetic_score = number(&case, "negative_aesthetic_score");
    let generation = model.generate(&request, &mut no_progress).expect("refine");
    case.assert_close("out.final_latents", &generation.latents);
}

#[test]
fn a_refiner_cannot_start_from_noise() {
    let model = refiner();
    let mut request = GenerationRequest::new(vec![SampleSpec::new("a cat", 1, 5.0)]);
    (request.width, request.height, request.steps) = (64, 64, 2);
    let error = model
        .generate(&request, &mut no_progress)
        .expect_err("refused");
    assert!(error.to_string().contains("refiner"), "{error}");
}

/// The model with a case's LoRAs fused in.
fn with_loras(case: &Case) -> StableDiffusion {
    let loras: Vec<LoraSpec> = case.params["loras"]
        .as_array()
        .expect("loras")
        .iter()
        .map(|l| {
            LoraSpec::file(
                fixture().join(l["file"].as_str().expect("file")),
                l["weight"].as_f64().expect("weight"),
            )
        })
        .collect();
    let adapters = Adapters {
        loras,
        ip_adapter: None,
    };
    StableDiffusion::from_dir_with(
        &fixture().join("base"),
        &test_device(),
        DType::F32,
        &adapters,
    )
    .expect("base with LoRAs loads")
}

#[test]
fn lora_peft_naming_at_weight_one() {
    check_txt2img("lora_subject_w1", &with_loras(&case("lora_subject_w1")));
}

#[test]
fn lora_peft_naming_at_half_weight() {
    check_txt2img("lora_subject_w05", &with_loras(&case("lora_subject_w05")));
}

#[test]
fn lora_kohya_naming_with_alphas() {
    check_txt2img(
        "lora_style_kohya_w08",
        &with_loras(&case("lora_style_kohya_w08")),
    );
}

#[test]
fn two_loras_together() {
    check_txt2img(
        "lora_subject_and_style",
        &with_loras(&case("lora_subject_and_style")),
    );
}

#[test]
fn no_lora_gives_the_plain_run() {
    let model = with_loras(&case("lora_none"));
    assert!(model.loras().is_empty());
    check_txt2img("lora_none", &model);
}

#[test]
fn a_lora_for_another_model_is_refused_naming_the_tensor() {
    // The SD 1.x fixture's UNet has other widths: the SDXL LoRA's first mismatching layer is named.
    let sd1 = repo_root().join("tests/fixtures/sd-tiny/model");
    let lora = LoraSpec::file(fixture().join("loras/style_kohya.safetensors"), 1.0);
    let adapters = Adapters {
        loras: vec![lora],
        ip_adapter: None,
    };
    let error = StableDiffusion::from_dir_with(&sd1, &test_device(), DType::F32, &adapters)
        .expect_err("refused");
    assert!(matches!(error, DiffusionError::Lora { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("another base model") && message.contains("lora_"),
        "{message}"
    );
}

#[test]
fn the_family_is_read_from_model_index() {
    assert!(matches!(
        base().family(),
        ModelFamily::Xl {
            force_zeros_for_empty_prompt: true,
            refiner: false
        }
    ));
}

#[test]
fn lora_unet_forward_matches() {
    let case = case("lora_unet_forward");
    let lora = LoraSpec::file(fixture().join("loras/subject_peft.safetensors"), 1.0);
    let dir = fixture().join("base/unet");
    let file = lora.open().expect("lora");
    let weights = reverie_diffusion::weights::WeightFile::open(
        &reverie_diffusion::unet::weights_path(&dir),
        &test_device(),
        DType::F32,
    )
    .expect("weights");
    let deltas = reverie_diffusion::lora::deltas_for(
        &[(&file, 1.0)],
        reverie_diffusion::lora::LoraTarget::Unet,
        &weights,
        &test_device(),
    )
    .expect("deltas");
    let config =
        reverie_diffusion::UNetConfig::from_file(&dir.join("config.json")).expect("config");
    let unet = UNet2DConditionModel::from_weights(
        config,
        &dir.join("config.json"),
        weights.with_patches(deltas),
        DType::F32,
    )
    .expect("unet");
    case.assert_close("out.noise_pred", &forward_case(&unet, &case));
}
