//! Style specifications and the named presets; what a prompt's words ask for is read in the child
//! modules: `words` (parsing a prompt's style words), `artists` (the artist table: who paints like
//! whom) and `vocabulary` (mediums, the phrases that introduce an artist, words that are no style).

mod artists;
mod vocabulary;
mod words;

pub use words::{parse_style_words, style_word_table, StyleWords};

use serde::{Deserialize, Serialize};

use crate::error::{PaintError, Result};
use crate::oil::OilParams;
use crate::painterly::PainterlyParams;
use crate::palette::Palette;
use crate::pop_art::PopArtParams;
use crate::sketch::SketchParams;
use crate::watercolour::WatercolourParams;

/// Which renderer and its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "renderer", content = "params", rename_all = "snake_case")]
pub enum StyleKind {
    Painterly(PainterlyParams),
    Watercolour(WatercolourParams),
    OilPaint(OilParams),
    Pencil(SketchParams),
    Charcoal(SketchParams),
    PopArt(PopArtParams),
}

/// A complete style: a preset name (for logs and cache keys), the renderer, and global tone
/// adjustments applied to the photo before painting (artists differ in key and saturation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StyleSpec {
    pub name: String,
    pub kind: StyleKind,
    /// Saturation multiplier (1 = unchanged).
    pub saturation: f32,
    /// Contrast multiplier around mid grey (1 = unchanged).
    pub contrast: f32,
    /// Brightness offset in [-0.5, 0.5].
    pub brightness: f32,
    /// Colours to recolour the painting toward ("in my colours", "in the colours of my Hawaii
    /// album"): applied after painting with [`crate::transfer_palette`] at `palette_strength`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub palette: Option<Palette>,
    /// Strength of the palette transfer in [0,1].
    #[serde(default = "default_palette_strength")]
    pub palette_strength: f32,
}

fn default_palette_strength() -> f32 {
    0.8
}

/// Preset names accepted by [`StyleSpec::from_name`] (the vocabulary shared with the planner).
pub use reverie_styles::PRESET_NAMES;

impl StyleSpec {
    fn plain(name: &str, kind: StyleKind) -> Self {
        Self {
            name: name.to_string(),
            kind,
            saturation: 1.0,
            contrast: 1.0,
            brightness: 0.0,
            palette: None,
            palette_strength: default_palette_strength(),
        }
    }

    /// A preset by name; accepts the names in [`PRESET_NAMES`] and the spellings of the prompt
    /// table ("watercolor", "oil painting", "pop art", "colorist wash", "sketch", ...).
    pub fn from_name(name: &str) -> Result<StyleSpec> {
        let unknown = || PaintError::UnknownStyle(name.to_string(), PRESET_NAMES.join(", "));
        let preset = reverie_styles::preset_name(name).ok_or_else(unknown)?;
        let kind = match preset {
            "impressionist" => StyleKind::Painterly(PainterlyParams::impressionist()),
            "expressionist" => StyleKind::Painterly(PainterlyParams::expressionist()),
            "pointillist" => StyleKind::Painterly(PainterlyParams::pointillist()),
            "colourist-wash" => StyleKind::Painterly(PainterlyParams::colourist_wash()),
            "watercolour" => StyleKind::Watercolour(WatercolourParams::default()),
            "oil" => StyleKind::OilPaint(OilParams::default()),
            "pencil" => StyleKind::Pencil(SketchParams::pencil()),
            "charcoal" => StyleKind::Charcoal(SketchParams::charcoal()),
            "pop-art" => StyleKind::PopArt(PopArtParams::default()),
            other => unreachable!("reverie_styles::PRESET_NAMES has no painter for {other}"),
        };
        Ok(Self::plain(preset, kind))
    }

    /// The same style, recoloured toward `palette` after painting.
    pub fn with_palette(mut self, palette: Palette) -> Self {
        self.palette = Some(palette);
        self
    }

    /// Checks every parameter range.
    pub fn validate(&self) -> Result<()> {
        let bad = |field, value: f32, reason| {
            Err(PaintError::InvalidParameter {
                field,
                value: value as f64,
                reason,
            })
        };
        if !(0.0..=4.0).contains(&self.saturation) {
            return bad("saturation", self.saturation, "must be in [0, 4]");
        }
        if !(0.0..=4.0).contains(&self.contrast) {
            return bad("contrast", self.contrast, "must be in [0, 4]");
        }
        if !(-0.5..=0.5).contains(&self.brightness) {
            return bad("brightness", self.brightness, "must be in [-0.5, 0.5]");
        }
        if !(0.0..=1.0).contains(&self.palette_strength) {
            return bad(
                "palette_strength",
                self.palette_strength,
                "must be in [0, 1]",
            );
        }
        if self.palette.as_ref().is_some_and(Palette::is_empty) {
            return Err(PaintError::EmptyPalette("style palette"));
        }
        match &self.kind {
            StyleKind::Painterly(p) => p.validate(),
            StyleKind::OilPaint(p) if !(p.radius >= 1.0 && p.radius <= 32.0) => {
                bad("radius", p.radius, "must be in [1, 32]")
            }
            StyleKind::Watercolour(p)
                if !(p.abstraction_radius >= 1.0 && p.abstraction_radius <= 32.0) =>
            {
                bad(
                    "abstraction_radius",
                    p.abstraction_radius,
                    "must be in [1, 32]",
                )
            }
            StyleKind::PopArt(p) if !(p.dot_spacing >= 2.0 && p.dot_spacing <= 64.0) => {
                bad("dot_spacing", p.dot_spacing, "must be in [2, 64]")
            }
            StyleKind::Pencil(p) | StyleKind::Charcoal(p)
                if !(p.line_width > 0.0 && p.line_width <= 32.0) =>
            {
                bad("line_width", p.line_width, "must be in (0, 32]")
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_name_parses_and_validates() {
        for name in PRESET_NAMES {
            let spec = StyleSpec::from_name(name).expect(name);
            spec.validate().expect(name);
        }
        assert!(StyleSpec::from_name("Oil Painting").is_ok());
        assert!(StyleSpec::from_name("cubism").is_err());
    }
}
