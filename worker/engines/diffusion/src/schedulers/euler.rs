//! Euler (Karras et al. 2022, algorithm 2 without churn), diffusers' EulerDiscreteScheduler.

use candle_core::Tensor;

use super::common::{
    alphas_cumprod, check_index, check_steps, euler_timesteps, interp_on_index, karras_sigmas,
    sigma_to_timestep, train_sigmas,
};
use super::config::{PredictionType, SchedulerConfig, TimestepSpacing};
use super::{combine, Scheduler};
use crate::error::Result;

/// Timesteps and sigmas shared by Euler and Euler ancestral.
#[derive(Debug, Clone)]
pub(crate) struct SigmaSchedule {
    pub timesteps: Vec<f64>,
    /// One per step plus a final 0.
    pub sigmas: Vec<f64>,
    pub init_noise_sigma: f64,
}

impl SigmaSchedule {
    pub fn new(config: &SchedulerConfig, steps: usize) -> Result<Self> {
        check_steps(steps, config.num_train_timesteps)?;
        let all_sigmas = train_sigmas(&alphas_cumprod(config));
        let mut timesteps = euler_timesteps(config, steps);
        let mut sigmas: Vec<f64> = timesteps
            .iter()
            .map(|&t| interp_on_index(t, &all_sigmas))
            .collect();
        if config.use_karras_sigmas {
            let log_sigmas: Vec<f64> = all_sigmas.iter().map(|s| s.ln()).collect();
            let (max, min) = (sigmas[0], sigmas[sigmas.len() - 1]);
            sigmas = karras_sigmas(max, min, steps);
            timesteps = sigmas
                .iter()
                .map(|&s| sigma_to_timestep(s, &log_sigmas))
                .collect();
        }
        // diffusers stores sigmas as f32.
        let mut sigmas: Vec<f64> = sigmas.iter().map(|&s| f64::from(s as f32)).collect();
        sigmas.push(0.0);
        let max_sigma = sigmas.iter().copied().fold(0.0, f64::max);
        // Leading spacing never reaches the last train step, so diffusers pads the start noise.
        let init_noise_sigma = match config.timestep_spacing {
            TimestepSpacing::Linspace | TimestepSpacing::Trailing => max_sigma,
            TimestepSpacing::Leading => (max_sigma * max_sigma + 1.0).sqrt(),
        };
        Ok(Self {
            timesteps,
            sigmas,
            init_noise_sigma,
        })
    }

    pub fn scale_model_input(&self, sample: &Tensor, index: usize) -> Result<Tensor> {
        check_index(index, self.timesteps.len())?;
        let sigma = self.sigmas[index];
        Ok(sample.affine(1.0 / (sigma * sigma + 1.0).sqrt(), 0.0)?)
    }

    /// The denoised estimate x0 from the model output at step `index`.
    /// One Euler step of the probability-flow ODE from `sigmas[index]` down to `sigma_target`.
    pub fn euler_to(
        &self,
        prediction: PredictionType,
        model_output: &Tensor,
        index: usize,
        sample: &Tensor,
        sigma_target: f64,
    ) -> Result<Tensor> {
        let sigma = self.sigmas[index];
        let original = self.predict_original(prediction, model_output, index, sample)?;
        let derivative = (sample - &original)?.affine(1.0 / sigma, 0.0)?;
        combine(1.0, sample, sigma_target - sigma, &derivative)
    }

    pub fn predict_original(
        &self,
        prediction: PredictionType,
        model_output: &Tensor,
        index: usize,
        sample: &Tensor,
    ) -> Result<Tensor> {
        let sigma = self.sigmas[index];
        match prediction {
            PredictionType::Epsilon => combine(1.0, sample, -sigma, model_output),
            PredictionType::VPrediction => {
                let var = sigma * sigma + 1.0;
                combine(-sigma / var.sqrt(), model_output, 1.0 / var, sample)
            }
        }
    }

    pub fn add_noise(&self, original: &Tensor, noise: &Tensor, index: usize) -> Result<Tensor> {
        check_index(index, self.timesteps.len())?;
        combine(1.0, original, self.sigmas[index], noise)
    }
}

/// Deterministic Euler sampler over Karras sigmas.
#[derive(Debug, Clone)]
pub struct EulerScheduler {
    schedule: SigmaSchedule,
    prediction: PredictionType,
}

impl EulerScheduler {
    pub fn new(config: &SchedulerConfig, steps: usize) -> Result<Self> {
        Ok(Self {
            schedule: SigmaSchedule::new(config, steps)?,
            prediction: config.prediction_type,
        })
    }
}

impl Scheduler for EulerScheduler {
    fn timesteps(&self) -> &[f64] {
        &self.schedule.timesteps
    }
    fn sigmas(&self) -> Option<&[f64]> {
        Some(&self.schedule.sigmas)
    }
    fn init_noise_sigma(&self) -> f64 {
        self.schedule.init_noise_sigma
    }
    fn scale_model_input(&self, sample: &Tensor, index: usize) -> Result<Tensor> {
        self.schedule.scale_model_input(sample, index)
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
        check_index(index, self.schedule.timesteps.len())?;
        let sigma_next = self.schedule.sigmas[index + 1];
        self.schedule
            .euler_to(self.prediction, model_output, index, sample, sigma_next)
    }
    fn add_noise(&self, original: &Tensor, noise: &Tensor, index: usize) -> Result<Tensor> {
        self.schedule.add_noise(original, noise, index)
    }
}
