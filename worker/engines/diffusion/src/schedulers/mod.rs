//! Noise schedulers with diffusers' arithmetic, driven by step index.
//!
//! The caller owns the loop: for each `i` in `0..timesteps().len()` it feeds
//! `scale_model_input(x, i)` to the model and then calls `step(output, i, x, noise)`. Randomness
//! comes from the caller (`noise` for steps where `needs_noise(i)`), so runs are reproducible.

mod common;
mod config;
mod ddim;
mod dpm_solver;
mod euler;
mod euler_ancestral;
mod lcm;

use candle_core::Tensor;

pub use config::{
    BetaSchedule, PredictionType, SchedulerConfig, SchedulerOverrides, TimestepSpacing,
};
pub use ddim::DdimScheduler;
pub use dpm_solver::DpmSolverPp2mScheduler;
pub use euler::EulerScheduler;
pub use euler_ancestral::EulerAncestralScheduler;
pub use lcm::LcmScheduler;

use crate::error::{DiffusionError, Result};

/// One sampling schedule, already set up for a number of inference steps.
pub trait Scheduler: Send {
    /// The model timesteps, in the order they are run (may be fractional).
    fn timesteps(&self) -> &[f64];
    /// The noise level per step plus the final one, for sigma-based schedulers.
    fn sigmas(&self) -> Option<&[f64]>;
    /// What pure noise must be multiplied by to start sampling.
    fn init_noise_sigma(&self) -> f64;
    /// The model input for step `index` (identity for most schedulers).
    fn scale_model_input(&self, sample: &Tensor, index: usize) -> Result<Tensor>;
    /// Whether `step(.., index, ..)` consumes a noise tensor.
    fn needs_noise(&self, index: usize) -> bool;
    /// The sample after step `index`; `noise` (shaped like the sample) when `needs_noise`.
    fn step(
        &mut self,
        model_output: &Tensor,
        index: usize,
        sample: &Tensor,
        noise: Option<&Tensor>,
    ) -> Result<Tensor>;
    /// A clean sample noised to the level of step `index` (img2img, inpainting).
    fn add_noise(&self, original: &Tensor, noise: &Tensor, index: usize) -> Result<Tensor>;
}

/// The schedulers this crate offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedulerKind {
    Euler,
    EulerAncestral,
    Ddim,
    DpmSolverPp2m,
    DpmSolverPp2mKarras,
    Lcm,
}

impl SchedulerKind {
    /// The name `from_name` reads (the short form for Euler ancestral).
    pub fn name(self) -> &'static str {
        match self {
            Self::Euler => "euler",
            Self::EulerAncestral => "euler_a",
            Self::Ddim => "ddim",
            Self::DpmSolverPp2m => "dpmpp_2m",
            Self::DpmSolverPp2mKarras => "dpmpp_2m_karras",
            Self::Lcm => "lcm",
        }
    }

    /// Parses the names used in job specs and fixtures (`euler`, `dpmpp_2m_karras`, ...).
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "euler" => Self::Euler,
            "euler_ancestral" | "euler_a" => Self::EulerAncestral,
            "ddim" => Self::Ddim,
            "dpmpp_2m" => Self::DpmSolverPp2m,
            "dpmpp_2m_karras" => Self::DpmSolverPp2mKarras,
            "lcm" => Self::Lcm,
            other => {
                return Err(DiffusionError::SchedulerConfig {
                    field: "scheduler",
                    reason: format!("unknown scheduler `{other}`"),
                })
            }
        })
    }
}

/// Builds a scheduler of `kind` from a checkpoint config, set up for `steps` inference steps.
pub fn build_scheduler(
    kind: SchedulerKind,
    config: &SchedulerConfig,
    steps: usize,
) -> Result<Box<dyn Scheduler>> {
    config.validate()?;
    Ok(match kind {
        SchedulerKind::Euler => Box::new(EulerScheduler::new(config, steps)?),
        SchedulerKind::EulerAncestral => Box::new(EulerAncestralScheduler::new(config, steps)?),
        SchedulerKind::Ddim => Box::new(DdimScheduler::new(config, steps)?),
        SchedulerKind::DpmSolverPp2m => Box::new(DpmSolverPp2mScheduler::new(config, steps)?),
        SchedulerKind::DpmSolverPp2mKarras => {
            let karras = config.with_overrides(&SchedulerOverrides {
                use_karras_sigmas: Some(true),
                ..SchedulerOverrides::default()
            });
            Box::new(DpmSolverPp2mScheduler::new(&karras, steps)?)
        }
        SchedulerKind::Lcm => Box::new(LcmScheduler::new(config, steps)?),
    })
}

/// The cumulative product of `1 - beta` over the train timesteps of `config` (diffusers'
/// `alphas_cumprod`), for code that needs the noise level of a timestep.
pub fn alpha_products(config: &SchedulerConfig) -> Vec<f64> {
    common::alphas_cumprod(config)
}

/// `a * x + b * y` for tensors of the same shape.
pub(crate) fn combine(a: f64, x: &Tensor, b: f64, y: &Tensor) -> Result<Tensor> {
    Ok((x.affine(a, 0.0)? + y.affine(b, 0.0)?)?)
}
