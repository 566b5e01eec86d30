//! Grouping a library again: every known face (people, pending and new) clustered from scratch in a
//! canonical order, with the user's edits as constraints; the groups that are people matched to the
//! previous people by shared faces, so ids, names and "me" stay with their person.

use std::collections::{BTreeMap, BTreeSet};

use super::cluster::cluster;
use super::{FaceKey, FaceRecord, People, Person, LONE_FACE_MIN_QUALITY};

impl People {
    /// Groups every known face plus `new` from scratch, honouring the user's edits, then
    /// gives each group the id and name of the person it shares most faces with.
    pub(super) fn regroup(&mut self, new: Vec<FaceRecord>) {
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
}
