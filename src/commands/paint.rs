use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use reverie_paint::{paint, StyleSpec, PRESET_NAMES};

use crate::app::{self, GlobalArgs};

#[derive(Debug, Args)]
pub struct PaintArgs {
    /// A style preset or style words ("watercolour", "oil painting", "inspired by Monet", ...).
    #[arg(long)]
    pub style: String,
    /// The photo to paint.
    pub image: PathBuf,
    /// Where to write the PNG.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(global: &GlobalArgs, args: PaintArgs) -> anyhow::Result<()> {
    app::start_quiet(global)?;
    let style = match StyleSpec::from_name(&args.style) {
        Ok(style) => style,
        Err(_) => {
            let words = reverie_paint::parse_style_words(&args.style);
            if !words.unknown.is_empty() {
                eprintln!("warning: unknown style words: {}", words.unknown.join(", "));
            }
            words.spec.with_context(|| {
                format!(
                    "no known style in {:?}; presets: {}",
                    args.style,
                    PRESET_NAMES.join(", ")
                )
            })?
        }
    };
    let image =
        image::open(&args.image).with_context(|| format!("reading {}", args.image.display()))?;
    let painted = paint(&image, &style, args.seed)?;
    painted
        .save(&args.out)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "{} ({}, {}x{})",
        args.out.display(),
        style.name,
        painted.width(),
        painted.height()
    );
    Ok(())
}
