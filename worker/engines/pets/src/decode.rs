//! From head outputs to boxes: NanoDet's generalised-focal-loss decoding (cell
//! centres at half-cell offsets, each side's distance the expectation of a
//! softmax over 11 bins times the stride), mapping back through the letterbox,
//! and greedy per-class non-maximum suppression.

use serde::{Deserialize, Serialize};

use crate::net::{BINS, CLASSES, HEAD_CHANNELS};
use crate::preprocess::Letterbox;

/// The COCO classes Reverie keeps: people (a cross-check for the face detector)
/// and the two pets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Person,
    Cat,
    Dog,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Person, Kind::Cat, Kind::Dog];

    /// Index of the class among COCO's 80.
    pub fn coco_class(self) -> usize {
        match self {
            Kind::Person => 0,
            Kind::Cat => 15,
            Kind::Dog => 16,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Kind::Person => "person",
            Kind::Cat => "cat",
            Kind::Dog => "dog",
        }
    }

    pub fn is_pet(self) -> bool {
        matches!(self, Kind::Cat | Kind::Dog)
    }
}

/// A box in photo pixels, `right`/`bottom` exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BoxF {
    pub left: f32,
    pub top: f32,
    pub right: f32,
    pub bottom: f32,
}

impl BoxF {
    pub fn width(&self) -> f32 {
        (self.right - self.left).max(0.0)
    }

    pub fn height(&self) -> f32 {
        (self.bottom - self.top).max(0.0)
    }

    pub fn area(&self) -> f32 {
        self.width() * self.height()
    }

    pub fn iou(&self, other: &BoxF) -> f32 {
        let w = (self.right.min(other.right) - self.left.max(other.left)).max(0.0);
        let h = (self.bottom.min(other.bottom) - self.top.max(other.top)).max(0.0);
        let inter = w * h;
        let union = self.area() + other.area() - inter;
        if union > 0.0 {
            inter / union
        } else {
            0.0
        }
    }
}

/// One detected object.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    pub kind: Kind,
    pub score: f32,
    #[serde(rename = "box")]
    pub bbox: BoxF,
    /// Detection level (0: stride 8) and cell, for tracing a box to the network.
    pub level: u8,
    pub cell: u32,
}

/// Thresholds of the decoding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeOptions {
    pub min_score: f32,
    /// Boxes of one class overlapping a better one by more than this are dropped.
    pub nms_iou: f32,
    pub max_detections: usize,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            min_score: 0.35,
            nms_iou: 0.6,
            max_detections: 100,
        }
    }
}

/// One level's outputs for one photo, channel-major: `values[c * cells + k]`.
pub struct LevelValues<'a> {
    pub stride: usize,
    pub grid: usize,
    pub values: &'a [f32],
}

/// Decodes the three levels of one photo into detections of `Kind::ALL`.
pub fn decode(
    levels: &[LevelValues<'_>],
    letterbox: Letterbox,
    options: &DecodeOptions,
) -> Vec<Detection> {
    let mut candidates = Vec::new();
    for (level, out) in levels.iter().enumerate() {
        let cells = out.grid * out.grid;
        debug_assert_eq!(out.values.len(), HEAD_CHANNELS * cells);
        for kind in Kind::ALL {
            let scores = &out.values[kind.coco_class() * cells..(kind.coco_class() + 1) * cells];
            for (cell, &score) in scores.iter().enumerate() {
                if score.is_nan() || score < options.min_score {
                    continue;
                }
                let bbox = cell_box(out, cell, letterbox);
                candidates.push(Detection {
                    kind,
                    score,
                    bbox,
                    level: level as u8,
                    cell: cell as u32,
                });
            }
        }
    }
    suppress(candidates, options)
}

fn cell_box(out: &LevelValues<'_>, cell: usize, letterbox: Letterbox) -> BoxF {
    let cells = out.grid * out.grid;
    let stride = out.stride as f32;
    let cx = ((cell % out.grid) as f32 + 0.5) * stride;
    let cy = ((cell / out.grid) as f32 + 0.5) * stride;
    let mut distance = [0f32; 4];
    for (side, d) in distance.iter_mut().enumerate() {
        let channel = CLASSES + side * BINS;
        let logits: Vec<f32> = (0..BINS)
            .map(|bin| out.values[(channel + bin) * cells + cell])
            .collect();
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let weights: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
        let total: f32 = weights.iter().sum();
        let expectation: f32 = weights
            .iter()
            .enumerate()
            .map(|(i, w)| i as f32 * w)
            .sum::<f32>()
            / total;
        *d = expectation * stride;
    }
    let (w, h) = (letterbox.width as f32, letterbox.height as f32);
    let to_photo = |v: f32, limit: f32| (v / letterbox.scale).clamp(0.0, limit);
    BoxF {
        left: to_photo(cx - distance[0], w),
        top: to_photo(cy - distance[1], h),
        right: to_photo(cx + distance[2], w),
        bottom: to_photo(cy + distance[3], h),
    }
}

/// Greedy non-maximum suppression per kind, best first; ties keep the earlier
/// level and cell, so the result does not depend on sort stability.
fn suppress(mut candidates: Vec<Detection>, options: &DecodeOptions) -> Vec<Detection> {
    candidates.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(a.level.cmp(&b.level))
            .then(a.cell.cmp(&b.cell))
    });
    let mut kept: Vec<Detection> = Vec::new();
    for candidate in candidates {
        let overlaps = kept
            .iter()
            .any(|k| k.kind == candidate.kind && k.bbox.iou(&candidate.bbox) > options.nms_iou);
        if !overlaps {
            kept.push(candidate);
            if kept.len() == options.max_detections {
                break;
            }
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level_with(
        stride: usize,
        grid: usize,
        cell: usize,
        class: usize,
        score: f32,
        bins: [usize; 4],
    ) -> Vec<f32> {
        let cells = grid * grid;
        let mut values = vec![0f32; HEAD_CHANNELS * cells];
        values[class * cells + cell] = score;
        for (side, bin) in bins.iter().enumerate() {
            for b in 0..BINS {
                // A very peaked distribution: the expectation is the bin itself.
                values[(CLASSES + side * BINS + b) * cells + cell] =
                    if b == *bin { 50.0 } else { 0.0 };
            }
        }
        let _ = stride;
        values
    }

    #[test]
    fn a_peaked_distribution_gives_the_bin_times_the_stride_around_the_cell_centre() {
        let values = level_with(16, 26, 26 * 3 + 5, 16, 0.9, [1, 2, 3, 4]);
        let levels = [LevelValues {
            stride: 16,
            grid: 26,
            values: &values,
        }];
        let found = decode(&levels, Letterbox::of(416, 416), &DecodeOptions::default());
        assert_eq!(found.len(), 1);
        let d = found[0];
        assert_eq!(d.kind, Kind::Dog);
        // Centre (5.5*16, 3.5*16) = (88, 56).
        let b = d.bbox;
        assert!((b.left - 72.0).abs() < 1e-3 && (b.top - 24.0).abs() < 1e-3);
        assert!((b.right - 136.0).abs() < 1e-3 && (b.bottom - 120.0).abs() < 1e-3);
    }

    #[test]
    fn boxes_are_mapped_back_through_the_letterbox_and_clipped() {
        let values = level_with(32, 13, 0, 15, 0.8, [10, 10, 2, 2]);
        let levels = [LevelValues {
            stride: 32,
            grid: 13,
            values: &values,
        }];
        let found = decode(&levels, Letterbox::of(832, 208), &DecodeOptions::default());
        let b = found[0].bbox;
        assert_eq!((b.left, b.top), (0.0, 0.0));
        assert!((b.right - (16.0 + 64.0) * 2.0).abs() < 1e-3);
        assert_eq!(found[0].kind, Kind::Cat);
    }

    #[test]
    fn overlapping_boxes_of_one_kind_collapse_but_a_cat_and_a_dog_do_not() {
        let bbox = BoxF {
            left: 0.0,
            top: 0.0,
            right: 100.0,
            bottom: 100.0,
        };
        let near = BoxF {
            left: 5.0,
            top: 5.0,
            right: 100.0,
            bottom: 100.0,
        };
        let make = |kind, score, bbox, cell| Detection {
            kind,
            score,
            bbox,
            level: 0,
            cell,
        };
        let kept = suppress(
            vec![
                make(Kind::Dog, 0.5, near, 1),
                make(Kind::Dog, 0.9, bbox, 0),
                make(Kind::Cat, 0.6, near, 2),
            ],
            &DecodeOptions::default(),
        );
        assert_eq!(kept.len(), 2);
        assert_eq!((kept[0].kind, kept[0].score), (Kind::Dog, 0.9));
        assert_eq!(kept[1].kind, Kind::Cat);
    }
}
