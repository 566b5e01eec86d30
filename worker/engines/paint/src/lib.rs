//! Painterly renderers, colour palettes and style fingerprints that need no model weights.
//!
//! Entry points:
//! - [`paint`]: render a photo in a [`StyleSpec`] (presets via [`StyleSpec::from_name`], prompt
//!   words via [`parse_style_words`]);
//! - [`Palette::extract`], [`transfer_palette`], [`favourite_palettes`], [`palette_distance`];
//! - [`Fingerprint::compute`] and [`nearest`];
//! - [`compose`] for multi-subject pictures.
//!
//! Everything is deterministic for a given seed and single-threaded.

pub mod colour;
pub mod compose;
pub mod effect;
pub mod error;
pub mod fingerprint;
pub mod oil;
pub mod painterly;
pub mod palette;
pub mod pop_art;
pub mod raster;
pub mod rng;
pub mod sketch;
pub mod style;
pub mod watercolour;

use image::{DynamicImage, RgbImage};

pub use compose::{compose, layout, Composite, Placement, Rect, Subject, SubjectKind};
pub use effect::StyleEffect;
pub use error::{PaintError, Result};
pub use fingerprint::{nearest, Fingerprint, Neighbour};
pub use oil::OilParams;
pub use painterly::{PainterlyParams, Stroke};
pub use palette::{
    blend_palettes, favourite_palettes, palette_distance, transfer_palette, FavouritePalette,
    Palette, PaletteColour, PaletteVote, TransferOptions,
};
pub use pop_art::PopArtParams;
pub use sketch::SketchParams;
pub use style::{
    parse_style_words, style_word_table, StyleKind, StyleSpec, StyleWords, PRESET_NAMES,
};
pub use watercolour::WatercolourParams;

use raster::ColourImage;

/// Paints `image` in `style`. Output is 8-bit sRGB at the input's size; alpha is composited over
/// white and grayscale expanded. The same (image, style, seed) always gives the same pixels.
pub fn paint(image: &DynamicImage, style: &StyleSpec, seed: u64) -> Result<RgbImage> {
    style.validate()?;
    let source = ColourImage::from_dynamic(image, "paint source")?;
    recolour(paint_colour(&source, style, seed).to_rgb(), style, seed)
}

/// [`paint`] for an already decoded RGB image.
pub fn paint_rgb(image: &RgbImage, style: &StyleSpec, seed: u64) -> Result<RgbImage> {
    style.validate()?;
    let source = ColourImage::from_rgb(image, "paint source")?;
    recolour(paint_colour(&source, style, seed).to_rgb(), style, seed)
}

/// Applies the style's palette, if any, to the finished painting.
fn recolour(painted: RgbImage, style: &StyleSpec, seed: u64) -> Result<RgbImage> {
    match &style.palette {
        Some(palette) if style.palette_strength > 0.0 => {
            let options = TransferOptions {
                strength: style.palette_strength,
                seed,
                ..TransferOptions::default()
            };
            transfer_palette(&DynamicImage::ImageRgb8(painted), palette, &options)
        }
        _ => Ok(painted),
    }
}

fn paint_colour(source: &ColourImage, style: &StyleSpec, seed: u64) -> ColourImage {
    let adjusted = adjust_tone(source, style);
    tracing::debug!(style = %style.name, width = source.width, height = source.height, seed, "painting");
    match &style.kind {
        StyleKind::Painterly(p) => painterly::render(&adjusted, p, seed),
        StyleKind::Watercolour(p) => watercolour::render(&adjusted, p, seed),
        StyleKind::OilPaint(p) => oil::render(&adjusted, p, seed),
        StyleKind::Pencil(p) => sketch::pencil(&adjusted, p, seed),
        StyleKind::Charcoal(p) => sketch::charcoal(&adjusted, p, seed),
        StyleKind::PopArt(p) => pop_art::render(&adjusted, p, seed),
    }
}

fn adjust_tone(source: &ColourImage, style: &StyleSpec) -> ColourImage {
    if style.saturation == 1.0 && style.contrast == 1.0 && style.brightness == 0.0 {
        return source.clone();
    }
    let mut out = source.clone();
    for c in &mut out.data {
        let l = colour::luma(*c);
        for v in c.iter_mut() {
            let saturated = l + (*v - l) * style.saturation;
            *v = ((saturated - 0.5) * style.contrast + 0.5 + style.brightness).clamp(0.0, 1.0);
        }
    }
    out
}
