//! Shared helpers of the integration tests: fixture paths and model lookup.
#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::Value;

pub fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../tests/fixtures/faces")
}

/// The models directory from `REVERIE_MODELS_DIR`; a missing setting or missing
/// files fail the test loudly, because parity cannot be checked without them.
pub fn models_dir() -> PathBuf {
    let dir = std::env::var_os("REVERIE_MODELS_DIR").map(PathBuf::from).unwrap_or_else(|| {
        panic!("REVERIE_MODELS_DIR is not set; run `reverie models fetch` and point it at the models directory")
    });
    for spec in reverie_faces::models::FACE_MODELS {
        assert!(
            dir.join(spec.name).is_file(),
            "{} missing in {}; run `reverie models fetch`",
            spec.name,
            dir.display()
        );
    }
    dir
}

pub fn reference_ids() -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_dir(fixture_dir().join("ref"))
        .expect("fixture ref dir")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .map(String::from)
        })
        .collect();
    ids.sort();
    ids
}

pub fn reference(id: &str) -> Value {
    let path = fixture_dir().join("ref").join(format!("{id}.json"));
    serde_json::from_slice(&std::fs::read(&path).expect("reference json")).expect("parse reference")
}

pub fn load_rgb(relative: &str) -> image::RgbImage {
    image::open(fixture_dir().join(relative))
        .expect("fixture image")
        .to_rgb8()
}

pub fn euclidean(a: &[f32], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - y).powi(2))
        .sum::<f64>()
        .sqrt()
}
