//! Megapixels per second per style on one CPU core for a 1024x768 photo.
//!
//! `cargo run -p reverie-paint --example bench --release [-- IMAGE]`
//! (defaults to the astronaut test photo, resized to 1024x768). The renderer is single-threaded.

use std::time::Instant;

use image::{imageops::FilterType, DynamicImage};
use reverie_paint::{paint, StyleSpec, PRESET_NAMES};

const DEFAULT_IMAGE: &str = "tests/fixtures/faces/images/skimage_astronaut.png";
const GOAL_SECONDS: f64 = 2.0;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| workspace_path(DEFAULT_IMAGE));
    let photo = image::open(&path).map_err(|e| format!("cannot open {path}: {e}"))?;
    let photo = DynamicImage::ImageRgb8(
        photo
            .resize_exact(1024, 768, FilterType::Lanczos3)
            .to_rgb8(),
    );
    let megapixels = (1024.0 * 768.0) / 1e6;
    println!("image: {path} resized to 1024x768 ({megapixels:.3} MP), single thread");
    println!(
        "{:<16} {:>10} {:>10}  goal < {GOAL_SECONDS} s",
        "style", "seconds", "MP/s"
    );
    for name in PRESET_NAMES {
        let style = StyleSpec::from_name(name)?;
        // Best of two runs: the first also pays for page faults on fresh buffers.
        let mut best = f64::INFINITY;
        for seed in 0..2 {
            let start = Instant::now();
            let out = paint(&photo, &style, seed)?;
            best = best.min(start.elapsed().as_secs_f64());
            std::hint::black_box(out);
        }
        let verdict = if best < GOAL_SECONDS { "ok" } else { "SLOW" };
        println!(
            "{name:<16} {best:>10.3} {:>10.2}  {verdict}",
            megapixels / best
        );
    }
    Ok(())
}

/// Examples run from the crate directory under cargo; resolve repo-relative paths from the
/// workspace root so the command works from anywhere inside the repository.
fn workspace_path(relative: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..");
    root.join(relative).to_string_lossy().into_owned()
}
