//! Average-linkage agglomerative clustering of faces with per-pair thresholds and constraints
//! (faces of one photo, the user's splits, different named people), over the candidate pairs of
//! the neighbour graph.

use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};

use super::neighbours::neighbour_graph;
use super::quality::{distance, match_threshold};
use super::{FaceRecord, FEW_FACES_DISTANCE};

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

/// Groups faces given in canonical order; returns the groups as lists of face indices,
/// ordered by their smallest index. `together` groups are merged first whatever their
/// distances; `apart` pairs of lists and different `named` lists never share a group.
pub(super) fn cluster(
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
