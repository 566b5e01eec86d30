//! Shared harness for parity tests against the sd-tiny fixture (`tests/fixtures/sd-tiny`):
//! load a case from `cases.json`, its tensors, and compare under the case's tolerance.
#![allow(dead_code)] // each test binary uses a different part of it

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
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

/// The sd-tiny fixture folder.
pub fn fixture_dir() -> PathBuf {
    repo_root().join("tests/fixtures/sd-tiny")
}

/// A component folder of the fixture model: `model_dir("vae")`, `model_dir("unet")`, ...
pub fn model_dir(component: &str) -> PathBuf {
    fixture_dir().join("model").join(component)
}

/// `cases.json` parsed. Python's json writes `-Infinity` (diffusers' `lambda_min_clipped`),
/// which serde_json rejects, so it is read as the string "-Infinity".
pub fn all_cases() -> Value {
    all_cases_in(&fixture_dir())
}

/// `cases.json` of the fixture folder `dir`.
pub fn all_cases_in(dir: &std::path::Path) -> Value {
    let path = dir.join("cases.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let text = text.replace("-Infinity", "\"-Infinity\"");
    serde_json::from_str(&text).expect("cases.json parses")
}

/// One case: its JSON entry, its tensors (on [`test_device`]) and its tolerance.
pub struct Case {
    pub name: String,
    pub params: Value,
    pub atol: f64,
    pub rtol: f64,
    pub tensors: HashMap<String, Tensor>,
}

impl Case {
    pub fn load(name: &str) -> Self {
        Self::load_in(&fixture_dir(), name)
    }

    /// A case of the fixture folder `dir` (sd-tiny, sdxl-tiny, ...).
    pub fn load_in(dir: &std::path::Path, name: &str) -> Self {
        let cases = all_cases_in(dir);
        let entry = cases["cases"]
            .as_array()
            .expect("cases.json has a cases list")
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no case `{name}` in cases.json"))
            .clone();
        let file = entry["file"].as_str().expect("case has a file");
        let tensors = candle_core::safetensors::load(dir.join(file), &test_device())
            .unwrap_or_else(|e| panic!("case `{name}`: cannot load {file}: {e}"));
        Self {
            name: name.to_string(),
            params: entry["params"].clone(),
            atol: entry["tolerance"]["atol"].as_f64().expect("atol"),
            rtol: entry["tolerance"]["rtol"].as_f64().expect("rtol"),
            tensors,
        }
    }

    /// The tensor `name` (e.g. `in.latents`), as f32.
    pub fn tensor(&self, name: &str) -> Tensor {
        self.tensors
            .get(name)
            .unwrap_or_else(|| panic!("case `{}` has no tensor `{name}`", self.name))
            .to_dtype(DType::F32)
            .expect("f32")
    }

    pub fn input(&self, name: &str) -> Tensor {
        self.tensor(name)
    }

    pub fn expected(&self, name: &str) -> Tensor {
        self.tensor(name)
    }

    /// Asserts `ours` matches the expected tensor `name` under this case's tolerance.
    pub fn assert_close(&self, name: &str, ours: &Tensor) {
        let what = format!("{}/{name}", self.name);
        assert_close(&what, ours, &self.expected(name), self.atol, self.rtol);
    }
}

/// Asserts `|ours - expected| <= atol + rtol * |expected|` element-wise (and equal shapes); the
/// failure message gives the worst element and its values.
pub fn assert_close(what: &str, ours: &Tensor, expected: &Tensor, atol: f64, rtol: f64) {
    assert_eq!(ours.dims(), expected.dims(), "{what}: shape");
    let flat = |t: &Tensor| -> Vec<f32> {
        t.to_dtype(DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1())
            .expect("tensor to f32 vector")
    };
    let (ours, expected) = (flat(ours), flat(expected));
    let mut worst: Option<(usize, f64)> = None;
    for (i, (o, e)) in ours.iter().zip(&expected).enumerate() {
        let (o, e) = (f64::from(*o), f64::from(*e));
        let excess = if o.is_nan() || e.is_nan() {
            f64::INFINITY
        } else {
            (o - e).abs() - (atol + rtol * e.abs())
        };
        if worst.is_none_or(|(_, w)| excess > w) {
            worst = Some((i, excess));
        }
    }
    if let Some((i, excess)) = worst {
        assert!(
            excess <= 0.0,
            "{what}: element {i} is {} but expected {} (beyond atol {atol} + rtol {rtol} by {excess})",
            ours[i],
            expected[i]
        );
    }
}

/// The largest absolute difference, for reporting.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.flatten_all())
        .and_then(|d| d.max(0))
        .and_then(|d| d.to_dtype(DType::F64))
        .and_then(|d| d.to_scalar::<f64>())
        .expect("max abs diff")
}
