//! Parity of the candle segmentation network (and MediaPipe's pre/post-processing)
//! with the TFLite runtime: fixtures from
//! tests/fixtures/segmentation/make_reference.py (see its README.md).
//!
//! The model comes from `REVERIE_MODELS_DIR` (filled by `reverie models fetch`);
//! like the other parity tests, a missing setting or file fails loudly.

use std::path::PathBuf;

use candle_core::Device;
use image::{GrayImage, RgbImage};
use reverie_faces::segmentation::{PersonSegmenter, ProbabilityMap, SegmentationVariant};
use serde_json::Value;

/// Network alone, same input tensor: max |p - p_ref| (the reference is stored as
/// round(p * 65535), which adds at most 7.6e-6).
const NETWORK_TOLERANCE: f32 = 1e-4;
/// Pre-processing: share of input values equal to MediaPipe's (u8), and the largest
/// difference. OpenCV rounds sample positions to 1/32 pixel from a matrix it
/// solves and inverts in double; positions that land exactly on a half step round
/// either way there, moving a sample by 1/32 pixel.
const INPUT_MIN_EQUAL: f64 = 0.85;
const INPUT_MAX_DIFF: u8 = 16;
/// Whole pipeline (pre-processing + network) at model resolution.
const PIPELINE_MEAN_TOLERANCE: f64 = 4e-3;
const PIPELINE_MAX_TOLERANCE: f32 = 0.5;
/// Share of pixels on the same side of 0.5 as the reference.
const PIPELINE_MIN_AGREEMENT: f64 = 0.995;
/// Image-size masks (u8): mean and max difference in levels.
const MASK_MEAN_TOLERANCE: f64 = 1.0;
const MASK_MAX_TOLERANCE: u8 = 128;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../tests/fixtures/segmentation")
}

fn images_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../tests/fixtures/faces/images")
}

fn models_dir() -> PathBuf {
    let dir = std::env::var_os("REVERIE_MODELS_DIR").map(PathBuf::from).unwrap_or_else(|| {
        panic!("REVERIE_MODELS_DIR is not set; run `reverie models fetch` and point it at the models directory")
    });
    for variant in SegmentationVariant::ALL {
        assert!(
            dir.join(variant.safetensors_name()).is_file(),
            "{} missing in {}; run `reverie models fetch`",
            variant.safetensors_name(),
            dir.display()
        );
    }
    dir
}

fn segmenter(variant: SegmentationVariant) -> PersonSegmenter {
    PersonSegmenter::load_variant(&models_dir(), variant, &Device::Cpu)
        .expect("load segmentation model")
}

fn manifest() -> Vec<Value> {
    let text = std::fs::read(fixture_dir().join("manifest.json")).expect("manifest.json");
    let value: Value = serde_json::from_slice(&text).expect("parse manifest");
    value["entries"].as_array().expect("entries").clone()
}

fn variant_of(entry: &Value) -> SegmentationVariant {
    match entry["variant"].as_str() {
        Some("general") => SegmentationVariant::General,
        Some("landscape") => SegmentationVariant::Landscape,
        other => panic!("unknown variant {other:?}"),
    }
}

fn reference_map(entry: &Value) -> ProbabilityMap {
    let path = fixture_dir().join(entry["probabilities"].as_str().expect("probabilities"));
    let image = image::open(&path).expect("reference map").to_luma16();
    ProbabilityMap {
        width: image.width(),
        height: image.height(),
        data: image.pixels().map(|p| f32::from(p[0]) / 65535.0).collect(),
    }
}

fn photo(entry: &Value) -> RgbImage {
    image::open(images_dir().join(entry["image"].as_str().expect("image")))
        .expect("photo")
        .to_rgb8()
}

fn input(entry: &Value) -> Option<RgbImage> {
    let path = entry["input"].as_str()?;
    Some(
        image::open(fixture_dir().join(path))
            .expect("input")
            .to_rgb8(),
    )
}

/// (max |a - b|, mean |a - b|, share of pixels on the same side of 0.5).
fn compare(a: &ProbabilityMap, b: &ProbabilityMap) -> (f32, f64, f64) {
    assert_eq!((a.width, a.height), (b.width, b.height));
    let mut max = 0f32;
    let mut sum = 0f64;
    let mut agree = 0usize;
    for (x, y) in a.data.iter().zip(&b.data) {
        let d = (x - y).abs();
        max = max.max(d);
        sum += f64::from(d);
        agree += usize::from((*x > 0.5) == (*y > 0.5));
    }
    let n = a.data.len() as f64;
    (max, sum / n, agree as f64 / n)
}

#[test]
fn network_matches_tflite_given_the_same_input() {
    let entries = manifest();
    for variant in SegmentationVariant::ALL {
        let chosen: Vec<&Value> = entries
            .iter()
            .filter(|e| variant_of(e) == variant && e.get("input").is_some())
            .collect();
        assert!(!chosen.is_empty(), "no network fixtures for {variant:?}");
        let inputs: Vec<RgbImage> = chosen.iter().map(|e| input(e).expect("input")).collect();
        // All inputs of a variant in one batch.
        let maps = segmenter(variant)
            .probabilities_of_inputs(&inputs)
            .expect("forward");
        let mut worst = 0f32;
        for (entry, map) in chosen.iter().zip(&maps) {
            let (max, mean, _) = compare(map, &reference_map(entry));
            println!(
                "network {variant:?} {}: max {max:.2e} mean {mean:.2e}",
                entry["image"]
            );
            worst = worst.max(max);
        }
        println!(
            "network {variant:?}: worst max |diff| {worst:.2e} over {} images",
            maps.len()
        );
        assert!(
            worst <= NETWORK_TOLERANCE,
            "{variant:?}: max |diff| {worst:e} > {NETWORK_TOLERANCE:e}"
        );
    }
}

#[test]
fn preprocessing_matches_mediapipe() {
    for entry in manifest() {
        let Some(expected) = input(&entry) else {
            continue;
        };
        let segmenter_input = {
            let (h, w) = variant_of(&entry).input_size();
            reverie_faces::segmentation::warp_to_input(&photo(&entry), w as u32, h as u32)
        };
        let mut equal = 0usize;
        let mut max = 0u8;
        for (a, b) in segmenter_input.as_raw().iter().zip(expected.as_raw()) {
            equal += usize::from(a == b);
            max = max.max(a.abs_diff(*b));
        }
        let share = equal as f64 / expected.as_raw().len() as f64;
        println!(
            "input {} {}: {share:.4} equal, max diff {max}",
            entry["image"], entry["variant"]
        );
        assert!(
            share >= INPUT_MIN_EQUAL && max <= INPUT_MAX_DIFF,
            "{}: {share} equal, max {max}",
            entry["image"]
        );
    }
}

#[test]
fn whole_pipeline_matches_reference() {
    let general = segmenter(SegmentationVariant::General);
    let landscape = segmenter(SegmentationVariant::Landscape);
    let (mut worst_max, mut worst_mean, mut worst_agreement) = (0f32, 0f64, 1f64);
    let mut count = 0;
    for entry in manifest() {
        let segmenter = match variant_of(&entry) {
            SegmentationVariant::General => &general,
            SegmentationVariant::Landscape => &landscape,
        };
        let map = segmenter
            .probabilities(&photo(&entry))
            .expect("probabilities");
        let (max, mean, agreement) = compare(&map, &reference_map(&entry));
        worst_max = worst_max.max(max);
        worst_mean = worst_mean.max(mean);
        worst_agreement = worst_agreement.min(agreement);
        count += 1;
        println!(
            "pipeline {} {}: max {max:.3e} mean {mean:.3e} agreement {agreement:.5}",
            entry["image"], entry["variant"]
        );
        assert!(
            mean <= PIPELINE_MEAN_TOLERANCE
                && max <= PIPELINE_MAX_TOLERANCE
                && agreement >= PIPELINE_MIN_AGREEMENT,
            "{} {}: max {max} mean {mean} agreement {agreement}",
            entry["image"],
            entry["variant"]
        );
    }
    println!(
        "pipeline over {count} images: worst max |diff| {worst_max:.2e}, worst mean {worst_mean:.2e}, \
         worst agreement at 0.5 {worst_agreement:.5}"
    );
}

#[test]
fn image_size_masks_match_reference() {
    let segmenter = segmenter(SegmentationVariant::General);
    for entry in manifest() {
        let Some(path) = entry["mask"].as_str() else {
            continue;
        };
        let expected: GrayImage = image::open(fixture_dir().join(path))
            .expect("mask")
            .to_luma8();
        let image = photo(&entry);
        let mask = segmenter.mask(&image).expect("mask");
        assert_eq!(mask.dimensions(), image.dimensions());
        let mut sum = 0f64;
        let mut max = 0u8;
        for (a, b) in mask.as_raw().iter().zip(expected.as_raw()) {
            let d = a.abs_diff(*b);
            sum += f64::from(d);
            max = max.max(d);
        }
        let mean = sum / f64::from(mask.width() * mask.height());
        println!("mask {}: mean {mean:.3} max {max} levels", entry["image"]);
        assert!(
            mean <= MASK_MEAN_TOLERANCE && max <= MASK_MAX_TOLERANCE,
            "{}: mean {mean} max {max}",
            entry["image"]
        );

        // The mask is the reference map resized: post-processing alone is exact up
        // to the reference's u16 storage and u8 rounding.
        let from_reference = reference_map(&entry)
            .resize(image.width(), image.height())
            .to_mask();
        let post_max = from_reference
            .as_raw()
            .iter()
            .zip(expected.as_raw())
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap_or(0);
        assert!(
            post_max <= 1,
            "{}: post-processing alone differs by {post_max} levels",
            entry["image"]
        );
    }
}

#[test]
fn batched_and_single_forward_agree() {
    let segmenter = segmenter(SegmentationVariant::General);
    let photos: Vec<RgbImage> = manifest().iter().take(3).map(photo).collect();
    let batched = segmenter.probabilities_batch(&photos).expect("batch");
    for (photo, batch_map) in photos.iter().zip(&batched) {
        let single = segmenter.probabilities(photo).expect("single");
        let (max, _, _) = compare(&single, batch_map);
        assert!(max <= 1e-5, "batch and single differ by {max}");
    }
    let masks = segmenter.masks(&photos).expect("masks");
    for (photo, mask) in photos.iter().zip(&masks) {
        assert_eq!(mask.dimensions(), photo.dimensions());
    }
}
