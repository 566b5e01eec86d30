//! What the user does to people: naming (and "me"), resolving a name, merging, splitting, names
//! from sidecar regions; merges and splits are kept as [`UserEdits`] that every later grouping
//! honours.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{is_self_alias, FaceKey, FaceRecord, NamedRegion, People, PeopleError, REGION_MIN_IOU};
use crate::analyzer::FaceBox;

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
    pub(super) fn faces(&self) -> BTreeSet<&FaceKey> {
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
