//! The vocabularies the prompt parser and resolver know: light, scenes, art styles, artists,
//! relations, pet kinds, objects, number words, spellings and the word lists of the grammar.
//!
//! They are data, one file each in `src/data/`, embedded at build time (`include_str!`) and read
//! once, on first use, into the tables below. Two formats, both UTF-8 text in which a line starting
//! with `#` is a comment and blank lines are ignored:
//!
//! - a **map** holds one entry a line, `key: item, item, ...`. In the phrase vocabularies the key is
//!   the canonical value and the items are the phrases that name it
//!   (`golden_hour: golden hour, magic hour, golden light`); a table's rows are `(item, key)`.
//! - a **list** holds items separated by commas, any number a line; a line may end with the comma
//!   before the next line's first item.
//!
//! Items are trimmed and may hold spaces but no `,` (and a map's key no `:`). A key or an item that
//! appears twice in one file is an error, and so is an unknown light tag or a number that does not
//! parse; the unit tests read every file, so a broken file fails the tests, not a request.
//!
//! Every phrase is written in *normal form*: lower case, diacritics folded, American spelling and
//! one space between words (see `tokens::normalise_word`), so "Watercolour" and "watercolor" meet
//! the same entry.

use std::collections::HashSet;
use std::sync::LazyLock;

use super::Light;

/// One vocabulary's rows, parsed from its data file on first use. It derefs to a slice
/// (`STYLE_PHRASES.iter()`, `SELF_WORDS.contains(..)`, `&PLACE_PREPOSITIONS` as a `&[&str]`) and
/// iterates like one (`for (phrase, style) in STYLE_PHRASES`).
pub struct Table<T: 'static>(fn() -> &'static [T]);

impl<T> std::ops::Deref for Table<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        (self.0)()
    }
}

impl<T> IntoIterator for Table<T> {
    type Item = &'static T;
    type IntoIter = std::slice::Iter<'static, T>;

    fn into_iter(self) -> Self::IntoIter {
        (self.0)().iter()
    }
}

/// Light phrases and the light they name (`light.txt`). Longer phrases are tried first by the
/// matcher.
pub const LIGHT_PHRASES: Table<(&str, Light)> = Table(|| &VOCABULARY.light);
/// Scene phrases and their canonical scene (`scenes.txt`). Canonical scenes are also what the
/// resolver looks for in keywords, titles, descriptions and album names (with these synonyms).
pub const SCENE_PHRASES: Table<(&str, &str)> = Table(|| &VOCABULARY.scenes);
/// Art styles: phrase and canonical style (`styles.txt`).
pub const STYLE_PHRASES: Table<(&str, &str)> = Table(|| &VOCABULARY.styles);
/// Known artists: (phrase, display name, may appear bare) (`artists.txt`). A bare artist word
/// without a trigger ("inspired by", "in the style of", ...) is only an artist when it cannot easily
/// be a person's name in the library: "Turner" or "Constable" stay names unless triggered.
pub const ARTISTS: Table<(&str, &str, bool)> = Table(|| &VOCABULARY.artists);
/// Person relations: word and canonical relation (`relations.txt`). Regular plurals are the
/// singulariser's.
pub const RELATIONS: Table<(&str, &str)> = Table(|| &VOCABULARY.relations);
/// Pet kinds: word and canonical kind (`pet-kinds.txt`).
pub const PET_KINDS: Table<(&str, &str)> = Table(|| &VOCABULARY.pet_kinds);
/// Objects worth recording as subjects (`objects.txt`). They stay in the free text as well: their
/// adjectives ("a red balloon") are for the model.
pub const OBJECTS: Table<&str> = Table(|| &VOCABULARY.objects);
/// Number words and their value (`numbers.txt`); "a couple of"/"a pair of" are the parser's.
pub const NUMBER_WORDS: Table<(&str, u32)> = Table(|| &VOCABULARY.numbers);
/// British spellings and the American form every vocabulary uses (`spellings.txt`).
pub const SPELLINGS: Table<(&str, &str)> = Table(|| &VOCABULARY.spellings);
/// Irregular plurals and their singular (`irregular-plurals.txt`).
pub const IRREGULAR_PLURALS: Table<(&str, &str)> = Table(|| &VOCABULARY.irregular_plurals);
/// Self references (`self-words.txt`).
pub const SELF_WORDS: Table<&str> = Table(|| &VOCABULARY.self_words);
/// Possessive determiners that make a relation or a pet the tenant's own (`possessives.txt`).
pub const POSSESSIVES: Table<&str> = Table(|| &VOCABULARY.possessives);
/// Words that introduce a place ("in Paris", "at home") or a scene (`place-prepositions.txt`).
pub const PLACE_PREPOSITIONS: Table<&str> = Table(|| &VOCABULARY.place_prepositions);
/// Words that open a place name although they may be vocabulary words ("Lake Como", "Mount
/// Fuji") (`place-openers.txt`).
pub const PLACE_OPENERS: Table<&str> = Table(|| &VOCABULARY.place_openers);
/// Words that introduce light ("at sunset", "by moonlight") (`light-prepositions.txt`).
pub const LIGHT_PREPOSITIONS: Table<&str> = Table(|| &VOCABULARY.light_prepositions);
/// Words that may close a phrase but mean nothing on their own in the free text
/// (`function-words.txt`).
pub const FUNCTION_WORDS: Table<&str> = Table(|| &VOCABULARY.function_words);
/// Common English words that are never taken for a name even when capitalised at the start of a
/// sentence, and never taken for a place after a preposition (`common-words.txt`).
pub const COMMON_WORDS: Table<&str> = Table(|| &VOCABULARY.common_words);
/// Capitalised words that are never a person, a pet or a place: holidays and days of the week
/// (`never-names.txt`).
pub const NEVER_NAMES: Table<&str> = Table(|| &VOCABULARY.never_names);

/// Light tags that make an acceptable substitute, in order of preference, when the library has no
/// photo with the requested light (`light-neighbours.txt`). Used for suggestions, never applied
/// silently.
pub fn light_neighbours(light: Light) -> &'static [Light] {
    VOCABULARY
        .light_neighbours
        .iter()
        .find(|(key, _)| *key == light)
        .map(|(_, neighbours)| neighbours.as_slice())
        .unwrap_or_default()
}

/// Scenes that make a sensible substitute for a scene the library lacks, best first
/// (`related-scenes.txt`); suggestions offer these before any other scene the library has.
pub fn related_scenes(scene: &str) -> &'static [&'static str] {
    VOCABULARY
        .related_scenes
        .iter()
        .find(|(key, _)| *key == scene)
        .map(|(_, related)| related.as_slice())
        .unwrap_or_default()
}

/// Display names of all known artists, deduplicated, for suggestions.
pub fn artist_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = ARTISTS.iter().map(|(_, display, _)| *display).collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Words a library alias may use for a canonical relation ("Mum" is an alias for "mother").
pub fn relation_synonyms(canonical: &str) -> Vec<&'static str> {
    RELATIONS
        .iter()
        .filter(|(_, c)| *c == canonical)
        .map(|(word, _)| *word)
        .collect()
}

/// Every vocabulary, as read from the data files.
struct Vocabulary {
    light: Vec<(&'static str, Light)>,
    light_neighbours: Vec<(Light, Vec<Light>)>,
    scenes: Vec<(&'static str, &'static str)>,
    related_scenes: Vec<(&'static str, Vec<&'static str>)>,
    styles: Vec<(&'static str, &'static str)>,
    artists: Vec<(&'static str, &'static str, bool)>,
    relations: Vec<(&'static str, &'static str)>,
    pet_kinds: Vec<(&'static str, &'static str)>,
    objects: Vec<&'static str>,
    numbers: Vec<(&'static str, u32)>,
    spellings: Vec<(&'static str, &'static str)>,
    irregular_plurals: Vec<(&'static str, &'static str)>,
    self_words: Vec<&'static str>,
    possessives: Vec<&'static str>,
    place_prepositions: Vec<&'static str>,
    place_openers: Vec<&'static str>,
    light_prepositions: Vec<&'static str>,
    function_words: Vec<&'static str>,
    common_words: Vec<&'static str>,
    never_names: Vec<&'static str>,
}

/// A data file: its name (for errors) and its text.
type DataFile = (&'static str, &'static str);

macro_rules! data_file {
    ($name:literal) => {
        ($name, include_str!(concat!("data/", $name)))
    };
}

/// The data files, embedded at build time.
const FILES: [DataFile; 20] = [
    data_file!("light.txt"),
    data_file!("light-neighbours.txt"),
    data_file!("scenes.txt"),
    data_file!("related-scenes.txt"),
    data_file!("styles.txt"),
    data_file!("artists.txt"),
    data_file!("relations.txt"),
    data_file!("pet-kinds.txt"),
    data_file!("objects.txt"),
    data_file!("numbers.txt"),
    data_file!("spellings.txt"),
    data_file!("irregular-plurals.txt"),
    data_file!("self-words.txt"),
    data_file!("possessives.txt"),
    data_file!("place-prepositions.txt"),
    data_file!("place-openers.txt"),
    data_file!("light-prepositions.txt"),
    data_file!("function-words.txt"),
    data_file!("common-words.txt"),
    data_file!("never-names.txt"),
];

/// The unit tests read every file, so this cannot fail in a build whose tests pass.
static VOCABULARY: LazyLock<Vocabulary> =
    LazyLock::new(|| Vocabulary::read().unwrap_or_else(|error| panic!("{error}")));

/// Marks an artist phrase that is an artist only after a trigger.
const NEEDS_TRIGGER: &str = " (needs a trigger)";

impl Vocabulary {
    fn read() -> Result<Vocabulary, String> {
        let numbers = file("numbers.txt")?;
        Ok(Vocabulary {
            light: light_phrases(file("light.txt")?)?,
            light_neighbours: light_neighbours_map(file("light-neighbours.txt")?)?,
            scenes: rows(file("scenes.txt")?, Ok)?,
            related_scenes: map(file("related-scenes.txt")?)?,
            styles: rows(file("styles.txt")?, Ok)?,
            artists: artists(file("artists.txt")?)?,
            relations: rows(file("relations.txt")?, Ok)?,
            pet_kinds: rows(file("pet-kinds.txt")?, Ok)?,
            objects: list(file("objects.txt")?)?,
            numbers: rows(numbers, |value| {
                value
                    .parse()
                    .map_err(|_| format!("{}: {value:?} is not a number", numbers.0))
            })?,
            spellings: rows(file("spellings.txt")?, Ok)?,
            irregular_plurals: rows(file("irregular-plurals.txt")?, Ok)?,
            self_words: list(file("self-words.txt")?)?,
            possessives: list(file("possessives.txt")?)?,
            place_prepositions: list(file("place-prepositions.txt")?)?,
            place_openers: list(file("place-openers.txt")?)?,
            light_prepositions: list(file("light-prepositions.txt")?)?,
            function_words: list(file("function-words.txt")?)?,
            common_words: list(file("common-words.txt")?)?,
            never_names: list(file("never-names.txt")?)?,
        })
    }
}

fn file(name: &str) -> Result<DataFile, String> {
    FILES
        .into_iter()
        .find(|(file, _)| *file == name)
        .ok_or_else(|| format!("no data file {name}"))
}

fn light_phrases(file: DataFile) -> Result<Vec<(&'static str, Light)>, String> {
    rows(file, |tag| light_tag(file, tag))
}

fn light_neighbours_map(file: DataFile) -> Result<Vec<(Light, Vec<Light>)>, String> {
    map(file)?
        .into_iter()
        .map(|(tag, items)| {
            let neighbours = items
                .iter()
                .map(|item| light_tag(file, item))
                .collect::<Result<_, _>>()?;
            Ok((light_tag(file, tag)?, neighbours))
        })
        .collect()
}

fn artists(file: DataFile) -> Result<Vec<(&'static str, &'static str, bool)>, String> {
    Ok(rows(file, Ok)?
        .into_iter()
        .map(|(phrase, display)| {
            let needs_trigger = phrase.strip_suffix(NEEDS_TRIGGER);
            (
                needs_trigger.unwrap_or(phrase),
                display,
                needs_trigger.is_none(),
            )
        })
        .collect())
}

fn light_tag((file, _): DataFile, tag: &str) -> Result<Light, String> {
    Light::from_tag(tag).ok_or_else(|| format!("{file}: {tag:?} is no light tag"))
}

/// The lines that carry data: (line number, text), comments and blank lines left out.
fn data_lines(text: &'static str) -> impl Iterator<Item = (usize, &'static str)> {
    text.lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
}

/// Comma-separated items, trimmed; an empty item is an error.
fn items(file: &str, line: usize, text: &'static str) -> Result<Vec<&'static str>, String> {
    text.split(',')
        .map(str::trim)
        .map(|item| match item {
            "" => Err(format!("{file}:{line}: empty item")),
            item => Ok(item),
        })
        .collect()
}

/// A list file: every item, in order, each once.
fn list((file, text): DataFile) -> Result<Vec<&'static str>, String> {
    let mut all = Vec::new();
    let mut seen = HashSet::new();
    for (line, data) in data_lines(text) {
        // Items run on from line to line: a line may end with the comma before the next one.
        let data = data.strip_suffix(',').unwrap_or(data);
        for item in items(file, line, data)? {
            if !seen.insert(item) {
                return Err(format!("{file}:{line}: {item:?} is listed twice"));
            }
            all.push(item);
        }
    }
    Ok(all)
}

/// A map file: every entry as (key, items), in order; each key once, and each item once within
/// its entry.
fn map((file, text): DataFile) -> Result<Vec<(&'static str, Vec<&'static str>)>, String> {
    let mut entries: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for (line, data) in data_lines(text) {
        let Some((key, rest)) = data.split_once(':') else {
            return Err(format!("{file}:{line}: expected `key: item, item, ...`"));
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(format!("{file}:{line}: empty key"));
        }
        if entries.iter().any(|(k, _)| *k == key) {
            return Err(format!("{file}:{line}: key {key:?} appears twice"));
        }
        let items = items(file, line, rest)?;
        if let Some(twice) = items
            .iter()
            .enumerate()
            .find_map(|(i, item)| items[..i].contains(item).then_some(item))
        {
            return Err(format!("{file}:{line}: {twice:?} appears twice"));
        }
        entries.push((key, items));
    }
    Ok(entries)
}

/// A phrase map as rows `(phrase, value)`, in file order; a phrase belongs to one key only.
fn rows<T>(
    file: DataFile,
    value: impl Fn(&'static str) -> Result<T, String>,
) -> Result<Vec<(&'static str, T)>, String>
where
    T: Clone,
{
    let mut rows: Vec<(&'static str, T)> = Vec::new();
    for (key, items) in map(file)? {
        let value = value(key)?;
        for item in items {
            if rows.iter().any(|(phrase, _)| *phrase == item) {
                return Err(format!("{}: {item:?} is listed under two keys", file.0));
            }
            rows.push((item, value.clone()));
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::normalise_phrase;

    #[test]
    fn every_data_file_parses_without_duplicates() {
        if let Err(error) = Vocabulary::read() {
            panic!("{error}");
        }
        // Every file in data/ is embedded, and nothing else.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/data");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .expect("prompt/data exists")
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let mut read: Vec<&str> = FILES.iter().map(|(name, _)| *name).collect();
        read.sort_unstable();
        assert_eq!(on_disk, read);
    }

    #[test]
    fn broken_files_are_reported_with_their_line() {
        let file = |text| ("x.txt", text);
        assert_eq!(
            map(file("# c\na: b, c\na: d")).unwrap_err(),
            "x.txt:3: key \"a\" appears twice"
        );
        assert_eq!(
            map(file("a b")).unwrap_err(),
            "x.txt:1: expected `key: item, item, ...`"
        );
        assert_eq!(
            map(file("a: b, b")).unwrap_err(),
            "x.txt:1: \"b\" appears twice"
        );
        assert_eq!(
            rows(file("a: b\nc: b"), Ok).unwrap_err(),
            "x.txt: \"b\" is listed under two keys"
        );
        assert_eq!(list(file("a,, b")).unwrap_err(), "x.txt:1: empty item");
        assert_eq!(
            list(file("a, b\n\nb")).unwrap_err(),
            "x.txt:3: \"b\" is listed twice"
        );
        assert_eq!(list(file("a, b c,\n# d\ne")).unwrap(), ["a", "b c", "e"]);
    }

    #[test]
    fn phrases_are_written_in_normal_form() {
        let phrases = LIGHT_PHRASES
            .iter()
            .map(|(p, _)| *p)
            .chain(SCENE_PHRASES.iter().map(|(p, _)| *p))
            .chain(STYLE_PHRASES.iter().map(|(p, _)| *p))
            .chain(ARTISTS.iter().map(|(p, _, _)| *p))
            .chain(RELATIONS.iter().map(|(p, _)| *p))
            .chain(PET_KINDS.iter().map(|(p, _)| *p))
            .chain(OBJECTS.iter().copied());
        for phrase in phrases {
            assert_eq!(normalise_phrase(phrase), phrase);
        }
    }

    #[test]
    fn lookups_read_the_tables() {
        assert_eq!(
            light_neighbours(Light::Sunset),
            [Light::GoldenHour, Light::Dusk, Light::BlueHour]
        );
        assert_eq!(related_scenes("beach"), ["sea", "island", "lake"]);
        assert!(related_scenes("village").contains(&"street"));
        assert!(related_scenes("nowhere").is_empty());
        assert!(ARTISTS.contains(&("turner", "Turner", false)));
        assert!(ARTISTS.contains(&("monet", "Monet", true)));
        assert_eq!(relation_synonyms("mother").len(), 6);
        assert!(NUMBER_WORDS.contains(&("twenty", 20)));
        assert!(SPELLINGS.contains(&("colour", "color")));
        let mut styles = 0;
        for (_, style) in STYLE_PHRASES {
            styles += usize::from(*style == "watercolor");
        }
        assert_eq!(styles, 3);
    }
}
