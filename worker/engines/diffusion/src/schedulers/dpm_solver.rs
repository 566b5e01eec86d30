//! DPM-Solver++ (Lu et al. 2022), second-order multistep with the midpoint rule, on x0
//! predictions. The last step is first order (diffusers' `final_sigmas_type = "zero"`).

use candle_core::Tensor;

use super::common::{
    alphas_cumprod, check_index, check_steps, interp_on_index, karras_sigmas, leading, linspace,
    sigma_to_timestep, trailing, train_sigmas,
};
use super::config::{PredictionType, SchedulerConfig, TimestepSpacing};
use super::{combine, Scheduler};
use crate::error::Result;

/// diffusers' DPMSolverMultistepScheduler with `algorithm_type = "dpmsolver++"`, order 2.
#[derive(Debug, Clone)]
pub struct DpmSolverPp2mScheduler {
    timesteps: Vec<f64>,
    /// One per step plus a final 0.
    sigmas: Vec<f64>,
    prediction: PredictionType,
    /// x0 prediction of the previous step, for the second-order correction.
    previous_x0: Option<Tensor>,
}

/// (alpha_t, sigma_t) of the variance-preserving process at Karras sigma `sigma`.
fn alpha_sigma(sigma: f64) -> (f64, f64) {
    let alpha = 1.0 / (sigma * sigma + 1.0).sqrt();
    (alpha, sigma * alpha)
}

/// Half log signal-to-noise ratio; +inf at sigma 0.
fn lambda(sigma: f64) -> f64 {
    let (alpha, sigma_t) = alpha_sigma(sigma);
    alpha.ln() - sigma_t.ln()
}

impl DpmSolverPp2mScheduler {
    pub fn new(config: &SchedulerConfig, steps: usize) -> Result<Self> {
        check_steps(steps, config.num_train_timesteps)?;
        let all_sigmas = train_sigmas(&alphas_cumprod(config));
        let (timesteps, sigmas) = if config.use_karras_sigmas {
            let log_sigmas: Vec<f64> = all_sigmas.iter().map(|s| s.ln()).collect();
            let max = all_sigmas[all_sigmas.len() - 1];
            let sigmas = karras_sigmas(max, all_sigmas[0], steps);
            let timesteps = sigmas
                .iter()
                .map(|&s| sigma_to_timestep(s, &log_sigmas).round_ties_even())
                .collect();
            (timesteps, sigmas)
        } else {
            let timesteps = dpm_timesteps(config, steps);
            let sigmas = timesteps
                .iter()
                .map(|&t| interp_on_index(t, &all_sigmas))
                .collect();
            (timesteps, sigmas)
        };
        let mut sigmas: Vec<f64> = sigmas.iter().map(|&s: &f64| f64::from(s as f32)).collect();
        sigmas.push(0.0);
        Ok(Self {
            timesteps,
            sigmas,
            prediction: config.prediction_type,
            previous_x0: None,
        })
    }

    fn predict_x0(&self, model_output: &Tensor, index: usize, sample: &Tensor) -> Result<Tensor> {
        let (alpha, sigma) = alpha_sigma(self.sigmas[index]);
        match self.prediction {
            PredictionType::Epsilon => {
                Ok(combine(1.0, sample, -sigma, model_output)?.affine(1.0 / alpha, 0.0)?)
            }
            PredictionType::VPrediction => combine(alpha, sample, -sigma, model_output),
        }
    }
}

/// DPM-Solver's spacing: it plans `steps + 1` points and drops the last (t = 0 side).
fn dpm_timesteps(config: &SchedulerConfig, steps: usize) -> Vec<f64> {
    let train = config.num_train_timesteps;
    match config.timestep_spacing {
        TimestepSpacing::Linspace => {
            let mut ts: Vec<f64> = linspace(0.0, (train - 1) as f64, steps + 1)
                .into_iter()
                .map(f64::round_ties_even)
                .collect();
            ts.reverse();
            ts.truncate(steps);
            ts
        }
        TimestepSpacing::Leading => {
            let mut ts = leading(train / (steps + 1), steps + 1, config.steps_offset);
            ts.truncate(steps);
            ts
        }
        TimestepSpacing::Trailing => trailing(train, steps),
    }
}

impl Scheduler for DpmSolverPp2mScheduler {
    fn timesteps(&self) -> &[f64] {
        &self.timesteps
    }
    fn sigmas(&self) -> Option<&[f64]> {
        Some(&self.sigmas)
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
        if index == 0 {
            // A new sampling run: history from an earlier one must not leak in.
            self.previous_x0 = None;
        }
        let x0 = self.predict_x0(model_output, index, sample)?;
        let (sigma_s, sigma_t) = (self.sigmas[index], self.sigmas[index + 1]);
        let (alpha_t, _) = alpha_sigma(sigma_t);
        let h = lambda(sigma_t) - lambda(sigma_s);
        let decay = alpha_t * ((-h).exp() - 1.0);
        let ratio = sigma_t * alpha_t / (sigma_s * alpha_sigma(sigma_s).0);
        let is_last = index + 1 == self.timesteps.len();
        let next = match (&self.previous_x0, is_last) {
            (Some(previous), false) => {
                let sigma_prev = self.sigmas[index - 1];
                let r = (lambda(sigma_s) - lambda(sigma_prev)) / h;
                // D1 = (x0 - previous) / r; midpoint: x = ratio*x - decay*(x0 + D1 / 2).
                let d1 = combine(1.0 / r, &x0, -1.0 / r, previous)?;
                let first = combine(ratio, sample, -decay, &x0)?;
                combine(1.0, &first, -0.5 * decay, &d1)?
            }
            _ => combine(ratio, sample, -decay, &x0)?,
        };
        self.previous_x0 = Some(x0);
        Ok(next)
    }
    fn add_noise(&self, original: &Tensor, noise: &Tensor, index: usize) -> Result<Tensor> {
        check_index(index, self.timesteps.len())?;
        let (alpha, sigma) = alpha_sigma(self.sigmas[index]);
        combine(alpha, original, sigma, noise)
    }
}
