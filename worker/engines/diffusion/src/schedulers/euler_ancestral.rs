//! Euler ancestral: an Euler step down to a lower sigma, then fresh noise back up to the next.

use candle_core::Tensor;

use super::common::check_index;
use super::config::{PredictionType, SchedulerConfig};
use super::euler::SigmaSchedule;
use super::{combine, Scheduler};
use crate::error::{DiffusionError, Result};

/// diffusers' EulerAncestralDiscreteScheduler (eta 1).
#[derive(Debug, Clone)]
pub struct EulerAncestralScheduler {
    schedule: SigmaSchedule,
    prediction: PredictionType,
}

impl EulerAncestralScheduler {
    pub fn new(config: &SchedulerConfig, steps: usize) -> Result<Self> {
        Ok(Self {
            schedule: SigmaSchedule::new(config, steps)?,
            prediction: config.prediction_type,
        })
    }
}

impl Scheduler for EulerAncestralScheduler {
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
    /// diffusers draws noise on every step, even the last (where it is scaled by 0).
    fn needs_noise(&self, _index: usize) -> bool {
        true
    }
    fn step(
        &mut self,
        model_output: &Tensor,
        index: usize,
        sample: &Tensor,
        noise: Option<&Tensor>,
    ) -> Result<Tensor> {
        check_index(index, self.schedule.timesteps.len())?;
        let noise = noise.ok_or(DiffusionError::MissingNoise { index })?;
        let sigma_from = self.schedule.sigmas[index];
        let sigma_to = self.schedule.sigmas[index + 1];
        let sigma_up = (sigma_to * sigma_to * (sigma_from * sigma_from - sigma_to * sigma_to)
            / (sigma_from * sigma_from))
            .sqrt();
        let sigma_down = (sigma_to * sigma_to - sigma_up * sigma_up).max(0.0).sqrt();
        let moved =
            self.schedule
                .euler_to(self.prediction, model_output, index, sample, sigma_down)?;
        combine(1.0, &moved, sigma_up, noise)
    }
    fn add_noise(&self, original: &Tensor, noise: &Tensor, index: usize) -> Result<Tensor> {
        self.schedule.add_noise(original, noise, index)
    }
}
