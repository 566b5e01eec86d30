//! The artist table: names that identify an artist (surnames, well-known spellings) and the preset
//! and tone adjustments that paint like them.

use super::{StyleKind, StyleSpec};
use crate::painterly::PainterlyParams;
use crate::pop_art::PopArtParams;

/// One row of the artist table: names that identify the artist and how to paint like them.
pub(super) struct Artist {
    /// Lower-case words any of which identifies the artist (surnames, well-known spellings).
    pub(super) keys: &'static [&'static str],
    pub(super) display: &'static str,
    pub(super) style: fn() -> StyleSpec,
}

pub(super) fn preset(name: &str) -> StyleSpec {
    // PRESET names are static and always parse; fall back to impressionist for safety.
    StyleSpec::from_name(name).unwrap_or_else(|_| {
        StyleSpec::plain(
            "impressionist",
            StyleKind::Painterly(PainterlyParams::impressionist()),
        )
    })
}

pub(super) fn with_tone(
    mut spec: StyleSpec,
    name: &str,
    saturation: f32,
    contrast: f32,
    brightness: f32,
) -> StyleSpec {
    spec.name = name.to_string();
    spec.saturation = saturation;
    spec.contrast = contrast;
    spec.brightness = brightness;
    spec
}

pub(super) const ARTISTS: &[Artist] = &[
    Artist {
        keys: &["monet"],
        display: "Claude Monet",
        style: || with_tone(preset("impressionist"), "monet", 1.1, 0.85, 0.06),
    },
    Artist {
        keys: &["renoir"],
        display: "Pierre-Auguste Renoir",
        style: || with_tone(preset("impressionist"), "renoir", 1.2, 0.9, 0.05),
    },
    Artist {
        keys: &["pissarro", "sisley"],
        display: "Camille Pissarro / Alfred Sisley",
        style: || with_tone(preset("impressionist"), "pissarro", 0.95, 0.9, 0.03),
    },
    Artist {
        keys: &["degas"],
        display: "Edgar Degas",
        style: || with_tone(preset("impressionist"), "degas", 0.9, 1.0, 0.0),
    },
    Artist {
        keys: &["gogh", "vangogh"],
        display: "Vincent van Gogh",
        style: || {
            let mut p = PainterlyParams::expressionist();
            p.curvature_filter = 0.6;
            p.max_stroke_length = 24;
            p.opacity = 0.85;
            with_tone(
                StyleSpec::plain("van-gogh", StyleKind::Painterly(p)),
                "van-gogh",
                1.45,
                1.15,
                0.0,
            )
        },
    },
    Artist {
        keys: &["munch", "kirchner", "nolde"],
        display: "Edvard Munch / Die Brücke",
        style: || with_tone(preset("expressionist"), "munch", 1.3, 1.2, -0.03),
    },
    Artist {
        keys: &["seurat", "signac"],
        display: "Georges Seurat / Paul Signac",
        style: || with_tone(preset("pointillist"), "seurat", 1.15, 0.95, 0.04),
    },
    Artist {
        keys: &["cezanne", "cézanne"],
        display: "Paul Cézanne",
        style: || {
            let mut p = PainterlyParams::impressionist();
            p.curvature_filter = 0.1;
            p.max_stroke_length = 6;
            with_tone(
                StyleSpec::plain("cezanne", StyleKind::Painterly(p)),
                "cezanne",
                1.1,
                1.05,
                0.0,
            )
        },
    },
    Artist {
        keys: &["matisse", "derain"],
        display: "Henri Matisse / Fauvism",
        style: || with_tone(preset("colourist-wash"), "matisse", 1.6, 1.1, 0.03),
    },
    Artist {
        keys: &["turner"],
        display: "J. M. W. Turner",
        style: || with_tone(preset("watercolour"), "turner", 0.9, 0.8, 0.08),
    },
    Artist {
        keys: &["sargent", "homer"],
        display: "John Singer Sargent / Winslow Homer",
        style: || with_tone(preset("watercolour"), "sargent", 1.05, 1.05, 0.02),
    },
    Artist {
        keys: &["rembrandt", "caravaggio"],
        display: "Rembrandt / Caravaggio",
        style: || with_tone(preset("oil"), "rembrandt", 0.85, 1.35, -0.12),
    },
    Artist {
        keys: &["vermeer"],
        display: "Johannes Vermeer",
        style: || with_tone(preset("oil"), "vermeer", 0.95, 1.1, -0.03),
    },
    Artist {
        keys: &["leonardo", "vinci", "dürer", "durer"],
        display: "Leonardo da Vinci / Albrecht Dürer",
        style: || with_tone(preset("pencil"), "da-vinci", 1.0, 1.1, 0.0),
    },
    Artist {
        keys: &["kollwitz"],
        display: "Käthe Kollwitz",
        style: || with_tone(preset("charcoal"), "kollwitz", 1.0, 1.2, 0.0),
    },
    Artist {
        keys: &["warhol"],
        display: "Andy Warhol",
        style: || with_tone(preset("pop-art"), "warhol", 1.5, 1.2, 0.0),
    },
    Artist {
        keys: &["lichtenstein"],
        display: "Roy Lichtenstein",
        style: || {
            let p = PopArtParams {
                levels: 4,
                outline: 2.5,
                ..PopArtParams::default()
            };
            with_tone(
                StyleSpec::plain("lichtenstein", StyleKind::PopArt(p)),
                "lichtenstein",
                1.3,
                1.1,
                0.0,
            )
        },
    },
];

pub(super) fn find_artist(name_tokens: &[String]) -> Option<&'static Artist> {
    let joined = name_tokens.concat();
    ARTISTS.iter().find(|a| {
        a.keys
            .iter()
            .any(|k| name_tokens.iter().any(|t| t == k) || joined == *k)
    })
}
