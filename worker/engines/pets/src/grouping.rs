//! Individual pets: the pet sightings of a library grouped into animals, named,
//! merged and split by the user.
//!
//! Like people, the whole library is re-grouped on every change: deterministic,
//! independent of import order, and the user's edits are constraints that every
//! re-grouping keeps:
//!
//! * sightings group by average linkage on the appearance distance while the
//!   average stays within [`SAME_PET_DISTANCE`];
//! * only one species per pet, and never two sightings from one photo;
//! * merges (and sightings a sidecar gives the same name) stay together;
//!   splits (and sightings named differently) stay apart; two named pets never
//!   merge;
//! * ids are stable: a new group keeps the id of the old pet it shares most
//!   sightings with.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::appearance::Appearance;
use crate::decode::Kind;

/// Largest average appearance distance within one pet. Measured on the fixture
/// photos (docs/pets.md): the same dog in two photos 0.085–0.12; dogs of
/// different coats 0.17–0.65; dogs of the same coat colour 0.09–0.11 (not
/// separable by colour).
pub const SAME_PET_DISTANCE: f32 = 0.15;

/// Where a pet was seen: photo id and box in photo pixels (inclusive-exclusive).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SightingKey {
    pub photo: String,
    #[serde(rename = "box")]
    pub bbox: [i64; 4],
}

/// One detected pet in one photo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sighting {
    pub photo: String,
    #[serde(rename = "box")]
    pub bbox: [i64; 4],
    pub species: Species,
    pub score: f32,
    pub appearance: Vec<f32>,
    /// A name a sidecar or keyword gave this animal, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub named: Option<String>,
}

impl Sighting {
    pub fn key(&self) -> SightingKey {
        SightingKey {
            photo: self.photo.clone(),
            bbox: self.bbox,
        }
    }

    fn area(&self) -> i64 {
        (self.bbox[2] - self.bbox[0]).max(0) * (self.bbox[3] - self.bbox[1]).max(0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Species {
    Dog,
    Cat,
}

impl Species {
    pub fn of(kind: Kind) -> Option<Species> {
        match kind {
            Kind::Dog => Some(Species::Dog),
            Kind::Cat => Some(Species::Cat),
            Kind::Person => None,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Species::Dog => "dog",
            Species::Cat => "cat",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pet {
    pub id: u64,
    pub name: Option<String>,
    pub species: Species,
    pub sightings: Vec<Sighting>,
    /// Index of the sighting that shows the pet best (largest, most confident).
    pub representative: usize,
}

/// A split: these sightings never share a pet with those.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Apart {
    pub split_off: Vec<SightingKey>,
    pub rest: Vec<SightingKey>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PetEdits {
    #[serde(default)]
    pub together: Vec<Vec<SightingKey>>,
    #[serde(default)]
    pub apart: Vec<Apart>,
    /// Names the user gave, by the pet's sightings at the time.
    #[serde(default)]
    pub names: Vec<(Vec<SightingKey>, String)>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PetsError {
    #[error("no pet with id {0}")]
    UnknownPet(u64),
    #[error("no pet named {0:?}")]
    UnknownName(String),
    #[error("pet {pet} has no sighting in photo {photo} at {bbox:?}")]
    UnknownSighting {
        pet: u64,
        photo: String,
        bbox: [i64; 4],
    },
    #[error("pets {0} and {1} are a dog and a cat; only pets of one species can be merged")]
    SpeciesDiffer(u64, u64),
    #[error("a split must leave at least one sighting on each side")]
    EmptySplit,
}

/// A tenant's pets, as stored in `tenants/{t}/pets/pets.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pets {
    pub pets: Vec<Pet>,
    #[serde(default)]
    pub next_id: u64,
    #[serde(default)]
    pub edits: PetEdits,
}

impl Pets {
    pub fn get(&self, id: u64) -> Option<&Pet> {
        self.pets.iter().find(|p| p.id == id)
    }

    /// A pet by id (digits) or by name, case-insensitively.
    pub fn resolve(&self, id_or_name: &str) -> Result<u64, PetsError> {
        if let Ok(id) = id_or_name.trim().parse::<u64>() {
            return self.get(id).map(|p| p.id).ok_or(PetsError::UnknownPet(id));
        }
        self.pets
            .iter()
            .find(|p| {
                p.name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(id_or_name.trim()))
            })
            .map(|p| p.id)
            .ok_or_else(|| PetsError::UnknownName(id_or_name.to_string()))
    }

    fn all_sightings(&self) -> Vec<Sighting> {
        self.pets
            .iter()
            .flat_map(|p| p.sightings.iter().cloned())
            .collect()
    }

    /// Adds sightings (already-known ones are replaced) and re-groups the library.
    pub fn add_sightings(&mut self, new: Vec<Sighting>) {
        let mut by_key: BTreeMap<SightingKey, Sighting> = self
            .all_sightings()
            .into_iter()
            .map(|s| (s.key(), s))
            .collect();
        for s in new {
            by_key.insert(s.key(), s);
        }
        self.regroup(by_key.into_values().collect());
    }

    /// Replaces every sighting (the library's current ones) and re-groups.
    pub fn set_sightings(&mut self, sightings: Vec<Sighting>) {
        self.regroup(sightings);
    }

    pub fn name(&mut self, id: u64, name: &str) -> Result<(), PetsError> {
        let pet = self
            .pets
            .iter_mut()
            .find(|p| p.id == id)
            .ok_or(PetsError::UnknownPet(id))?;
        let keys: Vec<SightingKey> = pet.sightings.iter().map(Sighting::key).collect();
        pet.name = Some(name.trim().to_string());
        self.edits
            .names
            .retain(|(k, _)| !k.iter().any(|key| keys.contains(key)));
        self.edits.names.push((keys, name.trim().to_string()));
        Ok(())
    }

    pub fn merge(&mut self, into: u64, from: u64) -> Result<(), PetsError> {
        let a = self.get(into).ok_or(PetsError::UnknownPet(into))?;
        let b = self.get(from).ok_or(PetsError::UnknownPet(from))?;
        if a.species != b.species {
            return Err(PetsError::SpeciesDiffer(into, from));
        }
        let mut keys: Vec<SightingKey> = a.sightings.iter().map(Sighting::key).collect();
        keys.extend(b.sightings.iter().map(Sighting::key));
        let name = a.name.clone().or_else(|| b.name.clone());
        self.edits.together.push(keys.clone());
        if let Some(name) = name {
            self.edits
                .names
                .retain(|(k, _)| !k.iter().any(|key| keys.contains(key)));
            self.edits.names.push((keys, name));
        }
        let all = self.all_sightings();
        self.regroup(all);
        Ok(())
    }

    /// Moves the given sightings of pet `id` to a new pet; returns its id.
    pub fn split(&mut self, id: u64, sightings: &[SightingKey]) -> Result<u64, PetsError> {
        let pet = self.get(id).ok_or(PetsError::UnknownPet(id))?;
        let keys: Vec<SightingKey> = pet.sightings.iter().map(Sighting::key).collect();
        if let Some(missing) = sightings.iter().find(|s| !keys.contains(s)) {
            return Err(PetsError::UnknownSighting {
                pet: id,
                photo: missing.photo.clone(),
                bbox: missing.bbox,
            });
        }
        let rest: Vec<SightingKey> = keys
            .iter()
            .filter(|k| !sightings.contains(k))
            .cloned()
            .collect();
        if sightings.is_empty() || rest.is_empty() {
            return Err(PetsError::EmptySplit);
        }
        // The split-off part is a new animal: earlier merges and names that tie it
        // to the rest no longer hold for it.
        for group in &mut self.edits.together {
            group.retain(|k| !sightings.contains(k));
        }
        for (group, _) in &mut self.edits.names {
            group.retain(|k| !sightings.contains(k));
        }
        self.edits.apart.push(Apart {
            split_off: sightings.to_vec(),
            rest,
        });
        // The split-off part becomes a new, unnamed pet before re-grouping, so the rest keeps the
        // pet's id and name whichever part is larger.
        let new_id = self
            .next_id
            .max(self.pets.iter().map(|p| p.id + 1).max().unwrap_or(0));
        self.next_id = new_id + 1;
        let pet = self
            .pets
            .iter_mut()
            .find(|p| p.id == id)
            .expect("checked above");
        let (moved, kept): (Vec<Sighting>, Vec<Sighting>) = std::mem::take(&mut pet.sightings)
            .into_iter()
            .partition(|s| sightings.contains(&s.key()));
        pet.sightings = kept;
        pet.representative = 0;
        let species = pet.species;
        self.pets.push(Pet {
            id: new_id,
            name: None,
            species,
            sightings: moved,
            representative: 0,
        });
        let all = self.all_sightings();
        self.regroup(all);
        let first = &sightings[0];
        Ok(self
            .pets
            .iter()
            .find(|p| p.sightings.iter().any(|s| &s.key() == first))
            .map(|p| p.id)
            .expect("every sighting belongs to a pet after regrouping"))
    }

    /// Re-groups `sightings` from scratch under the edits, keeping ids and names.
    fn regroup(&mut self, mut sightings: Vec<Sighting>) {
        sightings.sort_by_key(Sighting::key);
        let index: HashMap<SightingKey, usize> = sightings
            .iter()
            .enumerate()
            .map(|(i, s)| (s.key(), i))
            .collect();
        let constraints = Constraints::new(&sightings, &index, &self.edits);
        let groups = cluster(&sightings, &constraints);
        let old: Vec<Pet> = std::mem::take(&mut self.pets);
        let mut taken = BTreeSet::new();
        let mut pets = Vec::with_capacity(groups.len());
        // Largest groups choose their old id first, so a pet keeps its id when a
        // few sightings leave it.
        let mut order: Vec<usize> = (0..groups.len()).collect();
        order.sort_by_key(|g| (std::cmp::Reverse(groups[*g].len()), groups[*g][0]));
        for g in order {
            let members: Vec<Sighting> = groups[g].iter().map(|i| sightings[*i].clone()).collect();
            let keys: BTreeSet<SightingKey> = members.iter().map(Sighting::key).collect();
            let previous = old
                .iter()
                .filter(|p| !taken.contains(&p.id))
                .map(|p| {
                    (
                        p.sightings
                            .iter()
                            .filter(|s| keys.contains(&s.key()))
                            .count(),
                        p,
                    )
                })
                .filter(|(shared, _)| *shared > 0)
                .max_by_key(|(shared, p)| (*shared, std::cmp::Reverse(p.id)))
                .map(|(_, p)| p);
            let id = match previous {
                Some(p) => p.id,
                None => {
                    self.next_id = self
                        .next_id
                        .max(old.iter().map(|p| p.id + 1).max().unwrap_or(0));
                    let id = self.next_id;
                    self.next_id += 1;
                    id
                }
            };
            taken.insert(id);
            let name = constraints
                .name_of(&groups[g])
                .or_else(|| previous.and_then(|p| p.name.clone()));
            pets.push(make_pet(id, name, members));
        }
        pets.sort_by_key(|p| p.id);
        self.next_id = self
            .next_id
            .max(pets.iter().map(|p| p.id + 1).max().unwrap_or(0));
        self.pets = pets;
    }
}

fn make_pet(id: u64, name: Option<String>, members: Vec<Sighting>) -> Pet {
    let representative = members
        .iter()
        .enumerate()
        .max_by(|(_, a), (_, b)| {
            (a.area() as f32 * a.score).total_cmp(&(b.area() as f32 * b.score))
        })
        .map(|(i, _)| i)
        .unwrap_or(0);
    Pet {
        id,
        name,
        species: members[0].species,
        sightings: members,
        representative,
    }
}

/// Must-link groups, cannot-link pairs and names, in sighting indices.
struct Constraints {
    /// Union-find parent: sightings that must share a pet.
    linked: Vec<usize>,
    apart: BTreeSet<(usize, usize)>,
    names: Vec<Option<String>>,
}

impl Constraints {
    fn new(sightings: &[Sighting], index: &HashMap<SightingKey, usize>, edits: &PetEdits) -> Self {
        let n = sightings.len();
        let mut c = Constraints {
            linked: (0..n).collect(),
            apart: BTreeSet::new(),
            names: sightings.iter().map(|s| s.named.clone()).collect(),
        };
        let ids = |keys: &[SightingKey]| -> Vec<usize> {
            keys.iter().filter_map(|k| index.get(k).copied()).collect()
        };
        // A split says the split-off sightings are another animal: a sidecar name they share with
        // the rest would glue them back, so it no longer counts for them.
        for apart in &edits.apart {
            for i in ids(&apart.split_off) {
                c.names[i] = None;
            }
        }
        // The user's names override sidecar names for the sightings they cover.
        for (keys, name) in &edits.names {
            for i in ids(keys) {
                c.names[i] = Some(name.clone());
            }
        }
        for group in &edits.together {
            let members = ids(group);
            for pair in members.windows(2) {
                c.union(pair[0], pair[1]);
            }
        }
        // Sightings with the same name are one animal (per species).
        let mut by_name: BTreeMap<(String, Species), usize> = BTreeMap::new();
        for (i, s) in sightings.iter().enumerate() {
            if let Some(name) = &c.names[i] {
                let key = (name.to_lowercase(), s.species);
                match by_name.get(&key) {
                    Some(first) => c.union(*first, i),
                    None => {
                        by_name.insert(key, i);
                    }
                }
            }
        }
        for apart in &edits.apart {
            for a in ids(&apart.split_off) {
                for b in ids(&apart.rest) {
                    c.apart.insert((a.min(b), a.max(b)));
                }
            }
        }
        c
    }

    fn root(&mut self, mut i: usize) -> usize {
        while self.linked[i] != i {
            self.linked[i] = self.linked[self.linked[i]];
            i = self.linked[i];
        }
        i
    }

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.root(a), self.root(b));
        if ra != rb {
            self.linked[ra.max(rb)] = ra.min(rb);
        }
    }

    /// The name most of a group's named sightings carry (ties: alphabetical).
    fn name_of(&self, group: &[usize]) -> Option<String> {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for i in group {
            if let Some(n) = &self.names[*i] {
                *counts.entry(n.as_str()).or_default() += 1;
            }
        }
        counts
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
            .map(|(n, _)| n.to_string())
    }
}

/// Average-linkage clustering under the constraints; groups of sighting indices,
/// each sorted, in order of their first sighting.
fn cluster(sightings: &[Sighting], constraints: &Constraints) -> Vec<Vec<usize>> {
    let mut c = Constraints {
        linked: constraints.linked.clone(),
        apart: constraints.apart.clone(),
        names: constraints.names.clone(),
    };
    // Start from the must-link groups.
    let mut start: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..sightings.len() {
        let r = c.root(i);
        start.entry(r).or_default().push(i);
    }
    let mut groups: Vec<Vec<usize>> = start.into_values().collect();
    let appearance: Vec<Appearance> = sightings
        .iter()
        .map(|s| Appearance(s.appearance.clone()))
        .collect();
    let pair_distance = |a: usize, b: usize| appearance[a].distance(&appearance[b]);
    let can_join = |x: &[usize], y: &[usize]| -> bool {
        let species = sightings[x[0]].species == sightings[y[0]].species;
        let names = {
            let nx = x.iter().find_map(|i| constraints.names[*i].as_deref());
            let ny = y.iter().find_map(|i| constraints.names[*i].as_deref());
            !matches!((nx, ny), (Some(a), Some(b)) if !a.eq_ignore_ascii_case(b))
        };
        species
            && names
            && x.iter().all(|a| {
                y.iter().all(|b| {
                    sightings[*a].photo != sightings[*b].photo
                        && !constraints.apart.contains(&((*a).min(*b), (*a).max(*b)))
                })
            })
    };
    // Sum of pairwise distances between groups, updated on merges (Lance–Williams
    // for average linkage); `None` where the constraints forbid the pair.
    let n = groups.len();
    let mut sums = vec![vec![0f64; n]; n];
    for i in 0..n {
        for j in i + 1..n {
            let s: f64 = groups[i]
                .iter()
                .flat_map(|a| groups[j].iter().map(move |b| (*a, *b)))
                .map(|(a, b)| pair_distance(a, b) as f64)
                .sum();
            sums[i][j] = s;
            sums[j][i] = s;
        }
    }
    let mut alive: Vec<bool> = vec![true; n];
    loop {
        let mut best: Option<(f64, usize, usize)> = None;
        for i in 0..n {
            if !alive[i] {
                continue;
            }
            for j in i + 1..n {
                if !alive[j] {
                    continue;
                }
                let average = sums[i][j] / (groups[i].len() * groups[j].len()) as f64;
                if average > SAME_PET_DISTANCE as f64 {
                    continue;
                }
                if best.is_none_or(|(d, _, _)| average < d) && can_join(&groups[i], &groups[j]) {
                    best = Some((average, i, j));
                }
            }
        }
        let Some((_, i, j)) = best else { break };
        let moved = std::mem::take(&mut groups[j]);
        groups[i].extend(moved);
        groups[i].sort_unstable();
        alive[j] = false;
        for k in 0..n {
            if alive[k] && k != i {
                sums[i][k] += sums[j][k];
                sums[k][i] = sums[i][k];
            }
        }
    }
    let mut out: Vec<Vec<usize>> = groups
        .into_iter()
        .zip(alive)
        .filter(|(_, a)| *a)
        .map(|(g, _)| g)
        .collect();
    out.sort_by_key(|g| g[0]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A unit colour vector mostly in bin `main`, a little in bin `other`.
    fn coat(main: usize, other: usize, mix: f32) -> Vec<f32> {
        let mut v = vec![0f32; crate::APPEARANCE_DIM];
        v[main] = (1.0 - mix).sqrt();
        v[other] += mix.sqrt();
        v
    }

    fn sighting(photo: &str, left: i64, species: Species, appearance: Vec<f32>) -> Sighting {
        Sighting {
            photo: photo.to_string(),
            bbox: [left, 0, left + 100, 100],
            species,
            score: 0.6,
            appearance,
            named: None,
        }
    }

    fn library() -> Vec<Sighting> {
        vec![
            sighting("a", 0, Species::Dog, coat(0, 1, 0.05)),
            sighting("b", 0, Species::Dog, coat(0, 1, 0.10)),
            sighting("c", 0, Species::Dog, coat(40, 41, 0.05)),
            sighting("d", 0, Species::Dog, coat(40, 41, 0.10)),
            sighting("e", 0, Species::Cat, coat(0, 1, 0.05)),
        ]
    }

    fn photos_of(pets: &Pets) -> Vec<Vec<&str>> {
        pets.pets
            .iter()
            .map(|p| p.sightings.iter().map(|s| s.photo.as_str()).collect())
            .collect()
    }

    #[test]
    fn two_coats_are_two_dogs_and_a_cat_of_the_first_coat_stays_a_cat() {
        let mut pets = Pets::default();
        pets.set_sightings(library());
        assert_eq!(
            photos_of(&pets),
            [vec!["a", "b"], vec!["c", "d"], vec!["e"]]
        );
        assert_eq!(pets.pets[2].species, Species::Cat);
        // The same sightings in another order group the same way, under the same ids.
        let before = pets.clone();
        let mut shuffled = library();
        shuffled.reverse();
        pets.set_sightings(shuffled);
        assert_eq!(pets, before);
    }

    #[test]
    fn two_dogs_in_one_photo_are_two_pets_even_of_one_coat() {
        let mut pets = Pets::default();
        pets.set_sightings(vec![
            sighting("a", 0, Species::Dog, coat(0, 1, 0.05)),
            sighting("a", 200, Species::Dog, coat(0, 1, 0.05)),
        ]);
        assert_eq!(pets.pets.len(), 2);
    }

    #[test]
    fn names_merges_and_splits_survive_regrouping_and_ids_stay() {
        let mut pets = Pets::default();
        pets.set_sightings(library());
        let (first, second) = (pets.pets[0].id, pets.pets[1].id);
        pets.name(first, "Rex").unwrap();
        pets.merge(first, second).unwrap();
        assert_eq!(
            pets.pets
                .iter()
                .filter(|p| p.species == Species::Dog)
                .count(),
            1
        );
        assert_eq!(pets.resolve("rex").unwrap(), first);
        let key = SightingKey {
            photo: "d".into(),
            bbox: [0, 0, 100, 100],
        };
        let new = pets.split(first, std::slice::from_ref(&key)).unwrap();
        assert_ne!(new, first);
        pets.set_sightings(library());
        let rex = pets.get(first).unwrap();
        assert_eq!(rex.name.as_deref(), Some("Rex"));
        assert_eq!(rex.sightings.len(), 3, "{rex:?}");
        assert!(pets
            .get(new)
            .unwrap()
            .sightings
            .iter()
            .any(|s| s.key() == key));
        assert_eq!(
            pets.merge(
                first,
                pets.pets
                    .iter()
                    .find(|p| p.species == Species::Cat)
                    .unwrap()
                    .id
            ),
            Err(PetsError::SpeciesDiffer(first, 2))
        );
        assert_eq!(pets.split(first, &[]), Err(PetsError::EmptySplit));
    }

    #[test]
    fn a_split_keeps_the_old_id_and_name_on_the_rest_even_against_a_shared_sidecar_name() {
        // Two sightings of one coat, both named Rex by a keyword: the user says one is another dog.
        let mut all = vec![
            sighting("a", 0, Species::Dog, coat(0, 1, 0.05)),
            sighting("b", 0, Species::Dog, coat(0, 1, 0.06)),
        ];
        for s in &mut all {
            s.named = Some("Rex".into());
        }
        for split_first in [true, false] {
            let mut pets = Pets::default();
            pets.set_sightings(all.clone());
            let rex = pets.resolve("Rex").unwrap();
            let key = pets.get(rex).unwrap().sightings[usize::from(!split_first)].key();
            let new = pets.split(rex, std::slice::from_ref(&key)).unwrap();
            assert_ne!(new, rex);
            assert_eq!(pets.pets.len(), 2, "{:?}", pets.pets);
            let old = pets.get(rex).unwrap();
            assert_eq!(old.name.as_deref(), Some("Rex"));
            assert!(!old.sightings.iter().any(|s| s.key() == key));
            let split = pets.get(new).unwrap();
            assert_eq!(split.name, None);
            assert_eq!(split.sightings[0].key(), key);
            // And it stays so when the library is grouped again.
            pets.set_sightings(all.clone());
            assert_eq!(pets.get(new).unwrap().sightings[0].key(), key);
            assert_eq!(pets.get(rex).unwrap().name.as_deref(), Some("Rex"));
        }
    }

    #[test]
    fn sidecar_names_join_sightings_and_keep_differently_named_ones_apart() {
        let mut all = library();
        all[0].named = Some("Rex".into());
        all[3].named = Some("Rex".into());
        all[1].named = Some("Bella".into());
        let mut pets = Pets::default();
        pets.set_sightings(all);
        let rex = pets.get(pets.resolve("Rex").unwrap()).unwrap();
        let mut photos: Vec<&str> = rex.sightings.iter().map(|s| s.photo.as_str()).collect();
        photos.sort();
        // Named alike, so one pet, although their coats differ; "c" looks like "d" but not like the
        // pair on average, so it stays apart.
        assert_eq!(photos, ["a", "d"]);
        let bella = pets.get(pets.resolve("Bella").unwrap()).unwrap();
        assert_eq!(bella.sightings.len(), 1);
    }
}
