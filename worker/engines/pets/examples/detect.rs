//! Prints the people, cats and dogs the detector finds in photos.
//!
//! `cargo run --release -p reverie-pets --example detect -- MODELS_DIR PHOTO...`
//! (fetch the model first with `reverie models fetch`).

use reverie_pets::{DecodeOptions, PetDetector};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let models = args.next().ok_or("usage: detect MODELS_DIR PHOTO...")?;
    let mut detector = PetDetector::load(models.as_ref(), &candle_core::Device::Cpu)?;
    detector.options = DecodeOptions {
        min_score: 0.3,
        ..DecodeOptions::default()
    };
    for path in args {
        let photo = image::open(&path)?.to_rgb8();
        println!("{path} ({}x{})", photo.width(), photo.height());
        for d in detector.detect(&photo)? {
            let b = d.bbox;
            println!(
                "  {:<6} {:.3}  [{:.0}, {:.0}, {:.0}, {:.0}]",
                d.kind.label(),
                d.score,
                b.left,
                b.top,
                b.right,
                b.bottom
            );
        }
    }
    Ok(())
}
