//! People: incremental clustering of face descriptors, representative faces,
//! naming, merging and splitting. Pure domain logic; callers persist the state
//! (every type is serde-serialisable).
//!
//! Method. dlib's descriptor is trained so that two faces of the same person are
//! closer than 0.6 (Euclidean); the model file stores that threshold and dlib
//! reports 99.38 % pair accuracy on LFW with it. Pair decisions alone are brittle
//! in a library (look-alike strangers sit at ~0.55, one person across decades at
//! ~0.7), so decisions use more evidence than one pair:
//!
//! * a new face joins the person whose 3 closest faces are on average nearer than
//!   0.6 (between single linkage, which chains look-alikes together, and average
//!   linkage, which splits people with varied photos);
//! * a person with fewer than 3 faces is only joined below 0.5, and two lone
//!   faces found a person only below 0.5 (one pair is weak evidence);
//! * cannot-link: two faces of the same photo are never the same person;
//! * a face about equally close to two people stays pending instead of bridging;
//! * people grown by the same batch are merged when they link by the same rule
//!   (two photos of one person can found two people before a third connects them);
//!   named people are never merged automatically.
//!
//! Faces that match nobody wait in a pending pool; a single face becomes a person
//! on its own only when it is large, sharp and frontal, so no person is made of
//! one blurry or tiny face unless the user names it. Adding faces never
//! re-clusters existing people, so names and manual merges/splits are stable.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::analyzer::FaceBox;

/// dlib's same-person threshold (also stored in the descriptor model file).
pub const SAME_PERSON_DISTANCE: f32 = 0.6;
/// A face must be at least this much closer to its best person than to the second
/// best to join it; ambiguous faces stay pending.
pub const AMBIGUITY_MARGIN: f32 = 0.05;
/// How many of a person's closest faces a new face is compared with (their mean
/// distance must be under the threshold).
pub const LINKAGE_NEIGHBOURS: usize = 3;
/// Distance under which two lone faces found a person, or a face joins a person
/// with fewer than `LINKAGE_NEIGHBOURS` faces. Stricter than 0.6 because one pair is
/// weak evidence: dlib's 0.6 operating point accepts look-alike strangers at about
/// 0.55 (seen in group photos), while the same person rarely needs more than 0.5
/// between two photos once a third photo links them.
pub const FEW_FACES_DISTANCE: f32 = 0.5;
/// A lone face becomes a person only with at least this quality (see [`FaceQuality::score`]).
pub const LONE_FACE_MIN_QUALITY: f32 = 0.5;

/// Identifies one face: the photo it is in and its box there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaceRecord {
    pub photo: String,
    #[serde(rename = "box")]
    pub bbox: FaceBox,
    pub descriptor: Vec<f32>,
    pub quality: FaceQuality,
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

pub fn distance(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f32>()
        .sqrt()
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
    /// Mean distance to the person's `LINKAGE_NEIGHBOURS` closest faces.
    fn linkage_distance(&self, descriptor: &[f32]) -> f32 {
        let mut d: Vec<f32> = self
            .faces
            .iter()
            .map(|f| distance(&f.descriptor, descriptor))
            .collect();
        d.sort_by(f32::total_cmp);
        let k = d.len().min(LINKAGE_NEIGHBOURS);
        if k == 0 {
            return f32::INFINITY;
        }
        d[..k].iter().sum::<f32>() / k as f32
    }

    /// How much stricter than 0.6 the join test is for this person: a person with
    /// fewer than `LINKAGE_NEIGHBOURS` faces offers little evidence, so one close
    /// pair must be closer ([`FEW_FACES_DISTANCE`]).
    fn threshold_slack(&self) -> f32 {
        if self.faces.len() < LINKAGE_NEIGHBOURS {
            SAME_PERSON_DISTANCE - FEW_FACES_DISTANCE
        } else {
            0.0
        }
    }

    fn has_photo(&self, photo: &str) -> bool {
        self.faces.iter().any(|f| f.photo == photo)
    }

    fn update_representative(&mut self) {
        self.representative = self
            .faces
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.quality.score().total_cmp(&b.1.quality.score()))
            .map_or(0, |(i, _)| i);
    }
}

/// Mean of the `LINKAGE_NEIGHBOURS` smallest face-to-face distances between two people.
fn person_distance(a: &Person, b: &Person) -> f32 {
    let mut d: Vec<f32> = a
        .faces
        .iter()
        .flat_map(|fa| {
            b.faces
                .iter()
                .map(move |fb| distance(&fa.descriptor, &fb.descriptor))
        })
        .collect();
    d.sort_by(f32::total_cmp);
    let k = d.len().min(LINKAGE_NEIGHBOURS);
    if k == 0 {
        return f32::INFINITY;
    }
    d[..k].iter().sum::<f32>() / k as f32
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

    /// Adds new faces without touching existing assignments; returns the person id
    /// each face went to (None = pending).
    pub fn add_faces(&mut self, faces: Vec<FaceRecord>) -> Vec<Option<u64>> {
        let mut result = Vec::with_capacity(faces.len());
        for face in faces {
            result.push(self.add_face(face));
        }
        let touched: BTreeSet<u64> = result.iter().flatten().copied().collect();
        let merged = self.merge_touched(touched);
        result
            .into_iter()
            .map(|p| p.map(|id| merged.get(&id).copied().unwrap_or(id)))
            .collect()
    }

    /// People created or grown by this batch may now link to each other (two lone
    /// faces of one person can found two people before a third photo connects
    /// them). Merges such pairs with the same linkage rule as single faces; only
    /// pairs involving a touched person are examined, and named people are never
    /// merged automatically. Returns old id -> surviving id.
    fn merge_touched(
        &mut self,
        mut touched: BTreeSet<u64>,
    ) -> std::collections::BTreeMap<u64, u64> {
        let mut renamed = std::collections::BTreeMap::new();
        while let Some((keep, gone)) = self.find_linked_pair(&touched) {
            if self.merge(keep, gone).is_err() {
                break;
            }
            touched.remove(&gone);
            touched.insert(keep);
            for target in renamed.values_mut() {
                if *target == gone {
                    *target = keep;
                }
            }
            renamed.insert(gone, keep);
        }
        renamed
    }

    fn find_linked_pair(&self, touched: &BTreeSet<u64>) -> Option<(u64, u64)> {
        let mut best: Option<(f32, u64, u64)> = None;
        for a in self.people.iter().filter(|p| touched.contains(&p.id)) {
            for b in self.people.iter().filter(|b| b.id != a.id) {
                if (a.name.is_some() && b.name.is_some())
                    || a.faces.iter().any(|f| b.has_photo(&f.photo))
                {
                    continue;
                }
                let d = person_distance(a, b);
                // Same rule as a face joining a person: the bigger person supplies the evidence.
                let slack = a.threshold_slack().min(b.threshold_slack());
                if d + slack < SAME_PERSON_DISTANCE && best.is_none_or(|(bd, _, _)| d < bd) {
                    let (keep, gone) = if a.faces.len() >= b.faces.len() {
                        (a.id, b.id)
                    } else {
                        (b.id, a.id)
                    };
                    best = Some((d, keep, gone));
                }
            }
        }
        best.map(|(_, keep, gone)| (keep, gone))
    }

    fn best_person(&self, face: &FaceRecord) -> Option<usize> {
        let mut ranked: Vec<(usize, f32)> = self
            .people
            .iter()
            .enumerate()
            .filter(|(_, p)| !p.has_photo(&face.photo))
            .map(|(i, p)| {
                (
                    i,
                    p.linkage_distance(&face.descriptor) + p.threshold_slack(),
                )
            })
            .collect();
        ranked.sort_by(|a, b| a.1.total_cmp(&b.1));
        match ranked.as_slice() {
            [(i, d), rest @ ..] if *d < SAME_PERSON_DISTANCE => {
                let ambiguous = rest
                    .first()
                    .is_some_and(|(_, d2)| *d2 < SAME_PERSON_DISTANCE && d2 - d < AMBIGUITY_MARGIN);
                (!ambiguous).then_some(*i)
            }
            _ => None,
        }
    }

    fn add_face(&mut self, face: FaceRecord) -> Option<u64> {
        if let Some(index) = self.best_person(&face) {
            let person = &mut self.people[index];
            person.faces.push(face);
            person.update_representative();
            return Some(person.id);
        }
        // Pending faces (from other photos) that match form a new person together.
        let mates: Vec<usize> = self
            .pending
            .iter()
            .enumerate()
            .filter(|(_, p)| {
                p.photo != face.photo
                    && distance(&p.descriptor, &face.descriptor) < FEW_FACES_DISTANCE
            })
            .map(|(i, _)| i)
            .collect();
        if !mates.is_empty() {
            let mut members = vec![face];
            let mut photos: BTreeSet<String> = BTreeSet::from([members[0].photo.clone()]);
            for i in mates.into_iter().rev() {
                if photos.insert(self.pending[i].photo.clone()) {
                    members.push(self.pending.remove(i));
                }
            }
            return Some(self.new_person(members));
        }
        if face.quality.score() >= LONE_FACE_MIN_QUALITY {
            return Some(self.new_person(vec![face]));
        }
        self.pending.push(face);
        None
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
        if self.self_person == Some(from) {
            self.self_person = Some(into);
        }
        Ok(())
    }

    /// Moves the given faces of a person into a new, unnamed person.
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
