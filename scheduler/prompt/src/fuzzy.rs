//! "Did you mean ...?": ranks known names by how likely they are what the user meant.
//!
//! Three signals, because typos and mishearings fail differently: Damerau-Levenshtein distance catches
//! swapped or missing letters ("Rox" -> "Rex", "Anan" -> "Anna"), Jaro-Winkler favours a shared start
//! ("Alex" -> "Alexander"), and a phonetic key catches spellings that sound alike ("Katie" -> "Caty").

use super::tokens::fold_diacritics;

/// How many suggestions a reply carries at most.
pub const MAX_SUGGESTIONS: usize = 3;
/// The score of a match by sound alone; every spelling-based score above it outranks it.
const PHONETIC_SCORE: f64 = 0.5;

/// A phonetic key in the spirit of Soundex, on folded ASCII letters: the first letter plus the codes
/// of the following consonant groups, with vowels and h/w/y dropped and repeats collapsed.
pub fn phonetic_key(word: &str) -> String {
    let folded = fold_diacritics(&word.to_lowercase());
    let letters: Vec<char> = folded.chars().filter(char::is_ascii_alphabetic).collect();
    let Some(&first) = letters.first() else {
        return String::new();
    };
    let code = |c: char| match c {
        'b' | 'f' | 'p' | 'v' => '1',
        'c' | 'g' | 'j' | 'k' | 'q' | 's' | 'x' | 'z' => '2',
        'd' | 't' => '3',
        'l' => '4',
        'm' | 'n' => '5',
        'r' => '6',
        _ => '0',
    };
    // c/k/q and s/z sound alike at the start too, so the first letter is coded, not kept.
    let mut key = String::from(code(first));
    let mut last = code(first);
    for &c in &letters[1..] {
        let digit = code(c);
        if digit != '0' && digit != last {
            key.push(digit);
        }
        if !matches!(c, 'h' | 'w') {
            last = digit;
        }
    }
    key
}

/// Whether two folded names start with the same letter or with letters that sound alike at the
/// start of a name (Katie/Caty, Sophie/Zofie); b and p or d and t do not ("baby" is not "Pepe").
fn same_opening_sound(a: &str, b: &str) -> bool {
    let group = |c: char| match c {
        'c' | 'k' | 'q' => 'k',
        's' | 'z' => 's',
        'i' | 'y' => 'i',
        other => other,
    };
    match (a.chars().next(), b.chars().next()) {
        (Some(x), Some(y)) => group(x) == group(y),
        _ => false,
    }
}

/// A similarity in 0..=1 between what was written and a known name, or `None` when they are too far
/// apart to suggest.
pub fn similarity(written: &str, known: &str) -> Option<f64> {
    let a = fold_diacritics(&written.to_lowercase());
    let b = fold_diacritics(&known.to_lowercase());
    if a.is_empty() || b.is_empty() {
        return None;
    }
    if a == b {
        return Some(1.0);
    }
    let distance = strsim::damerau_levenshtein(&a, &b);
    let longest = a.chars().count().max(b.chars().count());
    // One edit is always plausible for short names; longer ones may carry one edit per four letters.
    let allowed = (longest / 4).max(1);
    let edit_score = if distance <= allowed {
        Some(1.0 - distance as f64 / longest as f64)
    } else {
        None
    };
    let jaro = strsim::jaro_winkler(&a, &b);
    let jaro_score = (jaro >= 0.88).then_some(jaro * 0.95);
    let shorter = a.chars().count().min(b.chars().count());
    let prefix_score = (shorter >= 3 && (a.starts_with(&b) || b.starts_with(&a))).then_some(0.8);
    let phonetic_score = (phonetic_key(&a) == phonetic_key(&b)
        && phonetic_key(&a).len() >= 2
        && same_opening_sound(&a, &b))
    .then_some(PHONETIC_SCORE);
    [edit_score, jaro_score, prefix_score, phonetic_score]
        .into_iter()
        .flatten()
        .reduce(f64::max)
}

/// The closest known names to `written`, best first, at most [`MAX_SUGGESTIONS`], deduplicated.
/// Names that only sound alike are offered only when nothing is spelled alike: "Rox" suggests "Rex",
/// not also "Rose".
pub fn suggest<'a>(written: &str, known: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let scored_all: Vec<(f64, &str)> = known
        .into_iter()
        .filter_map(|name| similarity(written, name).map(|score| (score, name)))
        .collect();
    let any_spelled_alike = scored_all.iter().any(|(score, _)| *score > PHONETIC_SCORE);
    let mut scored: Vec<(f64, &str)> = scored_all
        .into_iter()
        .filter(|(score, _)| !any_spelled_alike || *score > PHONETIC_SCORE)
        .collect();
    scored.sort_by(|x, y| y.0.total_cmp(&x.0).then_with(|| x.1.cmp(y.1)));
    let mut suggestions: Vec<String> = Vec::new();
    for (_, name) in scored {
        if !suggestions.iter().any(|s| s.eq_ignore_ascii_case(name)) {
            suggestions.push(name.to_string());
        }
        if suggestions.len() == MAX_SUGGESTIONS {
            break;
        }
    }
    suggestions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_and_sound_alikes_are_suggested() {
        assert_eq!(suggest("Rox", ["Rex", "Anna", "Paris", "Rose"]), ["Rex"]);
        assert_eq!(suggest("Anan", ["Anna", "Ben"]), ["Anna"]);
        assert_eq!(suggest("Katie", ["Caty", "Tom"]), ["Caty"]);
        assert_eq!(suggest("Alex", ["Alexander", "Max"]), ["Alexander"]);
        assert_eq!(suggest("Jose", ["José"]), ["José"]);
    }

    #[test]
    fn unrelated_names_are_not_suggested() {
        assert!(suggest("Bartholomew", ["Anna", "Rex", "Zoë"]).is_empty());
        assert!(suggest("x", ["Rex"]).is_empty());
        assert!(suggest("baby", ["Pepe"]).is_empty());
    }

    #[test]
    fn phonetic_keys_group_similar_sounds() {
        assert_eq!(phonetic_key("Katie"), phonetic_key("Caty"));
        assert_eq!(phonetic_key("Smith"), phonetic_key("Smyth"));
        assert_ne!(phonetic_key("Anna"), phonetic_key("Rex"));
    }
}
