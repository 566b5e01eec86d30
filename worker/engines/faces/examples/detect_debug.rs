//! Prints our detections for fixture images next to dlib's:
//! `cargo run -p reverie-faces --example detect_debug -- MODELS_DIR FIXTURE_DIR ID...`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (models, fixture) = match args.as_slice() {
        [m, f, ..] => (PathBuf::from(m), PathBuf::from(f)),
        _ => return Err("usage: detect_debug MODELS_DIR FIXTURE_DIR ID...".into()),
    };
    let store = reverie_faces::models::ModelStore::new(&models);
    let det = reverie_faces::detector::FaceDetector::from_bytes(
        &store.load(reverie_faces::models::DETECTOR_MODEL.name)?,
        &candle_core::Device::Cpu,
    )?;
    for id in &args[2..] {
        let reference: serde_json::Value = serde_json::from_slice(&std::fs::read(
            fixture.join("ref").join(format!("{id}.json")),
        )?)?;
        let img =
            image::open(fixture.join(reference["image"].as_str().unwrap_or_default()))?.to_rgb8();
        for d in det.detect(&img)? {
            println!("{id} ours {:?} {}", d.rect, d.confidence);
        }
        for f in reference["faces"].as_array().cloned().unwrap_or_default() {
            println!("{id} dlib {} {}", f["rect"], f["confidence"]);
        }
    }
    Ok(())
}
