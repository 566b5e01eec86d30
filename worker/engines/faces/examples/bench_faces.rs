//! Benchmark: faces per second for detection and for descriptors on CPU, over the
//! fixture images. Run optimised:
//! `cargo run --release -p reverie-faces --example bench_faces -- MODELS_DIR IMAGES_DIR`.
//! dlib's own column needs its Python bindings (`python3 -c "import dlib"`); when
//! they are absent the table says so instead of inventing numbers.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use reverie_faces::chip::{chip_details, extract_chip};
use reverie_faces::shape_predictor::GrayPlane;
use reverie_faces::FaceModels;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    let [models_dir, images_dir] = args.as_slice() else {
        return Err("usage: bench_faces MODELS_DIR IMAGES_DIR".into());
    };
    let models = FaceModels::load(models_dir)?;
    let mut images = Vec::new();
    for entry in std::fs::read_dir(images_dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "png" || e == "jpg") {
            images.push(image::open(&path)?.to_rgb8());
        }
    }
    let start = Instant::now();
    let mut detections = Vec::new();
    for img in &images {
        detections.push(models.detector.detect(img)?);
    }
    let detect_secs = start.elapsed().as_secs_f64();
    let faces: usize = detections.iter().map(Vec::len).sum();
    let mut chips = Vec::new();
    for (img, dets) in images.iter().zip(&detections) {
        let gray = GrayPlane::from_rgb(img);
        for d in dets {
            let landmarks = models.shape_predictor.predict(&gray, &d.rect);
            chips.push(extract_chip(img, &chip_details(&landmarks, 150, 0.25)));
        }
    }
    let start = Instant::now();
    for batch in chips.chunks(32) {
        let refs: Vec<&image::RgbImage> = batch.iter().collect();
        models.descriptor.descriptors(&refs)?;
    }
    let desc_secs = start.elapsed().as_secs_f64();
    let dlib = Command::new("python3")
        .args(["-c", "import dlib"])
        .status()
        .is_ok_and(|s| s.success());
    println!("{} images, {faces} faces, CPU", images.len());
    println!("| stage | reverie faces/s | dlib faces/s |");
    println!("|---|---|---|");
    let dlib_note = if dlib {
        "dlib installed, but this benchmark does not drive it yet"
    } else {
        "n/a: dlib Python bindings not installed"
    };
    println!(
        "| detection | {:.2} | {dlib_note} |",
        faces as f64 / detect_secs
    );
    println!(
        "| descriptor | {:.2} | {dlib_note} |",
        chips.len() as f64 / desc_secs
    );
    Ok(())
}
