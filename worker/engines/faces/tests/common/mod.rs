//! Shared helpers of the integration tests: fixture paths and model lookup.
#![allow(dead_code)]

use std::path::PathBuf;

use candle_core::Device;
use serde_json::Value;

/// The device these tests run on: the CPU, or the one `REVERIE_TEST_DEVICE` names (`cuda`,
/// `cuda:N`: scripts/gpu/run-all, with test executables built with the cuda feature). CUDA that
/// cannot be opened fails the test instead of passing on the CPU.
pub fn test_device() -> Device {
    static DEVICE: std::sync::OnceLock<Device> = std::sync::OnceLock::new();
    DEVICE
        .get_or_init(|| {
            let name = std::env::var("REVERIE_TEST_DEVICE").unwrap_or_default();
            let ordinal = match name.as_str() {
                "" | "cpu" => return Device::Cpu,
                "cuda" => 0,
                other => other
                    .strip_prefix("cuda:")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("REVERIE_TEST_DEVICE={other}: cpu, cuda or cuda:N")),
            };
            Device::new_cuda(ordinal).unwrap_or_else(|e| panic!("REVERIE_TEST_DEVICE={name}: {e}"))
        })
        .clone()
}

/// The repository root: `REVERIE_TEST_REPO` when set (test executables carried to another machine
/// by scripts/gpu), else the checkout they were built in.
pub fn repo_root() -> PathBuf {
    std::env::var_os("REVERIE_TEST_REPO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../..")))
}

pub fn fixture_dir() -> PathBuf {
    repo_root().join("tests/fixtures/faces")
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
