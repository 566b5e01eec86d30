//! Latent consistency model sampling (Luo et al. 2023): jump to x0, then re-noise.

use candle_core::Tensor;

use super::common::{alphas_cumprod, check_index, check_steps, final_alpha};
use super::config::{PredictionType, SchedulerConfig};
use super::ddim::split_prediction;
use super::{combine, Scheduler};
use crate::error::{DiffusionError, Result};

const SIGMA_DATA: f64 = 0.5;
const TIMESTEP_SCALING: f64 = 10.0;
const DEFAULT_ORIGINAL_STEPS: usize = 50;

/// diffusers' LCMScheduler (no clipping, `set_alpha_to_one`).
#[derive(Debug, Clone)]
pub struct LcmScheduler {
    timesteps: Vec<f64>,
    alphas_cumprod: Vec<f64>,
    /// The alpha product used once the schedule steps below t = 0.
    final_alpha: f64,
    prediction: PredictionType,
}

impl LcmScheduler {
    pub fn new(config: &SchedulerConfig, steps: usize) -> Result<Self> {
        let original_steps = config
            .original_inference_steps
            .unwrap_or(DEFAULT_ORIGINAL_STEPS);
        check_steps(steps, original_steps)?;
        if original_steps == 0 || original_steps > config.num_train_timesteps {
            return Err(DiffusionError::SchedulerConfig {
                field: "original_inference_steps",
                reason: format!("{original_steps} does not fit the train timesteps"),
            });
        }
        let cumprod = alphas_cumprod(config);
        Ok(Self {
            timesteps: lcm_timesteps(config.num_train_timesteps, original_steps, steps),
            final_alpha: final_alpha(config, &cumprod),
            alphas_cumprod: cumprod,
            prediction: config.prediction_type,
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

/// The distillation grid (every `train / original`-th step, ending at train - 1), sampled at
/// evenly spaced positions from its top.
fn lcm_timesteps(train: usize, original: usize, steps: usize) -> Vec<f64> {
    let spacing = train / original;
    let grid: Vec<usize> = (1..=original).rev().map(|i| i * spacing - 1).collect();
    (0..steps)
        .map(|i| {
            let position = (i as f64 * original as f64 / steps as f64).floor() as usize;
            grid[position.min(grid.len() - 1)] as f64
        })
        .collect()
}

/// The consistency-model boundary condition: (c_skip, c_out) at a timestep.
fn boundary_scalings(timestep: f64) -> (f64, f64) {
    let scaled = timestep * TIMESTEP_SCALING;
    let denominator = scaled * scaled + SIGMA_DATA * SIGMA_DATA;
    (
        SIGMA_DATA * SIGMA_DATA / denominator,
        scaled / denominator.sqrt(),
    )
}

impl Scheduler for LcmScheduler {
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
    /// Every step but the last re-noises the denoised estimate.
    fn needs_noise(&self, index: usize) -> bool {
        index + 1 < self.timesteps.len()
    }
    fn step(
        &mut self,
        model_output: &Tensor,
        index: usize,
        sample: &Tensor,
        noise: Option<&Tensor>,
    ) -> Result<Tensor> {
        check_index(index, self.timesteps.len())?;
        let timestep = self.timesteps[index];
        let alpha = self.alpha_at(timestep);
        let (original, _) = split_prediction(self.prediction, model_output, sample, alpha)?;
        let (c_skip, c_out) = boundary_scalings(timestep);
        let denoised = combine(c_out, &original, c_skip, sample)?;
        if !self.needs_noise(index) {
            return Ok(denoised);
        }
        let noise = noise.ok_or(DiffusionError::MissingNoise { index })?;
        let alpha_prev = self.alpha_at(self.timesteps[index + 1]);
        combine(
            alpha_prev.sqrt(),
            &denoised,
            (1.0 - alpha_prev).sqrt(),
            noise,
        )
    }
    fn add_noise(&self, original: &Tensor, noise: &Tensor, index: usize) -> Result<Tensor> {
        check_index(index, self.timesteps.len())?;
        let alpha = self.alpha_at(self.timesteps[index]);
        combine(alpha.sqrt(), original, (1.0 - alpha).sqrt(), noise)
    }
}
