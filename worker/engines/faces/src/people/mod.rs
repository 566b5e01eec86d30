//! People: grouping face descriptors into people, representative faces, naming,
//! merging and splitting. Pure domain logic; callers persist the state (every type
//! is serde-serialisable).
//!
//! Method. dlib's descriptor is trained so that two faces of the same person are
//! closer than 0.6 (Euclidean); the model file stores that threshold and dlib
//! reports 99.38 % pair accuracy on LFW with it. A library is grouped as a whole,
//! every time faces are added, so the people depend only on the faces and on the
//! user's edits, never on the order or the batches the faces came in:
//!
//! * **Average linkage.** Agglomerative clustering over all known faces (people,
//!   pending and new): the two groups with the lowest mean excess
//!   `d(a, b) - t(a, b)` over *all* their pairs of faces merge first, while that
//!   mean is negative. One close pair cannot chain two groups together; a person's
//!   varied photos (age, pose, light) still join as long as they are near the
//!   person on average.
//! * **Quality-aware threshold.** `t(a, b)` is the stricter of the two faces'
//!   thresholds ([`match_threshold`]): 0.6 for a face of quality at least 1/16
//!   ([`FaceQuality::score`]), 0.1 less for each halving of the quality below that,
//!   never below 0.4. Blurred, tiny or badly lit faces have descriptors pulled
//!   together whoever they show (strangers at 0.5 instead of 0.8), while the same
//!   person stays at about 0.3 to 0.5; without this, blurred photos of different
//!   people become one person.
//! * **Two lone faces** found a group only below 0.5 ([`FEW_FACES_DISTANCE`]): one
//!   pair is weak evidence (look-alike strangers sit at about 0.55); a third face
//!   joins a group of two by the mean rule.
//! * **Cannot-link:** two faces of one photo are never one person; faces the user
//!   split apart stay apart; two named people (or a named one and the user) never
//!   merge.
//! * **Must-link:** faces of people the user merged start as one group.
//! * **Stable ids.** The new groups are matched to the previous people by shared
//!   faces (named people and the user's own first, then largest overlap), so ids,
//!   names and "me" stay with their person; groups without a match get new ids.
//! * A group of one face becomes a person only when the face is large, sharp and
//!   frontal ([`LONE_FACE_MIN_QUALITY`]), is named, or was edited by the user;
//!   other lone faces wait in `pending` and are grouped again with every addition.
//!
//! Candidate pairs of groups come from a neighbour graph (each face's
//! [`MAX_NEIGHBOURS`] nearest faces under 0.6, both directions), so memory grows
//! with the number of faces rather than its square; the mean of two candidate
//! groups is always computed over all their pairs.
//!
//! The parts: `quality` (a face's quality, its threshold, descriptor distance), `neighbours` (the
//! candidate graph), `cluster` (the average-linkage agglomeration with constraints), `grouping`
//! (regrouping a library and keeping ids and names with their people) and `edits` (naming,
//! merging, splitting, and the user's edits they leave for later groupings).

mod cluster;
mod edits;
mod grouping;
mod neighbours;
mod quality;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::analyzer::FaceBox;

pub use edits::{Apart, UserEdits};
pub use quality::{distance, match_threshold, FaceQuality};

/// dlib's same-person threshold (also stored in the descriptor model file), used for
/// faces of good quality.
pub const SAME_PERSON_DISTANCE: f32 = 0.6;
/// Quality ([`FaceQuality::score`]) from which a face gets the full
/// [`SAME_PERSON_DISTANCE`].
pub const RELIABLE_QUALITY: f32 = 1.0 / 16.0;
/// How much stricter the threshold gets for each halving of the quality below
/// [`RELIABLE_QUALITY`].
pub const THRESHOLD_STEP_PER_HALVING: f32 = 0.1;
/// The strictest threshold (faces nobody could recognise).
pub const MIN_MATCH_THRESHOLD: f32 = 0.4;
/// Distance under which two lone faces found a group. Stricter than 0.6 because one
/// pair is weak evidence: dlib's 0.6 operating point accepts look-alike strangers at
/// about 0.55 (seen in group photos), while the same person rarely needs more than
/// 0.5 between two photos once a third photo links them.
pub const FEW_FACES_DISTANCE: f32 = 0.5;
/// A lone face becomes a person only with at least this quality (see [`FaceQuality::score`]).
pub const LONE_FACE_MIN_QUALITY: f32 = 0.5;
/// Neighbours per face in the candidate graph.
pub const MAX_NEIGHBOURS: usize = 64;

/// Identifies one face: the photo it is in and its box there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaceRecord {
    pub photo: String,
    #[serde(rename = "box")]
    pub bbox: FaceBox,
    pub descriptor: Vec<f32>,
    pub quality: FaceQuality,
}

impl FaceRecord {
    pub fn key(&self) -> FaceKey {
        FaceKey {
            photo: self.photo.clone(),
            bbox: self.bbox,
        }
    }
}

/// A face without its descriptor: photo and box, as user edits refer to faces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaceKey {
    pub photo: String,
    #[serde(rename = "box")]
    pub bbox: FaceBox,
}

impl FaceKey {
    fn sort_key(&self) -> (&str, [i64; 4]) {
        sort_key(&self.photo, &self.bbox)
    }
}

impl PartialOrd for FaceKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for FaceKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.sort_key().cmp(&other.sort_key())
    }
}

fn sort_key<'a>(photo: &'a str, b: &FaceBox) -> (&'a str, [i64; 4]) {
    (photo, [b.left, b.top, b.right, b.bottom])
}

/// One person: their faces and an optional name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Person {
    pub id: u64,
    pub name: Option<String>,
    pub faces: Vec<FaceRecord>,
    /// Index into `faces` of the representative face.
    pub representative: usize,
}

impl Person {
    fn update_representative(&mut self) {
        self.representative = self
            .faces
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.quality.score().total_cmp(&b.1.quality.score()))
            .map_or(0, |(i, _)| i);
    }
}

/// Errors of people operations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeopleError {
    #[error("no person with id {0}")]
    UnknownPerson(u64),
    #[error("no person is named or aliased {0:?}")]
    UnknownName(String),
    #[error("person {person} has no face at {photo} {bbox:?}")]
    UnknownFace {
        person: u64,
        photo: String,
        bbox: FaceBox,
    },
    #[error("no person is marked as self, so {0:?} cannot be resolved")]
    NoSelf(String),
}

/// A name region from a sidecar (Takeout people, XMP face regions), in original
/// pixels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedRegion {
    pub photo: String,
    pub name: String,
    #[serde(rename = "box")]
    pub bbox: FaceBox,
}

/// Minimum IoU for a sidecar region to name a detected face.
pub const REGION_MIN_IOU: f32 = 0.3;

/// All people of one tenant plus the faces still waiting for a match.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct People {
    pub people: Vec<Person>,
    pub pending: Vec<FaceRecord>,
    pub self_person: Option<u64>,
    next_id: u64,
    /// The user's merges and splits, honoured by every later grouping (absent in files
    /// written before they were kept).
    #[serde(default, skip_serializing_if = "UserEdits::is_empty")]
    pub edits: UserEdits,
}

/// The words that mean "the tenant themselves".
pub fn is_self_alias(name: &str) -> bool {
    matches!(name.trim().to_lowercase().as_str(), "me" | "i" | "myself")
}
impl People {
    pub fn new() -> Self {
        Self::default()
    }

    fn new_person(&mut self, faces: Vec<FaceRecord>) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let mut person = Person {
            id,
            name: None,
            faces,
            representative: 0,
        };
        person.update_representative();
        self.people.push(person);
        id
    }

    /// Adds new faces and groups all known faces again (the module docs describe the
    /// method); a face already known (same photo and box) is not added twice. Returns
    /// the person each given face is in afterwards (None = pending). The result depends
    /// only on the set of faces and the user's edits, not on the order or batches the
    /// faces came in; ids, names and "me" stay with the people they belonged to.
    pub fn add_faces(&mut self, faces: Vec<FaceRecord>) -> Vec<Option<u64>> {
        if faces.is_empty() {
            return Vec::new();
        }
        let keys: Vec<FaceKey> = faces.iter().map(FaceRecord::key).collect();
        self.regroup(faces);
        let owner: BTreeMap<FaceKey, u64> = self
            .people
            .iter()
            .flat_map(|p| p.faces.iter().map(move |f| (f.key(), p.id)))
            .collect();
        keys.iter().map(|k| owner.get(k).copied()).collect()
    }

    fn index_of(&self, id: u64) -> Result<usize, PeopleError> {
        self.people
            .iter()
            .position(|p| p.id == id)
            .ok_or(PeopleError::UnknownPerson(id))
    }

    pub fn person(&self, id: u64) -> Option<&Person> {
        self.people.iter().find(|p| p.id == id)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::resnet::DESCRIPTOR_LEN;

    #[test]
    fn a_face_without_a_descriptor_links_to_nothing() {
        let face = |photo: &str, descriptor: Vec<f32>| FaceRecord {
            photo: photo.into(),
            bbox: FaceBox {
                left: 0,
                top: 0,
                right: 99,
                bottom: 99,
            },
            descriptor,
            quality: FaceQuality {
                sharpness: 200.0,
                frontalness: 1.0,
                size: 100.0,
            },
        };
        let mut far = vec![0.0; DESCRIPTOR_LEN];
        far[0] = 3.0;
        let mut people = People::new();
        let ids = people.add_faces(vec![
            face("a", vec![0.0; DESCRIPTOR_LEN]),
            face("b", far),
            face("c", Vec::new()),
        ]);
        let distinct: BTreeSet<Option<u64>> = ids.iter().copied().collect();
        assert_eq!(distinct.len(), 3, "{ids:?}");
    }
}
