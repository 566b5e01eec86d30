//! Whole pipelines against diffusers on the sd-tiny fixture: text-to-image (Euler and
//! DPM-Solver++ with CFG), turbo, img2img, masked img2img and mixed-guidance batches.

mod common;

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Arc, OnceLock};

use candle_core::{Device, Tensor};
use reverie_diffusion::pipeline::images::{mask_to_tensor, rgb_to_tensor, tensor_to_rgb};
use reverie_diffusion::pipeline::{GenerationRequest, SampleSpec, StableDiffusion};
use reverie_diffusion::{DiffusionError, SchedulerKind};
use serde_json::Value;

use common::{fixture_dir, test_device};

/// The model, loaded once for every test of this file (the pipeline is shareable by design).
fn model() -> Arc<StableDiffusion> {
    static MODEL: OnceLock<Arc<StableDiffusion>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            Arc::new(
                StableDiffusion::from_dir(
                    &fixture_dir().join("model"),
                    &test_device(),
                    candle_core::DType::F32,
                )
                .expect("sd-tiny loads"),
            )
        })
        .clone()
}

struct Case {
    params: Value,
    tensors: HashMap<String, Tensor>,
    atol: f64,
    rtol: f64,
}

impl Case {
    fn load(name: &str) -> Self {
        let text = std::fs::read_to_string(fixture_dir().join("cases.json")).expect("cases.json");
        // Python's json writes -Infinity (diffusers' lambda_min_clipped); serde_json rejects it.
        let text = text.replace("-Infinity", "\"-Infinity\"");
        let all: Value = serde_json::from_str(&text).expect("cases.json parses");
        let case = all["cases"]
            .as_array()
            .expect("cases")
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("case {name}"))
            .clone();
        let file = fixture_dir().join(case["file"].as_str().expect("file"));
        Self {
            params: case["params"].clone(),
            tensors: candle_core::safetensors::load(file, &test_device()).expect("case tensors"),
            atol: case["tolerance"]["atol"].as_f64().expect("atol"),
            rtol: case["tolerance"]["rtol"].as_f64().expect("rtol"),
        }
    }

    fn tensor(&self, name: &str) -> Tensor {
        self.tensors
            .get(name)
            .unwrap_or_else(|| panic!("tensor {name}"))
            .clone()
    }

    fn text(&self, key: &str) -> String {
        self.params[key].as_str().unwrap_or_default().to_string()
    }

    fn number(&self, key: &str) -> f64 {
        self.params[key]
            .as_f64()
            .unwrap_or_else(|| panic!("param {key}"))
    }

    fn assert_close(&self, what: &str, ours: &Tensor, expected_name: &str) {
        let expected = self.tensor(expected_name);
        assert_close(what, ours, &expected, self.atol, self.rtol);
    }
}

fn assert_close(what: &str, ours: &Tensor, expected: &Tensor, atol: f64, rtol: f64) {
    assert_eq!(ours.dims(), expected.dims(), "{what}: shape");
    let ours: Vec<f32> = ours.flatten_all().unwrap().to_vec1().unwrap();
    let expected: Vec<f32> = expected.flatten_all().unwrap().to_vec1().unwrap();
    let mut worst = f64::NEG_INFINITY;
    let mut max_abs = 0f64;
    for (o, e) in ours.iter().zip(&expected) {
        let (o, e) = (f64::from(*o), f64::from(*e));
        max_abs = max_abs.max((o - e).abs());
        worst = worst.max((o - e).abs() - (atol + rtol * e.abs()));
    }
    assert!(
        worst <= 0.0,
        "{what}: exceeds tolerance by {worst} (max abs diff {max_abs})"
    );
}

fn no_progress(_: &reverie_diffusion::pipeline::StepProgress<'_>) -> ControlFlow<()> {
    ControlFlow::Continue(())
}

fn sample_from(case: &Case, guidance_key: &str) -> SampleSpec {
    let mut sample = SampleSpec::new(case.text("prompt"), 0, case.number(guidance_key));
    sample.negative_prompt = case.params["negative_prompt"].as_str().map(str::to_string);
    sample
}

/// A text-to-image case: final latents, the decoded image, and diffusers' 8-bit PNG (within
/// one level, since the image tensors agree only to the tolerance).
fn check_txt2img(name: &str, request: GenerationRequest) {
    let case = Case::load(name);
    let model = model();
    let generation = model
        .generate(&request, &mut no_progress)
        .expect("generation");
    case.assert_close("final latents", &generation.latents, "out.final_latents");
    let image = model.decode(&generation.latents).expect("decode");
    case.assert_close("image", &image, "out.image");
    let ours = tensor_to_rgb(&image).expect("rgb").remove(0);
    let png = image::open(fixture_dir().join(case.text("png")))
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

fn txt2img_request(case: &Case, scheduler: SchedulerKind) -> GenerationRequest {
    let mut sample = sample_from(case, "guidance_scale");
    sample.noise.initial_latents = Some(case.tensor("in.latents"));
    let mut request = GenerationRequest::new(vec![sample]);
    request.width = case.number("width") as usize;
    request.height = case.number("height") as usize;
    request.steps = case.number("steps") as usize;
    request.scheduler = Some(scheduler);
    request
}

#[test]
fn txt2img_euler_cfg() {
    let case = Case::load("txt2img_euler_cfg");
    check_txt2img(
        "txt2img_euler_cfg",
        txt2img_request(&case, SchedulerKind::Euler),
    );
}

#[test]
fn txt2img_dpmpp_cfg() {
    let case = Case::load("txt2img_dpmpp_cfg");
    check_txt2img(
        "txt2img_dpmpp_cfg",
        txt2img_request(&case, SchedulerKind::DpmSolverPp2m),
    );
}

#[test]
fn turbo_1step() {
    let case = Case::load("turbo_1step");
    let base = txt2img_request(&case, SchedulerKind::Euler);
    let mut request = GenerationRequest::turbo(base.samples);
    request.width = base.width;
    request.height = base.height;
    assert_eq!(request.steps, 1);
    check_txt2img("turbo_1step", request);
}

fn img2img_request(case: &Case, with_mask: bool) -> GenerationRequest {
    let mut sample = sample_from(case, "guidance_scale");
    sample.init_image = Some(case.tensor("in.init_image"));
    if with_mask {
        sample.mask = Some(case.tensor("in.mask"));
    }
    sample.noise.vae_sample = Some(case.tensor("in.noise_0"));
    sample.noise.added_noise = Some(case.tensor("in.noise_1"));
    let mut request = GenerationRequest::new(vec![sample]);
    request.width = 64;
    request.height = 64;
    request.steps = case.number("steps") as usize;
    request.strength = case.number("strength");
    request.scheduler = Some(SchedulerKind::Euler);
    request
}

#[test]
fn img2img() {
    let case = Case::load("img2img");
    let request = img2img_request(&case, false);
    let mut steps_run = 0;
    let generation = model()
        .generate(&request, &mut |_| {
            steps_run += 1;
            ControlFlow::Continue(())
        })
        .expect("img2img");
    assert_eq!(steps_run, 6, "strength 0.6 of 10 steps runs 6");
    case.assert_close("final latents", &generation.latents, "out.final_latents");
}

#[test]
fn masked_img2img() {
    let case = Case::load("masked_img2img");
    let request = img2img_request(&case, true);
    let generation = model()
        .generate(&request, &mut no_progress)
        .expect("masked img2img");
    case.assert_close("final latents", &generation.latents, "out.final_latents");
}

#[test]
fn masked_img2img_from_the_png_files() {
    // The command's path: init image and mask read from the PNGs the case names.
    let case = Case::load("masked_img2img");
    let mut request = img2img_request(&case, true);
    let init = image::open(fixture_dir().join(case.text("init_png")))
        .expect("init png")
        .to_rgb8();
    let mask = image::open(fixture_dir().join(case.text("mask_png")))
        .expect("mask png")
        .to_luma8();
    request.samples[0].init_image = Some(rgb_to_tensor(&init, &test_device()).unwrap());
    request.samples[0].mask = Some(mask_to_tensor(&mask, &test_device()).unwrap());
    let generation = model()
        .generate(&request, &mut no_progress)
        .expect("masked img2img");
    case.assert_close("final latents", &generation.latents, "out.final_latents");
}

fn equivalence_samples(case: &Case) -> Vec<SampleSpec> {
    let prompts = case.params["prompts"].as_array().expect("prompts");
    let guidance = case.params["guidance"].as_array().expect("guidance");
    (0..prompts.len())
        .map(|i| {
            let mut sample = SampleSpec::new(
                prompts[i].as_str().expect("prompt"),
                i as u64,
                guidance[i].as_f64().expect("guidance"),
            );
            sample.noise.initial_latents = Some(case.tensor(&format!("in.latents_{i}")));
            sample
        })
        .collect()
}

fn equivalence_request(samples: Vec<SampleSpec>, steps: usize) -> GenerationRequest {
    let mut request = GenerationRequest::new(samples);
    request.width = 64;
    request.height = 64;
    request.steps = steps;
    request.scheduler = Some(SchedulerKind::Euler);
    request
}

#[test]
fn batch_equivalence() {
    let case = Case::load("batch_equivalence");
    let steps = case.number("steps") as usize;
    let samples = equivalence_samples(&case);
    // In order, and shuffled: a sample's result must not depend on its place in the batch.
    for order in [[0usize, 1, 2], [2, 0, 1]] {
        let batch: Vec<SampleSpec> = order.iter().map(|&i| samples[i].clone()).collect();
        let generation = model()
            .generate(&equivalence_request(batch, steps), &mut no_progress)
            .expect("batch");
        for (position, &i) in order.iter().enumerate() {
            let ours = generation.latents.narrow(0, position, 1).unwrap();
            case.assert_close(
                &format!("sample {i} at position {position}"),
                &ours,
                &format!("out.final_latents_{i}"),
            );
        }
    }
}

#[test]
fn seeded_noise_gives_the_same_latents_alone_and_in_a_batch() {
    let alone = SampleSpec::new("a castle", 1234, 7.5);
    let other = SampleSpec::new("a river", 99, 1.0);
    let single = model()
        .generate(
            &equivalence_request(vec![alone.clone()], 2),
            &mut no_progress,
        )
        .expect("single");
    let batch = model()
        .generate(
            &equivalence_request(vec![other, alone], 2),
            &mut no_progress,
        )
        .expect("batch");
    let in_batch = batch.latents.narrow(0, 1, 1).unwrap();
    // The batch_equivalence case's tolerance: batch size changes only GEMM rounding.
    assert_close("seeded sample", &in_batch, &single.latents, 1e-4, 1e-3);
}

#[test]
fn progress_reports_every_step_with_previews_and_can_cancel() {
    let request = equivalence_request(vec![SampleSpec::new("a boat", 5, 3.0)], 3);
    let mut seen = Vec::new();
    model()
        .generate(&request, &mut |progress| {
            let preview = progress.preview(0).expect("preview");
            seen.push((progress.step, progress.total, preview.dimensions()));
            ControlFlow::Continue(())
        })
        .expect("generation");
    assert_eq!(seen, vec![(1, 3, (8, 8)), (2, 3, (8, 8)), (3, 3, (8, 8))]);
    let cancelled = model().generate(&request, &mut |_| ControlFlow::Break(()));
    assert!(matches!(cancelled, Err(DiffusionError::Cancelled)));
}

#[test]
fn long_prompts_are_cut_with_a_warning() {
    let long = "a very long prompt about many things ".repeat(20);
    let request = equivalence_request(vec![SampleSpec::new(long, 5, 0.0)], 1);
    let generation = model().generate(&request, &mut no_progress).expect("runs");
    assert_eq!(generation.warnings.len(), 1, "{:?}", generation.warnings);
    assert!(generation.warnings[0].contains("cut to 77"));
}

/// Largest |a - b| and largest |b| over two tensors of the same shape.
fn max_diff_and_scale(a: &Tensor, b: &Tensor) -> (f32, f32) {
    let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
    let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
    let diff = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    let scale = b.iter().map(|y| y.abs()).fold(0.0, f32::max);
    (diff, scale)
}

#[test]
fn f16_runs_stay_close_to_the_diffusers_result() {
    let case = Case::load("txt2img_euler_cfg");
    let request = txt2img_request(&case, SchedulerKind::Euler);
    let expected = case.tensor("out.final_latents");
    let model = StableDiffusion::from_dir(
        &fixture_dir().join("model"),
        &test_device(),
        candle_core::DType::F16,
    )
    .unwrap();
    let generation = model.generate(&request, &mut no_progress).expect("runs");
    assert_eq!(generation.latents.dtype(), candle_core::DType::F32);
    let (diff, scale) = max_diff_and_scale(&generation.latents, &expected);
    println!("f16: max diff {diff} at scale {scale}");
    // f16 keeps ~3 decimal digits through 4 steps of a random-weight UNet.
    assert!(
        diff <= 0.01 * scale,
        "f16: max diff {diff} at scale {scale}"
    );
    let image = model.decode(&generation.latents).expect("decode");
    assert_eq!(image.dims(), &[1, 3, 64, 64]);
}

#[test]
fn bf16_on_the_cpu_is_refused_with_a_message() {
    let loaded = StableDiffusion::from_dir(
        &fixture_dir().join("model"),
        &Device::Cpu,
        candle_core::DType::BF16,
    );
    let error = loaded.expect_err("bf16 on the CPU").to_string();
    assert!(error.contains("bf16"), "{error}");
}

#[test]
fn one_loaded_model_serves_several_threads_at_once() {
    fn shareable<T: Send + Sync>(_: &T) {}
    let model = model();
    shareable(&model);
    let request = equivalence_request(vec![SampleSpec::new("a lighthouse", 11, 7.5)], 2);
    let runs: Vec<Tensor> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let (model, request) = (model.clone(), request.clone());
                scope.spawn(move || model.generate(&request, &mut no_progress).unwrap().latents)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_close("concurrent runs", &runs[0], &runs[1], 0.0, 0.0);
}
