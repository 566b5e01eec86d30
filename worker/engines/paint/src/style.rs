//! Style specifications, named presets and the prompt-word table.

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

/// Preset names accepted by [`StyleSpec::from_name`].
pub const PRESET_NAMES: [&str; 9] = [
    "impressionist",
    "expressionist",
    "pointillist",
    "colourist-wash",
    "watercolour",
    "oil",
    "pencil",
    "charcoal",
    "pop-art",
];

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
        let key: String = name
            .trim()
            .to_lowercase()
            .chars()
            .map(|c| if c == '_' || c == '-' { ' ' } else { c })
            .collect();
        let key = key.split_whitespace().collect::<Vec<_>>().join(" ");
        let spec = match key.as_str() {
            "impressionist" | "impressionism" => Self::plain(
                "impressionist",
                StyleKind::Painterly(PainterlyParams::impressionist()),
            ),
            "expressionist" | "expressionism" => Self::plain(
                "expressionist",
                StyleKind::Painterly(PainterlyParams::expressionist()),
            ),
            "pointillist" | "pointillism" => Self::plain(
                "pointillist",
                StyleKind::Painterly(PainterlyParams::pointillist()),
            ),
            "colourist wash" | "colorist wash" | "wash" => Self::plain(
                "colourist-wash",
                StyleKind::Painterly(PainterlyParams::colourist_wash()),
            ),
            "watercolour" | "watercolor" | "water colour" | "water color" => Self::plain(
                "watercolour",
                StyleKind::Watercolour(WatercolourParams::default()),
            ),
            "oil" | "oil paint" | "oil painting" | "impasto" => {
                Self::plain("oil", StyleKind::OilPaint(OilParams::default()))
            }
            "pencil" | "sketch" | "pencil sketch" | "drawing" => {
                Self::plain("pencil", StyleKind::Pencil(SketchParams::pencil()))
            }
            "charcoal" | "charcoal sketch" => {
                Self::plain("charcoal", StyleKind::Charcoal(SketchParams::charcoal()))
            }
            "pop art" | "pop" | "halftone" | "comic" => {
                Self::plain("pop-art", StyleKind::PopArt(PopArtParams::default()))
            }
            _ => {
                return Err(PaintError::UnknownStyle(
                    name.to_string(),
                    PRESET_NAMES.join(", "),
                ))
            }
        };
        Ok(spec)
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

/// One row of the artist table: names that identify the artist and how to paint like them.
struct Artist {
    /// Lower-case words any of which identifies the artist (surnames, well-known spellings).
    keys: &'static [&'static str],
    display: &'static str,
    style: fn() -> StyleSpec,
}

fn preset(name: &str) -> StyleSpec {
    // PRESET names are static and always parse; fall back to impressionist for safety.
    StyleSpec::from_name(name).unwrap_or_else(|_| {
        StyleSpec::plain(
            "impressionist",
            StyleKind::Painterly(PainterlyParams::impressionist()),
        )
    })
}

fn with_tone(
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

const ARTISTS: &[Artist] = &[
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

/// Style words found in a prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StyleWords {
    /// The style to paint with, if any style word was recognised.
    pub spec: Option<StyleSpec>,
    /// Recognised words and phrases, in order of appearance ("watercolour", "Claude Monet").
    pub matched: Vec<String>,
    /// Style-ish words the table does not know ("in the style of Klimt" -> "klimt", "cubist"),
    /// for the caller to report.
    pub unknown: Vec<String>,
}

/// Medium phrases (longest first so "oil painting" wins over "oil") and their presets.
const MEDIUMS: &[(&str, &str)] = &[
    ("colourist wash", "colourist-wash"),
    ("colorist wash", "colourist-wash"),
    ("oil painting", "oil"),
    ("oil paint", "oil"),
    ("water colour", "watercolour"),
    ("water color", "watercolour"),
    ("pop art", "pop-art"),
    ("watercolours", "watercolour"),
    ("watercolors", "watercolour"),
    ("watercolour", "watercolour"),
    ("watercolor", "watercolour"),
    ("impressionistic", "impressionist"),
    ("impressionism", "impressionist"),
    ("impressionist", "impressionist"),
    ("expressionistic", "expressionist"),
    ("expressionism", "expressionist"),
    ("expressionist", "expressionist"),
    ("pointillism", "pointillist"),
    ("pointillist", "pointillist"),
    ("impasto", "oil"),
    ("charcoal", "charcoal"),
    ("pencil", "pencil"),
    ("sketch", "pencil"),
    ("drawing", "pencil"),
    ("halftone", "pop-art"),
    ("comic", "pop-art"),
    ("oil", "oil"),
];

/// Phrases that introduce an artist name.
const ARTIST_CUES: &[&str] = &[
    "in the style of",
    "in the manner of",
    "inspired by",
    "after the style of",
    "à la",
    "a la",
    "painted by",
    "drawn by",
    "by",
];

/// Words that end an artist name after a cue.
const NAME_STOPS: &[&str] = &[
    ",", "and", "with", "in", "on", "at", "of", "for", "as", "from", "using", "but", "or", "the",
    "a", "an",
];

/// Words that look like style words but are not in the tables are reported if they end like this.
const STYLE_SUFFIXES: &[&str] = &["ism", "ist", "istic", "esque"];
/// Well-known non-style words with those endings (never reported).
const NOT_STYLE: &[&str] = &[
    "artist",
    "list",
    "wrist",
    "mist",
    "tourist",
    "dentist",
    "scientist",
    "exist",
    "assist",
    "insist",
    "resist",
    "twist",
    "realistic",
    "realist",
    "photorealistic",
    "picturesque",
    "tourism",
    "this",
    "is",
    "his",
    "christ",
    "fist",
    "gist",
    "grist",
    "heist",
    "moist",
    "persist",
    "consist",
    "subsist",
    "whilst",
    "amidst",
    "kist",
    "cyclist",
    "florist",
    "pianist",
    "violinist",
    "guitarist",
    "cellist",
    "stylist",
    "dist",
    "checklist",
    "playlist",
    "wishlist",
    "organist",
    "journalist",
    "novelist",
    "specialist",
    "therapist",
    "biologist",
    "economist",
    "protagonist",
    "finalist",
    "optimist",
    "optimistic",
    "futurist",
    "futuristic",
    "minimalistic",
];

/// The prompt-word table: (word or phrase, what it selects). Mediums map to preset names;
/// artists to "artist: Display Name -> preset". Used for `--list-styles` style output and docs.
pub fn style_word_table() -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = MEDIUMS
        .iter()
        .map(|(w, p)| (w.to_string(), p.to_string()))
        .collect();
    for artist in ARTISTS {
        let spec = (artist.style)();
        for key in artist.keys {
            rows.push((
                key.to_string(),
                format!("artist: {} -> {}", artist.display, spec.name),
            ));
        }
    }
    rows
}

/// Finds style words in free text: the first medium word decides the renderer; an artist gives
/// the tone adjustments (and the renderer when no medium word is present).
pub fn parse_style_words(text: &str) -> StyleWords {
    let tokens = tokenize(text);
    let mut matched = Vec::new();
    let mut unknown = Vec::new();
    let mut medium: Option<&str> = None;
    let mut artist: Option<&Artist> = None;
    let mut consumed = vec![false; tokens.len()];
    let mut i = 0;
    while i < tokens.len() {
        if let Some((len, name_tokens)) = match_artist_cue(&tokens, i) {
            consume(&mut consumed, i, len + name_tokens.len());
            let name = name_tokens.join(" ");
            match find_artist(&name_tokens) {
                Some(a) => {
                    matched.push(a.display.to_string());
                    artist.get_or_insert(a);
                }
                // "by the sea" or "by night" is no artist: only report capitalised-looking names
                // after "by"; after the explicit cues any name is reported.
                None if !name.is_empty()
                    && (tokens[i] != "by" || looks_like_name(text, &name_tokens)) =>
                {
                    unknown.push(name)
                }
                None => {}
            }
            i += len + name_tokens.len();
            continue;
        }
        if let Some((len, preset_name)) = match_medium(&tokens, i) {
            matched.push(tokens[i..i + len].join(" "));
            medium.get_or_insert(preset_name);
            consume(&mut consumed, i, len);
            i += len;
            continue;
        }
        i += 1;
    }
    for (k, t) in tokens.iter().enumerate() {
        if consumed[k] {
            continue;
        }
        if let Some(a) = find_artist(std::slice::from_ref(t)) {
            matched.push(a.display.to_string());
            artist.get_or_insert(a);
        } else if STYLE_SUFFIXES
            .iter()
            .any(|s| t.ends_with(s) && t.len() > s.len() + 2)
            && !NOT_STYLE.contains(&t.as_str())
        {
            unknown.push(t.clone());
        }
    }
    let spec = match (medium, artist) {
        (Some(m), Some(a)) => {
            let tone = (a.style)();
            Some(with_tone(
                preset(m),
                &format!("{}+{}", m, tone.name),
                tone.saturation,
                tone.contrast,
                tone.brightness,
            ))
        }
        (Some(m), None) => Some(preset(m)),
        (None, Some(a)) => Some((a.style)()),
        (None, None) => None,
    };
    StyleWords {
        spec,
        matched,
        unknown,
    }
}

/// Lower-case words; punctuation becomes a "," token so names never run across clauses.
fn tokenize(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut word = String::new();
    let flush = |word: &mut String, tokens: &mut Vec<String>| {
        let cleaned = word
            .trim_matches(|c| c == '\'' || c == '-')
            .trim_end_matches("'s")
            .to_string();
        if !cleaned.is_empty() {
            tokens.push(cleaned);
        }
        word.clear();
    };
    for c in text.to_lowercase().chars() {
        if c.is_alphanumeric() || c == '\'' || c == '-' {
            word.push(c);
        } else {
            flush(&mut word, &mut tokens);
            if ",.;:!?()[]\"".contains(c) {
                tokens.push(",".to_string());
            }
        }
    }
    flush(&mut word, &mut tokens);
    tokens
}

fn consume(consumed: &mut [bool], start: usize, len: usize) {
    for c in consumed.iter_mut().skip(start).take(len) {
        *c = true;
    }
}

fn match_medium(tokens: &[String], i: usize) -> Option<(usize, &'static str)> {
    MEDIUMS.iter().find_map(|(phrase, preset_name)| {
        let words: Vec<&str> = phrase.split(' ').collect();
        let fits = tokens.len() >= i + words.len()
            && words.iter().enumerate().all(|(k, w)| tokens[i + k] == *w);
        fits.then_some((words.len(), *preset_name))
    })
}

/// If an artist cue starts at `i`, returns its length and the (up to 3) name tokens after it.
fn match_artist_cue(tokens: &[String], i: usize) -> Option<(usize, Vec<String>)> {
    ARTIST_CUES.iter().find_map(|cue| {
        let words: Vec<&str> = cue.split(' ').collect();
        let fits = tokens.len() >= i + words.len()
            && words.iter().enumerate().all(|(k, w)| tokens[i + k] == *w);
        if !fits {
            return None;
        }
        let name: Vec<String> = tokens[i + words.len()..]
            .iter()
            .take_while(|t| {
                !NAME_STOPS.contains(&t.as_str())
                    && match_medium(std::slice::from_ref(*t), 0).is_none()
            })
            .take(3)
            .cloned()
            .collect();
        Some((words.len(), name))
    })
}

fn find_artist(name_tokens: &[String]) -> Option<&'static Artist> {
    let joined = name_tokens.concat();
    ARTISTS.iter().find(|a| {
        a.keys
            .iter()
            .any(|k| name_tokens.iter().any(|t| t == k) || joined == *k)
    })
}

/// True if the words appear capitalised in the original text (a proper name).
fn looks_like_name(text: &str, name_tokens: &[String]) -> bool {
    name_tokens.first().is_some_and(|first| {
        text.split(|c: char| !c.is_alphanumeric())
            .any(|w| w.to_lowercase() == *first && w.chars().next().is_some_and(char::is_uppercase))
    })
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

    #[test]
    fn parses_mediums_and_artists() {
        let w = parse_style_words("A watercolor of my dog at the beach");
        assert_eq!(
            w.spec.as_ref().map(|s| s.name.as_str()),
            Some("watercolour")
        );
        assert!(w.unknown.is_empty());

        let w = parse_style_words("family picnic, in the style of Van Gogh");
        assert_eq!(w.spec.as_ref().map(|s| s.name.as_str()), Some("van-gogh"));

        let w = parse_style_words("lake inspired by Monet, oil painting");
        let spec = w.spec.expect("spec");
        assert!(matches!(spec.kind, StyleKind::OilPaint(_)));
        assert!(spec.name.contains("monet"));
    }

    #[test]
    fn reports_unknown_style_words() {
        let w = parse_style_words("portrait in the style of Klimt, cubist");
        assert!(w.unknown.contains(&"klimt".to_string()), "{w:?}");
        assert!(w.unknown.contains(&"cubist".to_string()), "{w:?}");
        assert!(w.spec.is_none());
        let w = parse_style_words("walk by the sea, pencil sketch");
        assert!(w.unknown.is_empty(), "{w:?}");
        assert_eq!(w.spec.map(|s| s.name), Some("pencil".to_string()));
    }
}
