//! DDIM (Song et al. 2020) with eta 0: deterministic, on the alpha-product schedule.

use candle_core::Tensor;

use super::common::{alphas_cumprod, check_index, check_steps, ddim_timesteps, final_alpha};
use super::config::{PredictionType, SchedulerConfig};
use super::{combine, Scheduler};
use crate::error::Result;

/// diffusers' DDIMScheduler with eta 0 and `set_alpha_to_one`.
#[derive(Debug, Clone)]
pub struct DdimScheduler {
    timesteps: Vec<f64>,
    alphas_cumprod: Vec<f64>,
    /// The alpha product used once the schedule steps below t = 0.
    final_alpha: f64,
    /// diffusers steps back by this many train steps whatever the spacing.
    step_ratio: usize,
    prediction: PredictionType,
    clip_sample: bool,
}

impl DdimScheduler {
    pub fn new(config: &SchedulerConfig, steps: usize) -> Result<Self> {
        check_steps(steps, config.num_train_timesteps)?;
        let cumprod = alphas_cumprod(config);
        Ok(Self {
            timesteps: ddim_timesteps(config, steps),
            final_alpha: final_alpha(config, &cumprod),
            alphas_cumprod: cumprod,
            step_ratio: config.num_train_timesteps / steps,
            prediction: config.prediction_type,
            // DDIM's own default is to clamp x0 to [-1, 1]; configs may switch it off.
            clip_sample: config.clip_sample.unwrap_or(true),
        })
    }

    fn alpha_at(&self, timestep: f64) -> f64 {
        if timestep < 0.0 {
            return self.final_alpha;
        }
        let index = (timestep as usize).min(self.alphas_cumprod.len() - 1);
        self.alphas_cumprod[index]
    }
}

/// (x0, epsilon) from a model output at alpha product `alpha`.
pub(crate) fn split_prediction(
    prediction: PredictionType,
    model_output: &Tensor,
    sample: &Tensor,
    alpha: f64,
) -> Result<(Tensor, Tensor)> {
    let beta = 1.0 - alpha;
    match prediction {
        PredictionType::Epsilon => {
            let original = combine(1.0, sample, -beta.sqrt(), model_output)?
                .affine(1.0 / alpha.sqrt(), 0.0)?;
            Ok((original, model_output.clone()))
        }
        PredictionType::VPrediction => {
            let original = combine(alpha.sqrt(), sample, -beta.sqrt(), model_output)?;
            let epsilon = combine(alpha.sqrt(), model_output, beta.sqrt(), sample)?;
            Ok((original, epsilon))
        }
    }
}

impl Scheduler for DdimScheduler {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }
    fn sigmas(&self) -> Option<&[f64]> {
        None
    }
    fn init_noise_sigma(&self) -> f64 {
        1.0
    }
    fn scale_model_input(&self, sample: &Tensor, index: usize) -> Result<Tensor> {
        check_index(index, self.timesteps.len())?;
        Ok(sample.clone())
    }
    fn needs_noise(&self, _index: usize) -> bool {
        false
    }
    fn step(
        &mut self,
        model_output: &Tensor,
        index: usize,
        sample: &Tensor,
        _noise: Option<&Tensor>,
    ) -> Result<Tensor> {
        check_index(index, self.timesteps.len())?;
        let timestep = self.timesteps[index];
        let alpha = self.alpha_at(timestep);
        let alpha_prev = self.alpha_at(timestep - self.step_ratio as f64);
        let (mut original, epsilon) =
            split_prediction(self.prediction, model_output, sample, alpha)?;
        if self.clip_sample {
            original = original.clamp(-1.0f32, 1.0f32)?;
        }
        combine(
            alpha_prev.sqrt(),
            &original,
            (1.0 - alpha_prev).sqrt(),
            &epsilon,
        )
    }
    fn add_noise(&self, original: &Tensor, noise: &Tensor, index: usize) -> Result<Tensor> {
        check_index(index, self.timesteps.len())?;
        let alpha = self.alpha_at(self.timesteps[index]);
        combine(alpha.sqrt(), original, (1.0 - alpha).sqrt(), noise)
    }
}
