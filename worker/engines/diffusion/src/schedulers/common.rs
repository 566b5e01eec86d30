//! Schedule arithmetic shared by the schedulers: betas, alpha products, sigmas, spacing.
//!
//! diffusers keeps betas and their cumulative product in f32 tensors; we round to f32 at the
//! same places so tables match to f32 precision, and do the rest in f64.

use super::config::{BetaSchedule, SchedulerConfig, TimestepSpacing};
use crate::error::{DiffusionError, Result};

/// The cumulative product of (1 - beta) over the train timesteps, rounded like diffusers' f32.
pub(crate) fn alphas_cumprod(config: &SchedulerConfig) -> Vec<f64> {
    let n = config.num_train_timesteps;
    let (start, end) = match config.beta_schedule {
        BetaSchedule::Linear => (config.beta_start, config.beta_end),
        BetaSchedule::ScaledLinear => (config.beta_start.sqrt(), config.beta_end.sqrt()),
    };
    let mut product = 1.0f32;
    (0..n)
        .map(|i| {
            let value = start + (end - start) * i as f64 / (n - 1) as f64;
            let beta = match config.beta_schedule {
                BetaSchedule::Linear => value as f32,
                BetaSchedule::ScaledLinear => (value as f32) * (value as f32),
            };
            product *= 1.0 - beta;
            f64::from(product)
        })
        .collect()
}

/// Karras et al. noise level for each train timestep: sqrt((1 - a) / a).
pub(crate) fn train_sigmas(alphas_cumprod: &[f64]) -> Vec<f64> {
    alphas_cumprod
        .iter()
        .map(|a| f64::from(((1.0 - a) / a).sqrt() as f32))
        .collect()
}

pub(crate) fn check_steps(steps: usize, train_steps: usize) -> Result<()> {
    if steps == 0 || steps > train_steps {
        return Err(DiffusionError::SchedulerConfig {
            field: "num_inference_steps",
            reason: format!("{steps} is not between 1 and {train_steps}"),
        });
    }
    Ok(())
}

/// numpy's `linspace(start, stop, count)`: the last value is exactly `stop`.
pub(crate) fn linspace(start: f64, stop: f64, count: usize) -> Vec<f64> {
    if count == 1 {
        return vec![start];
    }
    let step = (stop - start) / (count - 1) as f64;
    (0..count)
        .map(|i| {
            if i == count - 1 {
                stop
            } else {
                start + step * i as f64
            }
        })
        .collect()
}

/// Descending timesteps with the sigma schedulers' (Euler) rules; may be fractional (linspace).
pub(crate) fn euler_timesteps(config: &SchedulerConfig, steps: usize) -> Vec<f64> {
    let train = config.num_train_timesteps;
    match config.timestep_spacing {
        TimestepSpacing::Linspace => {
            let mut ts: Vec<f64> = linspace(0.0, (train - 1) as f64, steps)
                .into_iter()
                .map(|t| f64::from(t as f32))
                .collect();
            ts.reverse();
            ts
        }
        TimestepSpacing::Leading => leading(train / steps, steps, config.steps_offset),
        TimestepSpacing::Trailing => trailing(train, steps),
    }
}

/// Descending integer timesteps with DDIM's rules (linspace is rounded).
pub(crate) fn ddim_timesteps(config: &SchedulerConfig, steps: usize) -> Vec<f64> {
    let train = config.num_train_timesteps;
    match config.timestep_spacing {
        TimestepSpacing::Linspace => {
            let mut ts: Vec<f64> = linspace(0.0, (train - 1) as f64, steps)
                .into_iter()
                .map(f64::round_ties_even)
                .collect();
            ts.reverse();
            ts
        }
        TimestepSpacing::Leading => leading(train / steps, steps, config.steps_offset),
        TimestepSpacing::Trailing => trailing(train, steps),
    }
}

/// `arange(0, steps) * ratio`, reversed, shifted by the offset.
pub(crate) fn leading(ratio: usize, steps: usize, offset: usize) -> Vec<f64> {
    (0..steps)
        .rev()
        .map(|i| (i * ratio + offset) as f64)
        .collect()
}

/// `round(arange(train, 0, -train / steps)) - 1`.
pub(crate) fn trailing(train: usize, steps: usize) -> Vec<f64> {
    let ratio = train as f64 / steps as f64;
    (0..steps)
        .map(|i| (train as f64 - i as f64 * ratio).round_ties_even() - 1.0)
        .collect()
}

/// numpy's `interp(x, 0..len, values)` on an integer grid, clamped at both ends.
pub(crate) fn interp_on_index(x: f64, values: &[f64]) -> f64 {
    let last = values.len() - 1;
    if x <= 0.0 {
        return values[0];
    }
    if x >= last as f64 {
        return values[last];
    }
    let low = x.floor() as usize;
    let frac = x - low as f64;
    values[low] + (values[low + 1] - values[low]) * frac
}

/// The Karras et al. (2022) rho=7 ramp between the largest and smallest sigma.
pub(crate) fn karras_sigmas(sigma_max: f64, sigma_min: f64, steps: usize) -> Vec<f64> {
    const RHO: f64 = 7.0;
    let max_inv = sigma_max.powf(1.0 / RHO);
    let min_inv = sigma_min.powf(1.0 / RHO);
    linspace(0.0, 1.0, steps)
        .into_iter()
        .map(|ramp| (max_inv + ramp * (min_inv - max_inv)).powf(RHO))
        .collect()
}

/// The (fractional) train timestep whose log-sigma matches, interpolating between neighbours.
pub(crate) fn sigma_to_timestep(sigma: f64, log_sigmas: &[f64]) -> f64 {
    let log_sigma = sigma.max(1e-10).ln();
    // Last index whose log-sigma is at or below ours (log-sigmas grow with t); 0 if none.
    let below = log_sigmas
        .iter()
        .rposition(|&l| log_sigma - l >= 0.0)
        .unwrap_or(0);
    let low = below.min(log_sigmas.len() - 2);
    let high = low + 1;
    let weight =
        ((log_sigmas[low] - log_sigma) / (log_sigmas[low] - log_sigmas[high])).clamp(0.0, 1.0);
    (1.0 - weight) * low as f64 + weight * high as f64
}

pub(crate) fn check_index(index: usize, len: usize) -> Result<()> {
    if index >= len {
        return Err(DiffusionError::StepOutOfRange { index, len });
    }
    Ok(())
}

/// The alpha product after the last step (`set_alpha_to_one`, default true).
pub(crate) fn final_alpha(config: &SchedulerConfig, alphas_cumprod: &[f64]) -> f64 {
    if config.set_alpha_to_one.unwrap_or(true) {
        1.0
    } else {
        alphas_cumprod.first().copied().unwrap_or(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sd1_pndm_style_config_ends_ddim_at_the_first_alpha_product() {
        let json = r#"{"_class_name": "PNDMScheduler", "beta_end": 0.012,
            "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": false,
            "num_train_timesteps": 1000, "set_alpha_to_one": false, "skip_prk_steps": true,
            "steps_offset": 1, "trained_betas": null}"#;
        let config: SchedulerConfig = serde_json::from_str(json).expect("parses");
        let cumprod = alphas_cumprod(&config);
        assert_eq!(final_alpha(&config, &cumprod), cumprod[0]);
        assert_eq!(config.clip_sample, Some(false));
        let default = SchedulerConfig::default();
        assert_eq!(final_alpha(&default, &alphas_cumprod(&default)), 1.0);
    }

    #[test]
    fn trailing_spacing_rounds_half_to_even_like_numpy() {
        // 1000 / 16 = 62.5: numpy rounds 937.5 to 938 and 812.5 to 812.
        let steps = trailing(1000, 16);
        assert_eq!(steps[1], 937.0);
        assert_eq!(steps[3], 811.0);
    }
}
