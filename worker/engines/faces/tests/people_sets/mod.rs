//! Labelled face sets for measuring people grouping, and the runs that group them in
//! several orders and batches. Shared by `tests/people_grouping.rs` and
//! `examples/people_eval.rs` (included there with `#[path]`).
//!
//! Sets: `fixture` is dlib's own descriptors of `tests/fixtures/faces` (ref/*.json,
//! identity labels from the references); every `tests/fixtures/faces-extra/sets/*.json`
//! is a further set whose descriptors this crate's pipeline computed (see that folder's
//! README.md: other photos, and degraded copies of both image sets).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use reverie_faces::people::{FaceQuality, FaceRecord, People};
use reverie_faces::FaceBox;
use serde::{Deserialize, Serialize};

/// One face with the identity it really is. Identities starting with `stranger:` are
/// people seen once (bystanders in group photos, unmatched detections).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabelledFace {
    pub identity: String,
    pub photo: String,
    #[serde(rename = "box")]
    pub bbox: FaceBox,
    pub quality: FaceQuality,
    pub descriptor: Vec<f32>,
}

impl LabelledFace {
    pub fn record(&self) -> FaceRecord {
        FaceRecord {
            photo: self.photo.clone(),
            bbox: self.bbox,
            descriptor: self.descriptor.clone(),
            quality: self.quality,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaceSet {
    pub name: String,
    /// Where the photos come from and how they were changed.
    pub description: String,
    pub faces: Vec<LabelledFace>,
}

pub fn repo_root() -> PathBuf {
    std::env::var_os("REVERIE_TEST_REPO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../..")))
}

pub fn fixture_dir() -> PathBuf {
    repo_root().join("tests/fixtures/faces")
}

pub fn extra_dir() -> PathBuf {
    repo_root().join("tests/fixtures/faces-extra")
}

fn read_json(path: &std::path::Path) -> serde_json::Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// dlib's descriptors of the fixture photos (`ref/*.json`), labelled by the references.
pub fn fixture_set() -> FaceSet {
    let dir = fixture_dir();
    let mut ids: Vec<String> = std::fs::read_dir(dir.join("ref"))
        .expect("fixture ref dir")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .map(String::from)
        })
        .collect();
    ids.sort();
    let mut faces = Vec::new();
    for id in ids {
        let reference = read_json(&dir.join("ref").join(format!("{id}.json")));
        for face in reference["faces"].as_array().expect("faces") {
            let Some(identity) = face["identity"].as_str() else {
                continue;
            };
            let r = &face["rect"];
            let bbox = FaceBox {
                left: r["left"].as_i64().expect("left"),
                top: r["top"].as_i64().expect("top"),
                right: r["right"].as_i64().expect("right"),
                bottom: r["bottom"].as_i64().expect("bottom"),
            };
            let landmarks: Vec<[i64; 2]> = face["landmarks5"]
                .as_array()
                .expect("landmarks")
                .iter()
                .map(|p| [p[0].as_i64().expect("x"), p[1].as_i64().expect("y")])
                .collect();
            let chip_path = dir.join(face["chip_file"].as_str().expect("chip"));
            let chip = image::open(&chip_path)
                .unwrap_or_else(|e| panic!("{}: {e}", chip_path.display()))
                .to_rgb8();
            faces.push(LabelledFace {
                identity: identity.to_string(),
                photo: id.clone(),
                bbox,
                quality: FaceQuality::measure(&chip, &landmarks, &bbox),
                descriptor: face["descriptor"]
                    .as_array()
                    .expect("descriptor")
                    .iter()
                    .map(|v| v.as_f64().expect("float") as f32)
                    .collect(),
            });
        }
    }
    FaceSet {
        name: "fixture".into(),
        description: "tests/fixtures/faces: dlib 20.0.1's own descriptors".into(),
        faces,
    }
}

/// The sets in `tests/fixtures/faces-extra/sets/`, by file name.
pub fn extra_sets() -> Vec<FaceSet> {
    let dir = extra_dir().join("sets");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect()
        })
        .unwrap_or_default();
    // The fixture's degraded copies first, then each other photo set followed by its
    // degraded copies from mild to strong.
    let rank = |p: &PathBuf| {
        let stem = p
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let variants = ["small", "blur", "heavyblur"];
        match stem.rsplit_once('-') {
            Some((base, v)) if variants.contains(&v) => (
                base != "fixture",
                base.to_string(),
                1 + variants.iter().position(|x| *x == v).unwrap_or(0),
            ),
            _ => (stem != "fixture", stem, 0),
        }
    };
    paths.sort_by_key(rank);
    paths
        .iter()
        .map(|p| {
            let bytes = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        })
        .collect()
}

/// The fixture without its synthetic variants (`__aug_*` photos: flips, rescales, rotations,
/// brightness changes of one photo), i.e. real photos only.
pub fn fixture_real_set() -> FaceSet {
    let mut set = fixture_set();
    set.name = "fixture-real".into();
    set.description = "tests/fixtures/faces without the synthetic __aug_ variants".into();
    set.faces.retain(|f| !f.photo.contains("__aug_"));
    set
}

pub fn all_sets() -> Vec<FaceSet> {
    let mut sets = vec![fixture_set(), fixture_real_set()];
    sets.extend(extra_sets());
    sets
}

/// Pairwise scores of a grouping against the true identities: over all pairs of
/// faces, precision = same person and same identity / same person, recall = same
/// person and same identity / same identity. A face left pending is in no person.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairScores {
    pub precision: f64,
    pub recall: f64,
    pub true_pairs: usize,
    pub false_pairs: usize,
    pub missed_pairs: usize,
    /// Distinct people the faces went to.
    pub people: usize,
    /// People holding faces of more than one identity (wrong merges).
    pub mixed_people: usize,
    /// Distinct identities seen more than once (strangers and single photos excluded).
    pub repeated_identities: usize,
    /// Distinct identities.
    pub identities: usize,
    pub pending: usize,
}

pub fn pair_scores(identities: &[&str], assigned: &[Option<u64>]) -> PairScores {
    assert_eq!(identities.len(), assigned.len());
    let (mut true_pairs, mut false_pairs, mut missed_pairs) = (0, 0, 0);
    for i in 0..identities.len() {
        for j in i + 1..identities.len() {
            let same_identity = identities[i] == identities[j];
            let same_person = assigned[i].is_some() && assigned[i] == assigned[j];
            match (same_identity, same_person) {
                (true, true) => true_pairs += 1,
                (false, true) => false_pairs += 1,
                (true, false) => missed_pairs += 1,
                (false, false) => {}
            }
        }
    }
    let ratio = |a: usize, b: usize| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for id in identities {
        *counts.entry(id).or_default() += 1;
    }
    let mut identities_of: BTreeMap<u64, BTreeSet<&str>> = BTreeMap::new();
    for (id, a) in identities.iter().zip(assigned) {
        if let Some(p) = a {
            identities_of.entry(*p).or_default().insert(id);
        }
    }
    PairScores {
        mixed_people: identities_of.values().filter(|s| s.len() > 1).count(),
        precision: ratio(true_pairs, true_pairs + false_pairs),
        recall: ratio(true_pairs, true_pairs + missed_pairs),
        true_pairs,
        false_pairs,
        missed_pairs,
        people: assigned.iter().flatten().collect::<BTreeSet<_>>().len(),
        repeated_identities: counts.values().filter(|&&c| c > 1).count(),
        identities: counts.len(),
        pending: assigned.iter().filter(|a| a.is_none()).count(),
    }
}

/// Small deterministic generator for shuffles (no dependency on a rand crate).
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

/// How the faces of a set reach `People`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// All faces in the set's order, in one `add_faces` call.
    AllAtOnce,
    /// A shuffled order (seed), in one call.
    Shuffled(u64),
    /// A shuffled order (seed), in batches of 1 to `max` faces.
    Batches(u64, usize),
    /// The set's order, one face per call.
    OneByOne,
}

/// Groups the set's faces as `feed` says; returns the person of each face, in the set's order.
pub fn group(set: &FaceSet, feed: Feed) -> (People, Vec<Option<u64>>) {
    let mut order: Vec<usize> = (0..set.faces.len()).collect();
    let mut batches = Vec::new();
    match feed {
        Feed::AllAtOnce => batches.push(order.clone()),
        Feed::Shuffled(seed) => {
            SplitMix(seed).shuffle(&mut order);
            batches.push(order.clone());
        }
        Feed::Batches(seed, max) => {
            let mut rng = SplitMix(seed);
            rng.shuffle(&mut order);
            let mut rest = order.as_slice();
            while !rest.is_empty() {
                let n = (1 + rng.below(max.max(1))).min(rest.len());
                batches.push(rest[..n].to_vec());
                rest = &rest[n..];
            }
        }
        Feed::OneByOne => batches.extend(order.iter().map(|&i| vec![i])),
    }
    let mut people = People::new();
    for batch in &batches {
        people.add_faces(batch.iter().map(|&i| set.faces[i].record()).collect());
    }
    (people.clone(), assignment(set, &people))
}

/// The person each face of the set is in now (None = pending or unknown).
pub fn assignment(set: &FaceSet, people: &People) -> Vec<Option<u64>> {
    let mut owner: BTreeMap<(&str, [i64; 4]), u64> = BTreeMap::new();
    for person in &people.people {
        for f in &person.faces {
            owner.insert(
                (
                    f.photo.as_str(),
                    [f.bbox.left, f.bbox.top, f.bbox.right, f.bbox.bottom],
                ),
                person.id,
            );
        }
    }
    set.faces
        .iter()
        .map(|f| {
            owner
                .get(&(
                    f.photo.as_str(),
                    [f.bbox.left, f.bbox.top, f.bbox.right, f.bbox.bottom],
                ))
                .copied()
        })
        .collect()
}

/// The partition as sorted lists of face indices, independent of person ids.
pub fn partition(assigned: &[Option<u64>]) -> BTreeSet<Vec<usize>> {
    let mut groups: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for (i, a) in assigned.iter().enumerate() {
        if let Some(p) = a {
            groups.entry(*p).or_default().push(i);
        }
    }
    groups.into_values().collect()
}

pub fn scores(set: &FaceSet, assigned: &[Option<u64>]) -> PairScores {
    let identities: Vec<&str> = set.faces.iter().map(|f| f.identity.as_str()).collect();
    pair_scores(&identities, assigned)
}

/// The feeds every measurement runs: the set's order at once and one by one, 6 shuffled
/// orders at once and 6 in random batches of up to 8 faces.
pub fn standard_feeds() -> Vec<Feed> {
    let mut feeds = vec![Feed::AllAtOnce, Feed::OneByOne];
    feeds.extend((1..=6).map(Feed::Shuffled));
    feeds.extend((1..=6).map(|s| Feed::Batches(100 + s, 8)));
    feeds
}
