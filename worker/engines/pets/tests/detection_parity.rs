//! Parity with the reference run of the same graph in TensorFlow.js (pure-JS CPU backend):
//! `tests/fixtures/pets/reference.json`, made by `tests/fixtures/pets/reference.js` over real photos
//! of dogs and cats from registry packages and synthetic hard cases (MANIFEST.md there). Checks, per
//! photo: the decoded pixels, the letterboxed input, the six head outputs and the final boxes (within
//! 2 px) and scores (within 0.01). The reference ran on the pixels the `image` crate decodes
//! (`examples/decoded_copies.rs`), so decoding is the same on both sides.
//!
//! Needs the converted detector: `REVERIE_MODELS_DIR` pointing at a directory `reverie models fetch`
//! filled (scripts/test does this).

use std::path::PathBuf;

use candle_core::Device;
use reverie_pets::decode::{DecodeOptions, Kind};
use reverie_pets::net::{CLASSES, HEAD_CHANNELS};
use reverie_pets::preprocess::letterbox_input;
use reverie_pets::PetDetector;
use serde_json::Value;

fn repo_root() -> PathBuf {
    std::env::var_os("REVERIE_TEST_REPO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../..")))
}

fn models_dir() -> PathBuf {
    let dir = std::env::var_os("REVERIE_MODELS_DIR")
        .map(PathBuf::from)
        .expect("REVERIE_MODELS_DIR must name the directory `reverie models fetch` filled");
    assert!(
        dir.join(reverie_pets::DETECTOR_FILE).is_file(),
        "{} has no {}; run `reverie models fetch --to {}`",
        dir.display(),
        reverie_pets::DETECTOR_FILE,
        dir.display()
    );
    dir
}

fn close(a: f64, b: f64, abs: f64, rel: f64) -> bool {
    (a - b).abs() <= abs + rel * b.abs()
}

/// Our values of one reference output, in its `[cells, channels]` order.
fn output_values(levels: &[(usize, usize, Vec<f32>)], name: &str) -> Vec<f32> {
    let (kind, stride) = name
        .split_once("_s")
        .expect("output names are scores_sN / boxes_sN");
    let stride: usize = stride.parse().unwrap();
    let (_, grid, values) = levels.iter().find(|(s, ..)| *s == stride).unwrap();
    let cells = grid * grid;
    let channels: Vec<usize> = match kind {
        "scores" => (0..CLASSES).collect(),
        _ => (CLASSES..HEAD_CHANNELS).collect(),
    };
    let mut out = Vec::with_capacity(cells * channels.len());
    for cell in 0..cells {
        for c in &channels {
            out.push(values[c * cells + cell]);
        }
    }
    out
}

#[test]
fn boxes_and_scores_match_tensorflow_js_on_real_and_hard_photos() {
    let root = repo_root().join("tests/fixtures/pets");
    let reference: Value =
        serde_json::from_slice(&std::fs::read(root.join("reference.json")).unwrap()).unwrap();
    let mut detector = PetDetector::load(&models_dir(), &Device::Cpu).unwrap();
    detector.options = DecodeOptions {
        min_score: 0.2,
        ..DecodeOptions::default()
    };
    let mut failures = Vec::new();
    let mut compared = 0;
    for photo in reference["photos"].as_array().unwrap() {
        let file = photo["file"].as_str().unwrap();
        let image = image::open(root.join(file)).unwrap().to_rgb8();
        // The reference consumed exactly these pixels (the image crate's decoding, passed as PNG):
        // JPEG decoders differ by a fraction of a level, which is not what this test is about.
        let pixel_sum: u64 = image.as_raw().iter().map(|v| u64::from(*v)).sum();
        assert_eq!(
            pixel_sum,
            photo["decoded_rgb"]["sum"].as_u64().unwrap(),
            "{file}: not the reference's pixels"
        );

        let (input, _) = letterbox_input(&image);
        let sum: f64 = input.iter().map(|v| f64::from(*v)).sum();
        let expected = photo["input"]["sum"].as_f64().unwrap();
        // Relative to the sum of magnitudes: a sum near zero is all cancellation.
        let magnitude = photo["input"]["abs_sum"].as_f64().unwrap();
        if !close(sum, expected, 1e-6 * magnitude, 0.0) {
            failures.push(format!("{file}: input sum {sum} vs {expected}"));
        }

        let raw = detector.raw_outputs(&[&image]).unwrap().remove(0);
        for (name, output) in photo["outputs"].as_object().unwrap() {
            let ours = output_values(&raw.levels, name);
            let sum: f64 = ours.iter().map(|v| f64::from(*v)).sum();
            let expected = output["sum"].as_f64().unwrap();
            if !close(sum, expected, 0.5, 1e-4) {
                failures.push(format!("{file} {name}: sum {sum} vs {expected}"));
            }
            for (i, (a, b)) in ours
                .iter()
                .zip(output["first"].as_array().unwrap())
                .enumerate()
            {
                let b = b.as_f64().unwrap();
                if !close(f64::from(*a), b, 2e-3, 1e-3) {
                    failures.push(format!("{file} {name}[{i}]: {a} vs {b}"));
                }
            }
        }

        let ours = raw.decode(&detector.options);
        let theirs = photo["detections"].as_array().unwrap();
        // Candidates within a hair of the 0.2 cut may fall either side of it.
        let near_cut = |score: f64| score < 0.2 + 0.01;
        let mut used = vec![false; ours.len()];
        for t in theirs {
            let class = t["class"].as_u64().unwrap() as usize;
            let score = t["score"].as_f64().unwrap();
            let tb = ["left", "top", "right", "bottom"].map(|k| t[k].as_f64().unwrap());
            let found = ours.iter().enumerate().find(|(i, d)| {
                let b = d.bbox;
                !used[*i]
                    && d.kind.coco_class() == class
                    && (f64::from(d.score) - score).abs() <= 0.01
                    && [b.left, b.top, b.right, b.bottom]
                        .iter()
                        .zip(tb)
                        .all(|(a, b)| (f64::from(*a) - b).abs() <= 2.0)
            });
            match found {
                Some((i, _)) => {
                    used[i] = true;
                    compared += 1;
                }
                None if near_cut(score) => {}
                None => failures.push(format!("{file}: no match for {t}")),
            }
        }
        for (d, used) in ours.iter().zip(used) {
            if !used && !near_cut(f64::from(d.score)) {
                failures.push(format!("{file}: extra {d:?}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(compared > 40, "only {compared} detections compared");
    let _ = Kind::ALL;
}
