//! The rule-based prompt parser.
//!
//! The prompt is tokenised, likely misspellings of vocabulary words are corrected (and reported),
//! then passes run in a fixed order, each consuming the tokens it understands: palette, artists,
//! styles, light, albums, subjects, places, scenes, names. Objects are recorded without being
//! consumed. Whatever is left becomes the free text, with dangling connectors trimmed.
//! The order matters: "in my colours" must be a palette before "in" can start a place, and "in the
//! style of Monet" must be an artist before "Monet" can be a name.

use std::collections::HashSet;
use std::sync::LazyLock;

use super::lexicon::{
    ARTISTS, COMMON_WORDS, FUNCTION_WORDS, LIGHT_PHRASES, NEVER_NAMES, NUMBER_WORDS, OBJECTS,
    PET_KINDS, PLACE_PREPOSITIONS, POSSESSIVES, RELATIONS, SCENE_PHRASES, SELF_WORDS,
    STYLE_PHRASES,
};
use super::text::{clean_prompt, singular, tokenize, Token, TokenKind};
use super::{
    AlbumMention, Correction, GroupMention, Light, ObjectMention, PaletteRequest, ParsedPrompt,
    PersonMention, PetMention, PlaceMention,
};

/// Prompts longer than this are parsed only up to here: the request layer rejects them anyway, and
/// the parser must stay cheap for any input it is handed.
const MAX_PARSED_BYTES: usize = 8 * 1024;

/// A vocabulary phrase split into normalised words.
struct Phrase<T> {
    words: Vec<String>,
    value: T,
}

fn phrases<T: Clone>(table: &[(&str, T)]) -> Vec<Phrase<T>> {
    let mut list: Vec<Phrase<T>> = table
        .iter()
        .map(|(phrase, value)| Phrase {
            words: phrase.split(' ').map(str::to_string).collect(),
            value: value.clone(),
        })
        .collect();
    // Longest first, so "golden hour" wins over a shorter entry starting at the same word.
    list.sort_by_key(|p| std::cmp::Reverse(p.words.len()));
    list
}

struct Lexicon {
    light: Vec<Phrase<Light>>,
    scenes: Vec<Phrase<&'static str>>,
    styles: Vec<Phrase<&'static str>>,
    artists: Vec<Phrase<(&'static str, bool)>>,
    relations: Vec<Phrase<&'static str>>,
    pets: Vec<Phrase<&'static str>>,
    objects: Vec<Phrase<&'static str>>,
    function: HashSet<&'static str>,
    /// Every word any vocabulary uses: such a word is never taken for a name or a place.
    known: HashSet<String>,
    /// Single vocabulary words a misspelling may be corrected to.
    correctable: Vec<&'static str>,
}

static LEXICON: LazyLock<Lexicon> = LazyLock::new(|| {
    let artists: Vec<(&str, (&str, bool))> = ARTISTS
        .iter()
        .map(|(phrase, display, bare)| (*phrase, (*display, *bare)))
        .collect();
    let objects: Vec<(&str, &str)> = OBJECTS.iter().map(|o| (*o, *o)).collect();
    let mut known: HashSet<String> = HashSet::new();
    let mut add_words = |phrase: &str| {
        for word in phrase.split(' ') {
            known.insert(word.to_string());
        }
    };
    LIGHT_PHRASES.iter().for_each(|(p, _)| add_words(p));
    SCENE_PHRASES.iter().for_each(|(p, _)| add_words(p));
    STYLE_PHRASES.iter().for_each(|(p, _)| add_words(p));
    RELATIONS.iter().for_each(|(p, _)| add_words(p));
    PET_KINDS.iter().for_each(|(p, _)| add_words(p));
    NUMBER_WORDS.iter().for_each(|(p, _)| add_words(p));
    SELF_WORDS.iter().for_each(|p| add_words(p));
    COMMON_WORDS.iter().for_each(|p| add_words(p));
    FUNCTION_WORDS.iter().for_each(|p| add_words(p));
    OBJECTS.iter().for_each(|p| add_words(p));
    let mut correctable: Vec<&'static str> = LIGHT_PHRASES
        .iter()
        .map(|(p, _)| *p)
        .chain(SCENE_PHRASES.iter().map(|(p, _)| *p))
        .chain(STYLE_PHRASES.iter().map(|(p, _)| *p))
        .filter(|p| !p.contains(' ') && p.len() >= 5)
        .collect();
    correctable.sort_unstable();
    correctable.dedup();
    Lexicon {
        light: phrases(LIGHT_PHRASES),
        scenes: phrases(SCENE_PHRASES),
        styles: phrases(STYLE_PHRASES),
        artists: phrases(&artists),
        relations: phrases(RELATIONS),
        pets: phrases(PET_KINDS),
        objects: phrases(&objects),
        function: FUNCTION_WORDS.iter().copied().collect(),
        known,
        correctable,
    }
});

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

    // ----- token helpers -------------------------------------------------------------------------

    /// The unused word or number token at `i`.
    fn word(&self, i: usize) -> Option<&Token> {
        let token = self.tokens.get(i)?;
        (token.kind != TokenKind::Punct && !self.used.get(i).copied().unwrap_or(true))
            .then_some(token)
    }

    fn norm(&self, i: usize) -> Option<&str> {
        self.word(i).map(|t| t.norm.as_str())
    }

    fn is_norm(&self, i: usize, options: &[&str]) -> bool {
        self.norm(i).is_some_and(|n| options.contains(&n))
    }

    fn consume(&mut self, from: usize, to: usize) {
        for flag in self.used.iter_mut().take(to).skip(from) {
            *flag = true;
        }
    }

    fn mark_subject(&mut self, from: usize, to: usize) {
        self.consume(from, to);
        for flag in self.subject.iter_mut().take(to).skip(from) {
            *flag = true;
        }
    }

    fn span(&self, from: usize, to: usize) -> String {
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
    fn name_text(&self, from: usize, to: usize) -> String {
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
    fn match_words(&self, i: usize, words: &[String]) -> Option<(usize, bool)> {
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

    fn longest<'p, T>(&self, i: usize, table: &'p [Phrase<T>]) -> Option<(usize, bool, &'p T)> {
        table.iter().find_map(|phrase| {
            self.match_words(i, &phrase.words)
                .map(|(end, plural)| (end, plural, &phrase.value))
        })
    }

    /// A count at `i`: digits, a number word, "a couple of", "a pair of". Returns (count, end).
    fn count_at(&self, i: usize) -> Option<(u32, usize)> {
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

    fn is_known(&self, token: &Token) -> bool {
        LEXICON.known.contains(token.norm.as_str())
            || LEXICON.known.contains(singular(&token.norm).as_str())
    }

    /// A token that can be (part of) a name: capitalised and not a vocabulary word, or any unknown
    /// word when `allow_lowercase` ("my dog called sunny").
    fn is_name_token(&self, i: usize, allow_lowercase: bool) -> bool {
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
    fn name_run(&self, i: usize, allow_lowercase: bool) -> Option<usize> {
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

    // ----- passes --------------------------------------------------------------------------------

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

    /// "in my colours", "in the colours of my Hawaii album", "with the palette of Honolulu".
    fn palette(&mut self) {
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
    fn artists(&mut self) {
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
    fn styles(&mut self) {
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

    /// Light words with their preposition ("at sunset", "in the golden hour", "by moonlight").
    fn light(&mut self) {
        for i in 0..self.tokens.len() {
            let Some((end, _, light)) = self.longest(i, &LEXICON.light) else {
                continue;
            };
            let light = *light;
            if !self.modifies_noun(end) {
                let start = self.preposition_start(
                    i,
                    &[
                        "at", "during", "by", "in", "under", "around", "before", "after", "into",
                    ],
                );
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
    fn albums(&mut self) {
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

    /// "the two of us", "both of us", "all of us", "we", "us", "our family", "three people".
    fn groups(&mut self) {
        for i in 0..self.tokens.len() {
            let start = if self.is_norm(i, &["the"]) { i + 1 } else { i };
            // "the two of us", "both of us", "all four of us"
            let (size, after_count) = if self.is_norm(start, &["both"]) {
                (Some(2), start + 1)
            } else if self.is_norm(start, &["all"]) {
                match self.count_at(start + 1) {
                    Some((n, end)) => (Some(n), end),
                    None => (None, start + 1),
                }
            } else if let Some((n, end)) = self.count_at(start) {
                (Some(n), end)
            } else {
                (None, start)
            };
            if after_count > start
                && self.is_norm(after_count, &["of"])
                && self.is_norm(after_count + 1, &["us"])
            {
                self.set_group(i, after_count + 2, size, true);
                continue;
            }
            // "three people", "five friends" are relations; "people" is the generic group.
            if let Some(n) = size {
                if start == i && self.is_norm(after_count, &["people", "persons", "adults"]) {
                    self.set_group(i, after_count + 1, Some(n), false);
                    continue;
                }
            }
            // "our family", "the whole family", "my family"
            if self.is_norm(i, &["my", "our", "the"]) {
                let mut j = i + 1;
                if self.is_norm(j, &["whole", "entire"]) {
                    j += 1;
                }
                if self.is_norm(j, &["family"]) {
                    self.set_group(i, j + 1, None, true);
                    continue;
                }
            }
            if self.is_norm(i, &["we", "us", "ourselves"]) && self.out.subjects.group.is_none() {
                self.set_group(i, i + 1, None, true);
            }
        }
    }

    fn set_group(&mut self, from: usize, to: usize, size: Option<u32>, includes_self: bool) {
        let text = self.span(from, to);
        self.mark_subject(from, to);
        match &mut self.out.subjects.group {
            // "we, the three of us": the later, more precise mention wins on size.
            Some(group) => {
                group.size = size.or(group.size);
                group.includes_self |= includes_self;
            }
            None => {
                self.out.subjects.group = Some(GroupMention {
                    text,
                    size,
                    includes_self,
                })
            }
        }
    }

    /// "[my|our|Anna's] [count] [descriptors] (relation|pet kind) [called|named] [Name]".
    fn relations_and_pets(&mut self) {
        for i in 0..self.tokens.len() {
            // Already part of a subject: an unowned pet stays unconsumed but must not match twice.
            if self.word(i).is_none() || self.subject.get(i).copied().unwrap_or(true) {
                continue;
            }
            // "the kids", "the dog": in a personal library these are the tenant's own.
            // "two of my friends", "three of our cats"
            let partitive = self.count_at(i).filter(|(_, end)| {
                self.is_norm(*end, &["of"]) && self.is_norm(end + 1, POSSESSIVES)
            });
            let (owned, owner, mut j) = if let Some((_, end)) = partitive {
                (true, None, end + 2)
            } else if self.is_norm(i, POSSESSIVES) || self.is_norm(i, &["the"]) {
                (true, None, i + 1)
            } else if self.word(i).is_some_and(|t| t.possessive && t.capitalised)
                && self.is_name_token(i, false)
            {
                (true, self.word(i).map(|t| t.text.clone()), i + 1)
            } else {
                (false, None, i)
            };
            let mut count = partitive.map(|(n, _)| n);
            if count.is_some() {
                // The count came before "of my"; a second one would be odd ("two of my 3 dogs").
            } else if let Some((n, end)) = self.count_at(j) {
                count = Some(n);
                j = end;
            } else if !owned && self.is_norm(j, &["a", "an"]) {
                count = Some(1);
                j += 1;
            }
            let descriptors_start = j;
            let mut kind_at = None;
            // Up to two descriptive words may sit before the kind: "our fluffy old cat".
            for offset in 0..3 {
                let at = descriptors_start + offset;
                if self.longest(at, &LEXICON.relations).is_some()
                    || self.longest(at, &LEXICON.pets).is_some()
                {
                    kind_at = Some(at);
                    break;
                }
                let is_descriptor = self.word(at).is_some_and(|t| {
                    t.kind == TokenKind::Word
                        && !t.capitalised
                        && !LEXICON.function.contains(t.norm.as_str())
                        && !t.possessive
                });
                if !is_descriptor {
                    break;
                }
            }
            let Some(kind_at) = kind_at else { continue };
            // Bare relations ("mum and dad") need no determiner; bare descriptors do ("old cat" is not).
            if !owned && count.is_none() && kind_at != i {
                continue;
            }
            let descriptors: Vec<String> = (descriptors_start..kind_at)
                .filter_map(|k| self.word(k).map(|t| t.text.clone()))
                .collect();
            if let Some((end, plural, relation)) = self.longest(kind_at, &LEXICON.relations) {
                let relation = (*relation).to_string();
                let (name, stop) = self.trailing_name(end);
                let text = self.span(i, stop);
                self.mark_subject(i, stop);
                self.out.subjects.people.push(PersonMention {
                    text,
                    is_self: false,
                    relation: Some(relation),
                    name,
                    owner,
                    count,
                    plural: plural || count.is_some_and(|n| n > 1),
                });
            } else if let Some((end, plural, kind)) = self.longest(kind_at, &LEXICON.pets) {
                let kind = (*kind).to_string();
                let (name, stop) = self.trailing_name(end);
                let text = self.span(i, stop);
                let owned = owned || name.is_some();
                if owned {
                    self.mark_subject(i, stop);
                } else {
                    // "a horse" is for the model to draw: recorded, but left in the free text.
                    self.subject
                        .iter_mut()
                        .take(stop)
                        .skip(i)
                        .for_each(|flag| *flag = true);
                }
                self.out.subjects.pets.push(PetMention {
                    text,
                    owned,
                    name,
                    kind: Some(kind),
                    count,
                    plural: plural || count.is_some_and(|n| n > 1),
                    descriptors,
                });
            }
        }
    }

    /// A name after a relation or kind: "Anna", "called Sunny", "named rex", ", Rex".
    fn trailing_name(&self, end: usize) -> (Option<String>, usize) {
        if self.is_norm(end, &["called", "named"]) {
            if let Some(stop) = self.name_run(end + 1, true) {
                return (Some(self.name_text(end + 1, stop)), stop);
            }
        }
        // Only a capitalised word directly after the kind is its name: "my dog Rex".
        if self.word(end).is_some_and(|t| t.capitalised) {
            if let Some(stop) = self.name_run(end, false) {
                return (Some(self.name_text(end, stop)), stop);
            }
        }
        (None, end)
    }

    /// "me", "I", "myself".
    fn self_references(&mut self) {
        for i in 0..self.tokens.len() {
            let Some(token) = self.word(i) else { continue };
            // A lowercase "i" is a self reference only as a whole word, which the tokeniser ensures.
            if !SELF_WORDS.contains(&token.norm.as_str()) {
                continue;
            }
            let text = token.text.clone();
            self.mark_subject(i, i + 1);
            if self.out.subjects.people.iter().any(|p| p.is_self) {
                continue;
            }
            self.out.subjects.people.push(PersonMention {
                text,
                is_self: true,
                relation: None,
                name: None,
                owner: None,
                count: None,
                plural: false,
            });
        }
    }

    /// "Rex the dog", "Rex, our dog" (the kind after the name).
    fn named_pets(&mut self) {
        for i in 0..self.tokens.len() {
            let Some(end) = self.name_run(i, false) else {
                continue;
            };
            let mut j = end;
            if self.tokens.get(j).is_some_and(|t| t.is_punct(",")) {
                j += 1;
            }
            if !self.is_norm(j, &["the", "our", "my"]) {
                continue;
            }
            let Some((stop, false, kind)) = self.longest(j + 1, &LEXICON.pets) else {
                continue;
            };
            let kind = (*kind).to_string();
            let name = self.name_text(i, end);
            let text = self.span(i, stop);
            self.mark_subject(i, stop);
            self.out.subjects.pets.push(PetMention {
                text,
                name: Some(name),
                kind: Some(kind),
                count: None,
                plural: false,
                owned: true,
                descriptors: Vec::new(),
            });
        }
    }

    /// "in Paris", "at home", "near Lake Como", "in honolulu".
    fn places(&mut self) {
        for i in 0..self.tokens.len() {
            if !self.is_norm(i, PLACE_PREPOSITIONS) {
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
        matches!(
            token.norm.as_str(),
            "lake"
                | "mount"
                | "cape"
                | "port"
                | "saint"
                | "st"
                | "new"
                | "san"
                | "santa"
                | "los"
                | "las"
                | "rio"
                | "isle"
        )
    }

    fn push_place(&mut self, from: usize, to: usize, name: String) {
        let text = self.span(from, to);
        self.consume(from, to);
        if !self.out.setting.places.iter().any(|p| p.name == name) {
            self.out.setting.places.push(PlaceMention { text, name });
        }
    }

    /// Scene words with their preposition ("on the beach", "in the snowy mountains").
    fn scenes(&mut self) {
        for i in 0..self.tokens.len() {
            let Some((end, _, scene)) = self.longest(i, &LEXICON.scenes) else {
                continue;
            };
            let scene = (*scene).to_string();
            if !self.modifies_noun(end) {
                let start = self.preposition_start(i, PLACE_PREPOSITIONS);
                self.consume(start, end);
            }
            if !self.out.setting.scenes.contains(&scene) {
                self.out.setting.scenes.push(scene);
            }
        }
    }

    /// Remaining capitalised names, and lowercase unknown words listed next to a subject.
    fn names(&mut self) {
        let mut i = 0;
        while i < self.tokens.len() {
            if self.sentence_start_name(i) {
                // "Rose and me at the beach": a common word starting a list of subjects is a name.
                self.push_name(i, i + 1);
                i += 1;
                continue;
            }
            if let Some(end) = self.name_run(i, false) {
                self.push_name(i, end);
                i = end;
                continue;
            }
            let lowercase_listed = self.word(i).is_some_and(|t| {
                t.kind == TokenKind::Word
                    && !t.capitalised
                    && !self.is_known(t)
                    && t.text.chars().all(char::is_alphabetic)
            }) && self.lists_with_subject(i, i + 1);
            if lowercase_listed {
                self.push_name(i, i + 1);
            }
            i += 1;
        }
    }

    /// A capitalised vocabulary word opening a sentence is a name when it heads a list of subjects
    /// ("Rose and me", "Sunny and Rex"), or, for words that are not everyday words (an object such
    /// as "rose"), when a link word follows ("Rose with a bouquet").
    fn sentence_start_name(&self, i: usize) -> bool {
        let Some(token) = self.word(i) else {
            return false;
        };
        let candidate = token.sentence_start
            && token.capitalised
            && token.kind == TokenKind::Word
            && self.is_known(token)
            && !LEXICON.function.contains(token.norm.as_str())
            && !NEVER_NAMES.contains(&token.norm.as_str())
            && !SELF_WORDS.contains(&token.norm.as_str());
        if !candidate {
            return false;
        }
        let next_is_link = self.tokens.get(i + 1).is_some_and(|t| {
            t.is_punct(",") || t.is_punct("&") || matches!(t.norm.as_str(), "and" | "with" | "&")
        });
        let next_is_subject = self.subject.get(i + 2).copied().unwrap_or(false)
            || self.name_run(i + 2, false).is_some();
        let everyday = COMMON_WORDS.contains(&token.norm.as_str());
        next_is_link && (next_is_subject || !everyday)
    }

    /// Whether tokens `from..to` are joined by "and", "&", "," or "with" to a subject.
    fn lists_with_subject(&self, from: usize, to: usize) -> bool {
        let is_link = |k: usize| {
            self.tokens.get(k).is_some_and(|t| {
                t.is_punct(",")
                    || t.is_punct("&")
                    || matches!(t.norm.as_str(), "and" | "with" | "&")
            })
        };
        let subject_at = |k: usize| self.subject.get(k).copied().unwrap_or(false);
        let after = is_link(to) && (subject_at(to + 1) || (is_link(to + 1) && subject_at(to + 2)));
        let before = from >= 2 && is_link(from - 1) && subject_at(from - 2);
        after || before
    }

    fn push_name(&mut self, from: usize, to: usize) {
        let name = self.name_text(from, to);
        self.mark_subject(from, to);
        if !self.out.subjects.names.contains(&name) {
            self.out.subjects.names.push(name);
        }
    }

    /// Objects are recorded but not consumed: "a red balloon" keeps its adjective for the model.
    fn objects(&mut self) {
        for i in 0..self.tokens.len() {
            let Some((_, plural, noun)) = self.longest(i, &LEXICON.objects) else {
                continue;
            };
            let noun = (*noun).to_string();
            let count = if i >= 1 {
                self.count_at(i - 1)
                    .filter(|(_, e)| *e == i)
                    .map(|(n, _)| n)
            } else {
                None
            };
            let count = count.or(if plural { None } else { Some(1) });
            if !self.out.subjects.objects.iter().any(|o| o.noun == noun) {
                self.out
                    .subjects
                    .objects
                    .push(ObjectMention { noun, count });
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
