//! Identity: does a picture carry the person it was asked to show?
//!
//! Two halves share the same signal, the dlib descriptor (no extra weights):
//! - [`check`]: after rendering, the faces found in an output are matched to the job's people
//!   (optimal assignment) and each person gets a descriptor distance and a verdict;
//! - [`energy`]: during sampling, the descriptor distance at a planned face place, computed on
//!   candle's autograd path, is the energy whose gradient steers the latents.

pub mod check;
pub mod energy;

use serde::{Deserialize, Serialize};

use crate::resnet::DESCRIPTOR_LEN;

/// Below this descriptor distance two faces are the same person (dlib's documented threshold,
/// the one the people grouping uses too).
pub const VERIFIED_DISTANCE: f32 = 0.6;

/// One person a picture should show: where (in output pixels) and who (a reference descriptor,
/// the mean of the person's best faces or of one identity image).
#[derive(Debug, Clone, PartialEq)]
pub struct IdentityTarget {
    /// `[left, top, right, bottom]` in output pixels (right/bottom exclusive).
    pub place: [f32; 4],
    pub reference: [f32; DESCRIPTOR_LEN],
}

/// What the identity check says of one person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// A face at the planned place within [`VERIFIED_DISTANCE`] of the reference.
    Verified,
    /// A face at the planned place, but further than [`VERIFIED_DISTANCE`].
    Weak,
    /// No face found at the planned place.
    Missing,
}

impl Verdict {
    pub fn of_distance(distance: Option<f32>) -> Self {
        match distance {
            None => Verdict::Missing,
            Some(d) if d < VERIFIED_DISTANCE => Verdict::Verified,
            Some(_) => Verdict::Weak,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Verdict::Verified => "verified",
            Verdict::Weak => "weak",
            Verdict::Missing => "missing",
        }
    }
}

/// How a candidate picture ranks by identity; lower is better, compared field by field: people
/// missing first, then the total distance of the faces found at their places, then the total
/// distance measured at the planned places themselves (where the caller measured it; it only
/// separates candidates equal on the first two, e.g. pictures with no detectable face).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct CandidateRank {
    pub missing: usize,
    pub found_distance: f32,
    pub place_distance: f32,
}

impl CandidateRank {
    /// The rank of a picture from each person's `(distance of the face found, distance at the
    /// planned place)`; a person without a found face counts as missing.
    pub fn of(people: impl IntoIterator<Item = (Option<f32>, Option<f32>)>) -> Self {
        people
            .into_iter()
            .fold(CandidateRank::default(), |mut rank, (found, place)| {
                match found {
                    Some(distance) => rank.found_distance += distance,
                    None => rank.missing += 1,
                }
                rank.place_distance += place.unwrap_or(0.0);
                rank
            })
    }
}

/// The index of the best-ranked candidate; the first of equals (the lowest seed), so a retry keeps
/// the same picture.
pub fn best_candidate(ranks: &[CandidateRank]) -> usize {
    let mut best = 0;
    for (index, rank) in ranks.iter().enumerate().skip(1) {
        if rank < &ranks[best] {
            best = index;
        }
    }
    best
}

/// Euclidean distance between two descriptors.
pub fn descriptor_distance(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt()
}

/// The mean of several descriptors (a person's reference from their best faces).
pub fn mean_descriptor<'a>(
    descriptors: impl IntoIterator<Item = &'a [f32]>,
) -> Option<[f32; DESCRIPTOR_LEN]> {
    let mut sum = [0f32; DESCRIPTOR_LEN];
    let mut count = 0usize;
    for d in descriptors {
        if d.len() != DESCRIPTOR_LEN {
            continue;
        }
        for (s, v) in sum.iter_mut().zip(d) {
            *s += v;
        }
        count += 1;
    }
    if count == 0 {
        return None;
    }
    Some(sum.map(|s| s / count as f32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_rank_by_missing_then_found_then_place_distance() {
        let rank =
            |people: &[(Option<f32>, Option<f32>)]| CandidateRank::of(people.iter().copied());
        let ranks = [
            rank(&[(None, Some(0.1))]),
            rank(&[(Some(0.7), None)]),
            rank(&[(Some(0.5), None)]),
            rank(&[(Some(0.5), None)]),
        ];
        assert_eq!(
            best_candidate(&ranks),
            2,
            "first of equals, fewest missing, nearest"
        );
        // Among pictures without a detectable face, the distance at the place decides.
        let faceless = [rank(&[(None, Some(0.8))]), rank(&[(None, Some(0.6))])];
        assert_eq!(best_candidate(&faceless), 1);
        assert_eq!(best_candidate(&[]), 0);
    }
}
