//! The vocabularies compiled for the grammar: every phrase split into words, longest first, the set
//! of words any vocabulary knows (never a name or a place), and the words a misspelling may be
//! corrected to.

use std::collections::HashSet;
use std::sync::LazyLock;

use crate::lexicon::{
    ARTISTS, COMMON_WORDS, FUNCTION_WORDS, LIGHT_PHRASES, NUMBER_WORDS, OBJECTS, PET_KINDS,
    RELATIONS, SCENE_PHRASES, SELF_WORDS, STYLE_PHRASES,
};
use crate::Light;

/// A vocabulary phrase split into normalised words.
pub(super) struct Phrase<T> {
    pub(super) words: Vec<String>,
    pub(super) value: T,
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

/// The vocabularies compiled for matching.
pub(super) struct Lexicon {
    pub(super) light: Vec<Phrase<Light>>,
    pub(super) scenes: Vec<Phrase<&'static str>>,
    pub(super) styles: Vec<Phrase<&'static str>>,
    pub(super) artists: Vec<Phrase<(&'static str, bool)>>,
    pub(super) relations: Vec<Phrase<&'static str>>,
    pub(super) pets: Vec<Phrase<&'static str>>,
    pub(super) objects: Vec<Phrase<&'static str>>,
    pub(super) function: HashSet<&'static str>,
    /// Every word any vocabulary uses: such a word is never taken for a name or a place.
    pub(super) known: HashSet<String>,
    /// Single vocabulary words a misspelling may be corrected to.
    pub(super) correctable: Vec<&'static str>,
}

pub(super) static LEXICON: LazyLock<Lexicon> = LazyLock::new(|| {
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
        light: phrases(&LIGHT_PHRASES),
        scenes: phrases(&SCENE_PHRASES),
        styles: phrases(&STYLE_PHRASES),
        artists: phrases(&artists),
        relations: phrases(&RELATIONS),
        pets: phrases(&PET_KINDS),
        objects: phrases(&objects),
        function: FUNCTION_WORDS.iter().copied().collect(),
        known,
        correctable,
    }
});
