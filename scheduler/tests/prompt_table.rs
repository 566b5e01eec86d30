//! The prompt table: every case in `prompts.json` is parsed, compared field by field with its
//! expected parse, and, where the case says so, resolved against the table's sample library.
//!
//! Expectations use a compact notation so that all fields are checked in every case (a field left
//! out of a case is expected to be empty); see `docs/prompts.md` for the notation. Run with
//! `PROMPT_TABLE_PRINT=1` to print the actual compact form of every case when updating the table.

use std::collections::BTreeMap;

use reverie_scheduler::prompt::{
    parse_prompt, resolve, GroupMention, LibraryCatalog, PaletteRequest, ParsedPrompt,
    PersonMention, PetMention, Resolution, ResolvedPalette,
};
use serde::Deserialize;
use serde_json::{json, Value};

const TABLE: &str = include_str!("prompts.json");

#[derive(Deserialize)]
struct Table {
    catalog: LibraryCatalog,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    prompt: String,
    /// Repeat the prompt this many times (joined by ", ") to build very long prompts.
    #[serde(default)]
    repeat: Option<usize>,
    parse: BTreeMap<String, Value>,
    #[serde(default)]
    resolve: Option<BTreeMap<String, Value>>,
}

fn person(p: &PersonMention) -> String {
    let mut out = if p.is_self {
        "me".to_string()
    } else {
        p.relation.clone().unwrap_or_else(|| "person".to_string())
    };
    if let Some(name) = &p.name {
        out.push_str(&format!(":{name}"));
    }
    match (p.count, p.plural) {
        (Some(n), _) => out.push_str(&format!("*{n}")),
        (None, true) => out.push('*'),
        (None, false) => {}
    }
    if let Some(owner) = &p.owner {
        out.push_str(&format!(" of {owner}"));
    }
    out
}

fn pet(p: &PetMention) -> String {
    let mut out = p.kind.clone().unwrap_or_else(|| "pet".to_string());
    if let Some(name) = &p.name {
        out.push_str(&format!(":{name}"));
    }
    match (p.count, p.plural) {
        (Some(n), _) if n != 1 || p.plural => out.push_str(&format!("*{n}")),
        (None, true) => out.push('*'),
        _ => {}
    }
    if !p.owned {
        out.push('?');
    }
    for descriptor in &p.descriptors {
        out.push_str(&format!(" +{descriptor}"));
    }
    out
}

fn group(g: &GroupMention) -> String {
    let size = g.size.map_or("?".to_string(), |n| n.to_string());
    if g.includes_self {
        format!("{size}+me")
    } else {
        size
    }
}

fn palette(p: &PaletteRequest) -> String {
    match p {
        PaletteRequest::Library => "library".to_string(),
        PaletteRequest::Album { name } => format!("album:{name}"),
        PaletteRequest::Named { name } => format!("named:{name}"),
    }
}

/// The compact form of a parse: only non-empty fields appear.
fn compact_parse(parsed: &ParsedPrompt) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let mut put = |key: &str, value: Value| {
        let empty = value.is_null()
            || value.as_array().is_some_and(Vec::is_empty)
            || value.as_str() == Some("");
        if !empty {
            out.insert(key.to_string(), value);
        }
    };
    let s = &parsed.subjects;
    put(
        "people",
        json!(s.people.iter().map(person).collect::<Vec<_>>()),
    );
    put("pets", json!(s.pets.iter().map(pet).collect::<Vec<_>>()));
    put("names", json!(s.names));
    put("group", json!(s.group.as_ref().map(group)));
    put(
        "objects",
        json!(s
            .objects
            .iter()
            .map(|o| match o.count {
                Some(1) => o.noun.clone(),
                Some(n) => format!("{}*{n}", o.noun),
                None => format!("{}*", o.noun),
            })
            .collect::<Vec<_>>()),
    );
    put(
        "places",
        json!(parsed
            .setting
            .places
            .iter()
            .map(|p| p.name.clone())
            .collect::<Vec<_>>()),
    );
    put(
        "light",
        json!(parsed
            .setting
            .light
            .iter()
            .map(|l| l.tag())
            .collect::<Vec<_>>()),
    );
    put("scenes", json!(parsed.setting.scenes));
    put("styles", json!(parsed.style.styles));
    put("artists", json!(parsed.style.artists));
    put("palette", json!(parsed.style.palette.as_ref().map(palette)));
    put(
        "albums",
        json!(parsed
            .albums
            .iter()
            .map(|a| a.name.clone())
            .collect::<Vec<_>>()),
    );
    put(
        "corrections",
        json!(parsed
            .corrections
            .iter()
            .map(|c| format!("{}>{}", c.written, c.read_as))
            .collect::<Vec<_>>()),
    );
    put("free_text", json!(parsed.free_text));
    out
}

/// The compact form of a resolution: ids, tags and "kind:text -> suggestions" for what is missing.
fn compact_resolution(resolution: &Resolution) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let mut put = |key: &str, value: Value| {
        let empty = value.is_null() || value.as_array().is_some_and(Vec::is_empty);
        if !empty {
            out.insert(key.to_string(), value);
        }
    };
    put(
        "people",
        json!(resolution
            .people
            .iter()
            .map(|p| p.id.clone())
            .collect::<Vec<_>>()),
    );
    put(
        "pets",
        json!(resolution
            .pets
            .iter()
            .map(|p| p.id.clone())
            .collect::<Vec<_>>()),
    );
    put(
        "places",
        json!(resolution
            .places
            .iter()
            .map(|p| p.id.clone())
            .collect::<Vec<_>>()),
    );
    put(
        "light",
        json!(resolution
            .light
            .iter()
            .map(|l| l.tag.clone())
            .collect::<Vec<_>>()),
    );
    put(
        "scenes",
        json!(resolution
            .scenes
            .iter()
            .map(|s| s.scene.clone())
            .collect::<Vec<_>>()),
    );
    put(
        "albums",
        json!(resolution
            .albums
            .iter()
            .map(|a| a.name.clone())
            .collect::<Vec<_>>()),
    );
    put(
        "palette",
        json!(resolution.style.palette.as_ref().map(|p| match p {
            ResolvedPalette::Library => "library".to_string(),
            ResolvedPalette::Album { name } => format!("album:{name}"),
            ResolvedPalette::Place { id, .. } => format!("place:{id}"),
        })),
    );
    put(
        "unresolved",
        json!(resolution
            .unresolved
            .iter()
            .map(|u| {
                let kind = serde_json::to_value(u.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string));
                format!(
                    "{}:{} -> {}",
                    kind.unwrap_or_default(),
                    u.text,
                    u.suggestions.join("|")
                )
            })
            .collect::<Vec<_>>()),
    );
    out
}

#[test]
fn prompt_table_parses_and_resolves_as_expected() {
    let table: Table = serde_json::from_str(TABLE).expect("prompts.json is valid");
    assert!(
        table.cases.len() >= 60,
        "the table needs at least 60 prompts"
    );
    let print = std::env::var_os("PROMPT_TABLE_PRINT").is_some();
    let mut failures = Vec::new();
    for case in &table.cases {
        let prompt = match case.repeat {
            Some(n) => vec![case.prompt.as_str(); n].join(", "),
            None => case.prompt.clone(),
        };
        let parsed = parse_prompt(&prompt);
        let actual = compact_parse(&parsed);
        let resolution = resolve(&parsed, &table.catalog);
        let actual_resolution = compact_resolution(&resolution);
        if print {
            println!(
                "{}\n  parse: {}\n  resolve: {}",
                case.prompt,
                json!(actual),
                json!(actual_resolution)
            );
        }
        if actual != case.parse {
            failures.push(format!(
                "prompt {:?}\n  expected parse {}\n  actual parse   {}",
                case.prompt,
                json!(case.parse),
                json!(actual)
            ));
        }
        if let Some(expected) = &case.resolve {
            if &actual_resolution != expected {
                failures.push(format!(
                    "prompt {:?}\n  expected resolution {}\n  actual resolution   {}",
                    case.prompt,
                    json!(expected),
                    json!(actual_resolution)
                ));
            }
        }
        // Every unresolved reference carries a sentence for the reply.
        assert!(resolution.unresolved.iter().all(|u| !u.message.is_empty()));
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        table.cases.len(),
        failures.join("\n")
    );
}

#[test]
fn unresolved_names_come_with_did_you_mean() {
    let table: Table = serde_json::from_str(TABLE).expect("prompts.json is valid");
    let resolution = resolve(&parse_prompt("Rox and me on the beach"), &table.catalog);
    let messages: Vec<&str> = resolution
        .unresolved
        .iter()
        .map(|u| u.message.as_str())
        .collect();
    assert_eq!(
        messages,
        ["no person, pet or place named 'Rox'; did you mean 'Rex'?"]
    );
}

#[test]
fn me_without_a_self_person_is_explained() {
    let catalog = LibraryCatalog::default();
    let resolution = resolve(&parse_prompt("me at sunset"), &catalog);
    let me = resolution
        .unresolved
        .iter()
        .find(|u| u.text == "me")
        .expect("me is unresolved");
    assert!(
        me.message
            .contains("no person in your library is marked as you"),
        "{}",
        me.message
    );
}
