//! The setting passes: light ("at sunset"), albums named as a source ("from my Hawaii album"),
//! places after a preposition ("in Paris", "at home") and scenes ("on the beach").

use super::phrases::LEXICON;
use super::Parser;
use crate::lexicon::{LIGHT_PREPOSITIONS, PLACE_OPENERS, PLACE_PREPOSITIONS, SELF_WORDS};
use crate::tokens::{Token, TokenKind};
use crate::{AlbumMention, PlaceMention};

impl Parser<'_> {
    /// Light words with their preposition ("at sunset", "in the golden hour", "by moonlight").
    pub(super) fn light(&mut self) {
        for i in 0..self.tokens.len() {
            let Some((end, _, light)) = self.longest(i, &LEXICON.light) else {
                continue;
            };
            let light = *light;
            if !self.modifies_noun(end) {
                let start = self.preposition_start(i, &LIGHT_PREPOSITIONS);
                self.consume(start, end);
            }
            if !self.out.setting.light.contains(&light) {
                self.out.setting.light.push(light);
            }
        }
    }

    /// Whether a scene or light word ending before `end` modifies the noun that follows ("winter
    /// cabin", "night sky"): it is recorded but stays in the free text, or the noun would lose it.
    fn modifies_noun(&self, end: usize) -> bool {
        self.word(end).is_some_and(|t| {
            t.kind == TokenKind::Word
                && !LEXICON.function.contains(t.norm.as_str())
                && !PLACE_PREPOSITIONS.contains(&t.norm.as_str())
                && !matches!(
                    t.norm.as_str(),
                    "and" | "or" | "with" | "while" | "like" | "as" | "after" | "before" | "during"
                )
                && self.longest(end, &LEXICON.scenes).is_none()
                && self.longest(end, &LEXICON.light).is_none()
                && self.longest(end, &LEXICON.styles).is_none()
        })
    }

    /// Where a phrase at `i` really starts once its preposition and article are included.
    fn preposition_start(&self, i: usize, prepositions: &[&str]) -> usize {
        let mut start = i;
        if start >= 1 && self.is_norm(start - 1, &["the", "a"]) {
            start -= 1;
        }
        if start >= 1 && self.is_norm(start - 1, prepositions) {
            start -= 1;
        } else if start != i {
            // An article without a preposition belongs to the free text ("a sunset" -> consumed anyway,
            // the article alone would dangle).
            return start;
        }
        start
    }

    /// "from my Hawaii album", "our wedding album", "the album Summer 2023".
    pub(super) fn albums(&mut self) {
        for i in 0..self.tokens.len() {
            if !self.is_norm(i, &["album"]) {
                continue;
            }
            // Name before "album": walk back over unused words up to a determiner.
            let mut start = i;
            while start > 0
                && i - start < 4
                && self.word(start - 1).is_some()
                && !self.is_norm(
                    start - 1,
                    &["my", "our", "the", "from", "of", "in", "an", "a"],
                )
            {
                start -= 1;
            }
            let mut phrase_start = start;
            if phrase_start > 0 && self.is_norm(phrase_start - 1, &["my", "our", "the"]) {
                phrase_start -= 1;
            }
            if phrase_start > 0 && self.is_norm(phrase_start - 1, &["from", "of", "in"]) {
                phrase_start -= 1;
            }
            let (name, from, to) = if start < i {
                (self.name_text(start, i), phrase_start, i + 1)
            } else if let Some(end) = self.album_name_after(i + 1) {
                (self.name_text(i + 1, end), phrase_start, end)
            } else {
                continue;
            };
            let text = self.span(from, to);
            self.consume(from, to);
            self.out.albums.push(AlbumMention { text, name });
        }
    }

    fn album_name_after(&self, i: usize) -> Option<usize> {
        let mut end = i;
        while self
            .word(end)
            .is_some_and(|t| t.capitalised || t.kind == TokenKind::Number)
            && end - i < 4
        {
            end += 1;
        }
        (end > i).then_some(end)
    }

    /// "in Paris", "at home", "near Lake Como", "in honolulu".
    pub(super) fn places(&mut self) {
        for i in 0..self.tokens.len() {
            if !self.is_norm(i, &PLACE_PREPOSITIONS) {
                continue;
            }
            let mut j = i + 1;
            if self.is_norm(i, &["in"])
                && self.is_norm(j, &["front"])
                && self.is_norm(j + 1, &["of"])
            {
                j += 2;
            }
            // "at home", "at our house", "at my place"
            if self.is_norm(j, &["home"]) {
                self.push_place(i, j + 1, "home".to_string());
                continue;
            }
            if self.is_norm(j, &["my", "our"]) && self.is_norm(j + 1, &["home", "house", "place"]) {
                self.push_place(i, j + 2, "home".to_string());
                continue;
            }
            let with_article = self.is_norm(j, &["the"]);
            let name_start = if with_article { j + 1 } else { j };
            if let Some(end) = self.place_run(name_start) {
                let name = self.name_text(name_start, end);
                self.push_place(i, end, name);
                continue;
            }
            // A lowercase unknown word straight after the preposition is a place written in lower
            // case ("in paris"); with an article it is more likely a thing ("in the garage").
            if !with_article {
                let is_lower_place = self.word(j).is_some_and(|t| {
                    t.kind == TokenKind::Word
                        && !t.capitalised
                        && !self.is_known(t)
                        && t.text.chars().count() >= 3
                        && t.text.chars().all(|c| c.is_alphabetic() || c == '\'')
                });
                if is_lower_place {
                    let name = self.name_text(j, j + 1);
                    self.push_place(i, j + 1, name);
                }
            }
        }
    }

    /// A capitalised run for a place: like a name, but vocabulary words may follow a first proper
    /// word ("Waikiki Beach", "Lake Como", "New York City").
    fn place_run(&self, i: usize) -> Option<usize> {
        let first = self.word(i)?;
        if !first.capitalised
            || first.kind != TokenKind::Word
            || !self.is_name_token(i, false) && !self.is_place_word(first)
        {
            return None;
        }
        let mut end = i + 1;
        while end - i < 5
            && self
                .word(end)
                .is_some_and(|t| t.capitalised && !SELF_WORDS.contains(&t.norm.as_str()))
            && !self.tokens.get(end - 1).is_some_and(|t| t.possessive)
        {
            end += 1;
        }
        // A run made only of vocabulary words is not a place ("in Watercolor").
        let all_known = (i..end).all(|k| {
            self.word(k)
                .is_some_and(|t| self.is_known(t) && !self.is_place_word(t))
        });
        (!all_known).then_some(end)
    }

    /// Geographic words that start place names ("Lake Como", "Mount Fuji").
    fn is_place_word(&self, token: &Token) -> bool {
        PLACE_OPENERS.contains(&token.norm.as_str())
    }

    fn push_place(&mut self, from: usize, to: usize, name: String) {
        let text = self.span(from, to);
        self.consume(from, to);
        if !self.out.setting.places.iter().any(|p| p.name == name) {
            self.out.setting.places.push(PlaceMention { text, name });
        }
    }

    /// Scene words with their preposition ("on the beach", "in the snowy mountains").
    pub(super) fn scenes(&mut self) {
        for i in 0..self.tokens.len() {
            let Some((end, _, scene)) = self.longest(i, &LEXICON.scenes) else {
                continue;
            };
            let scene = (*scene).to_string();
            if !self.modifies_noun(end) {
                let start = self.preposition_start(i, &PLACE_PREPOSITIONS);
                self.consume(start, end);
            }
            if !self.out.setting.scenes.contains(&scene) {
                self.out.setting.scenes.push(scene);
            }
        }
    }
}
