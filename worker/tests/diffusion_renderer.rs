//! The diffusion renderer on the tiny random-weight Stable Diffusion of tests/fixtures/sd-tiny: jobs
//! render the same alone as inside a mixed batch, img2img starts from the background photo, and
//! subjects composed onto it are kept by the mask while the rest is repainted.

use std::path::PathBuf;

use candle_core::{DType, Device};
use image::{DynamicImage, Rgb, RgbImage};
use reverie_shared::ids::{PhotoId, ShardId};
use reverie_shared::jobs::{PhotoRef, ReferenceRole, RenderSpec, RendererKind};
use reverie_worker::render::{
    DiffusionRenderer, ModelSource, RenderError, RenderRequest, Renderer,
};

fn fixture_model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/sd-tiny/model")
}

fn renderer() -> DiffusionRenderer {
    renderer_with(reverie_worker::render::RendererOptions::default())
}

/// The sd-tiny model as a folder (no registry), with `options`.
fn renderer_with(options: reverie_worker::render::RendererOptions) -> DiffusionRenderer {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let source = ModelSource {
        registry: PathBuf::from("/nonexistent/registry.toml"),
        cache_dir: std::env::temp_dir(),
        store: None,
        runtime: runtime.handle().clone(),
    };
    let model = fixture_model().display().to_string();
    DiffusionRenderer::load_with(&source, &model, &Device::Cpu, DType::F32, options).unwrap()
}

fn spec(prompt: &str, seed: u64, guidance: f32) -> RenderSpec {
    RenderSpec {
        renderer: RendererKind::Diffusion,
        prompt: prompt.to_string(),
        negative_prompt: String::new(),
        style: String::new(),
        model: Some(fixture_model().display().to_string()),
        width: 64,
        height: 64,
        steps: 4,
        guidance,
        scheduler: Some("euler".to_string()),
        seed,
        strength: 0.6,
        palette_transfer: false,
        identity_strength: 0.0,
        best_of: 1,
        adapters: Default::default(),
    }
}

fn photo(role: ReferenceRole, image: &DynamicImage) -> (PhotoRef, DynamicImage) {
    let reference = PhotoRef {
        photo: PhotoId::of_bytes(image.as_bytes()),
        shard: ShardId::new("shard-0").unwrap(),
        offset: 0,
        length: 0,
        role,
        face_box: None,
        label: None,
    };
    (reference, image.clone())
}

fn text_job(prompt: &str, seed: u64, guidance: f32) -> RenderRequest {
    RenderRequest {
        spec: spec(prompt, seed, guidance),
        photos: vec![],
        identity: Vec::new(),
        loras: Vec::new(),
        cached_image_prompt: None,
        pet_boxes: Vec::new(),
    }
}

fn mean_abs_difference(a: &RgbImage, b: &RgbImage) -> f64 {
    let total: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    total as f64 / a.as_raw().len() as f64
}

fn render_one(renderer: &DiffusionRenderer, request: RenderRequest) -> RgbImage {
    let mut results = renderer.render_batch(&[request], &reverie_worker::render::NoProgress);
    results.remove(0).unwrap().image
}

/// Records every step and asks for a preview at each one.
#[derive(Default)]
struct Recorder {
    steps: std::sync::Mutex<Vec<(usize, u32, u32)>>,
    /// (job index, preview size).
    previews: std::sync::Mutex<Vec<(usize, (u32, u32))>>,
}

impl reverie_worker::render::ProgressSink for Recorder {
    fn step(&self, index: usize, step: u32, total: u32) {
        self.steps.lock().unwrap().push((index, step, total));
    }

    fn wants_preview(&self, _index: usize) -> bool {
        true
    }

    fn step_with_preview(&self, index: usize, step: u32, total: u32, preview: RgbImage) {
        self.previews
            .lock()
            .unwrap()
            .push((index, preview.dimensions()));
        self.step(index, step, total);
    }
}

#[test]
fn a_job_renders_the_same_alone_and_inside_a_mixed_batch() {
    let renderer = renderer();
    let background = DynamicImage::ImageRgb8(RgbImage::from_fn(80, 64, |x, y| {
        Rgb([(x * 3) as u8, (y * 4) as u8, 90])
    }));
    let jobs = vec![
        text_job("a lighthouse at dusk", 7, 7.5),
        text_job("a cat", 8, 1.0),
        RenderRequest {
            photos: vec![photo(ReferenceRole::Background, &background)],
            identity: Vec::new(),
            ..text_job("the same place in watercolour", 9, 3.0)
        },
        text_job("a lighthouse at dusk", 10, 7.5),
    ];
    let recorder = Recorder::default();
    let batch = renderer.render_batch(&jobs, &recorder);
    let steps = recorder.steps;
    assert_eq!(batch.len(), jobs.len());
    for (job, together) in jobs.iter().zip(&batch) {
        let together = together.as_ref().unwrap();
        assert_eq!((together.image.width(), together.image.height()), (64, 64));
        assert_eq!(
            together.model_hash.as_deref(),
            Some(renderer.model_identity())
        );
        let alone = render_one(&renderer, job.clone());
        let difference = mean_abs_difference(&alone, &together.image);
        assert!(
            difference <= 0.5,
            "seed {}: alone and batched differ by {difference}",
            job.spec.seed
        );
    }
    // Different seeds of the same prompt give different pictures.
    let (first, last) = (
        &batch[0].as_ref().unwrap().image,
        &batch[3].as_ref().unwrap().image,
    );
    assert!(mean_abs_difference(first, last) > 1.0);
    // Every job saw its steps: 4 for text-to-image, fewer for img2img at strength 0.6.
    let steps = steps.into_inner().unwrap();
    // Each job had a preview of the picture forming at every step but the last (this sink wants them
    // all), at latent resolution, and the batch above rendered the same as each job alone with them.
    let previews = recorder.previews.into_inner().unwrap();
    for index in 0..jobs.len() {
        let steps_of_job = steps.iter().filter(|s| s.0 == index).count();
        let previews_of_job: Vec<_> = previews.iter().filter(|p| p.0 == index).collect();
        assert_eq!(
            previews_of_job.len(),
            steps_of_job - 1,
            "job {index}: {previews:?}"
        );
        assert!(
            previews_of_job.iter().all(|p| p.1 == (8, 8)),
            "{previews:?}"
        );
    }
    assert!(steps.contains(&(0, 4, 4)), "{steps:?}");
    assert!(
        steps.iter().any(|&(i, s, t)| i == 2 && s == t && t < 4),
        "{steps:?}"
    );
}

#[test]
fn img2img_starts_from_the_background_photo() {
    // The fixture's weights are random, so pictures are not meaningful; what is checked is that the
    // photo and the strength reach the pipeline (masking itself is proven by the pipeline parity tests
    // and the composite by the unit tests of the renderer module).
    let renderer = renderer();
    let dark = DynamicImage::ImageRgb8(RgbImage::from_pixel(64, 64, Rgb([10, 10, 10])));
    let light = DynamicImage::ImageRgb8(RgbImage::from_fn(64, 64, |x, _| {
        Rgb([245, (x * 4) as u8, 245])
    }));
    let from = |background: Option<&DynamicImage>, strength: f32| {
        let mut job = text_job("a quiet street", 3, 1.0);
        job.spec.strength = strength;
        job.photos = background
            .map(|b| vec![photo(ReferenceRole::Background, b)])
            .unwrap_or_default();
        render_one(&renderer, job)
    };
    let text_only = from(None, 0.3);
    let (from_dark, from_light) = (from(Some(&dark), 0.3), from(Some(&light), 0.3));
    assert!(mean_abs_difference(&from_dark, &from_light) > 1.0);
    assert!(mean_abs_difference(&from_dark, &text_only) > 1.0);
    let stronger = from(Some(&dark), 0.9);
    assert!(mean_abs_difference(&from_dark, &stronger) > 1.0);
    // The same job twice is the same picture.
    assert_eq!(from(Some(&dark), 0.3), from_dark);
}

#[test]
fn a_job_for_another_model_is_refused_with_the_reason() {
    let renderer = renderer();
    let mut job = text_job("x", 1, 1.0);
    job.spec.model = Some("sdxl-base".to_string());
    let result = renderer.render_batch(&[job], &reverie_worker::render::NoProgress);
    match &result[0] {
        Err(RenderError::ModelUnavailable(reason)) => {
            assert!(reason.contains("sdxl-base"), "{reason}")
        }
        other => panic!("expected a model error, got {other:?}"),
    }
    let mut job = text_job("x", 1, 1.0);
    job.spec.width = 60;
    let result = renderer.render_batch(&[job], &reverie_worker::render::NoProgress);
    assert!(
        matches!(&result[0], Err(RenderError::Invalid(reason)) if reason.contains("multiple of 8")),
        "{:?}",
        result[0].as_ref().err()
    );
}

/// A renderer that guides identity with the real face models.
fn guiding_renderer() -> DiffusionRenderer {
    let models = std::env::var_os("REVERIE_MODELS_DIR").unwrap_or_else(|| {
        panic!("REVERIE_MODELS_DIR is not set: run scripts/test (it fetches the face models)")
    });
    let faces =
        reverie_faces::FaceModels::load(std::path::Path::new(&models)).expect("face models");
    renderer().with_face_models(Some(faces))
}

/// A job placing the person of a fixture portrait, restyled under identity guidance.
fn guided_job(seed: u64) -> RenderRequest {
    let portrait_path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/faces/images/frpy_obama.png");
    let portrait = image::open(portrait_path).expect("fixture portrait");
    let reference: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../tests/fixtures/faces/ref/frpy_obama.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let face = &reference["faces"][0];
    let rect = &face["rect"];
    let face_box = ["left", "top", "right", "bottom"].map(|k| rect[k].as_u64().unwrap() as u32);
    let descriptor: Vec<f32> = face["descriptor"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let (mut subject, image) = photo(ReferenceRole::Subject, &portrait);
    subject.face_box = Some(face_box);
    subject.label = Some("Barack".into());
    let mut job = RenderRequest {
        photos: vec![(subject, image)],
        ..text_job("a portrait, oil painting", seed, 1.0)
    };
    job.spec.identity_strength = 2.0;
    job.identity = vec![reverie_faces::identity::IdentityTarget {
        place: [20.0, 14.0, 44.0, 38.0],
        reference: descriptor.try_into().unwrap(),
    }];
    job
}

#[test]
fn a_guided_job_renders_the_same_alone_and_inside_a_mixed_batch() {
    let renderer = guiding_renderer();
    let jobs = vec![
        guided_job(21),
        text_job("a lighthouse at dusk", 22, 1.0),
        guided_job(23),
    ];
    let batch = renderer.render_batch(&jobs, &reverie_worker::render::NoProgress);
    for (job, together) in jobs.iter().zip(&batch) {
        let together = together.as_ref().unwrap();
        if job.spec.identity_strength > 0.0 {
            assert_eq!(
                together.details.get("subjects").map(String::as_str),
                Some("restyled whole, faces held by identity guidance")
            );
        }
        let alone = render_one(&renderer, job.clone());
        let difference = mean_abs_difference(&alone, &together.image);
        assert!(
            difference <= 0.5,
            "seed {}: alone and batched differ by {difference}",
            job.spec.seed
        );
    }
    // The guided restyle is a different picture from keeping the subject's pixels.
    let mut kept = guided_job(21);
    kept.spec.identity_strength = 0.0;
    let kept = render_one(&renderer, kept);
    assert!(mean_abs_difference(&kept, &batch[0].as_ref().unwrap().image) > 1.0);
}

/// A renderer of the sd-tiny model with the fixture's SD 1.x IP-Adapter attached.
fn renderer_with_ip_adapter() -> DiffusionRenderer {
    let adapter = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/sdxl-tiny/ip-adapter/ip_adapter_sd15.safetensors");
    renderer_with(reverie_worker::render::RendererOptions {
        ip_adapter: Some(adapter.display().to_string()),
        ..Default::default()
    })
}

/// Image prompt embeddings travel through the farm's cache: a job computes them once (once for two
/// jobs of a batch that share the photo), and a job given them back renders the same image
/// without computing them; an entry that does not fit the adapter is computed again.
#[test]
fn cached_image_prompts_render_the_same_image_as_computed_ones() {
    let renderer = renderer_with_ip_adapter();
    let portrait = DynamicImage::ImageRgb8(RgbImage::from_fn(96, 80, |x, y| {
        Rgb([(x * 2) as u8, 120, (y * 3) as u8])
    }));
    let (mut subject, image) = photo(ReferenceRole::Subject, &portrait);
    subject.face_box = Some([30, 20, 54, 44]);
    let job = |seed: u64| {
        let mut job = RenderRequest {
            photos: vec![(subject.clone(), image.clone())],
            ..text_job("a portrait in the park", seed, 3.0)
        };
        job.spec.adapters.image_prompt_scale = 0.6;
        job
    };
    let source = renderer
        .image_prompt_source(&job(1))
        .expect("an image prompt");
    assert_eq!(source.photo, subject.photo);
    assert_eq!(
        source.crop,
        [12, 2, 60, 60],
        "2.5 face sizes around the face"
    );

    let pair = renderer.render_batch(&[job(1), job(2)], &reverie_worker::render::NoProgress);
    let bytes = pair[0]
        .as_ref()
        .unwrap()
        .computed_image_prompt
        .clone()
        .expect("computed here");
    assert_eq!(
        pair[1].as_ref().unwrap().computed_image_prompt,
        Some(bytes.clone())
    );
    // Alone, the job computes the same embeddings (a batch only rounds its matrix products apart).
    let first = renderer
        .render_batch(&[job(1)], &reverie_worker::render::NoProgress)
        .remove(0)
        .unwrap();
    assert_eq!(first.computed_image_prompt, Some(bytes.clone()));
    assert_eq!(
        first.details.get(reverie_shared::jobs::IMAGE_PROMPT_DETAIL),
        Some(&subject.photo.to_string())
    );

    let mut from_cache = job(1);
    from_cache.cached_image_prompt = Some(bytes.clone());
    let hit = renderer
        .render_batch(&[from_cache], &reverie_worker::render::NoProgress)
        .remove(0)
        .unwrap();
    assert!(
        hit.computed_image_prompt.is_none(),
        "nothing to cache on a hit"
    );
    assert!(hit.image == first.image, "a hit renders as the miss did");

    // Without the image prompt the picture differs: the prompt counts.
    let mut without = job(1);
    without.spec.adapters.image_prompt_scale = 0.0;
    assert!(renderer.image_prompt_source(&without).is_none());
    let difference = mean_abs_difference(&render_one(&renderer, without), &first.image);
    assert!(
        difference > 1.0,
        "the image prompt changed nothing ({difference})"
    );

    // An entry of another shape is not used: the job computes its own and renders the same.
    let mut stale = job(1);
    stale.cached_image_prompt = Some(
        [
            b"RIP1".as_slice(),
            &[2],
            &1u32.to_le_bytes(),
            &3u32.to_le_bytes(),
            &[0; 6],
        ]
        .concat()
        .into(),
    );
    let recomputed = renderer
        .render_batch(&[stale], &reverie_worker::render::NoProgress)
        .remove(0)
        .unwrap();
    assert_eq!(recomputed.computed_image_prompt, Some(bytes));
    assert!(recomputed.image == first.image);
}
