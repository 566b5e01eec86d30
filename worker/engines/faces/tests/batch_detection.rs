//! Batched detection (several photos in one network pass) gives every photo exactly
//! what detecting it alone gives, on fixture images of mixed sizes, with both engines.

mod common;

use image::RgbImage;
use reverie_faces::detector::{DetectorEngine, FaceDetector, MAX_DETECTION_SIDE};
use reverie_faces::models::{ModelStore, DETECTOR_MODEL};

fn detector(engine: DetectorEngine) -> FaceDetector {
    let store = ModelStore::new(common::models_dir());
    FaceDetector::from_bytes(
        &store.load(DETECTOR_MODEL.name).expect("detector model"),
        &candle_core::Device::Cpu,
    )
    .expect("load detector")
    .with_engine(engine)
}

/// Every fixture image (sizes from 150x150 to 548x342), plus a tiny one, an empty
/// one and, when asked, one above `MAX_DETECTION_SIDE` (downscaled for detection).
fn images(with_large: bool) -> Vec<RgbImage> {
    let mut names: Vec<String> = std::fs::read_dir(common::fixture_dir().join("images"))
        .expect("fixture images")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut images: Vec<RgbImage> = names
        .iter()
        .map(|n| common::load_rgb(&format!("images/{n}")))
        .collect();
    images.push(RgbImage::from_pixel(3, 2, image::Rgb([200, 10, 30])));
    images.push(RgbImage::new(0, 0));
    if with_large {
        let big = image::imageops::resize(
            &images[0],
            MAX_DETECTION_SIDE + 200,
            (MAX_DETECTION_SIDE + 200) * 3 / 4,
            image::imageops::FilterType::Triangle,
        );
        images.push(big);
    }
    images
}

fn assert_batched_matches_single(detector: &FaceDetector, images: &[RgbImage]) {
    let refs: Vec<&RgbImage> = images.iter().collect();
    let batches = detector.batches(&refs);
    let shared = batches
        .iter()
        .filter(|b| {
            b.len() > 1
                && b.iter()
                    .any(|&i| images[i].dimensions() != images[b[0]].dimensions())
        })
        .count();
    assert!(
        shared > 0,
        "no pass holds photos of different sizes: {batches:?}"
    );
    let batched = detector.detect_batch(&refs).expect("batched detection");
    assert_eq!(batched.len(), images.len());
    let mut faces = 0;
    for (i, (img, got)) in images.iter().zip(&batched).enumerate() {
        let alone = detector.detect(img).expect("single detection");
        assert_eq!(got.len(), alone.len(), "image {i}: face count");
        for (g, a) in got.iter().zip(&alone) {
            assert_eq!(g.rect, a.rect, "image {i}: box");
            assert!(
                (g.confidence - a.confidence).abs() <= 1e-4,
                "image {i}: confidence {} vs {}",
                g.confidence,
                a.confidence
            );
        }
        faces += alone.len();
    }
    assert!(faces > 0, "the fixture images hold faces");
}

#[test]
fn native_batched_detection_equals_one_by_one() {
    let detector = detector(DetectorEngine::Native);
    assert_eq!(detector.engine(), DetectorEngine::Native);
    assert_batched_matches_single(&detector, &images(true));
}

#[test]
fn candle_batched_detection_equals_one_by_one_and_the_native_engine() {
    let candle = detector(DetectorEngine::Candle);
    // candle's CPU convolutions are slow: a handful of mixed sizes is enough here.
    let all = images(false);
    let picked: Vec<RgbImage> = [(150, 150), (300, 300), (299, 300), (390, 390), (389, 390)]
        .iter()
        .filter_map(|&size| all.iter().find(|img| img.dimensions() == size).cloned())
        .collect();
    assert_eq!(picked.len(), 5, "fixture sizes");
    assert_batched_matches_single(&candle, &picked);
    let native = detector(DetectorEngine::Native);
    for img in &picked {
        let (a, b) = (
            candle.detect(img).expect("candle"),
            native.detect(img).expect("native"),
        );
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.rect, y.rect);
            assert!((x.confidence - y.confidence).abs() <= 1e-4);
        }
    }
}
