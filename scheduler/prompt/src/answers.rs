//! What resolution answers about a reference the library could not satisfy: its kind, the prompt's
//! words, a sentence for the reply and the suggestions (ranked by `fuzzy`).

use serde::{Deserialize, Serialize};

/// What kind of reference could not be resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReferenceKind {
    Person,
    Pet,
    /// A bare name that is neither a person, a pet nor a place.
    Name,
    Place,
    Light,
    Scene,
    Album,
    Artist,
    Palette,
}

/// A reference the library could not satisfy, with a sentence for the reply and suggestions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unresolved {
    pub kind: ReferenceKind,
    /// The prompt's words.
    pub text: String,
    pub message: String,
    pub suggestions: Vec<String>,
}

/// The end of a reply's sentence offering `suggestions`: "; did you mean 'Rex'?".
pub(super) fn did_you_mean(suggestions: &[String]) -> String {
    match suggestions {
        [] => String::new(),
        [only] => format!("; did you mean '{only}'?"),
        [init @ .., last] => {
            let quoted: Vec<String> = init.iter().map(|s| format!("'{s}'")).collect();
            format!("; did you mean {} or '{last}'?", quoted.join(", "))
        }
    }
}
