//! The first stage of prompt understanding: text normalisation and tokenisation.
//!
//! Tokens keep their byte span in the original prompt (so the free text is cut from the user's own
//! words) and carry a normalised form for matching: lower case, diacritics folded, curly quotes
//! straightened, British spelling mapped to American and a possessive "'s" split off.

use super::lexicon::{IRREGULAR_PLURALS, SPELLINGS};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Word,
    Number,
    Punct,
}

#[derive(Debug, Clone)]
pub struct Token {
    /// The token as written (possessive suffix excluded).
    pub text: String,
    /// Lower case, folded, American spelling; what vocabularies are matched against.
    pub norm: String,
    pub kind: TokenKind,
    /// Byte span in the cleaned prompt, possessive suffix included.
    pub start: usize,
    pub end: usize,
    /// The first letter is upper case.
    pub capitalised: bool,
    /// Written with a possessive "'s" or a trailing "'" ("Anna's", "the kids'").
    pub possessive: bool,
    /// First word of a sentence, where capitals say nothing about names.
    pub sentence_start: bool,
    /// Joined to the previous token by a hyphen with no space ("Jean-Luc", "pop-art").
    pub hyphen_joined: bool,
}

impl Token {
    pub fn is_punct(&self, punct: &str) -> bool {
        self.kind == TokenKind::Punct && self.text == punct
    }
}

/// Replaces control characters and odd spaces with plain spaces and straightens quotes, keeping byte
/// length changes out of the picture by building a new string that all spans refer to.
pub fn clean_prompt(prompt: &str) -> String {
    let mut cleaned = String::with_capacity(prompt.len());
    for c in prompt.chars() {
        let mapped = match c {
            '\u{2018}' | '\u{2019}' | '\u{02BC}' | '`' | '\u{00B4}' => '\'',
            '\u{201C}' | '\u{201D}' | '\u{00AB}' | '\u{00BB}' => '"',
            '\u{2013}' | '\u{2014}' => '-',
            c if c.is_control() || c.is_whitespace() => ' ',
            '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}' => ' ',
            c => c,
        };
        cleaned.push(mapped);
    }
    cleaned
}

/// Folds the common Latin diacritics so "Zoë" and "Zoe", "José" and "Jose" meet.
pub fn fold_diacritics(word: &str) -> String {
    let mut folded = String::with_capacity(word.len());
    for c in word.chars() {
        match c {
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => folded.push('a'),
            'ç' | 'ć' | 'č' => folded.push('c'),
            'ď' | 'đ' => folded.push('d'),
            'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ė' | 'ę' | 'ě' => folded.push('e'),
            'ì' | 'í' | 'î' | 'ï' | 'ī' | 'į' | 'ı' => folded.push('i'),
            'ñ' | 'ń' | 'ň' => folded.push('n'),
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ő' => folded.push('o'),
            'ù' | 'ú' | 'û' | 'ü' | 'ū' | 'ů' | 'ű' => folded.push('u'),
            'ý' | 'ÿ' => folded.push('y'),
            'ś' | 'š' | 'ş' => folded.push('s'),
            'ź' | 'ż' | 'ž' => folded.push('z'),
            'ł' => folded.push('l'),
            'ř' => folded.push('r'),
            'ť' | 'ţ' => folded.push('t'),
            'ß' => folded.push_str("ss"),
            'æ' => folded.push_str("ae"),
            'œ' => folded.push_str("oe"),
            'þ' => folded.push_str("th"),
            c => folded.push(c),
        }
    }
    folded
}

/// Lower case, folded and spelled the American way: the key every vocabulary lookup uses.
pub fn normalise_word(word: &str) -> String {
    let folded = fold_diacritics(&word.to_lowercase());
    match SPELLINGS.iter().find(|(british, _)| *british == folded) {
        Some((_, american)) => (*american).to_string(),
        None => folded,
    }
}

/// Normalises a multi-word phrase word by word ("Golden  Hour" -> "golden hour").
pub fn normalise_phrase(phrase: &str) -> String {
    tokenize(&clean_prompt(phrase))
        .iter()
        .filter(|t| t.kind != TokenKind::Punct || t.text == "&")
        .map(|t| t.norm.clone())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The singular of an English plural: irregular ones from the vocabulary, then the regular rules.
pub fn singular(word: &str) -> String {
    if let Some((_, single)) = IRREGULAR_PLURALS.iter().find(|(plural, _)| *plural == word) {
        return (*single).to_string();
    }
    if word.len() > 4 && word.ends_with("ies") {
        return format!("{}y", &word[..word.len() - 3]);
    }
    for suffix in ["ches", "shes", "xes", "sses"] {
        if word.len() > suffix.len() + 1 && word.ends_with(suffix) {
            return word[..word.len() - 2].to_string();
        }
    }
    if word.len() > 3 && word.ends_with('s') && !word.ends_with("ss") && !word.ends_with("us") {
        return word[..word.len() - 1].to_string();
    }
    word.to_string()
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '\''
}

/// Splits a cleaned prompt into words, numbers and punctuation. Apostrophes inside a word are kept
/// ("O'Keeffe"); a trailing "'s" or "'" marks a possessive and is dropped from `text`.
pub fn tokenize(cleaned: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars = cleaned.char_indices().peekable();
    let mut sentence_start = true;
    let mut previous_end: Option<usize> = None;
    let mut previous_was_hyphen_at: Option<usize> = None;
    while let Some((start, c)) = chars.next() {
        if c.is_whitespace() {
            continue;
        }
        if is_word_char(c) && c != '\'' {
            let mut end = start + c.len_utf8();
            while let Some(&(i, next)) = chars.peek() {
                if is_word_char(next) {
                    end = i + next.len_utf8();
                    chars.next();
                } else {
                    break;
                }
            }
            let raw = &cleaned[start..end];
            let hyphen_joined = previous_was_hyphen_at.is_some_and(|at| at + 1 == start)
                && previous_end.is_some_and(|e| e + 1 == start);
            tokens.push(word_token(raw, start, end, sentence_start, hyphen_joined));
            sentence_start = false;
            previous_end = Some(end);
            previous_was_hyphen_at = None;
            continue;
        }
        let end = start + c.len_utf8();
        if c == '-' && previous_end == Some(start) {
            // A hyphen glued to the previous word joins the next word to it rather than being
            // punctuation: "pop-art", "Jean-Luc", "Monet-style".
            previous_was_hyphen_at = Some(start);
            continue;
        }
        previous_was_hyphen_at = None;
        let text = c.to_string();
        if matches!(c, '.' | '!' | '?' | ';' | ':' | '\n') {
            sentence_start = true;
        }
        tokens.push(Token {
            norm: text.clone(),
            text,
            kind: TokenKind::Punct,
            start,
            end,
            capitalised: false,
            possessive: false,
            sentence_start: false,
            hyphen_joined: false,
        });
        previous_end = Some(end);
    }
    tokens
}

fn word_token(
    raw: &str,
    start: usize,
    end: usize,
    sentence_start: bool,
    hyphen_joined: bool,
) -> Token {
    let trimmed = raw.trim_matches('\'');
    let (base, possessive) = if let Some(base) = trimmed
        .strip_suffix("'s")
        .or_else(|| trimmed.strip_suffix("'S"))
        .filter(|b| !b.is_empty())
    {
        (base, true)
    } else {
        (
            trimmed,
            raw.ends_with('\'') && raw.len() > 1 && !trimmed.is_empty(),
        )
    };
    let kind = if !base.is_empty() && base.chars().all(|c| c.is_ascii_digit()) {
        TokenKind::Number
    } else {
        TokenKind::Word
    };
    Token {
        text: base.to_string(),
        norm: normalise_word(base),
        kind,
        start,
        end,
        capitalised: base.chars().next().is_some_and(char::is_uppercase),
        possessive,
        sentence_start,
        hyphen_joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_carry_possessives_spans_and_normal_forms() {
        let cleaned = clean_prompt("Anna’s Watercolour of Zoë, pop-art!");
        let tokens = tokenize(&cleaned);
        let texts: Vec<&str> = tokens.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(
            texts,
            ["Anna", "Watercolour", "of", "Zoë", ",", "pop", "art", "!"]
        );
        assert!(tokens[0].possessive);
        assert_eq!(tokens[1].norm, "watercolor");
        assert_eq!(tokens[3].norm, "zoe");
        assert!(tokens[6].hyphen_joined);
        assert_eq!(&cleaned[tokens[0].start..tokens[0].end], "Anna's");
    }

    #[test]
    fn singular_handles_regular_and_irregular_plurals() {
        assert_eq!(singular("dogs"), "dog");
        assert_eq!(singular("puppies"), "puppy");
        assert_eq!(singular("children"), "child");
        assert_eq!(singular("beaches"), "beach");
        assert_eq!(singular("glass"), "glass");
    }
}
