//! Fetches the segmentation model and segments images:
//! `cargo run -p reverie-faces --release --example segment -- MODELS_DIR [--archive TGZ] [IMAGE...]`
//! writes `<image>.mask.png` next to each image and prints the forward time.
use std::path::PathBuf;
use std::time::Instant;

use reverie_faces::segmentation::{fetch_segmentation_models, PersonSegmenter};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let models = PathBuf::from(
        args.next()
            .ok_or("usage: segment MODELS_DIR [--archive TGZ] [IMAGE...]")?,
    );
    let mut archive = None;
    let mut images = Vec::new();
    while let Some(arg) = args.next() {
        if arg == "--archive" {
            archive = args.next().map(PathBuf::from);
        } else {
            images.push(PathBuf::from(arg));
        }
    }
    for path in fetch_segmentation_models(&models, archive.as_deref())? {
        println!("{}", path.display());
    }
    let segmenter = PersonSegmenter::load(&models, &candle_core::Device::Cpu)?;
    let blank = image::RgbImage::new(256, 256);
    segmenter.probabilities_of_inputs(std::slice::from_ref(&blank))?;
    let runs = 20;
    let start = Instant::now();
    for _ in 0..runs {
        segmenter.probabilities_of_inputs(std::slice::from_ref(&blank))?;
    }
    println!(
        "forward 1x256x256: {:.1} ms",
        start.elapsed().as_secs_f64() * 1000.0 / runs as f64
    );
    let batch = vec![blank; 8];
    let start = Instant::now();
    segmenter.probabilities_of_inputs(&batch)?;
    println!(
        "forward 8x256x256: {:.1} ms per image",
        start.elapsed().as_secs_f64() * 1000.0 / 8.0
    );
    for path in images {
        let image = image::open(&path)?.to_rgb8();
        let mask = segmenter.mask(&image)?;
        let out = path.with_extension("mask.png");
        mask.save(&out)?;
        println!("{} -> {}", path.display(), out.display());
    }
    Ok(())
}
