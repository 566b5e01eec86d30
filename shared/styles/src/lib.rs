//! The painterly presets by name, and the spellings a person or a prompt may use for each.
//!
//! The scheduler needs to know which styles the painterly renderer paints (to list them, and to plan
//! a job without diffusion weights); the painter needs the same names to pick its parameters. Both
//! read them here, so neither role reaches into the other's crate.

/// The painterly presets' canonical names, in the order a contact sheet shows them.
pub const PRESET_NAMES: [&str; 9] = [
    "impressionist",
    "expressionist",
    "pointillist",
    "colourist-wash",
    "watercolour",
    "oil",
    "pencil",
    "charcoal",
    "pop-art",
];

/// Each preset with the spellings that name it, after [`normalise`]: American and British
/// spellings, the movement's name beside the painter's, the medium's everyday words.
const SPELLINGS: [(&str, &[&str]); 9] = [
    ("impressionist", &["impressionist", "impressionism"]),
    ("expressionist", &["expressionist", "expressionism"]),
    ("pointillist", &["pointillist", "pointillism"]),
    (
        "colourist-wash",
        &["colourist wash", "colorist wash", "wash"],
    ),
    (
        "watercolour",
        &["watercolour", "watercolor", "water colour", "water color"],
    ),
    ("oil", &["oil", "oil paint", "oil painting", "impasto"]),
    ("pencil", &["pencil", "sketch", "pencil sketch", "drawing"]),
    ("charcoal", &["charcoal", "charcoal sketch"]),
    ("pop-art", &["pop art", "pop", "halftone", "comic"]),
];

/// The canonical preset that `name` spells, if any: case, surrounding space, and `-`/`_` between
/// words do not matter ("Watercolor", "oil_painting", "pop-art").
pub fn preset_name(name: &str) -> Option<&'static str> {
    let key = normalise(name);
    SPELLINGS
        .iter()
        .find(|(_, spellings)| spellings.contains(&key.as_str()))
        .map(|(preset, _)| *preset)
}

/// Lower case, `-` and `_` as spaces, runs of space as one.
fn normalise(name: &str) -> String {
    let spaced: String = name
        .trim()
        .to_lowercase()
        .chars()
        .map(|c| if c == '_' || c == '-' { ' ' } else { c })
        .collect();
    spaced.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_names_itself_and_has_spellings() {
        for name in PRESET_NAMES {
            assert_eq!(preset_name(name), Some(name));
        }
        let spelled: Vec<&str> = SPELLINGS.iter().map(|(preset, _)| *preset).collect();
        assert_eq!(spelled, PRESET_NAMES);
    }

    #[test]
    fn spellings_ignore_case_and_separators() {
        assert_eq!(preset_name("  Watercolor "), Some("watercolour"));
        assert_eq!(preset_name("oil_painting"), Some("oil"));
        assert_eq!(preset_name("Colorist-Wash"), Some("colourist-wash"));
        assert_eq!(preset_name("pop  art"), Some("pop-art"));
        assert_eq!(preset_name("cubism"), None);
        assert_eq!(preset_name(""), None);
    }
}
