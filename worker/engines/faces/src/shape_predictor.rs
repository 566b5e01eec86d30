//! dlib's 5-point shape predictor: a cascade of regression-tree forests
//! (FORMAT.md section 7).

use image::RgbImage;

use crate::dlib_format::DlibReader;
use crate::error::{FaceError, Result};
use crate::geometry::{round_point, similarity_transform, Rect};

const FILE: &str = "shape_predictor_5_face_landmarks.dat";

#[derive(Debug, Clone)]
struct Split {
    idx1: usize,
    idx2: usize,
    threshold: f32,
}

#[derive(Debug, Clone)]
struct RegressionTree {
    splits: Vec<Split>,
    leaves: Vec<Vec<f32>>,
}

#[derive(Debug, Clone)]
struct Cascade {
    trees: Vec<RegressionTree>,
    anchors: Vec<usize>,
    deltas: Vec<(f32, f32)>,
}

/// The loaded shape predictor.
#[derive(Debug, Clone)]
pub struct ShapePredictor {
    initial_shape: Vec<f32>,
    cascades: Vec<Cascade>,
}

fn read_tree(r: &mut DlibReader<'_>, shape_len: usize) -> Result<RegressionTree> {
    let n_splits = r.usize()?;
    let mut splits = Vec::with_capacity(n_splits.min(1 << 16));
    for _ in 0..n_splits {
        splits.push(Split {
            idx1: r.usize()?,
            idx2: r.usize()?,
            threshold: r.real()? as f32,
        });
    }
    let n_leaves = r.usize()?;
    if n_leaves != n_splits + 1 {
        return Err(r.error(format!("tree with {n_splits} splits has {n_leaves} leaves")));
    }
    let mut leaves = Vec::with_capacity(n_leaves);
    for _ in 0..n_leaves {
        let leaf = r.float_matrix()?;
        if leaf.len() != shape_len {
            return Err(r.error("leaf value size differs from the shape size"));
        }
        leaves.push(leaf);
    }
    Ok(RegressionTree { splits, leaves })
}

impl ShapePredictor {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut r = DlibReader::new(bytes, FILE);
        let version = r.int()?;
        if version != 1 {
            return Err(r.error(format!("shape_predictor version {version}, expected 1")));
        }
        let initial_shape = r.float_matrix()?;
        let shape_len = initial_shape.len();
        let num_parts = shape_len / 2;
        let n_cascades = r.usize()?;
        let mut forests = Vec::new();
        for _ in 0..n_cascades {
            let n_trees = r.usize()?;
            let mut trees = Vec::new();
            for _ in 0..n_trees {
                trees.push(read_tree(&mut r, shape_len)?);
            }
            forests.push(trees);
        }
        let mut anchors = Vec::new();
        for _ in 0..r.usize()? {
            let n = r.usize()?;
            let list = (0..n).map(|_| r.usize()).collect::<Result<Vec<_>>>()?;
            if list.iter().any(|&a| a >= num_parts) {
                return Err(r.error("anchor index out of range"));
            }
            anchors.push(list);
        }
        let mut deltas = Vec::new();
        for _ in 0..r.usize()? {
            let n = r.usize()?;
            let list = (0..n)
                .map(|_| Ok((r.real()? as f32, r.real()? as f32)))
                .collect::<Result<Vec<_>>>()?;
            deltas.push(list);
        }
        if !r.is_at_end() {
            return Err(r.error("trailing bytes after the shape predictor"));
        }
        if anchors.len() != forests.len() || deltas.len() != forests.len() {
            return Err(r.error("cascade counts of forests, anchors and deltas differ"));
        }
        let cascades = forests
            .into_iter()
            .zip(anchors)
            .zip(deltas)
            .map(|((trees, anchors), deltas)| Cascade {
                trees,
                anchors,
                deltas,
            })
            .collect::<Vec<_>>();
        for c in &cascades {
            let n_features = c.anchors.len();
            if c.deltas.len() != n_features
                || c.trees
                    .iter()
                    .flat_map(|t| &t.splits)
                    .any(|s| s.idx1 >= n_features || s.idx2 >= n_features)
            {
                return Err(FaceError::Layout {
                    file: FILE.to_string(),
                    what: "split feature index out of range".to_string(),
                });
            }
        }
        Ok(Self {
            initial_shape,
            cascades,
        })
    }

    /// The model's mean shape placed in `rect` (what the cascade starts from): landmarks that
    /// depend on the rectangle only, never on pixels.
    pub fn mean_shape(&self, rect: &Rect) -> Vec<(i64, i64)> {
        let (l, t) = (rect.left as f64, rect.top as f64);
        let (rw, rh) = (
            (rect.right - rect.left) as f64,
            (rect.bottom - rect.top) as f64,
        );
        self.initial_shape
            .chunks_exact(2)
            .map(|p| {
                let (x, y) = (l + f64::from(p[0]) * rw, t + f64::from(p[1]) * rh);
                (round_point(x), round_point(y))
            })
            .collect()
    }

    /// Landmarks (integer pixel coordinates) for a detection rectangle.
    pub fn predict(&self, gray: &GrayPlane, rect: &Rect) -> Vec<(i64, i64)> {
        let (l, t) = (rect.left as f64, rect.top as f64);
        let (rw, rh) = (
            (rect.right - rect.left) as f64,
            (rect.bottom - rect.top) as f64,
        );
        let to_image = |x: f32, y: f32| (l + f64::from(x) * rw, t + f64::from(y) * rh);
        let reference: Vec<(f64, f64)> = self
            .initial_shape
            .chunks_exact(2)
            .map(|p| (f64::from(p[0]), f64::from(p[1])))
            .collect();
        let mut shape = self.initial_shape.clone();
        let mut features = Vec::new();
        for cascade in &self.cascades {
            let current: Vec<(f64, f64)> = shape
                .chunks_exact(2)
                .map(|p| (f64::from(p[0]), f64::from(p[1])))
                .collect();
            let m = similarity_transform(&reference, &current).m;
            let m = [
                [m[0][0] as f32, m[0][1] as f32],
                [m[1][0] as f32, m[1][1] as f32],
            ];
            features.clear();
            for (&a, &(dx, dy)) in cascade.anchors.iter().zip(&cascade.deltas) {
                let vx = (m[0][0] * dx + m[0][1] * dy) + shape[2 * a];
                let vy = (m[1][0] * dx + m[1][1] * dy) + shape[2 * a + 1];
                let (px, py) = to_image(vx, vy);
                features.push(gray.get(round_point(px), round_point(py)));
            }
            for tree in &cascade.trees {
                let mut node = 0;
                while node < tree.splits.len() {
                    let s = &tree.splits[node];
                    node = if features[s.idx1] - features[s.idx2] > s.threshold {
                        2 * node + 1
                    } else {
                        2 * node + 2
                    };
                }
                let leaf = &tree.leaves[node - tree.splits.len()];
                for (v, d) in shape.iter_mut().zip(leaf) {
                    *v += d;
                }
            }
        }
        shape
            .chunks_exact(2)
            .map(|p| {
                let (x, y) = to_image(p[0], p[1]);
                (round_point(x), round_point(y))
            })
            .collect()
    }
}

/// Gray intensities as dlib computes them from RGB: `(R+G+B)/3`, integer division.
#[derive(Debug, Clone)]
pub struct GrayPlane {
    width: i64,
    height: i64,
    values: Vec<f32>,
}

impl GrayPlane {
    pub fn from_rgb(img: &RgbImage) -> Self {
        let values = img
            .pixels()
            .map(|p| ((u32::from(p[0]) + u32::from(p[1]) + u32::from(p[2])) / 3) as f32)
            .collect();
        Self {
            width: i64::from(img.width()),
            height: i64::from(img.height()),
            values,
        }
    }

    /// Intensity at (x, y), 0 outside the image.
    pub fn get(&self, x: i64, y: i64) -> f32 {
        if x < 0 || y < 0 || x >= self.width || y >= self.height {
            0.0
        } else {
            self.values[(y * self.width + x) as usize]
        }
    }
}
