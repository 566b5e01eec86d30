//! What the grammar's passes ask of the token stream: the unused word at a position, phrase
//! matches (the last word may be plural), counts, names, and marking tokens as consumed.

use super::phrases::{Phrase, LEXICON};
use super::Parser;
use crate::lexicon::{NEVER_NAMES, NUMBER_WORDS, SELF_WORDS};
use crate::tokens::{singular, Token, TokenKind};

impl Parser<'_> {
    /// The unused word or number token at `i`.
    pub(super) fn word(&self, i: usize) -> Option<&Token> {
        let token = self.tokens.get(i)?;
        (token.kind != TokenKind::Punct && !self.used.get(i).copied().unwrap_or(true))
            .then_some(token)
    }

    pub(super) fn norm(&self, i: usize) -> Option<&str> {
        self.word(i).map(|t| t.norm.as_str())
    }

    pub(super) fn is_norm(&self, i: usize, options: &[&str]) -> bool {
        self.norm(i).is_some_and(|n| options.contains(&n))
    }

    pub(super) fn consume(&mut self, from: usize, to: usize) {
        for flag in self.used.iter_mut().take(to).skip(from) {
            *flag = true;
        }
    }

    pub(super) fn mark_subject(&mut self, from: usize, to: usize) {
        self.consume(from, to);
        for flag in self.subject.iter_mut().take(to).skip(from) {
            *flag = true;
        }
    }

    pub(super) fn span(&self, from: usize, to: usize) -> String {
        match (
            self.tokens.get(from),
            to.checked_sub(1).and_then(|last| self.tokens.get(last)),
        ) {
            (Some(first), Some(last)) if first.start <= last.end => self
                .cleaned
                .get(first.start..last.end)
                .unwrap_or_default()
                .to_string(),
            _ => String::new(),
        }
    }

    /// Display text of tokens `from..to` without a trailing possessive ("Anna Schmidt").
    pub(super) fn name_text(&self, from: usize, to: usize) -> String {
        let mut name = String::new();
        for i in from..to {
            let Some(token) = self.tokens.get(i) else {
                break;
            };
            if i > from {
                name.push(if token.hyphen_joined { '-' } else { ' ' });
            }
            name.push_str(&token.text);
        }
        name
    }

    /// Matches a phrase starting at `i`; the last word may be plural. Returns the end (exclusive)
    /// and whether the match was plural.
    pub(super) fn match_words(&self, i: usize, words: &[String]) -> Option<(usize, bool)> {
        let mut plural = false;
        for (offset, expected) in words.iter().enumerate() {
            let token = self.word(i + offset)?;
            // A possessive can only end a phrase ("my dog's ball" ends "dog").
            if token.possessive && offset + 1 < words.len() {
                return None;
            }
            if token.norm == *expected {
                continue;
            }
            let is_last = offset + 1 == words.len();
            if is_last && singular(&token.norm) == *expected {
                plural = true;
                continue;
            }
            return None;
        }
        Some((i + words.len(), plural))
    }

    pub(super) fn longest<'p, T>(
        &self,
        i: usize,
        table: &'p [Phrase<T>],
    ) -> Option<(usize, bool, &'p T)> {
        table.iter().find_map(|phrase| {
            self.match_words(i, &phrase.words)
                .map(|(end, plural)| (end, plural, &phrase.value))
        })
    }

    /// A count at `i`: digits, a number word, "a couple of", "a pair of". Returns (count, end).
    pub(super) fn count_at(&self, i: usize) -> Option<(u32, usize)> {
        let token = self.word(i)?;
        if token.kind == TokenKind::Number {
            return token.text.parse::<u32>().ok().map(|n| (n, i + 1));
        }
        if matches!(token.norm.as_str(), "a" | "the")
            && self.is_norm(i + 1, &["couple", "pair"])
            && self.is_norm(i + 2, &["of"])
        {
            return Some((2, i + 3));
        }
        if matches!(token.norm.as_str(), "both" | "pair" | "couple") {
            return None;
        }
        NUMBER_WORDS
            .iter()
            .find(|(word, _)| *word == token.norm)
            .map(|(_, n)| (*n, i + 1))
    }

    pub(super) fn is_known(&self, token: &Token) -> bool {
        LEXICON.known.contains(token.norm.as_str())
            || LEXICON.known.contains(singular(&token.norm).as_str())
    }

    /// A token that can be (part of) a name: capitalised and not a vocabulary word, or any unknown
    /// word when `allow_lowercase` ("my dog called sunny").
    pub(super) fn is_name_token(&self, i: usize, allow_lowercase: bool) -> bool {
        let Some(token) = self.word(i) else {
            return false;
        };
        if token.kind != TokenKind::Word
            || !token.text.chars().next().is_some_and(char::is_alphabetic)
        {
            return false;
        }
        if SELF_WORDS.contains(&token.norm.as_str())
            || LEXICON.function.contains(token.norm.as_str())
            || NEVER_NAMES.contains(&token.norm.as_str())
        {
            return false;
        }
        if token.capitalised {
            // "I" is a self reference; a capitalised vocabulary word at a sentence start is that word.
            return !(token.sentence_start && self.is_known(token));
        }
        allow_lowercase && !self.is_known(token)
    }

    /// A run of name tokens from `i`: "Anna", "Anna Schmidt", "Jean-Luc". Stops after a possessive.
    pub(super) fn name_run(&self, i: usize, allow_lowercase: bool) -> Option<usize> {
        if !self.is_name_token(i, allow_lowercase) {
            return None;
        }
        let mut end = i + 1;
        while end - i < 4 {
            let previous_possessive = self.tokens.get(end - 1).is_some_and(|t| t.possessive);
            let joined = self.tokens.get(end).is_some_and(|t| t.hyphen_joined);
            if previous_possessive
                || !(joined || self.word(end).is_some_and(|t| t.capitalised))
                || !self.is_name_token(end, joined)
            {
                break;
            }
            end += 1;
        }
        Some(end)
    }
}
