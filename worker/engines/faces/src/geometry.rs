//! Small geometry helpers shared by the pipeline: dlib-style rectangles, rounding
//! and the least-squares similarity transform.

use serde::{Deserialize, Serialize};

/// An integer rectangle with INCLUSIVE right/bottom, as dlib uses internally.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rect {
    pub left: i64,
    pub top: i64,
    pub right: i64,
    pub bottom: i64,
}

impl Rect {
    pub fn width(&self) -> i64 {
        self.right - self.left + 1
    }

    pub fn height(&self) -> i64 {
        self.bottom - self.top + 1
    }

    /// Inclusive area; empty rectangles have area 0.
    pub fn area(&self) -> i64 {
        if self.right < self.left || self.bottom < self.top {
            0
        } else {
            self.width() * self.height()
        }
    }

    pub fn intersect(&self, other: &Rect) -> Rect {
        Rect {
            left: self.left.max(other.left),
            top: self.top.max(other.top),
            right: self.right.min(other.right),
            bottom: self.bottom.min(other.bottom),
        }
    }

    /// Smallest rectangle containing both.
    pub fn enclose(&self, other: &Rect) -> Rect {
        Rect {
            left: self.left.min(other.left),
            top: self.top.min(other.top),
            right: self.right.max(other.right),
            bottom: self.bottom.max(other.bottom),
        }
    }

    pub fn contains(&self, x: i64, y: i64) -> bool {
        x >= self.left && x <= self.right && y >= self.top && y <= self.bottom
    }
}

/// A floating-point rectangle (dlib `drectangle`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DRect {
    pub left: f64,
    pub top: f64,
    pub right: f64,
    pub bottom: f64,
}

impl DRect {
    /// dlib's `centered_drect`: width/height are reduced by 1 before halving.
    pub fn centered(cx: f64, cy: f64, width: f64, height: f64) -> Self {
        DRect {
            left: cx - (width - 1.0) / 2.0,
            top: cy - (height - 1.0) / 2.0,
            right: cx + (width - 1.0) / 2.0,
            bottom: cy + (height - 1.0) / 2.0,
        }
    }

    pub fn center(&self) -> (f64, f64) {
        (
            (self.left + self.right) / 2.0,
            (self.top + self.bottom) / 2.0,
        )
    }

    pub fn area(&self) -> f64 {
        if self.right < self.left || self.bottom < self.top {
            0.0
        } else {
            (self.right - self.left + 1.0) * (self.bottom - self.top + 1.0)
        }
    }

    /// `pyramid_down<2>::rect_down`.
    pub fn down2(&self) -> Self {
        DRect {
            left: self.left / 2.0 - 1.25,
            top: self.top / 2.0 - 0.75,
            right: self.right / 2.0 - 1.25,
            bottom: self.bottom / 2.0 - 0.75,
        }
    }

    /// `lround` on each coordinate (half away from zero).
    pub fn round(&self) -> Rect {
        Rect {
            left: self.left.round() as i64,
            top: self.top.round() as i64,
            right: self.right.round() as i64,
            bottom: self.bottom.round() as i64,
        }
    }
}

/// dlib's point rounding: `floor(v + 0.5)`.
pub fn round_point(v: f64) -> i64 {
    (v + 0.5).floor() as i64
}

/// A similarity transform `p -> m·p + t`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    pub m: [[f64; 2]; 2],
    pub t: [f64; 2],
}

impl Similarity {
    pub fn apply(&self, p: (f64, f64)) -> (f64, f64) {
        (
            self.m[0][0] * p.0 + self.m[0][1] * p.1 + self.t[0],
            self.m[1][0] * p.0 + self.m[1][1] * p.1 + self.t[1],
        )
    }
}

/// Least-squares similarity transform mapping `from` onto `to` (Umeyama). In 2D the
/// optimal scaled rotation has the closed form `[[a,-b],[b,a]]/sigma_from` with
/// `a = cov00 + cov11`, `b = cov10 - cov01`, which is exactly what the SVD recipe
/// (with its reflection correction) yields.
pub fn similarity_transform(from: &[(f64, f64)], to: &[(f64, f64)]) -> Similarity {
    let n = from.len().min(to.len()).max(1) as f64;
    let mean = |pts: &[(f64, f64)]| {
        let (sx, sy) = pts
            .iter()
            .fold((0.0, 0.0), |acc, p| (acc.0 + p.0, acc.1 + p.1));
        (sx / n, sy / n)
    };
    let mf = mean(from);
    let mt = mean(to);
    let mut sigma_from = 0.0;
    let mut cov = [[0.0f64; 2]; 2];
    for (f, t) in from.iter().zip(to) {
        let (fx, fy) = (f.0 - mf.0, f.1 - mf.1);
        let (tx, ty) = (t.0 - mt.0, t.1 - mt.1);
        sigma_from += fx * fx + fy * fy;
        cov[0][0] += tx * fx;
        cov[0][1] += tx * fy;
        cov[1][0] += ty * fx;
        cov[1][1] += ty * fy;
    }
    sigma_from /= n;
    let a = (cov[0][0] + cov[1][1]) / n;
    let b = (cov[1][0] - cov[0][1]) / n;
    let m = if sigma_from == 0.0 {
        let norm = (a * a + b * b).sqrt();
        if norm == 0.0 {
            [[1.0, 0.0], [0.0, 1.0]]
        } else {
            [[a / norm, -b / norm], [b / norm, a / norm]]
        }
    } else {
        [
            [a / sigma_from, -b / sigma_from],
            [b / sigma_from, a / sigma_from],
        ]
    };
    let t = [
        mt.0 - (m[0][0] * mf.0 + m[0][1] * mf.1),
        mt.1 - (m[1][0] * mf.0 + m[1][1] * mf.1),
    ];
    Similarity { m, t }
}
