//! The candidate graph of the clustering: each face's nearest faces under the same-person
//! distance, found directly or, for large libraries, with a matrix product.

use super::quality::distance;
use super::{MAX_NEIGHBOURS, SAME_PERSON_DISTANCE};
use crate::resnet::DESCRIPTOR_LEN;

/// Pairs of faces closer than [`SAME_PERSON_DISTANCE`] where one is among the other's
/// [`MAX_NEIGHBOURS`] nearest, as (i < j, distance), sorted. Large libraries find the
/// candidates with a matrix product (squared distances from dot products, blocks of rows
/// on several threads); every kept distance is then computed exactly with [`distance`],
/// so the graph does not depend on how the product was summed.
pub(super) fn neighbour_graph(descriptors: &[&[f32]]) -> Vec<(usize, usize, f32)> {
    neighbour_graph_with(descriptors, descriptors.len() >= GRAM_MIN_FACES)
}

fn neighbour_graph_with(descriptors: &[&[f32]], gram: bool) -> Vec<(usize, usize, f32)> {
    let n = descriptors.len();
    let dim = DESCRIPTOR_LEN;
    // A face without a full descriptor (damaged data) links to nothing.
    let valid = |i: usize| descriptors[i].len() == dim;
    let select = |i: usize, candidates: &mut dyn Iterator<Item = usize>| {
        if !valid(i) {
            return Vec::new();
        }
        let mut near: Vec<(f32, usize)> = candidates
            .filter(|&j| j != i && valid(j))
            .map(|j| (distance(descriptors[i], descriptors[j]), j))
            .filter(|(d, _)| *d < SAME_PERSON_DISTANCE)
            .collect();
        near.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        near.truncate(MAX_NEIGHBOURS);
        near.into_iter()
            .map(|(d, j)| (i.min(j), i.max(j), d))
            .collect::<Vec<_>>()
    };
    let mut edges: Vec<(usize, usize, f32)> = if !gram || !(0..n).all(valid) {
        (0..n).flat_map(|i| select(i, &mut (0..n))).collect()
    } else {
        let flat: Vec<f32> = descriptors.iter().flat_map(|d| d.iter().copied()).collect();
        let norms: Vec<f32> = descriptors
            .iter()
            .map(|d| d.iter().map(|v| v * v).sum())
            .collect();
        // A margin over the threshold absorbs the rounding of the dot-product form.
        let cutoff = (SAME_PERSON_DISTANCE + 0.01).powi(2);
        let blocks: Vec<usize> = (0..n).step_by(GRAM_BLOCK).collect();
        let threads = std::thread::available_parallelism()
            .map_or(1, |t| t.get())
            .clamp(1, 8)
            .min(blocks.len());
        let block_edges = |first: usize| -> Vec<(usize, usize, f32)> {
            let rows = GRAM_BLOCK.min(n - first);
            let mut gram = vec![0.0f32; rows * n];
            // SAFETY: `gram` holds rows x n floats written with row stride n; the
            // left operand is `rows` descriptors of `flat` from `first` (row stride
            // dim), the right one all of `flat` read transposed (column stride dim);
            // every index stays inside the buffers.
            unsafe {
                gemm::gemm(
                    rows,
                    n,
                    dim,
                    gram.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    flat.as_ptr().add(first * dim),
                    1,
                    dim as isize,
                    flat.as_ptr(),
                    dim as isize,
                    1,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
            let mut out = Vec::new();
            for r in 0..rows {
                let i = first + r;
                let row = &gram[r * n..(r + 1) * n];
                let mut close = (0..n).filter(|&j| norms[i] + norms[j] - 2.0 * row[j] < cutoff);
                out.extend(select(i, &mut close));
            }
            out
        };
        let block_edges = &block_edges;
        let blocks = &blocks;
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    scope.spawn(move || {
                        blocks
                            .iter()
                            .skip(t)
                            .step_by(threads)
                            .flat_map(|&first| block_edges(first))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("neighbour graph thread"))
                .collect()
        })
    };
    edges.sort_by_key(|a| (a.0, a.1));
    edges.dedup_by(|a, b| (a.0, a.1) == (b.0, b.1));
    edges
}

/// From this many faces the neighbour graph uses the matrix product.
const GRAM_MIN_FACES: usize = 512;
/// Rows of the distance matrix computed at once per thread.
const GRAM_BLOCK: usize = 128;

#[cfg(test)]
mod tests {
    use super::*;

    /// Descriptors of `people` people (centres about 0.85 apart) with `each` faces
    /// about 0.4 apart, from a fixed generator.
    fn synthetic(people: usize, each: usize) -> Vec<Vec<f32>> {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut uniform = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f32 / (1u64 << 53) as f32 - 0.5
        };
        let mut out = Vec::new();
        for _ in 0..people {
            let centre: Vec<f32> = (0..128).map(|_| 0.18 * uniform()).collect();
            for _ in 0..each {
                out.push(centre.iter().map(|c| c + 0.087 * uniform()).collect());
            }
        }
        out
    }

    #[test]
    fn matrix_product_graph_equals_the_direct_one() {
        let descriptors = synthetic(6, 120);
        let refs: Vec<&[f32]> = descriptors.iter().map(Vec::as_slice).collect();
        let direct = neighbour_graph_with(&refs, false);
        let gram = neighbour_graph_with(&refs, true);
        assert!(direct.len() > 1000, "{} edges", direct.len());
        assert_eq!(direct, gram);
    }
}
