//! Row softmax of attention scores, in place on the CPU.
//!
//! At 64x64 latents one self-attention holds 8 x 4096 x 4096 scores per sample; candle's
//! softmax calls the scalar `expf` on each and allocates a second buffer as large. Here the
//! exponential is a polynomial the compiler vectorises, and the scores are overwritten.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, DType, InplaceOp1, Layout, Tensor};

use crate::error::Result;

/// `softmax` over the last dimension. `scores` must be a fresh tensor (a matmul result) that
/// shares its storage with no other tensor: on the CPU in f32 it is overwritten.
pub fn softmax_last_dim_consuming(scores: Tensor) -> Result<Tensor> {
    if scores.device().is_cpu() && scores.dtype() == DType::F32 && scores.is_contiguous() {
        scores.inplace_op1(&SoftmaxInPlace)?;
        Ok(scores)
    } else {
        Ok(candle_nn::ops::softmax_last_dim(&scores)?)
    }
}

struct SoftmaxInPlace;

/// The scores' base pointer, shared by the pool's workers; each touches its own rows only.
struct RowsPtr(*mut f32);

// SAFETY: the workers write disjoint row ranges of one live buffer (see `cpu_fwd`).
unsafe impl Sync for RowsPtr {}
unsafe impl Send for RowsPtr {}

impl RowsPtr {
    fn get(&self) -> *mut f32 {
        self.0
    }
}

impl InplaceOp1 for SoftmaxInPlace {
    fn name(&self) -> &'static str {
        "reverie-softmax-last-dim"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let CpuStorage::F32(values) = storage else {
            candle_core::bail!("softmax: expected f32 scores, got {:?}", storage.dtype())
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("softmax: scores must be contiguous")
        };
        let width = layout.dims().last().copied().unwrap_or(1).max(1);
        let data = &mut values[start..end];
        let rows = data.len() / width;
        let base = RowsPtr(data.as_mut_ptr());
        candle_core::utils::barrier_pool().execute_chunked(rows, |range| {
            // SAFETY: `range` lies within `0..rows`, ranges handed to workers are disjoint, and
            // `data` outlives the call, so each slice is valid and aliased by no other.
            let chunk = unsafe {
                std::slice::from_raw_parts_mut(
                    base.get().add(range.start * width),
                    range.len() * width,
                )
            };
            softmax_rows(chunk, width);
        });
        Ok(())
    }
}

/// Softmax of each `width`-long row of `rows`, with 8-wide AVX2 code where the CPU has it
/// (the default x86-64 target only allows 4-wide SSE).
fn softmax_rows(rows: &mut [f32], width: usize) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features the function is compiled for.
        unsafe { softmax_rows_avx2(rows, width) };
        return;
    }
    rows.chunks_exact_mut(width).for_each(softmax_row);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn softmax_rows_avx2(rows: &mut [f32], width: usize) {
    // A plain loop, so that `softmax_row` is inlined here and compiled with these features
    // (through `for_each` it ended up in a generic `fold` compiled without them).
    for start in (0..rows.len() / width).map(|row| row * width) {
        softmax_row(&mut rows[start..start + width]);
    }
}

/// Lanes of the partial maxima and sums, so the reductions vectorise.
const LANES: usize = 8;

#[inline(always)]
fn softmax_row(row: &mut [f32]) {
    let mut maxima = [f32::NEG_INFINITY; LANES];
    let mut blocks = row.chunks_exact(LANES);
    for block in &mut blocks {
        for (m, &v) in maxima.iter_mut().zip(block) {
            *m = m.max(v);
        }
    }
    let max = blocks
        .remainder()
        .iter()
        .chain(&maxima)
        .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    for v in row.iter_mut() {
        *v = exp_non_positive(*v - max);
    }
    let mut sums = [0f32; LANES];
    let mut blocks = row.chunks_exact(LANES);
    for block in &mut blocks {
        for (s, &v) in sums.iter_mut().zip(block) {
            *s += v;
        }
    }
    let total: f32 = sums.iter().chain(blocks.remainder()).sum();
    let inverse = 1.0 / total;
    for v in row.iter_mut() {
        *v *= inverse;
    }
}

/// `e^x` for `x <= 0` within 2 ulp (Cephes' `expf` polynomial), written with plain arithmetic
/// and bit casts only so that a loop over it vectorises. Below -87.3 (where f32 results turn
/// subnormal) it returns about 1e-38, which a softmax row sum of at least 1 cannot notice.
#[inline(always)]
fn exp_non_positive(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // 1.5 * 2^23: adding it rounds to an integer held in the low mantissa bits.
    const ROUNDER: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = if x < -87.3 { -87.3 } else { x };
    let shifted = x * LOG2_E + ROUNDER;
    let n = shifted - ROUNDER;
    let r = x - n * LN2_HI - n * LN2_LO;
    let r2 = r * r;
    let poly = ((((1.987_569_1e-4 * r + 1.398_2e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let mantissa = poly * r2 + r + 1.0;
    // n sits in the low bits of `shifted`; 2^n is that integer moved into the exponent field.
    let power = shifted
        .to_bits()
        .wrapping_sub(ROUNDER.to_bits())
        .wrapping_add(127)
        << 23;
    mantissa * f32::from_bits(power)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn polynomial_exp_is_within_two_ulp() {
        let mut worst = 0f64;
        for i in 0..=870_000 {
            let x = -(i as f32) * 1e-4;
            let exact = f64::from(x).exp();
            let got = f64::from(exp_non_positive(x));
            worst = worst.max((got - exact).abs() / exact);
        }
        assert!(worst < 2.5e-7, "worst relative error {worst}");
        assert_eq!(exp_non_positive(0.0), 1.0);
        assert!(exp_non_positive(-1000.0) < 1e-37);
    }

    #[test]
    fn vector_and_plain_paths_agree() {
        let scores = Tensor::randn(0f32, 30.0, (4, 53), &Device::Cpu).expect("scores");
        let mut plain: Vec<f32> = scores
            .flatten_all()
            .expect("flat")
            .to_vec1()
            .expect("values");
        let mut dispatched = plain.clone();
        plain.chunks_exact_mut(53).for_each(softmax_row);
        softmax_rows(&mut dispatched, 53);
        for (a, b) in plain.iter().zip(&dispatched) {
            assert!((a - b).abs() <= 1e-7 + 1e-6 * a.abs(), "{a} vs {b}");
        }
    }

    #[test]
    fn matches_candle_softmax() {
        let scores = Tensor::randn(0f32, 30.0, (3, 5, 37), &Device::Cpu).expect("scores");
        let expected = candle_nn::ops::softmax_last_dim(&scores).expect("candle");
        let ours = softmax_last_dim_consuming(scores.copy().expect("copy")).expect("ours");
        let diff = (ours - expected)
            .and_then(|d| d.abs())
            .and_then(|d| d.max_all())
            .and_then(|d| d.to_scalar::<f32>())
            .expect("diff");
        assert!(diff < 1e-6, "max diff {diff}");
    }
}
