//! The identity check of rendered outputs through the runner's render step, with the real face models
//! (`REVERIE_MODELS_DIR`) on a fixture portrait painted by the weight-free renderer.

use std::path::PathBuf;

use image::DynamicImage;
use reverie_faces::{FaceAnalyzer, FaceModels};
use reverie_shared::ids::{PhotoId, ShardId};
use reverie_shared::jobs::{IdentityVerdict, PhotoRef, ReferenceRole, RenderSpec, RendererKind};
use reverie_worker::identity::render_with_identity;
use reverie_worker::render::{PainterlyRenderer, RenderRequest};

fn fixture(name: &str) -> DynamicImage {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/faces/images")
        .join(name);
    image::open(path).expect("fixture image")
}

fn analyzer() -> FaceAnalyzer {
    let dir = std::env::var_os("REVERIE_MODELS_DIR").map(PathBuf::from).unwrap_or_else(|| {
        panic!("REVERIE_MODELS_DIR is not set; run `reverie models fetch` and point it at the models directory")
    });
    FaceAnalyzer::new(FaceModels::load(&dir).expect("face models"))
}

fn reference(name: &str, role: ReferenceRole, face_box: [u32; 4]) -> PhotoRef {
    PhotoRef {
        photo: PhotoId::of_bytes(name.as_bytes()),
        shard: ShardId::new("s-1").unwrap(),
        offset: 0,
        length: 1,
        role,
        face_box: Some(face_box),
        label: Some("Jesper".into()),
    }
}

/// Jesper (face boxes from the fixture references), painted at 512², asking for `best_of`.
fn jesper_job(best_of: u32) -> RenderRequest {
    RenderRequest {
        spec: RenderSpec {
            renderer: RendererKind::Painterly,
            prompt: "Jesper in the garden".into(),
            negative_prompt: String::new(),
            style: "impressionist".into(),
            model: None,
            width: 512,
            height: 512,
            steps: 1,
            guidance: 0.0,
            scheduler: None,
            seed: 11,
            strength: 1.0,
            palette_transfer: false,
            identity_strength: 0.0,
            best_of,
            adapters: Default::default(),
        },
        photos: vec![
            (
                reference("kpa_jesper_2", ReferenceRole::Subject, [125, 67, 244, 186]),
                fixture("kpa_jesper_2.png"),
            ),
            (
                reference("kpa_jesper", ReferenceRole::Identity, [80, 3, 251, 174]),
                fixture("kpa_jesper.png"),
            ),
        ],
        identity: Vec::new(),
        loras: Vec::new(),
        cached_image_prompt: None,
        pet_boxes: Vec::new(),
    }
}

#[test]
fn painted_people_are_checked_and_best_of_keeps_the_closest() {
    let analyzer = analyzer();
    let renderer = PainterlyRenderer;
    let results = render_with_identity(
        &renderer,
        vec![jesper_job(1)],
        Ok(&analyzer),
        &reverie_worker::render::NoProgress,
    );
    let outcome = results.into_iter().next().unwrap().expect("rendered");
    assert_eq!(
        (
            outcome.rendered.image.width(),
            outcome.rendered.image.height()
        ),
        (512, 512)
    );
    let report = outcome
        .identity
        .expect("a picture with a person is checked");
    eprintln!("{report:?}");
    assert_eq!(report.unchecked, None);
    assert_eq!(report.people.len(), 1);
    assert_eq!(report.people[0].person, "Jesper");
    assert_ne!(
        report.people[0].verdict,
        IdentityVerdict::Missing,
        "{report:?}"
    );
    assert_eq!(report.seed, 11);
    assert!(report.candidates.is_empty());

    let results = render_with_identity(
        &renderer,
        vec![jesper_job(3)],
        Ok(&analyzer),
        &reverie_worker::render::NoProgress,
    );
    let outcome = results.into_iter().next().unwrap().expect("rendered");
    let report = outcome.identity.expect("checked");
    let seeds: Vec<u64> = report.candidates.iter().map(|c| c.seed).collect();
    assert_eq!(seeds, [11, 12, 13]);
    let distance =
        |people: &[reverie_shared::jobs::PersonIdentity]| people[0].distance.unwrap_or(f32::MAX);
    let best = report
        .candidates
        .iter()
        .map(|c| distance(&c.people))
        .fold(f32::MAX, f32::min);
    assert_eq!(distance(&report.people), best);
    assert_eq!(outcome.seed, report.seed);
}

#[test]
fn without_face_models_the_check_says_it_could_not_run() {
    let renderer = PainterlyRenderer;
    let results = render_with_identity(
        &renderer,
        vec![jesper_job(4)],
        Err("no models here"),
        &reverie_worker::render::NoProgress,
    );
    let outcome = results.into_iter().next().unwrap().expect("rendered");
    let report = outcome
        .identity
        .expect("a picture with a person gets a report");
    assert!(report.people.is_empty());
    assert!(report.unchecked.unwrap().contains("no models here"));
    // Nothing to choose by: the job's own seed, one render.
    assert_eq!(outcome.seed, 11);
    assert!(report.candidates.is_empty());
}
