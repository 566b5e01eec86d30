//! Pairwise appearance distances between the pets found in photos, to choose
//! and check the grouping threshold (docs/pets.md).
//!
//! `cargo run --release -p reverie-pets --example appearance_eval -- MODELS_DIR PHOTO...`
//! Each photo is also seen mirrored and re-cropped, as a second photo of the same
//! animal would be.

use image::imageops;
use reverie_pets::{Appearance, PetDetector};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let models = args
        .next()
        .ok_or("usage: appearance_eval MODELS_DIR PHOTO...")?;
    let detector = PetDetector::load(models.as_ref(), &candle_core::Device::Cpu)?;
    let mut found: Vec<(String, Appearance)> = Vec::new();
    for path in args {
        let photo = image::open(&path)?.to_rgb8();
        let (w, h) = photo.dimensions();
        let mirrored = imageops::flip_horizontal(&photo);
        let cropped = imageops::crop_imm(&photo, w / 10, h / 12, w - w / 5, h - h / 6).to_image();
        let name = std::path::Path::new(&path)
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .to_string();
        for (variant, image) in [("", &photo), ("~mirror", &mirrored), ("~crop", &cropped)] {
            let pets: Vec<_> = detector
                .detect(image)?
                .into_iter()
                .filter(|d| d.kind.is_pet())
                .collect();
            for (i, a) in pets
                .iter()
                .map(|d| Appearance::of(image, &d.bbox))
                .enumerate()
            {
                found.push((format!("{name}{variant}#{i}:{}", pets[i].kind.label()), a));
            }
        }
    }
    let (mut same, mut different) = (Vec::new(), Vec::new());
    for i in 0..found.len() {
        for j in i + 1..found.len() {
            let d = found[i].1.distance(&found[j].1);
            let base = |s: &str| s.split(['~', '#']).next().unwrap().to_string();
            let same_animal = base(&found[i].0) == base(&found[j].0)
                && found[i].0.split('#').nth(1) == found[j].0.split('#').nth(1);
            println!(
                "{d:.3}  {}  {}  {}",
                if same_animal { "same" } else { "diff" },
                found[i].0,
                found[j].0
            );
            if same_animal {
                same.push(d)
            } else {
                different.push(d)
            }
        }
    }
    let max = |v: &[f32]| v.iter().copied().fold(f32::MIN, f32::max);
    let min = |v: &[f32]| v.iter().copied().fold(f32::MAX, f32::min);
    println!(
        "same animal: n={} max {:.3}; different: n={} min {:.3}",
        same.len(),
        max(&same),
        different.len(),
        min(&different)
    );
    Ok(())
}
