//! The second stage of prompt understanding: the grammar, a rule-based parser over the tokens.
//!
//! The prompt is tokenised, likely misspellings of vocabulary words are corrected (and reported),
//! then passes run in a fixed order, each consuming the tokens it understands: palette, artists,
//! styles, light, albums, subjects, places, scenes, names. Objects are recorded without being
//! consumed. Whatever is left becomes the free text, with dangling connectors trimmed.
//! The order matters: "in my colours" must be a palette before "in" can start a place, and "in the
//! style of Monet" must be an artist before "Monet" can be a name.
//!
//! The passes live with what they read: `style` (palette, artists, styles), `setting` (light,
//! albums, places, scenes) and `subjects` (groups, pets and relations, self, names, objects); this
//! module runs them and holds the first (corrections) and the last (free text). `reading` is what
//! every pass asks of the token stream, `phrases` the vocabularies compiled for matching.

mod phrases;
mod reading;
mod setting;
mod style;
mod subjects;

use super::tokens::{clean_prompt, tokenize, Token, TokenKind};
use super::{Correction, ParsedPrompt};
use phrases::LEXICON;

/// Prompts longer than this are parsed only up to here: the request layer rejects them anyway, and
/// the parser must stay cheap for any input it is handed.
const MAX_PARSED_BYTES: usize = 8 * 1024;

/// Parses a prompt. Never fails: anything not understood ends up in `free_text`.
pub fn parse_prompt(prompt: &str) -> ParsedPrompt {
    let mut end = prompt.len().min(MAX_PARSED_BYTES);
    while !prompt.is_char_boundary(end) {
        end -= 1;
    }
    let cleaned = clean_prompt(&prompt[..end]);
    let mut parser = Parser::new(&cleaned);
    parser.correct_misspellings();
    parser.palette();
    parser.artists();
    parser.styles();
    parser.light();
    parser.albums();
    parser.groups();
    parser.named_pets();
    parser.relations_and_pets();
    parser.self_references();
    parser.places();
    parser.scenes();
    parser.names();
    parser.objects();
    parser.finish()
}

struct Parser<'a> {
    cleaned: &'a str,
    tokens: Vec<Token>,
    used: Vec<bool>,
    /// Tokens that are part of a subject; a lowercase word listed next to one is a name.
    subject: Vec<bool>,
    out: ParsedPrompt,
}

impl<'a> Parser<'a> {
    fn new(cleaned: &'a str) -> Parser<'a> {
        let tokens = tokenize(cleaned);
        let len = tokens.len();
        Parser {
            cleaned,
            tokens,
            used: vec![false; len],
            subject: vec![false; len],
            out: ParsedPrompt::default(),
        }
    }

    /// Reads a lowercase unknown word as a vocabulary word one or two edits away ("sunest").
    fn correct_misspellings(&mut self) {
        for i in 0..self.tokens.len() {
            let Some(token) = self.tokens.get(i) else {
                continue;
            };
            let len = token.norm.chars().count();
            if token.kind != TokenKind::Word || token.capitalised || len < 5 || self.is_known(token)
            {
                continue;
            }
            if LEXICON.known.contains(format!("{}s", token.norm).as_str()) {
                continue;
            }
            let allowed = if len >= 9 { 2 } else { 1 };
            // Typos rarely hit the first letter; requiring it keeps real words from being "corrected".
            let first = token.norm.chars().next();
            let best = LEXICON
                .correctable
                .iter()
                .filter(|word| word.chars().next() == first)
                .map(|word| (strsim::damerau_levenshtein(&token.norm, word), *word))
                .filter(|(distance, _)| *distance <= allowed)
                .min_by_key(|(distance, _)| *distance);
            if let Some((_, word)) = best {
                let written = token.text.clone();
                if let Some(token) = self.tokens.get_mut(i) {
                    token.norm = word.to_string();
                }
                self.out.corrections.push(Correction {
                    written,
                    read_as: word.to_string(),
                });
            }
        }
    }

    fn finish(mut self) -> ParsedPrompt {
        self.out.free_text = self.free_text();
        self.out
    }

    /// Unconsumed runs of tokens, each trimmed of dangling connectors, joined with commas.
    fn free_text(&self) -> String {
        let mut segments: Vec<String> = Vec::new();
        let mut i = 0;
        while i < self.tokens.len() {
            if self.used.get(i).copied().unwrap_or(true) {
                i += 1;
                continue;
            }
            let mut end = i;
            while end < self.tokens.len() && !self.used.get(end).copied().unwrap_or(true) {
                end += 1;
            }
            if let Some(segment) = self.trimmed_segment(i, end) {
                segments.push(segment);
            }
            i = end;
        }
        segments.join(", ")
    }

    fn trimmed_segment(&self, mut from: usize, mut to: usize) -> Option<String> {
        let leading_junk = |t: &Token| {
            t.kind == TokenKind::Punct && !matches!(t.text.as_str(), "\"" | "(")
                || matches!(
                    t.norm.as_str(),
                    "and" | "or" | "&" | "plus" | "also" | "of" | "the" | "too" | "then" | "as"
                )
        };
        let trailing_junk = |t: &Token| {
            t.kind == TokenKind::Punct && !matches!(t.text.as_str(), "\"" | ")" | "!" | "?")
                || LEXICON.function.contains(t.norm.as_str())
        };
        while from < to && self.tokens.get(from).is_some_and(leading_junk) {
            from += 1;
        }
        while to > from && self.tokens.get(to - 1).is_some_and(trailing_junk) {
            to -= 1;
        }
        let has_content = (from..to).any(|k| {
            self.tokens.get(k).is_some_and(|t| {
                t.kind != TokenKind::Punct && !LEXICON.function.contains(t.norm.as_str())
            })
        });
        has_content.then(|| self.span(from, to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_prompts_are_cut_at_a_character_boundary() {
        let prompt = format!("me and Zoë {}", "ë".repeat(60_000));
        let parsed = parse_prompt(&prompt);
        assert_eq!(parsed.subjects.names, ["Zoë"]);
        assert!(parsed.free_text.len() <= MAX_PARSED_BYTES);
    }

    #[test]
    fn possessive_names_own_relations() {
        let parsed = parse_prompt("Anna's husband at the lake");
        let husband = &parsed.subjects.people[0];
        assert_eq!(husband.relation.as_deref(), Some("husband"));
        assert_eq!(husband.owner.as_deref(), Some("Anna"));
        assert!(parsed.subjects.names.is_empty());
    }

    #[test]
    fn capitalised_holidays_are_never_names() {
        let parsed = parse_prompt("Easter morning with Katie");
        assert_eq!(parsed.subjects.names, ["Katie"]);
    }
}
