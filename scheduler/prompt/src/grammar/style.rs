//! The style passes, run first: the palette ("in my colours"), artists ("inspired by Monet") and
//! art styles ("watercolour"). A palette must be read before "in" can start a place, and an artist
//! before "Monet" can be a name.

use super::phrases::LEXICON;
use super::Parser;
use crate::PaletteRequest;

impl Parser<'_> {
    /// "in my colours", "in the colours of my Hawaii album", "with the palette of Honolulu".
    pub(super) fn palette(&mut self) {
        for i in 0..self.tokens.len() {
            if self.out.style.palette.is_some() {
                return;
            }
            let start = if self.is_norm(i, &["in", "with", "using", "use"]) {
                i + 1
            } else {
                i
            };
            // "in my colours", "in our own palette", "my color palette"
            if self.is_norm(start, &["my", "our"]) {
                let mut j = start + 1;
                if self.is_norm(j, &["own"]) {
                    j += 1;
                }
                if self.is_norm(j, &["colors", "color", "palette", "tones"]) {
                    let mut end = j + 1;
                    if self.is_norm(end, &["palette"]) {
                        end += 1;
                    }
                    // "in my colours" is the whole library unless an album follows ("my colours of Hawaii").
                    if !self.is_norm(end, &["of", "from"]) {
                        self.consume(i, end);
                        self.out.style.palette = Some(PaletteRequest::Library);
                        continue;
                    }
                }
            }
            // "the colours of X", "the palette of X", "colours from X"
            let mut j = start;
            if self.is_norm(j, &["the"]) {
                j += 1;
            }
            if !(self.is_norm(j, &["colors", "palette", "color", "tones"])
                && self.is_norm(j + 1, &["of", "from"]))
            {
                continue;
            }
            let mut k = j + 2;
            let possessive = self.is_norm(k, &["my", "our", "the"]);
            if possessive {
                k += 1;
            }
            let name_start = k;
            while self.word(k).is_some()
                && !self.is_norm(
                    k,
                    &[
                        "album", "photos", "pictures", "and", "with", "in", "at", "on", "by",
                    ],
                )
            {
                k += 1;
                if k - name_start >= 4 {
                    break;
                }
            }
            let is_album = self.is_norm(k, &["album"]);
            let is_photos = self.is_norm(k, &["photos", "pictures"]);
            let name = self.name_text(name_start, k);
            let end = if is_album || is_photos { k + 1 } else { k };
            if name.is_empty() {
                if is_photos && possessive {
                    self.consume(i, end);
                    self.out.style.palette = Some(PaletteRequest::Library);
                }
                continue;
            }
            self.consume(i, end);
            self.out.style.palette = Some(if is_album || is_photos {
                PaletteRequest::Album { name }
            } else {
                PaletteRequest::Named { name }
            });
        }
    }

    /// Artists after a trigger ("inspired by", "in the style of", "like", "à la", "by", "after"),
    /// before "style"/"esque", or bare when the name is unmistakable.
    pub(super) fn artists(&mut self) {
        let mut i = 0;
        while i < self.tokens.len() {
            i = self.artist_at(i).unwrap_or(i + 1);
        }
    }

    fn artist_at(&mut self, i: usize) -> Option<usize> {
        let trigger_end = self.artist_trigger(i);
        let start = trigger_end.unwrap_or(i);
        let mut name_start = start;
        if trigger_end.is_some() && self.is_norm(name_start, &["the", "a", "an"]) {
            name_start += 1;
        }
        if let Some((end, _, (display, bare))) = self.longest(name_start, &LEXICON.artists) {
            let (display, bare) = (*display, *bare);
            let suffix_end = self.style_suffix(end);
            let triggered = trigger_end.is_some() || suffix_end > end;
            if triggered || bare {
                self.consume(i, suffix_end);
                self.push_artist(display);
                return Some(suffix_end);
            }
            return None;
        }
        trigger_end?;
        // A style after a trigger is a style, left for the style pass ("in the style of a comic").
        if self.longest(name_start, &LEXICON.styles).is_some() {
            return None;
        }
        // An unknown capitalised name after a strong trigger is taken for an artist the model may know.
        let weak = self.is_norm(i, &["like", "by", "after"]);
        let end = self.name_run(name_start, false)?;
        if weak {
            return None;
        }
        let name = self.name_text(name_start, end);
        let end = self.style_suffix(end);
        self.consume(i, end);
        self.push_artist(&name);
        Some(end)
    }

    /// The end of an artist trigger starting at `i`.
    fn artist_trigger(&self, i: usize) -> Option<usize> {
        let patterns: [&[&str]; 9] = [
            &["in", "the", "style", "of"],
            &["in", "the", "manner", "of"],
            &["style", "of"],
            &["inspired", "by"],
            &["a", "la"],
            &["like"],
            &["painted", "by"],
            &["by"],
            &["after"],
        ];
        patterns.iter().find_map(|pattern| {
            pattern
                .iter()
                .enumerate()
                .all(|(offset, word)| self.norm(i + offset) == Some(*word))
                .then_some(i + pattern.len())
        })
    }

    /// Consumes "style", "esque", "like", "'s style" after an artist.
    fn style_suffix(&self, end: usize) -> usize {
        if self.is_norm(end, &["style", "esque", "inspired"]) {
            end + 1
        } else {
            end
        }
    }

    fn push_artist(&mut self, name: &str) {
        if !self.out.style.artists.iter().any(|a| a == name) {
            self.out.style.artists.push(name.to_string());
        }
    }

    /// Art styles, with "in", "as a", "in the style of" before and "style", "painting" after.
    pub(super) fn styles(&mut self) {
        for i in 0..self.tokens.len() {
            let Some((end, _, style)) = self.longest(i, &LEXICON.styles) else {
                continue;
            };
            let style = (*style).to_string();
            let mut start = i;
            if start >= 1 && self.is_norm(start - 1, &["a", "an", "the"]) {
                start -= 1;
            }
            if start >= 4 && self.artist_trigger(start - 4) == Some(start) {
                start -= 4;
            } else if start >= 2 && self.artist_trigger(start - 2) == Some(start) {
                start -= 2;
            } else if start >= 1 && self.is_norm(start - 1, &["in", "as"]) {
                start -= 1;
            }
            let mut stop = end;
            if self.is_norm(
                stop,
                &[
                    "style",
                    "painting",
                    "drawing",
                    "art",
                    "illustration",
                    "portrait",
                    "render",
                ],
            ) {
                stop += 1;
            }
            self.consume(start, stop);
            if !self.out.style.styles.contains(&style) {
                self.out.style.styles.push(style);
            }
        }
    }
}
