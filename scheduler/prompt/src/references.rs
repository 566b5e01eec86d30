//! What a prompt refers to: the [`ParsedPrompt`] the grammar produces and the resolver ties to the
//! library. Plain data, serialised into records and replies.

use serde::{Deserialize, Serialize};

/// A prompt split into what it refers to and what is left for the model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ParsedPrompt {
    pub subjects: Subjects,
    pub setting: Setting,
    pub style: StyleRequest,
    /// Albums named as a source ("from my Hawaii album").
    pub albums: Vec<AlbumMention>,
    /// Words the parser read as a misspelt vocabulary word; reported, never applied silently.
    pub corrections: Vec<Correction>,
    /// What the parser did not consume, with dangling connectors removed.
    pub free_text: String,
}

/// Who or what is in the picture.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Subjects {
    pub people: Vec<PersonMention>,
    pub pets: Vec<PetMention>,
    /// Capitalised (or listed) names the prompt does not say are people or pets ("Anna", "Rex"); the
    /// resolver looks them up among people, then pets, then places.
    pub names: Vec<String>,
    /// "the two of us", "our family", "three people".
    pub group: Option<GroupMention>,
    /// Recognised things ("balloon", "guitar"); also left in the free text for their adjectives.
    pub objects: Vec<ObjectMention>,
}

/// A person referred to by self-reference, relation, or relation plus name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonMention {
    /// The words as written ("my wife Anna", "me").
    pub text: String,
    /// "me", "I", "myself".
    pub is_self: bool,
    /// Canonical relation ("mother" for "mum"), if one was used.
    pub relation: Option<String>,
    /// A name given with the relation ("my daughter Rose").
    pub name: Option<String>,
    /// Whose relation it is when not the tenant's own ("Anna's husband").
    pub owner: Option<String>,
    /// "our three kids" -> 3; `None` when no number was given.
    pub count: Option<u32>,
    /// Written in the plural ("my kids"): every matching person, not one.
    pub plural: bool,
}

/// A pet by kind, by name or both ("our two cats", "my dog Rex", "Rex the dog").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PetMention {
    pub text: String,
    pub name: Option<String>,
    /// Canonical kind ("dog" for "puppy").
    pub kind: Option<String>,
    /// "our two cats" -> 2; `None` when no number was given.
    pub count: Option<u32>,
    /// Written in the plural ("our cats"): every matching pet, not one.
    pub plural: bool,
    /// Said with "my"/"our"/"the" or a name: it must be one of the tenant's pets. "a dog" is any
    /// dog (the tenant's own when there are some) and stays in the free text for the model.
    pub owned: bool,
    /// Words between the determiner and the kind ("little", "fluffy").
    pub descriptors: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMention {
    pub text: String,
    pub size: Option<u32>,
    pub includes_self: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMention {
    pub noun: String,
    /// `Some(1)` for "a kite", `Some(3)` for "three kites", `None` for "kites".
    pub count: Option<u32>,
}

/// Where and when.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Setting {
    pub places: Vec<PlaceMention>,
    pub light: Vec<Light>,
    /// Canonical scene words ("beach" for "seaside").
    pub scenes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaceMention {
    /// The words as written, with their preposition ("in Paris").
    pub text: String,
    /// The place name ("Paris", "home").
    pub name: String,
}

/// The light of a scene; the serialised names are the library's light tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Light {
    Sunrise,
    Sunset,
    GoldenHour,
    BlueHour,
    Dawn,
    Dusk,
    Night,
    Daylight,
    Overcast,
}

impl Light {
    pub const ALL: [Light; 9] = [
        Light::Sunrise,
        Light::Sunset,
        Light::GoldenHour,
        Light::BlueHour,
        Light::Dawn,
        Light::Dusk,
        Light::Night,
        Light::Daylight,
        Light::Overcast,
    ];

    /// The light tag as the library stores it.
    pub fn tag(self) -> &'static str {
        match self {
            Light::Sunrise => "sunrise",
            Light::Sunset => "sunset",
            Light::GoldenHour => "golden_hour",
            Light::BlueHour => "blue_hour",
            Light::Dawn => "dawn",
            Light::Dusk => "dusk",
            Light::Night => "night",
            Light::Daylight => "daylight",
            Light::Overcast => "overcast",
        }
    }

    /// Reads a light tag, accepting spaces or hyphens for underscores ("golden hour").
    pub fn from_tag(tag: &str) -> Option<Light> {
        let key = tag.trim().to_lowercase().replace([' ', '-'], "_");
        Light::ALL.into_iter().find(|light| light.tag() == key)
    }
}

/// How it should look.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StyleRequest {
    /// Canonical art styles ("watercolor", "oil painting").
    pub styles: Vec<String>,
    /// Artists as written or, when known, by their usual name ("Van Gogh").
    pub artists: Vec<String>,
    pub palette: Option<PaletteRequest>,
}

/// Where the colours should come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum PaletteRequest {
    /// "in my colours": the tenant's whole library.
    Library,
    /// "in the colours of my Hawaii album".
    Album { name: String },
    /// "in the colours of Hawaii": an album or a place, whichever the library has.
    Named { name: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlbumMention {
    pub text: String,
    pub name: String,
}

/// A word read as a misspelling of a vocabulary word ("sunest" -> "sunset").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Correction {
    pub written: String,
    pub read_as: String,
}
