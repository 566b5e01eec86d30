//! The identity check of a finished picture: does each person the job asked for appear where the
//! composition put them, and how close is that face to the person's reference descriptor?
//!
//! 1. Faces are detected in the output and described (the same dlib pipeline the library uses).
//! 2. A face may only answer for a person if it is **at the planned place**: the centre of the
//!    detected box lies inside the planned face box grown by [`PLACE_MARGIN`] of its width and
//!    height on every side. The margin absorbs what img2img and painting do to a face (a shifted
//!    chin, a repainted hairline), while the neighbour in a group picture — whose face centre is
//!    at least three face widths away in the compositor's layout — stays outside.
//! 3. Faces are assigned to people by a minimum-cost matching (Hungarian algorithm) of descriptor
//!    distances, so two people never claim one face and a greedy first pick cannot steal the face
//!    another person needed. The matching first matches as many people as possible, then
//!    minimises their total distance.
//! 4. Each person gets the distance to their face, and [`Verdict::of_distance`]: `verified` within
//!    [`VERIFIED_DISTANCE`](super::VERIFIED_DISTANCE), `weak` further away, `missing` with no face
//!    at the place.

use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::{descriptor_distance, IdentityTarget, Verdict};
use crate::analyzer::{Face, FaceAnalyzer, FaceBox};
use crate::error::{FaceError, IdentityError, Result};
use crate::resnet::DESCRIPTOR_LEN;

/// How far (as a share of the planned box's width and height, on every side) a detected face's
/// centre may lie outside the planned face box and still count as at the planned place.
pub const PLACE_MARGIN: f32 = 0.5;

/// The cost of leaving a person unmatched: far above any sum of descriptor distances a picture can
/// have (a distance is at most a few units and a picture holds a handful of people), so the
/// matching never leaves a person missing to lower the others' distances.
const MISSING_COST: f64 = 1.0e6;

/// What the check found for one person (same order as the targets).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct IdentityCheck {
    /// Descriptor distance of the face matched to the person; `None` when none was at the place.
    pub distance: Option<f32>,
    pub verdict: Verdict,
}

impl IdentityCheck {
    fn of(distance: Option<f32>) -> IdentityCheck {
        IdentityCheck {
            distance,
            verdict: Verdict::of_distance(distance),
        }
    }
}

/// Checks every target person against the faces found in `image` (output pixels).
pub fn check_identities(
    analyzer: &FaceAnalyzer,
    image: &RgbImage,
    targets: &[IdentityTarget],
) -> Result<Vec<IdentityCheck>> {
    if targets.is_empty() {
        // No person asked for: nothing to detect.
        return Ok(Vec::new());
    }
    let faces = analyzer
        .analyze_batch(std::slice::from_ref(image))?
        .pop()
        .unwrap_or_default();
    Ok(match_faces(&faces, targets))
}

/// The matching step of [`check_identities`] on already detected faces.
pub fn match_faces(faces: &[Face], targets: &[IdentityTarget]) -> Vec<IdentityCheck> {
    let allowed: Vec<Vec<Option<f32>>> = targets
        .iter()
        .map(|target| {
            faces
                .iter()
                .map(|face| {
                    (face.descriptor.len() == DESCRIPTOR_LEN && at_place(&target.place, &face.bbox))
                        .then(|| descriptor_distance(&face.descriptor, &target.reference))
                })
                .collect()
        })
        .collect();
    assign_faces(&allowed)
        .into_iter()
        .zip(&allowed)
        .map(|(face, row)| IdentityCheck::of(face.and_then(|f| row[f])))
        .collect()
}

/// Whether a detected face (inclusive dlib box) is at a planned place `[left, top, right, bottom]`
/// (right/bottom exclusive): its centre within the place grown by [`PLACE_MARGIN`].
pub fn at_place(place: &[f32; 4], face: &FaceBox) -> bool {
    let [left, top, right, bottom] = *place;
    let (width, height) = (right - left, bottom - top);
    if !(width > 0.0 && height > 0.0) {
        return false;
    }
    let cx = (face.left + face.right + 1) as f32 / 2.0;
    let cy = (face.top + face.bottom + 1) as f32 / 2.0;
    let (mx, my) = (PLACE_MARGIN * width, PLACE_MARGIN * height);
    cx >= left - mx && cx <= right + mx && cy >= top - my && cy <= bottom + my
}

/// Assigns faces (columns) to people (rows): `distances[person][face]` is `None` where the face may
/// not answer for the person. Returns each person's face, `None` when left unmatched. Matches as
/// many people as possible, then minimises the total distance.
pub fn assign_faces(distances: &[Vec<Option<f32>>]) -> Vec<Option<usize>> {
    let people = distances.len();
    if people == 0 {
        return Vec::new();
    }
    let faces = distances.iter().map(Vec::len).max().unwrap_or(0);
    // One "missing" column per person, so every person can always be matched to something.
    let columns = faces + people;
    let cost: Vec<Vec<f64>> = distances
        .iter()
        .map(|row| {
            (0..columns)
                .map(|column| match row.get(column) {
                    _ if column >= faces => MISSING_COST,
                    Some(Some(d)) if d.is_finite() => f64::from(*d),
                    // Not at the place: never chosen while a missing column is free.
                    _ => MISSING_COST * 2.0,
                })
                .collect()
        })
        .collect();
    min_cost_assignment(&cost)
        .into_iter()
        .zip(distances)
        .map(|(column, row)| {
            (column < faces && matches!(row.get(column), Some(Some(d)) if d.is_finite()))
                .then_some(column)
        })
        .collect()
}

/// Minimum-cost assignment of every row to a distinct column (rows ≤ columns): the Hungarian
/// algorithm with potentials, O(rows² · columns). Returns each row's column.
pub fn min_cost_assignment(cost: &[Vec<f64>]) -> Vec<usize> {
    let rows = cost.len();
    let columns = cost.first().map_or(0, Vec::len);
    assert!(
        rows <= columns && cost.iter().all(|r| r.len() == columns),
        "min_cost_assignment needs a rectangular matrix with no more rows than columns"
    );
    // 1-based potentials and matching, column 0 is the virtual start (the classic formulation).
    let mut u = vec![0.0f64; rows + 1];
    let mut v = vec![0.0f64; columns + 1];
    let mut row_of = vec![0usize; columns + 1];
    let mut way = vec![0usize; columns + 1];
    for row in 1..=rows {
        row_of[0] = row;
        let mut j0 = 0usize;
        let mut min_slack = vec![f64::INFINITY; columns + 1];
        let mut used = vec![false; columns + 1];
        loop {
            used[j0] = true;
            let i0 = row_of[j0];
            let mut delta = f64::INFINITY;
            let mut j1 = 0usize;
            for j in 1..=columns {
                if used[j] {
                    continue;
                }
                let slack = cost[i0 - 1][j - 1] - u[i0] - v[j];
                if slack < min_slack[j] {
                    min_slack[j] = slack;
                    way[j] = j0;
                }
                if min_slack[j] < delta {
                    delta = min_slack[j];
                    j1 = j;
                }
            }
            for j in 0..=columns {
                if used[j] {
                    u[row_of[j]] += delta;
                    v[j] -= delta;
                } else {
                    min_slack[j] -= delta;
                }
            }
            j0 = j1;
            if row_of[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            row_of[j0] = row_of[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut assignment = vec![0usize; rows];
    for j in 1..=columns {
        if row_of[j] != 0 {
            assignment[row_of[j] - 1] = j - 1;
        }
    }
    assignment
}

/// What to do when an identity image shows several faces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SeveralFaces {
    /// Refuse with [`IdentityError::SeveralFaces`] (the default: guessing whose identity a group
    /// photo carries would silently steer pictures toward the wrong person).
    #[default]
    Refuse,
    /// Take the largest face (an explicit choice of the caller, e.g. a flag).
    Largest,
}

/// The reference descriptor of an identity image: its one face.
pub fn reference_from_image(
    analyzer: &FaceAnalyzer,
    image: &RgbImage,
) -> std::result::Result<[f32; DESCRIPTOR_LEN], IdentityError> {
    reference_from_image_with(analyzer, image, SeveralFaces::Refuse)
}

/// [`reference_from_image`] with an explicit choice for images that show several faces.
pub fn reference_from_image_with(
    analyzer: &FaceAnalyzer,
    image: &RgbImage,
    several: SeveralFaces,
) -> std::result::Result<[f32; DESCRIPTOR_LEN], IdentityError> {
    let faces = analyzer
        .analyze_batch(std::slice::from_ref(image))?
        .pop()
        .unwrap_or_default();
    let face = match (faces.len(), several) {
        (0, _) => return Err(IdentityError::NoFace),
        (1, _) | (_, SeveralFaces::Largest) => faces
            .iter()
            .max_by_key(|f| box_area(&f.bbox))
            .ok_or(IdentityError::NoFace)?,
        (count, SeveralFaces::Refuse) => return Err(IdentityError::SeveralFaces { count }),
    };
    Ok(to_array(&face.descriptor)?)
}

/// Faces are looked for in a window this many face sizes around a known face box: enough context
/// for the detector, far less work than the whole photo.
const WINDOW_MARGIN: f64 = 1.0;
/// The window is scaled so the face is about this wide (the detector's comfortable size; the
/// descriptor works on a 150 px chip anyway).
const WINDOW_FACE_SIDE: f64 = 160.0;
/// Overlap (intersection over union) a detection needs with the known box to be that face.
const SAME_FACE_IOU: f64 = 0.3;

/// The descriptor of the face at `face_box` (`[left, top, right, bottom]`, photo pixels) of a
/// library photo: the face the library analysis found there, found again in a window around it.
/// `None` when no detection overlaps the box (a photo re-encoded or rotated since analysis).
pub fn reference_at(
    analyzer: &FaceAnalyzer,
    photo: &RgbImage,
    face_box: [u32; 4],
) -> Result<Option<[f32; DESCRIPTOR_LEN]>> {
    let [l, t, r, b] = face_box.map(f64::from);
    let (w, h) = (r - l, b - t);
    if !(w >= 1.0 && h >= 1.0) {
        return Ok(None);
    }
    let (pw, ph) = (f64::from(photo.width()), f64::from(photo.height()));
    let x0 = (l - WINDOW_MARGIN * w).clamp(0.0, pw - 1.0).floor();
    let y0 = (t - WINDOW_MARGIN * h).clamp(0.0, ph - 1.0).floor();
    let x1 = (r + WINDOW_MARGIN * w).clamp(x0 + 1.0, pw).ceil();
    let y1 = (b + WINDOW_MARGIN * h).clamp(y0 + 1.0, ph).ceil();
    let window = image::imageops::crop_imm(
        photo,
        x0 as u32,
        y0 as u32,
        (x1 - x0) as u32,
        (y1 - y0) as u32,
    )
    .to_image();
    // Only ever shrink: enlarging a small face adds no detail the descriptor could use.
    let scale = (WINDOW_FACE_SIDE / w.max(h)).min(1.0);
    let window = if scale < 1.0 {
        let (nw, nh) = (
            ((x1 - x0) * scale).round().max(1.0) as u32,
            ((y1 - y0) * scale).round().max(1.0) as u32,
        );
        image::imageops::resize(&window, nw, nh, image::imageops::FilterType::Triangle)
    } else {
        window
    };
    let faces = analyzer
        .analyze_batch(std::slice::from_ref(&window))?
        .pop()
        .unwrap_or_default();
    let wanted = [l, t, r, b];
    let best = faces
        .iter()
        .map(|face| {
            let found = [
                x0 + face.bbox.left as f64 / scale,
                y0 + face.bbox.top as f64 / scale,
                x0 + (face.bbox.right + 1) as f64 / scale,
                y0 + (face.bbox.bottom + 1) as f64 / scale,
            ];
            (iou(&wanted, &found), same_face(&wanted, &found), face)
        })
        .filter(|(_, same, _)| *same)
        .map(|(overlap, _, face)| (overlap, face))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    best.map(|(_, face)| to_array(&face.descriptor)).transpose()
}

/// Whether a detection is the face a library box names: enough overlap, or — for boxes drawn by
/// people and photo tools (XMP face regions), which are often much tighter or looser than the
/// detector's — each box's centre inside the other.
fn same_face(wanted: &[f64; 4], found: &[f64; 4]) -> bool {
    let centre_in = |a: &[f64; 4], b: &[f64; 4]| {
        let (cx, cy) = ((a[0] + a[2]) / 2.0, (a[1] + a[3]) / 2.0);
        cx >= b[0] && cx <= b[2] && cy >= b[1] && cy <= b[3]
    };
    iou(wanted, found) >= SAME_FACE_IOU || (centre_in(wanted, found) && centre_in(found, wanted))
}

fn iou(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

fn box_area(b: &FaceBox) -> i64 {
    (b.right - b.left + 1).max(0) * (b.bottom - b.top + 1).max(0)
}

fn to_array(descriptor: &[f32]) -> Result<[f32; DESCRIPTOR_LEN]> {
    descriptor.try_into().map_err(|_| FaceError::Layout {
        file: "descriptor".to_string(),
        what: format!(
            "descriptor has {} values, expected {DESCRIPTOR_LEN}",
            descriptor.len()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::VERIFIED_DISTANCE;

    fn total(cost: &[Vec<f64>], assignment: &[usize]) -> f64 {
        assignment
            .iter()
            .enumerate()
            .map(|(r, &c)| cost[r][c])
            .sum()
    }

    /// Every injective assignment of rows to columns, for checking small cases exhaustively.
    fn brute_force_best(cost: &[Vec<f64>]) -> f64 {
        fn go(cost: &[Vec<f64>], row: usize, used: &mut Vec<bool>, sum: f64, best: &mut f64) {
            if row == cost.len() {
                *best = best.min(sum);
                return;
            }
            for c in 0..used.len() {
                if !used[c] {
                    used[c] = true;
                    go(cost, row + 1, used, sum + cost[row][c], best);
                    used[c] = false;
                }
            }
        }
        let mut best = f64::INFINITY;
        let columns = cost.first().map_or(0, Vec::len);
        go(cost, 0, &mut vec![false; columns], 0.0, &mut best);
        best
    }

    #[test]
    fn assignment_beats_greedy() {
        // Greedy takes the smallest distance first (A↔0, 0.30) and leaves B the far face (0.90):
        // 1.20 in total. The optimum gives A the second face: 0.40 + 0.35 = 0.75.
        let distances = vec![vec![Some(0.30), Some(0.40)], vec![Some(0.35), Some(0.90)]];
        assert_eq!(assign_faces(&distances), vec![Some(1), Some(0)]);
    }

    #[test]
    fn assignment_prefers_matching_everyone_over_a_lower_total() {
        // A could take face 0 at 0.1, but then B (who may only use face 0) would be missing.
        let distances = vec![vec![Some(0.1), Some(0.8)], vec![Some(0.5), None]];
        assert_eq!(assign_faces(&distances), vec![Some(1), Some(0)]);
    }

    #[test]
    fn people_without_a_face_at_their_place_are_unmatched() {
        let distances = vec![vec![None, Some(0.2)], vec![None, None], vec![]];
        assert_eq!(assign_faces(&distances), vec![Some(1), None, None]);
        // More people than faces: the best-fitting one gets it.
        let distances = vec![vec![Some(0.7)], vec![Some(0.2)]];
        assert_eq!(assign_faces(&distances), vec![None, Some(0)]);
        assert!(assign_faces(&[]).is_empty());
    }

    #[test]
    fn hungarian_matches_brute_force_on_small_matrices() {
        // A fixed linear congruential generator: reproducible matrices without a rand dependency.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 33) as f64) / f64::from(1u32 << 31)
        };
        for rows in 1..=4 {
            for columns in rows..=6 {
                for _ in 0..20 {
                    let cost: Vec<Vec<f64>> = (0..rows)
                        .map(|_| {
                            (0..columns)
                                .map(|_| (next() * 100.0).round() / 100.0)
                                .collect()
                        })
                        .collect();
                    let assignment = min_cost_assignment(&cost);
                    let mut seen = assignment.clone();
                    seen.sort_unstable();
                    seen.dedup();
                    assert_eq!(seen.len(), rows, "columns are distinct: {assignment:?}");
                    let best = brute_force_best(&cost);
                    assert!(
                        (total(&cost, &assignment) - best).abs() < 1e-9,
                        "{cost:?}: got {assignment:?}, optimum {best}"
                    );
                }
            }
        }
    }

    #[test]
    fn verdicts_follow_the_distance() {
        assert_eq!(Verdict::of_distance(None), Verdict::Missing);
        assert_eq!(Verdict::of_distance(Some(0.0)), Verdict::Verified);
        assert_eq!(Verdict::of_distance(Some(0.59)), Verdict::Verified);
        assert_eq!(Verdict::of_distance(Some(VERIFIED_DISTANCE)), Verdict::Weak);
        assert_eq!(Verdict::of_distance(Some(1.3)), Verdict::Weak);
        let json = serde_json::to_value(IdentityCheck::of(Some(0.25))).unwrap();
        assert_eq!(json["verdict"], "verified");
        let json = serde_json::to_value(IdentityCheck::of(None)).unwrap();
        assert_eq!(json["verdict"], "missing");
        assert!(json["distance"].is_null());
    }

    fn face(bbox: [i64; 4], descriptor: Vec<f32>) -> Face {
        Face {
            bbox: FaceBox {
                left: bbox[0],
                top: bbox[1],
                right: bbox[2],
                bottom: bbox[3],
            },
            confidence: 1.0,
            landmarks: Vec::new(),
            descriptor,
            chip: None,
        }
    }

    fn descriptor(first: f32) -> [f32; DESCRIPTOR_LEN] {
        let mut d = [0.0; DESCRIPTOR_LEN];
        d[0] = first;
        d
    }

    #[test]
    fn only_faces_at_the_planned_place_count() {
        let place = [100.0, 100.0, 200.0, 200.0];
        // Centre inside the place grown by half its size (50..250): counted.
        assert!(at_place(&place, &face([60, 60, 139, 139], vec![]).bbox));
        assert!(at_place(&place, &face([200, 200, 299, 299], vec![]).bbox));
        // Centre 300: the neighbour's face, not this person's.
        assert!(!at_place(&place, &face([250, 100, 349, 199], vec![]).bbox));
        assert!(!at_place(
            &[0.0, 0.0, 0.0, 10.0],
            &face([0, 0, 9, 9], vec![]).bbox
        ));

        let targets = vec![
            IdentityTarget {
                place,
                reference: descriptor(0.0),
            },
            IdentityTarget {
                place: [400.0, 100.0, 500.0, 200.0],
                reference: descriptor(0.0),
            },
        ];
        // The first person's face is close; the second person's place is empty, and the face
        // beside it (centre 300) belongs to neither.
        let faces = vec![
            face([110, 110, 189, 189], descriptor(0.2).to_vec()),
            face([260, 110, 339, 189], descriptor(0.0).to_vec()),
        ];
        let checks = match_faces(&faces, &targets);
        assert_eq!(checks[0].verdict, Verdict::Verified);
        assert!((checks[0].distance.unwrap() - 0.2).abs() < 1e-6);
        assert_eq!(checks[1], IdentityCheck::of(None));
        // A face at the place but far from the reference is weak, not missing.
        let checks = match_faces(
            &[face([110, 110, 189, 189], descriptor(0.9).to_vec())],
            &targets,
        );
        assert_eq!(checks[0].verdict, Verdict::Weak);
    }
}
