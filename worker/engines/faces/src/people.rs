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

use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};

use serde::{Deserialize, Serialize};

use crate::analyzer::FaceBox;
use crate::resnet::DESCRIPTOR_LEN;

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

/// How good a face is as a representative: sharpness of the chip, frontalness from
/// the landmarks, and size of the box.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FaceQuality {
    /// Variance of the Laplacian of the gray chip (higher = sharper).
    pub sharpness: f32,
    /// 1 for a frontal face, towards 0 as the nose moves to one eye.
    pub frontalness: f32,
    /// Box width in original pixels.
    pub size: f32,
}

impl FaceQuality {
    /// Measures a face from its chip, landmarks and box.
    pub fn measure(chip: &image::RgbImage, landmarks: &[[i64; 2]], bbox: &FaceBox) -> Self {
        Self {
            sharpness: laplacian_variance(chip),
            frontalness: frontalness(landmarks),
            size: (bbox.right - bbox.left + 1).max(0) as f32,
        }
    }

    /// Combined quality in [0, 1]: each factor saturates at a typical good value
    /// (Laplacian variance 100, an 80 px face, a perfectly centred nose).
    pub fn score(&self) -> f32 {
        let sharp = (self.sharpness / 100.0).min(1.0);
        let size = (self.size / 80.0).min(1.0);
        sharp * size * self.frontalness.clamp(0.0, 1.0)
    }
}

/// The distance under which this face may be the same person as another face of at
/// least its quality: [`SAME_PERSON_DISTANCE`] from [`RELIABLE_QUALITY`] up,
/// [`THRESHOLD_STEP_PER_HALVING`] less for each halving of the quality below it, never
/// below [`MIN_MATCH_THRESHOLD`]. A pair of faces uses the smaller of their two
/// thresholds.
pub fn match_threshold(quality: &FaceQuality) -> f32 {
    let score = quality.score();
    if score.is_nan() || score <= 0.0 {
        return MIN_MATCH_THRESHOLD;
    }
    let halvings = (score / RELIABLE_QUALITY).min(1.0).log2();
    (SAME_PERSON_DISTANCE + THRESHOLD_STEP_PER_HALVING * halvings).max(MIN_MATCH_THRESHOLD)
}

fn laplacian_variance(chip: &image::RgbImage) -> f32 {
    let gray = image::imageops::grayscale(chip);
    let (w, h) = (gray.width() as i64, gray.height() as i64);
    if w < 3 || h < 3 {
        return 0.0;
    }
    let at = |x: i64, y: i64| f32::from(gray.get_pixel(x as u32, y as u32)[0]);
    let mut values = Vec::with_capacity(((w - 2) * (h - 2)) as usize);
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            values.push(at(x - 1, y) + at(x + 1, y) + at(x, y - 1) + at(x, y + 1) - 4.0 * at(x, y));
        }
    }
    let n = values.len() as f32;
    let mean = values.iter().sum::<f32>() / n;
    values.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / n
}

/// Frontalness from the 5 landmarks: the nose (4) sits midway between the two eye
/// centres in a frontal face; turning the head moves it towards one eye.
fn frontalness(landmarks: &[[i64; 2]]) -> f32 {
    if landmarks.len() < 5 {
        return 0.0;
    }
    let centre = |a: usize, b: usize| {
        (
            (landmarks[a][0] + landmarks[b][0]) as f32 / 2.0,
            (landmarks[a][1] + landmarks[b][1]) as f32 / 2.0,
        )
    };
    let (right_eye, left_eye) = (centre(0, 1), centre(2, 3));
    let nose = (landmarks[4][0] as f32, landmarks[4][1] as f32);
    let dist = |a: (f32, f32), b: (f32, f32)| (a.0 - b.0).hypot(a.1 - b.1);
    let (d1, d2) = (dist(nose, right_eye), dist(nose, left_eye));
    if d1 + d2 == 0.0 {
        return 0.0;
    }
    1.0 - (d1 - d2).abs() / (d1 + d2)
}

/// Euclidean distance of two descriptors.
pub fn distance(a: &[f32], b: &[f32]) -> f32 {
    // Eight partial sums so the compiler can vectorise; 128 = 16 x 8.
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            let d = x[k] - y[k];
            acc[k] += d * d;
        }
    }
    let mut sum = acc.iter().sum::<f32>();
    for (x, y) in ra.iter().zip(rb) {
        sum += (x - y) * (x - y);
    }
    sum.sqrt()
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

/// What the user said about faces, kept so that grouping again honours it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserEdits {
    /// Faces of people the user merged: always one person (must-link).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub together: Vec<Vec<FaceKey>>,
    /// Faces the user split off a person, and the faces it kept: never one person
    /// (cannot-link between the two lists).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub apart: Vec<Apart>,
}

impl UserEdits {
    pub fn is_empty(&self) -> bool {
        self.together.is_empty() && self.apart.is_empty()
    }

    /// Every face a merge or split names.
    fn faces(&self) -> BTreeSet<&FaceKey> {
        let together = self.together.iter().flatten();
        let apart = self
            .apart
            .iter()
            .flat_map(|a| a.split_off.iter().chain(&a.rest));
        together.chain(apart).collect()
    }

    /// Records a merge: the faces become one must-link group, absorbing the groups
    /// they overlap; a split that the merge contradicts is forgotten.
    fn record_merge(&mut self, faces: Vec<FaceKey>) {
        let mut group: BTreeSet<FaceKey> = faces.into_iter().collect();
        self.apart.retain(|a| {
            !(a.split_off.iter().any(|k| group.contains(k))
                && a.rest.iter().any(|k| group.contains(k)))
        });
        let mut kept = Vec::new();
        for g in std::mem::take(&mut self.together) {
            if g.iter().any(|k| group.contains(k)) {
                group.extend(g);
            } else {
                kept.push(g);
            }
        }
        kept.push(group.into_iter().collect());
        self.together = kept;
    }

    /// Records a split: the split-off faces leave every must-link group (except one
    /// made only of them) and may never join the rest.
    fn record_split(&mut self, split_off: Vec<FaceKey>, rest: Vec<FaceKey>) {
        let moved: BTreeSet<&FaceKey> = split_off.iter().collect();
        for g in &mut self.together {
            if !g.iter().all(|k| moved.contains(k)) {
                g.retain(|k| !moved.contains(k));
            }
        }
        self.together.retain(|g| g.len() > 1);
        if !split_off.is_empty() && !rest.is_empty() {
            self.apart.push(Apart { split_off, rest });
        }
    }
}

/// A user split: `split_off` faces never share a person with `rest` faces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Apart {
    pub split_off: Vec<FaceKey>,
    pub rest: Vec<FaceKey>,
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

fn iou(a: &FaceBox, b: &FaceBox) -> f32 {
    let inter_w = (a.right.min(b.right) - a.left.max(b.left) + 1).max(0);
    let inter_h = (a.bottom.min(b.bottom) - a.top.max(b.top) + 1).max(0);
    let inter = (inter_w * inter_h) as f32;
    let area = |r: &FaceBox| ((r.right - r.left + 1).max(0) * (r.bottom - r.top + 1).max(0)) as f32;
    let union = area(a) + area(b) - inter;
    if union <= 0.0 {
        0.0
    } else {
        inter / union
    }
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

    /// Groups every known face plus `new` from scratch, honouring the user's edits, then
    /// gives each group the id and name of the person it shares most faces with.
    fn regroup(&mut self, new: Vec<FaceRecord>) {
        let old_people = std::mem::take(&mut self.people);
        let mut by_key: BTreeMap<FaceKey, FaceRecord> = BTreeMap::new();
        let mut previous: BTreeMap<FaceKey, u64> = BTreeMap::new();
        for person in &old_people {
            for face in &person.faces {
                previous.insert(face.key(), person.id);
                by_key.entry(face.key()).or_insert_with(|| face.clone());
            }
        }
        for face in std::mem::take(&mut self.pending).into_iter().chain(new) {
            by_key.entry(face.key()).or_insert(face);
        }
        // Canonical order (photo, box): the grouping sees the same input whatever
        // order the faces arrived in.
        let keys: Vec<FaceKey> = by_key.keys().cloned().collect();
        let mut faces: Vec<Option<FaceRecord>> = by_key.into_values().map(Some).collect();
        let index = |k: &FaceKey| keys.binary_search(k).ok();
        let indices = |ks: &[FaceKey]| -> Vec<usize> { ks.iter().filter_map(index).collect() };

        let together: Vec<Vec<usize>> = self.edits.together.iter().map(|g| indices(g)).collect();
        let apart: Vec<(Vec<usize>, Vec<usize>)> = self
            .edits
            .apart
            .iter()
            .map(|a| (indices(&a.split_off), indices(&a.rest)))
            .collect();
        let prominent = |p: &Person| p.name.is_some() || self.self_person == Some(p.id);
        let named: Vec<Vec<usize>> = old_people
            .iter()
            .filter(|p| prominent(p))
            .map(|p| p.faces.iter().filter_map(|f| index(&f.key())).collect())
            .collect();

        let groups = {
            let records: Vec<&FaceRecord> = faces.iter().flatten().collect();
            cluster(&records, &together, &apart, &named)
        };

        // Which groups are people: more than one face, or one face that is good
        // enough, named, or edited by the user.
        let mut edited = vec![false; keys.len()];
        for i in named.iter().flatten() {
            edited[*i] = true;
        }
        let mentioned = self.edits.faces();
        for (i, key) in keys.iter().enumerate() {
            edited[i] |= mentioned.contains(key);
        }
        let is_person = |g: &Vec<usize>| {
            g.len() > 1
                || edited[g[0]]
                || faces[g[0]]
                    .as_ref()
                    .is_some_and(|f| f.quality.score() >= LONE_FACE_MIN_QUALITY)
        };
        let (person_groups, pending_groups): (Vec<Vec<usize>>, Vec<Vec<usize>>) =
            groups.into_iter().partition(is_person);

        // Match groups to previous people: named people and the user first, then the
        // largest overlap, then the older id.
        let old: BTreeMap<u64, &Person> = old_people.iter().map(|p| (p.id, p)).collect();
        let mut candidates = Vec::new();
        for (g, members) in person_groups.iter().enumerate() {
            let mut overlap: BTreeMap<u64, usize> = BTreeMap::new();
            for &i in members {
                if let Some(id) = previous.get(&keys[i]) {
                    *overlap.entry(*id).or_default() += 1;
                }
            }
            for (id, count) in overlap {
                let first = old.get(&id).is_some_and(|p| prominent(p));
                candidates.push((std::cmp::Reverse(first), std::cmp::Reverse(count), id, g));
            }
        }
        candidates.sort();
        let mut id_of_group: Vec<Option<u64>> = vec![None; person_groups.len()];
        let mut taken: BTreeSet<u64> = BTreeSet::new();
        for (_, _, id, g) in candidates {
            if id_of_group[g].is_none() && !taken.contains(&id) {
                id_of_group[g] = Some(id);
                taken.insert(id);
            }
        }

        for (g, members) in person_groups.into_iter().enumerate() {
            let mut members = members;
            members.sort_unstable();
            let group_faces: Vec<FaceRecord> =
                members.iter().filter_map(|&i| faces[i].take()).collect();
            match id_of_group[g] {
                Some(id) => {
                    let mut person = Person {
                        id,
                        name: old.get(&id).and_then(|p| p.name.clone()),
                        faces: group_faces,
                        representative: 0,
                    };
                    person.update_representative();
                    self.people.push(person);
                }
                None => {
                    self.new_person(group_faces);
                }
            }
        }
        self.people.sort_by_key(|p| p.id);
        let mut pending: Vec<usize> = pending_groups.into_iter().flatten().collect();
        pending.sort_unstable();
        self.pending = pending
            .into_iter()
            .filter_map(|i| faces[i].take())
            .collect();
        if let Some(me) = self.self_person {
            if self.person(me).is_none() {
                self.self_person = None;
            }
        }
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

    /// Names a person; "me"/"I"/"myself" marks them as the tenant themselves.
    pub fn name(&mut self, id: u64, name: &str) -> Result<(), PeopleError> {
        let index = self.index_of(id)?;
        if is_self_alias(name) {
            self.self_person = Some(id);
        } else {
            self.people[index].name = Some(name.trim().to_string());
        }
        Ok(())
    }

    /// Resolves a user-given name (self aliases included) to a person id.
    pub fn resolve(&self, name: &str) -> Result<u64, PeopleError> {
        if is_self_alias(name) {
            return self
                .self_person
                .ok_or_else(|| PeopleError::NoSelf(name.to_string()));
        }
        let wanted = name.trim().to_lowercase();
        self.people
            .iter()
            .find(|p| {
                p.name
                    .as_deref()
                    .is_some_and(|n| n.to_lowercase() == wanted)
            })
            .map(|p| p.id)
            .ok_or_else(|| PeopleError::UnknownName(name.to_string()))
    }

    /// Moves all faces of `from` into `into`; `into` keeps its name unless it has none.
    /// Later groupings keep these faces together.
    pub fn merge(&mut self, into: u64, from: u64) -> Result<(), PeopleError> {
        if into == from {
            return Ok(());
        }
        let from_index = self.index_of(from)?;
        self.index_of(into)?;
        let removed = self.people.remove(from_index);
        let into_index = self.index_of(into)?;
        let target = &mut self.people[into_index];
        target.faces.extend(removed.faces);
        if target.name.is_none() {
            target.name = removed.name;
        }
        target.update_representative();
        let keys = target.faces.iter().map(FaceRecord::key).collect();
        self.edits.record_merge(keys);
        if self.self_person == Some(from) {
            self.self_person = Some(into);
        }
        Ok(())
    }

    /// Moves the given faces of a person into a new, unnamed person. Later groupings
    /// never put them back with the faces the person kept.
    pub fn split(&mut self, id: u64, faces: &[(String, FaceBox)]) -> Result<u64, PeopleError> {
        let index = self.index_of(id)?;
        let mut moved = Vec::new();
        for (photo, bbox) in faces {
            let person = &mut self.people[index];
            let pos = person
                .faces
                .iter()
                .position(|f| &f.photo == photo && &f.bbox == bbox)
                .ok_or_else(|| PeopleError::UnknownFace {
                    person: id,
                    photo: photo.clone(),
                    bbox: *bbox,
                })?;
            moved.push(person.faces.remove(pos));
        }
        self.people[index].update_representative();
        let rest: Vec<FaceKey> = self.people[index]
            .faces
            .iter()
            .map(FaceRecord::key)
            .collect();
        self.edits
            .record_split(moved.iter().map(FaceRecord::key).collect(), rest);
        if self.people[index].faces.is_empty() {
            self.people.remove(index);
        }
        Ok(self.new_person(moved))
    }

    /// Names people from sidecar regions that overlap one of their faces (IoU at
    /// least [`REGION_MIN_IOU`]); existing names are kept. Returns how many people
    /// were named.
    pub fn apply_named_regions(&mut self, regions: &[NamedRegion]) -> usize {
        let mut named = 0;
        for region in regions {
            let hit = self.people.iter().position(|p| {
                p.faces.iter().any(|f| {
                    f.photo == region.photo && iou(&f.bbox, &region.bbox) >= REGION_MIN_IOU
                })
            });
            if let Some(i) = hit {
                if is_self_alias(&region.name) {
                    self.self_person = Some(self.people[i].id);
                } else if self.people[i].name.is_none() {
                    self.people[i].name = Some(region.name.trim().to_string());
                    named += 1;
                }
            }
        }
        named
    }
}

/// A queued merge of groups `a` < `b` at `linkage`; ordered so that the binary heap
/// pops the lowest linkage first (ties: lower group indices).
#[derive(Debug, Clone, Copy)]
struct Candidate {
    linkage: f64,
    a: usize,
    b: usize,
}

impl Candidate {
    fn order(&self, other: &Self) -> std::cmp::Ordering {
        self.linkage
            .total_cmp(&other.linkage)
            .then(self.a.cmp(&other.a))
            .then(self.b.cmp(&other.b))
    }
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.order(other).is_eq()
    }
}

impl Eq for Candidate {}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.order(self)
    }
}

/// Agglomerative average-linkage clustering with per-pair thresholds and constraints.
/// Group `i` starts as face `i`; a merge keeps the index of the larger group.
///
/// The queue holds, for each pair of adjacent groups, at most one live entry whose
/// linkage is at most the pair's current linkage (`queued`): a pair whose linkage
/// improves is queued again, one whose linkage got worse is queued again when its old
/// entry comes up. So the entry popped and found current is the lowest linkage of all.
struct Agglomeration<'a> {
    descriptors: Vec<&'a [f32]>,
    thresholds: Vec<f32>,
    members: Vec<Vec<usize>>,
    group_of: Vec<usize>,
    alive: Vec<bool>,
    photos: Vec<BTreeSet<u32>>,
    /// `2k` for faces split off by the user's k-th split, `2k + 1` for the faces kept.
    apart: Vec<BTreeSet<u32>>,
    /// Named people (and the user) whose faces the group holds.
    names: Vec<BTreeSet<u32>>,
    /// Adjacent groups and the sum over all their pairs of faces of (distance - threshold).
    links: Vec<HashMap<usize, f64>>,
    /// The live queue entry of each pair (a < b).
    queued: HashMap<(usize, usize), f64>,
    heap: BinaryHeap<Candidate>,
}

impl Agglomeration<'_> {
    fn pair_threshold(&self, i: usize, j: usize) -> f32 {
        self.thresholds[i].min(self.thresholds[j])
    }

    /// Sum over all pairs of (distance - pair threshold).
    fn excess(&self, xs: &[usize], ys: &[usize]) -> f64 {
        let mut sum = 0.0f64;
        for &x in xs {
            for &y in ys {
                let d = distance(self.descriptors[x], self.descriptors[y]);
                sum += f64::from(d - self.pair_threshold(x, y));
            }
        }
        sum
    }

    /// Mean excess of two groups; two lone faces also need [`FEW_FACES_DISTANCE`].
    fn linkage(&self, a: usize, b: usize, sum: f64) -> f64 {
        let (ma, mb) = (&self.members[a], &self.members[b]);
        if ma.len() == 1 && mb.len() == 1 {
            let t = self.pair_threshold(ma[0], mb[0]);
            return sum + f64::from((t - FEW_FACES_DISTANCE).max(0.0));
        }
        sum / (ma.len() * mb.len()) as f64
    }

    /// Queues the pair if it may merge now and is not queued at or below its linkage.
    fn queue(&mut self, a: usize, b: usize, sum: f64) {
        let linkage = self.linkage(a, b, sum);
        let key = (a.min(b), a.max(b));
        if linkage < 0.0 && self.queued.get(&key).is_none_or(|q| linkage < *q) {
            self.queued.insert(key, linkage);
            self.heap.push(Candidate {
                linkage,
                a: key.0,
                b: key.1,
            });
        }
    }

    /// Drops dead and superseded entries once they outnumber the live ones.
    fn compact(&mut self) {
        if self.heap.len() > 2 * self.queued.len() + 1024 {
            let heap = std::mem::take(&mut self.heap);
            self.heap = heap
                .into_iter()
                .filter(|c| self.queued.get(&(c.a, c.b)) == Some(&c.linkage))
                .collect();
        }
    }

    fn may_merge(&self, a: usize, b: usize) -> bool {
        let (na, nb) = (&self.names[a], &self.names[b]);
        self.photos[a].is_disjoint(&self.photos[b])
            && !self.apart[a]
                .iter()
                .any(|t| self.apart[b].contains(&(t ^ 1)))
            && (na.is_subset(nb) || nb.is_subset(na))
    }

    /// Merges until no pair of groups links below zero.
    fn run(&mut self) {
        while let Some(c) = self.heap.pop() {
            if self.queued.get(&(c.a, c.b)) != Some(&c.linkage) {
                continue; // superseded by a lower entry, or dead
            }
            self.queued.remove(&(c.a, c.b));
            let Some(&sum) = self.links[c.a].get(&c.b) else {
                continue;
            };
            if self.linkage(c.a, c.b, sum) != c.linkage {
                self.queue(c.a, c.b, sum); // got worse since it was queued
            } else if self.may_merge(c.a, c.b) {
                self.merge(c.a, c.b);
            }
            self.compact();
        }
    }

    fn merge(&mut self, a: usize, b: usize) {
        let (keep, gone) = if (self.members[a].len(), std::cmp::Reverse(a))
            >= (self.members[b].len(), std::cmp::Reverse(b))
        {
            (a, b)
        } else {
            (b, a)
        };
        let mut keep_links = std::mem::take(&mut self.links[keep]);
        let mut gone_links = std::mem::take(&mut self.links[gone]);
        keep_links.remove(&gone);
        gone_links.remove(&keep);
        self.queued.remove(&(keep.min(gone), keep.max(gone)));
        // Sums are exact over all pairs: a neighbour of only one side gets the other
        // side's pairs computed now.
        let mut sums: Vec<(usize, f64)> = Vec::with_capacity(keep_links.len() + gone_links.len());
        for (&c, &from_keep) in &keep_links {
            let from_gone = match gone_links.remove(&c) {
                Some(s) => s,
                None => self.excess(&self.members[gone], &self.members[c]),
            };
            sums.push((c, from_keep + from_gone));
        }
        for (&c, &from_gone) in &gone_links {
            sums.push((
                c,
                self.excess(&self.members[keep], &self.members[c]) + from_gone,
            ));
        }
        for &(c, sum) in &sums {
            let links = &mut self.links[c];
            links.remove(&gone);
            links.insert(keep, sum);
            keep_links.insert(c, sum);
            self.queued.remove(&(gone.min(c), gone.max(c)));
        }
        self.links[keep] = keep_links;
        let moved = std::mem::take(&mut self.members[gone]);
        for &i in &moved {
            self.group_of[i] = keep;
        }
        self.members[keep].extend(moved);
        let photos = std::mem::take(&mut self.photos[gone]);
        self.photos[keep].extend(photos);
        let apart = std::mem::take(&mut self.apart[gone]);
        self.apart[keep].extend(apart);
        let names = std::mem::take(&mut self.names[gone]);
        self.names[keep].extend(names);
        self.alive[gone] = false;
        for (c, sum) in sums {
            self.queue(keep, c, sum);
        }
    }
}

/// Pairs of faces closer than [`SAME_PERSON_DISTANCE`] where one is among the other's
/// [`MAX_NEIGHBOURS`] nearest, as (i < j, distance), sorted. Large libraries find the
/// candidates with a matrix product (squared distances from dot products, blocks of rows
/// on several threads); every kept distance is then computed exactly with [`distance`],
/// so the graph does not depend on how the product was summed.
fn neighbour_graph(descriptors: &[&[f32]]) -> Vec<(usize, usize, f32)> {
    neighbour_graph_with(descriptors, descriptors.len() >= GRAM_MIN_FACES)
}

fn neighbour_graph_with(descriptors: &[&[f32]], gram: bool) -> Vec<(usize, usize, f32)> {
    let n = descriptors.len();
    let dim = DESCRIPTOR_LEN;
    // A face without a full descriptor (damaged data) links to nothing.
    let valid = |i: usize| descriptors[i].len() == dim;
    let select = |i: usize, candidates: &mut dyn Iterator<Item = usize>| {
        if !valid(i) {
            return Vec::new();
        }
        let mut near: Vec<(f32, usize)> = candidates
            .filter(|&j| j != i && valid(j))
            .map(|j| (distance(descriptors[i], descriptors[j]), j))
            .filter(|(d, _)| *d < SAME_PERSON_DISTANCE)
            .collect();
        near.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        near.truncate(MAX_NEIGHBOURS);
        near.into_iter()
            .map(|(d, j)| (i.min(j), i.max(j), d))
            .collect::<Vec<_>>()
    };
    let mut edges: Vec<(usize, usize, f32)> = if !gram || !(0..n).all(valid) {
        (0..n).flat_map(|i| select(i, &mut (0..n))).collect()
    } else {
        let flat: Vec<f32> = descriptors.iter().flat_map(|d| d.iter().copied()).collect();
        let norms: Vec<f32> = descriptors
            .iter()
            .map(|d| d.iter().map(|v| v * v).sum())
            .collect();
        // A margin over the threshold absorbs the rounding of the dot-product form.
        let cutoff = (SAME_PERSON_DISTANCE + 0.01).powi(2);
        let blocks: Vec<usize> = (0..n).step_by(GRAM_BLOCK).collect();
        let threads = std::thread::available_parallelism()
            .map_or(1, |t| t.get())
            .clamp(1, 8)
            .min(blocks.len());
        let block_edges = |first: usize| -> Vec<(usize, usize, f32)> {
            let rows = GRAM_BLOCK.min(n - first);
            let mut gram = vec![0.0f32; rows * n];
            // SAFETY: `gram` holds rows x n floats written with row stride n; the
            // left operand is `rows` descriptors of `flat` from `first` (row stride
            // dim), the right one all of `flat` read transposed (column stride dim);
            // every index stays inside the buffers.
            unsafe {
                gemm::gemm(
                    rows,
                    n,
                    dim,
                    gram.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    flat.as_ptr().add(first * dim),
                    1,
                    dim as isize,
                    flat.as_ptr(),
                    dim as isize,
                    1,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
            let mut out = Vec::new();
            for r in 0..rows {
                let i = first + r;
                let row = &gram[r * n..(r + 1) * n];
                let mut close = (0..n).filter(|&j| norms[i] + norms[j] - 2.0 * row[j] < cutoff);
                out.extend(select(i, &mut close));
            }
            out
        };
        let block_edges = &block_edges;
        let blocks = &blocks;
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    scope.spawn(move || {
                        blocks
                            .iter()
                            .skip(t)
                            .step_by(threads)
                            .flat_map(|&first| block_edges(first))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("neighbour graph thread"))
                .collect()
        })
    };
    edges.sort_by_key(|a| (a.0, a.1));
    edges.dedup_by(|a, b| (a.0, a.1) == (b.0, b.1));
    edges
}

/// From this many faces the neighbour graph uses the matrix product.
const GRAM_MIN_FACES: usize = 512;
/// Rows of the distance matrix computed at once per thread.
const GRAM_BLOCK: usize = 128;

/// Groups faces given in canonical order; returns the groups as lists of face indices,
/// ordered by their smallest index. `together` groups are merged first whatever their
/// distances; `apart` pairs of lists and different `named` lists never share a group.
fn cluster(
    faces: &[&FaceRecord],
    together: &[Vec<usize>],
    apart: &[(Vec<usize>, Vec<usize>)],
    named: &[Vec<usize>],
) -> Vec<Vec<usize>> {
    let n = faces.len();
    let descriptors: Vec<&[f32]> = faces.iter().map(|f| f.descriptor.as_slice()).collect();
    let mut photo_ids: BTreeMap<&str, u32> = BTreeMap::new();
    let photos = faces
        .iter()
        .map(|f| {
            let next = photo_ids.len() as u32;
            BTreeSet::from([*photo_ids.entry(f.photo.as_str()).or_insert(next)])
        })
        .collect();
    let mut apart_tags = vec![BTreeSet::new(); n];
    for (k, (split_off, rest)) in apart.iter().enumerate() {
        for &i in split_off {
            apart_tags[i].insert(2 * k as u32);
        }
        for &i in rest {
            apart_tags[i].insert(2 * k as u32 + 1);
        }
    }
    let mut names = vec![BTreeSet::new(); n];
    for (k, faces) in named.iter().enumerate() {
        for &i in faces {
            names[i].insert(k as u32);
        }
    }
    let mut state = Agglomeration {
        thresholds: faces.iter().map(|f| match_threshold(&f.quality)).collect(),
        members: (0..n).map(|i| vec![i]).collect(),
        group_of: (0..n).collect(),
        alive: vec![true; n],
        photos,
        apart: apart_tags,
        names,
        links: vec![HashMap::new(); n],
        queued: HashMap::new(),
        heap: BinaryHeap::new(),
        descriptors,
    };
    let edges = neighbour_graph(&state.descriptors);
    for &(i, j, d) in &edges {
        let sum = f64::from(d - state.pair_threshold(i, j));
        state.links[i].insert(j, sum);
        state.links[j].insert(i, sum);
    }
    // The user's merges first, whatever the distances.
    for group in together {
        for pair in group.windows(2) {
            let (a, b) = (state.group_of[pair[0]], state.group_of[pair[1]]);
            if a != b {
                state.merge(a, b);
            }
        }
    }
    for a in 0..n {
        if !state.alive[a] {
            continue;
        }
        let mut links: Vec<(usize, f64)> = state.links[a]
            .iter()
            .filter(|(b, _)| **b > a)
            .map(|(b, s)| (*b, *s))
            .collect();
        links.sort_by_key(|(b, _)| *b);
        for (b, sum) in links {
            state.queue(a, b, sum);
        }
    }
    state.run();
    let mut groups: Vec<Vec<usize>> = (0..n)
        .filter(|&g| state.alive[g])
        .map(|g| {
            let mut m = std::mem::take(&mut state.members[g]);
            m.sort_unstable();
            m
        })
        .collect();
    groups.sort_by_key(|g| g[0]);
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Descriptors of `people` people (centres about 0.85 apart) with `each` faces
    /// about 0.4 apart, from a fixed generator.
    fn synthetic(people: usize, each: usize) -> Vec<Vec<f32>> {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut uniform = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f32 / (1u64 << 53) as f32 - 0.5
        };
        let mut out = Vec::new();
        for _ in 0..people {
            let centre: Vec<f32> = (0..128).map(|_| 0.18 * uniform()).collect();
            for _ in 0..each {
                out.push(centre.iter().map(|c| c + 0.087 * uniform()).collect());
            }
        }
        out
    }

    #[test]
    fn matrix_product_graph_equals_the_direct_one() {
        let descriptors = synthetic(6, 120);
        let refs: Vec<&[f32]> = descriptors.iter().map(Vec::as_slice).collect();
        let direct = neighbour_graph_with(&refs, false);
        let gram = neighbour_graph_with(&refs, true);
        assert!(direct.len() > 1000, "{} edges", direct.len());
        assert_eq!(direct, gram);
    }

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

    #[test]
    fn thresholds_follow_quality() {
        let q = |sharpness: f32, size: f32| FaceQuality {
            sharpness,
            frontalness: 1.0,
            size,
        };
        assert_eq!(match_threshold(&q(200.0, 100.0)), SAME_PERSON_DISTANCE);
        // Score 1/16 and above: the full threshold.
        assert_eq!(match_threshold(&q(6.25, 80.0)), SAME_PERSON_DISTANCE);
        // One halving below: 0.1 stricter.
        assert!((match_threshold(&q(3.125, 80.0)) - 0.5).abs() < 1e-6);
        assert_eq!(match_threshold(&q(0.1, 80.0)), MIN_MATCH_THRESHOLD);
        assert_eq!(match_threshold(&q(0.0, 0.0)), MIN_MATCH_THRESHOLD);
    }
}
