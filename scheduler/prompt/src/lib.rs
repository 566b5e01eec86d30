//! Prompt understanding: a rule-based parser that turns a prompt into subjects, setting, style and
//! free text ([`parse_prompt`]), and a resolver that ties every reference to the tenant's library or
//! reports it as unresolved with suggestions ([`resolve`]).
//!
//! The stages, in the order a prompt meets them:
//!
//! 1. `tokens`: the prompt cleaned and cut into words, numbers and punctuation, each with its
//!    normal form (lower case, diacritics folded, American spelling).
//! 2. `grammar`: rule passes over the tokens in a fixed order, each consuming what it understands;
//!    what is left is the free text. The result is a [`ParsedPrompt`] (`references`: what the
//!    prompt refers to).
//! 3. `resolution`: every reference looked up in the tenant's [`LibraryCatalog`] (`catalog`: what
//!    the library offers, found by normal form) and tied to library ids, or
//! 4. `answers`: reported [`Unresolved`], with a sentence for the reply and suggestions ranked by
//!    `fuzzy`.
//!
//! The vocabularies every stage reads are data, in `prompt/data/`, loaded by `lexicon`. The grammar,
//! vocabularies and examples are documented in `docs/prompts.md`.

mod answers;
mod catalog;
mod fuzzy;
mod grammar;
mod lexicon;
mod references;
mod resolution;
mod tokens;

pub use answers::{ReferenceKind, Unresolved};
pub use catalog::{CatalogPerson, CatalogPet, CatalogPlace, LibraryCatalog};
pub use fuzzy::{phonetic_key, similarity, suggest};
pub use grammar::parse_prompt;
/// Each style phrase a prompt may use, with the style it names (the `GET /v1/styles` list).
pub use lexicon::STYLE_PHRASES;
pub use references::{
    AlbumMention, Correction, GroupMention, Light, ObjectMention, PaletteRequest, ParsedPrompt,
    PersonMention, PetMention, PlaceMention, Setting, StyleRequest, Subjects,
};
pub use resolution::{
    resolve, Resolution, ResolvedAlbum, ResolvedLight, ResolvedPalette, ResolvedPerson,
    ResolvedPet, ResolvedPlace, ResolvedScene, ResolvedStyle,
};
