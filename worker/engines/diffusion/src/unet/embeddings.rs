//! The timestep conditioning: a sinusoidal embedding of each sample's timestep, then an MLP.

use candle_core::{DType, Device, Tensor};
use candle_nn::{Linear, Module};

use super::config::Activation;
use crate::error::Result;
use crate::nn::linear;
use crate::weights::WeightFile;

/// The largest period of the sinusoids (diffusers' `max_period`).
const MAX_PERIOD: f64 = 10_000.0;

/// diffusers' `get_timestep_embedding`: `[batch, dim]` sines and cosines of each timestep at
/// geometrically spaced frequencies. Timesteps may be fractional.
///
/// diffusers computes this in f32 even for f64 models, so the arithmetic here follows its f32
/// steps one by one: at t = 999 one ulp of a frequency already moves the angle by 6e-5.
pub fn timestep_embedding(
    timesteps: &[f32],
    dim: usize,
    flip_sin_to_cos: bool,
    freq_shift: f64,
    device: &Device,
) -> Result<Tensor> {
    let half = dim / 2;
    let log_period = -(MAX_PERIOD.ln() as f32);
    let divisor = (half as f64 - freq_shift) as f32;
    let frequencies: Vec<f32> = (0..half)
        .map(|i| {
            let exponent = log_period * i as f32 / divisor;
            // Rounded from f64: a correctly rounded f32 exp, as torch's vectorised one is.
            f64::from(exponent).exp() as f32
        })
        .collect();
    let mut values = Vec::with_capacity(timesteps.len() * dim);
    for &t in timesteps {
        let angles = frequencies.iter().map(|f| t * f);
        let sines = angles.clone().map(f32::sin);
        let cosines = angles.map(f32::cos);
        if flip_sin_to_cos {
            values.extend(cosines.chain(sines));
        } else {
            values.extend(sines.chain(cosines));
        }
        // An odd width gets one zero column at the end.
        values.extend(std::iter::repeat_n(0.0, dim - 2 * half));
    }
    Ok(Tensor::from_vec(values, (timesteps.len(), dim), device)?)
}

/// diffusers' `TimestepEmbedding`: `linear_2(act(linear_1(x)))`, then an optional activation.
pub struct TimestepEmbedding {
    linear_1: Linear,
    activation: Activation,
    linear_2: Linear,
    post_activation: Option<Activation>,
}

impl TimestepEmbedding {
    pub fn load(
        weights: &WeightFile,
        prefix: &str,
        in_dim: usize,
        embed_dim: usize,
        activation: Activation,
        post_activation: Option<Activation>,
    ) -> Result<Self> {
        Ok(Self {
            linear_1: linear(weights, &format!("{prefix}.linear_1"), in_dim, embed_dim)?,
            activation,
            linear_2: linear(weights, &format!("{prefix}.linear_2"), embed_dim, embed_dim)?,
            post_activation,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let hidden = apply(self.activation, &self.linear_1.forward(x)?)?;
        let out = self.linear_2.forward(&hidden)?;
        match self.post_activation {
            Some(activation) => apply(activation, &out),
            None => Ok(out),
        }
    }
}

/// Applies one of the config's activations.
pub fn apply(activation: Activation, x: &Tensor) -> Result<Tensor> {
    Ok(match activation {
        Activation::Silu => x.silu()?,
        Activation::Gelu => x.gelu_erf()?,
        Activation::Relu => x.relu()?,
        // x * tanh(softplus(x)); where exp overflows, tanh(inf) = 1 is still the right limit.
        Activation::Mish => {
            let softplus = x.exp()?.affine(1.0, 1.0)?.log()?;
            (x * softplus.tanh()?)?
        }
    })
}

/// The timesteps as f32 values, one per sample: `[batch]` or a single value for every sample.
pub fn timesteps_per_sample(timesteps: &Tensor, batch: usize) -> Result<Vec<f32>> {
    let values: Vec<f32> = timesteps
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_device(&Device::Cpu)?
        .to_vec1()?;
    match values.len() {
        n if n == batch => Ok(values),
        1 => Ok(vec![values[0]; batch]),
        n => Err(crate::error::DiffusionError::InvalidInput(format!(
            "{n} timesteps for a batch of {batch} samples"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flipped_embedding_starts_with_cosines() {
        let emb = timestep_embedding(&[0.0, 1.0], 4, true, 0.0, &Device::Cpu).expect("embedding");
        let rows: Vec<Vec<f32>> = emb.to_vec2().expect("rows");
        // t = 0: cos 0 = 1, sin 0 = 0 at both frequencies.
        assert_eq!(rows[0], vec![1.0, 1.0, 0.0, 0.0]);
        // Frequencies 1 and 10000^(-1/2) = 0.01.
        let expected = [1f32.cos(), 0.01f32.cos(), 1f32.sin(), 0.01f32.sin()];
        for (got, want) in rows[1].iter().zip(expected) {
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
    }

    #[test]
    fn odd_width_is_zero_padded() {
        let emb = timestep_embedding(&[3.0], 5, false, 1.0, &Device::Cpu).expect("embedding");
        let row: Vec<f32> = emb.squeeze(0).expect("row").to_vec1().expect("values");
        assert_eq!(row.len(), 5);
        assert_eq!(row[4], 0.0);
        assert!((row[0] - 3f32.sin()).abs() < 1e-6);
    }

    #[test]
    fn a_wrong_number_of_timesteps_is_an_error() {
        let t = Tensor::new(&[1f32, 2.0, 3.0], &Device::Cpu).expect("tensor");
        assert!(timesteps_per_sample(&t, 2).is_err());
        assert_eq!(
            timesteps_per_sample(&t, 3).expect("three"),
            vec![1.0, 2.0, 3.0]
        );
    }
}
