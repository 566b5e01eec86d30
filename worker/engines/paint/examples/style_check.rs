//! Paints every preset on every kind of synthetic photo (colour, high-contrast grayscale, line
//! art, nearly uniform, very dark, tiny), prints how visibly each style applied
//! ([`reverie_paint::StyleEffect`]) and writes photo and paintings as PNGs for a look.
//!
//! `cargo run -p reverie-paint --example style_check --release [-- OUT_DIR [SEED]]`
//! (default OUT_DIR: /tmp/style-check). Files are `KIND--STYLE.png` plus `KIND--photo.png`.

#[path = "../tests/support/photos.rs"]
mod photos;

use reverie_paint::{paint, StyleEffect, StyleSpec, PRESET_NAMES};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = std::path::PathBuf::from(args.next().unwrap_or_else(|| "/tmp/style-check".into()));
    let seed = match args.next() {
        Some(s) => s.parse::<u64>()?,
        None => 0,
    };
    std::fs::create_dir_all(&out)?;
    let mut failures = 0;
    for (kind, photo) in photos::every_kind() {
        let file_kind = kind.replace(' ', "-");
        photo
            .to_rgb8()
            .save(out.join(format!("{file_kind}--photo.png")))?;
        println!("{kind} ({}x{})", photo.width(), photo.height());
        for name in PRESET_NAMES {
            let style = StyleSpec::from_name(name)?;
            let start = std::time::Instant::now();
            let painting = paint(&photo, &style, seed)?;
            let seconds = start.elapsed().as_secs_f64();
            let effect = StyleEffect::measure(&photo.to_rgb8(), &painting);
            let verdict = match effect.check() {
                Ok(()) => "ok".to_string(),
                Err(why) => {
                    failures += 1;
                    format!("FAIL: {why}")
                }
            };
            println!("  {name:<15} {effect}  {seconds:6.3}s  {verdict}");
            painting.save(out.join(format!("{file_kind}--{name}.png")))?;
        }
    }
    println!(
        "{failures} style x photo combinations failed; images in {}",
        out.display()
    );
    Ok(())
}
