//! Per-sample Gaussian noise that depends only on (seed, stream, element index).
//!
//! A job must give the same image alone or in any batch, on any device, so noise never comes
//! from a shared sequential generator. Each value is a pure function of its coordinates:
//!
//! - `key = mix64(seed + GOLDEN * (stream + 1))`
//! - `word(k) = mix64(key + GOLDEN * (k + 1))` (SplitMix64's k-th output when seeded with `key`)
//! - element pair `j` uses `u1 = ((word(2j) >> 11) + 1) / 2^53` in (0, 1] and
//!   `u2 = (word(2j + 1) >> 11) / 2^53` in [0, 1); Box-Muller gives
//!   `z[2j] = sqrt(-2 ln u1) cos(2 pi u2)` and `z[2j + 1] = sqrt(-2 ln u1) sin(2 pi u2)`,
//!   computed in f64 and rounded to f32.
//!
//! All arithmetic is wrapping u64. docs/diffusion.md lists the streams the pipeline uses.

use candle_core::{Device, Tensor};

use crate::error::Result;

/// 2^64 / golden ratio, SplitMix64's increment.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// Which draw of a sample the noise is for; each has its own independent sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoiseStream {
    /// Text-to-image starting latents (before `init_noise_sigma`).
    InitialLatents,
    /// The sample from the VAE's latent distribution of the init image.
    VaeSample,
    /// The noise added to the init latents at the first kept timestep (img2img, masks).
    AddedNoise,
    /// The noise an ancestral scheduler adds at step `index`.
    Step(usize),
}

impl NoiseStream {
    /// The stream number in the formula above.
    pub fn id(self) -> u64 {
        match self {
            Self::InitialLatents => 0,
            Self::VaeSample => 1,
            Self::AddedNoise => 2,
            Self::Step(index) => 100 + index as u64,
        }
    }
}

/// SplitMix64's output function (Stafford's mix 13).
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `count` standard normal values of (`seed`, `stream`), element `i` at index `i`.
pub fn gaussian(seed: u64, stream: NoiseStream, count: usize) -> Vec<f32> {
    let key = mix64(seed.wrapping_add(GOLDEN.wrapping_mul(stream.id().wrapping_add(1))));
    let word = |k: u64| mix64(key.wrapping_add(GOLDEN.wrapping_mul(k.wrapping_add(1))));
    let scale = 1.0 / (1u64 << 53) as f64;
    let mut out = Vec::with_capacity(count + 1);
    for pair in 0..count.div_ceil(2) as u64 {
        let u1 = ((word(2 * pair) >> 11) + 1) as f64 * scale;
        let u2 = (word(2 * pair + 1) >> 11) as f64 * scale;
        let radius = (-2.0 * u1.ln()).sqrt();
        let angle = std::f64::consts::TAU * u2;
        out.push((radius * angle.cos()) as f32);
        out.push((radius * angle.sin()) as f32);
    }
    out.truncate(count);
    out
}

/// An f32 tensor of `shape` filled with the noise of (`seed`, `stream`) in row-major order.
pub fn gaussian_tensor(
    seed: u64,
    stream: NoiseStream,
    shape: &[usize],
    device: &Device,
) -> Result<Tensor> {
    let count = shape.iter().product();
    Ok(Tensor::from_vec(
        gaussian(seed, stream, count),
        shape,
        device,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_depend_only_on_their_coordinates() {
        let long = gaussian(7, NoiseStream::InitialLatents, 101);
        let short = gaussian(7, NoiseStream::InitialLatents, 10);
        assert_eq!(&long[..10], &short[..]);
        assert_ne!(long, gaussian(8, NoiseStream::InitialLatents, 101));
        assert_ne!(long, gaussian(7, NoiseStream::AddedNoise, 101));
    }

    #[test]
    fn first_values_are_pinned() {
        // Pinned so that a change to the documented formula cannot go unnoticed.
        let values = gaussian(42, NoiseStream::InitialLatents, 4);
        let expected = pinned_first_values();
        for (got, want) in values.iter().zip(expected) {
            assert!((got - want).abs() < 1e-6, "{values:?}");
        }
    }

    /// Computed by an independent Python transcription of the formula in the module docs.
    fn pinned_first_values() -> [f32; 4] {
        [1.406_145, -0.401_378_3, 1.094_753_1, 0.493_123_7]
    }

    #[test]
    fn moments_are_standard_normal() {
        let values = gaussian(1, NoiseStream::VaeSample, 200_000);
        let n = values.len() as f64;
        let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = values
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "variance {var}");
        let beyond_3 = values.iter().filter(|v| v.abs() > 3.0).count() as f64 / n;
        assert!((beyond_3 - 0.0027).abs() < 0.001, "tail {beyond_3}");
    }
}
