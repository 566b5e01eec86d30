//! The diffusers `scheduler_config.json` fields the schedulers read, plus per-job overrides.

use std::path::Path;

use serde::Deserialize;

use crate::error::{DiffusionError, Result};

/// How the training betas grow over the train timesteps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BetaSchedule {
    Linear,
    ScaledLinear,
}

/// What the model predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictionType {
    Epsilon,
    VPrediction,
}

/// How inference timesteps are picked from the train timesteps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestepSpacing {
    Leading,
    Trailing,
    Linspace,
}

fn default_train_steps() -> usize {
    1000
}
fn default_beta_start() -> f64 {
    0.0001
}
fn default_beta_end() -> f64 {
    0.02
}
fn default_beta_schedule() -> BetaSchedule {
    BetaSchedule::Linear
}
fn default_prediction() -> PredictionType {
    PredictionType::Epsilon
}
fn default_spacing() -> TimestepSpacing {
    TimestepSpacing::Linspace
}

/// The subset of a diffusers scheduler config that these schedulers use. Unknown fields are
/// ignored, defaults are diffusers' defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SchedulerConfig {
    #[serde(default = "default_train_steps")]
    pub num_train_timesteps: usize,
    #[serde(default = "default_beta_start")]
    pub beta_start: f64,
    #[serde(default = "default_beta_end")]
    pub beta_end: f64,
    #[serde(default = "default_beta_schedule")]
    pub beta_schedule: BetaSchedule,
    #[serde(default = "default_prediction")]
    pub prediction_type: PredictionType,
    #[serde(default = "default_spacing")]
    pub timestep_spacing: TimestepSpacing,
    #[serde(default)]
    pub steps_offset: usize,
    #[serde(default)]
    pub use_karras_sigmas: bool,
    /// DDIM only; diffusers' DDIM clamps the predicted clean sample unless told otherwise.
    #[serde(default)]
    pub clip_sample: Option<bool>,
    /// DDIM and LCM: whether the step past t = 0 has alpha product 1 (else the first train
    /// step's). SD 1.x checkpoints ship `false` in their PNDM config; diffusers' default is true.
    #[serde(default)]
    pub set_alpha_to_one: Option<bool>,
    /// LCM only: the step count the consistency model was distilled with (50 if absent).
    #[serde(default)]
    pub original_inference_steps: Option<usize>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            num_train_timesteps: default_train_steps(),
            beta_start: default_beta_start(),
            beta_end: default_beta_end(),
            beta_schedule: default_beta_schedule(),
            prediction_type: default_prediction(),
            timestep_spacing: default_spacing(),
            steps_offset: 0,
            use_karras_sigmas: false,
            clip_sample: None,
            set_alpha_to_one: None,
            original_inference_steps: None,
        }
    }
}

/// Per-job changes to a checkpoint's scheduler config.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SchedulerOverrides {
    pub timestep_spacing: Option<TimestepSpacing>,
    pub prediction_type: Option<PredictionType>,
    pub use_karras_sigmas: Option<bool>,
    pub steps_offset: Option<usize>,
}

impl SchedulerConfig {
    /// Reads a diffusers `scheduler_config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        crate::error::read_json(path)
    }

    /// This config with the job's overrides applied.
    pub fn with_overrides(&self, overrides: &SchedulerOverrides) -> Self {
        let mut config = self.clone();
        if let Some(spacing) = overrides.timestep_spacing {
            config.timestep_spacing = spacing;
        }
        if let Some(prediction) = overrides.prediction_type {
            config.prediction_type = prediction;
        }
        if let Some(karras) = overrides.use_karras_sigmas {
            config.use_karras_sigmas = karras;
        }
        if let Some(offset) = overrides.steps_offset {
            config.steps_offset = offset;
        }
        config
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.num_train_timesteps < 2 {
            return Err(DiffusionError::SchedulerConfig {
                field: "num_train_timesteps",
                reason: format!("{} is fewer than 2", self.num_train_timesteps),
            });
        }
        if !(self.beta_start > 0.0 && self.beta_end >= self.beta_start && self.beta_end < 1.0) {
            return Err(DiffusionError::SchedulerConfig {
                field: "beta_start/beta_end",
                reason: format!(
                    "{}..{} is not inside (0, 1)",
                    self.beta_start, self.beta_end
                ),
            });
        }
        Ok(())
    }
}
