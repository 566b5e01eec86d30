//! Reading a prompt's style words: the first medium word decides the renderer; an artist (named
//! after a cue such as "in the style of", or alone) gives the tone; style-ish words the tables do not
//! know are reported.

use serde::{Deserialize, Serialize};

use super::artists::{find_artist, preset, with_tone, Artist, ARTISTS};
use super::vocabulary::{ARTIST_CUES, MEDIUMS, NAME_STOPS, NOT_STYLE, STYLE_SUFFIXES};
use super::StyleSpec;

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
    use crate::style::StyleKind;

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
