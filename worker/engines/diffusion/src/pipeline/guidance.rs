//! Energy guidance on the predicted clean image (in the spirit of universal guidance and FreeDoM):
//! at chosen steps the model's prediction is turned into the clean latents it implies, a region
//! of them is decoded by the VAE under autograd, an energy on the decoded pixels (for Reverie:
//! the face descriptor's distance to a person) is differentiated, and the clean estimate moves
//! against that gradient before the scheduler takes its step.
//!
//! Two choices keep it cheap and scheduler-agnostic:
//! - the noise prediction is held fixed while differentiating (no backward pass through the
//!   UNet): the gradient is taken with respect to the clean estimate `x0` itself, and the
//!   corrected `x0` is written back as the model output that implies it (epsilon or v), so every
//!   scheduler — first-order, multistep, ancestral, LCM — consumes it unchanged;
//! - only the latent window around the energy's region is decoded (the VAE decoder is
//!   convolutional apart from its one mid-block attention, so a window with a margin decodes to
//!   nearly the same pixels as the whole image).
//!
//! The step is normalised: each guided update moves the window's latents by
//! `strength * STEP_PER_STRENGTH` in root-mean-square, whatever the energy's scale.

use std::sync::Arc;

use candle_core::{DType, Tensor, Var};

use super::StableDiffusion;
use crate::error::{DiffusionError, Result};
use crate::schedulers::{PredictionType, Scheduler, SchedulerConfig};

/// RMS latent movement of one guided update per unit of `identity_strength` (scaled latents have
/// unit variance, so 0.1 is a tenth of their spread).
pub const STEP_PER_STRENGTH: f64 = 0.1;
/// The largest `identity_strength` accepted: beyond it one update moves latents by more than
/// their whole spread and the picture dissolves.
pub const MAX_IDENTITY_STRENGTH: f64 = 20.0;
/// The most gradient updates per guided step.
pub const MAX_REPEATS: usize = 16;
/// Latent margin decoded around an energy's region, in latent pixels (32 image pixels): enough
/// for the decoder's receptive field to see the region's surroundings.
const WINDOW_MARGIN: usize = 4;

/// What guides: an energy on decoded pixels, evaluated per sample.
pub trait ImageEnergy: Send + Sync {
    /// Output pixels `[left, top, right, bottom)` that `sample`'s energy looks at; `None` leaves
    /// the sample unguided.
    fn region(&self, sample: usize) -> Option<[usize; 4]>;

    /// The energy (a scalar tensor whose graph reaches `image`) of `sample`'s decoded window
    /// `image`, `(1, 3, h, w)` in [-1, 1]; `origin` is the window's top-left in output pixels.
    /// `Ok(None)` when there is nothing to measure.
    fn energy(
        &self,
        sample: usize,
        image: &Tensor,
        origin: (usize, usize),
    ) -> std::result::Result<Option<Tensor>, String>;
}

/// Which run steps are guided: the fraction window `[start, end)` of the steps actually run
/// (img2img runs fewer), always including at least the first step of the window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GuidanceSteps {
    pub start: f64,
    pub end: f64,
}

impl Default for GuidanceSteps {
    fn default() -> Self {
        Self {
            start: 0.0,
            end: 1.0,
        }
    }
}

impl GuidanceSteps {
    /// Whether run step `run_index` of `run_steps` is guided.
    pub fn includes(&self, run_index: usize, run_steps: usize) -> bool {
        let from = (self.start * run_steps as f64).floor() as usize;
        let to = ((self.end * run_steps as f64).ceil() as usize).max(from + 1);
        (from..to).contains(&run_index)
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        let ok = |f: f64| f.is_finite() && (0.0..=1.0).contains(&f);
        if !ok(self.start) || !ok(self.end) || self.start >= self.end {
            return Err(format!(
                "guided steps {}..{} must be fractions with 0 <= start < end <= 1",
                self.start, self.end
            ));
        }
        Ok(())
    }
}

/// Identity guidance for a request: the energy, the steps it acts on and how many gradient
/// updates each guided step makes. The per-sample strength is `SampleSpec::identity_strength`.
#[derive(Clone)]
pub struct IdentityGuidance {
    pub energy: Arc<dyn ImageEnergy>,
    pub steps: GuidanceSteps,
    /// Gradient updates per guided step (each re-decodes the corrected estimate).
    pub repeats: usize,
}

impl std::fmt::Debug for IdentityGuidance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityGuidance")
            .field("steps", &self.steps)
            .field("repeats", &self.repeats)
            .finish_non_exhaustive()
    }
}

impl IdentityGuidance {
    pub fn new(energy: Arc<dyn ImageEnergy>) -> Self {
        Self {
            energy,
            steps: GuidanceSteps::default(),
            repeats: 1,
        }
    }

    pub fn validate(&self) -> std::result::Result<(), String> {
        self.steps.validate()?;
        if self.repeats == 0 || self.repeats > MAX_REPEATS {
            return Err(format!(
                "guidance repeats {} must be between 1 and {MAX_REPEATS}",
                self.repeats
            ));
        }
        Ok(())
    }
}

/// Where a step stands on the noise schedule: `x_t = sqrt(a) x0 + sqrt(1 - a) eps` for the model
/// input, with `a` the alpha product at the step.
#[derive(Debug, Clone, Copy)]
struct NoiseLevel {
    alpha_product: f64,
}

impl NoiseLevel {
    fn signal(self) -> f64 {
        self.alpha_product.sqrt()
    }

    fn noise(self) -> f64 {
        (1.0 - self.alpha_product).max(1e-12).sqrt()
    }
}

/// The schedule facts guidance needs, fixed for a run: the effective prediction type (the
/// request's overrides applied) and the train schedule's alpha products.
pub(super) struct GuidanceSchedule {
    pub prediction: PredictionType,
    pub alpha_products: Vec<f64>,
}

impl GuidanceSchedule {
    pub fn new(config: &SchedulerConfig) -> Self {
        Self {
            prediction: config.prediction_type,
            alpha_products: crate::schedulers::alpha_products(config),
        }
    }
}

/// Gradient updates per guided step when the caller does not choose: a one-step run (SD-Turbo)
/// has a single chance to steer, so it takes three.
pub fn default_repeats(run_steps: usize) -> usize {
    if run_steps <= 1 {
        3
    } else {
        1
    }
}

/// One guided step's inputs, borrowed from the sampling loop.
pub(super) struct GuidedStep<'a> {
    pub schedule: &'a GuidanceSchedule,
    pub scheduler: &'a dyn Scheduler,
    pub latents: &'a Tensor,
    pub index: usize,
    pub timestep: f64,
    /// Per sample; 0 leaves it alone.
    pub strengths: &'a [f64],
}

impl StableDiffusion {
    /// The model output with each guided sample's implied clean estimate moved down the
    /// energy's gradient; unguided samples' rows are returned bit for bit.
    pub(super) fn steer(
        &self,
        guidance: &IdentityGuidance,
        step: GuidedStep<'_>,
        model_output: Tensor,
    ) -> Result<Tensor> {
        let level = noise_level(step.schedule, step.scheduler, step.index, step.timestep);
        let prediction = step.schedule.prediction;
        let model_input = step
            .scheduler
            .scale_model_input(step.latents, step.index)?
            .to_dtype(DType::F32)?;
        let mut rows = Vec::with_capacity(step.strengths.len());
        for (sample, &strength) in step.strengths.iter().enumerate() {
            let output = model_output.narrow(0, sample, 1)?;
            let region = guidance.energy.region(sample);
            let (Some(region), true) = (region, strength > 0.0) else {
                rows.push(output);
                continue;
            };
            let input = model_input.narrow(0, sample, 1)?;
            let clean = clean_estimate(prediction, level, &input, &output)?;
            let mut steered = clean.clone();
            for _ in 0..guidance.repeats {
                let Some(direction) = self.energy_direction(guidance, sample, region, &steered)?
                else {
                    break;
                };
                steered = (steered - direction.affine(strength * STEP_PER_STRENGTH, 0.0)?)?;
            }
            rows.push(model_output_for(prediction, level, &input, &steered)?);
        }
        Ok(Tensor::cat(&rows, 0)?)
    }

    /// The unit-RMS descent direction of the energy with respect to `clean` (`(1, 4, h, w)`
    /// scaled latents), zero outside the decoded window; `None` when the energy has nothing to
    /// measure or a zero gradient.
    fn energy_direction(
        &self,
        guidance: &IdentityGuidance,
        sample: usize,
        region: [usize; 4],
        clean: &Tensor,
    ) -> Result<Option<Tensor>> {
        if self.vae.dtype() != DType::F32 {
            return Err(DiffusionError::InvalidInput(format!(
                "identity guidance differentiates the VAE decoder in f32, and this model's VAE \
                 runs in {:?}: load the model with dtype f32 to guide",
                self.vae.dtype()
            )));
        }
        let (_, _, rows, cols) = clean.dims4()?;
        let window = latent_window(region, rows, cols);
        let crop = clean
            .narrow(2, window.top, window.rows)?
            .narrow(3, window.left, window.cols)?;
        let var = Var::from_tensor(&crop.detach())?;
        let unscaled = self.vae.config().unscale_latents(var.as_tensor())?;
        let image = self.vae.decode(&unscaled)?;
        let origin = (window.left * 8, window.top * 8);
        let energy = guidance
            .energy
            .energy(sample, &image, origin)
            .map_err(DiffusionError::Guidance)?;
        let Some(energy) = energy else {
            return Ok(None);
        };
        let grads = energy.backward()?;
        let Some(gradient) = grads.get(var.as_tensor()) else {
            return Ok(None);
        };
        let rms = gradient.sqr()?.mean_all()?.to_scalar::<f32>()?.sqrt();
        if !rms.is_finite() || rms == 0.0 {
            return Ok(None);
        }
        let direction = gradient.affine(1.0 / f64::from(rms), 0.0)?;
        let direction = direction
            .pad_with_zeros(2, window.top, rows - window.top - window.rows)?
            .pad_with_zeros(3, window.left, cols - window.left - window.cols)?;
        Ok(Some(direction))
    }
}

/// The alpha product of step `index`: from the scheduler's sigma when it has sigmas
/// (`a = 1 / (1 + sigma^2)`), else from the train schedule at the (rounded) timestep.
fn noise_level(
    schedule: &GuidanceSchedule,
    scheduler: &dyn Scheduler,
    index: usize,
    timestep: f64,
) -> NoiseLevel {
    if let Some(sigma) = scheduler.sigmas().and_then(|s| s.get(index)) {
        return NoiseLevel {
            alpha_product: 1.0 / (1.0 + sigma * sigma),
        };
    }
    let table = &schedule.alpha_products;
    let t = (timestep.round().max(0.0) as usize).min(table.len().saturating_sub(1));
    NoiseLevel {
        alpha_product: table.get(t).copied().unwrap_or(1.0),
    }
}

/// A window of latent pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LatentWindow {
    top: usize,
    left: usize,
    rows: usize,
    cols: usize,
}

/// The latent window covering pixel region `[l, t, r, b)` with a margin, inside the latents.
fn latent_window(region: [usize; 4], rows: usize, cols: usize) -> LatentWindow {
    let [left, top, right, bottom] = region;
    let span = |from: usize, to: usize, len: usize| {
        let start = (from / 8).saturating_sub(WINDOW_MARGIN).min(len - 1);
        let end = (to.div_ceil(8) + WINDOW_MARGIN).clamp(start + 1, len);
        (start, end - start)
    };
    let (top, rows) = span(top, bottom.max(top + 1), rows);
    let (left, cols) = span(left, right.max(left + 1), cols);
    LatentWindow {
        top,
        left,
        rows,
        cols,
    }
}

/// The clean latents a model output implies at `level`.
fn clean_estimate(
    prediction: PredictionType,
    level: NoiseLevel,
    input: &Tensor,
    output: &Tensor,
) -> Result<Tensor> {
    let (signal, noise) = (level.signal(), level.noise());
    Ok(match prediction {
        PredictionType::Epsilon => {
            (input.affine(1.0 / signal, 0.0)? - output.affine(noise / signal, 0.0)?)?
        }
        PredictionType::VPrediction => (input.affine(signal, 0.0)? - output.affine(noise, 0.0)?)?,
    })
}

/// The model output that implies `clean` at `level` (the inverse of [`clean_estimate`]).
fn model_output_for(
    prediction: PredictionType,
    level: NoiseLevel,
    input: &Tensor,
    clean: &Tensor,
) -> Result<Tensor> {
    let (signal, noise) = (level.signal(), level.noise());
    Ok(match prediction {
        PredictionType::Epsilon => {
            (input.affine(1.0 / noise, 0.0)? - clean.affine(signal / noise, 0.0)?)?
        }
        PredictionType::VPrediction => {
            (input.affine(signal / noise, 0.0)? - clean.affine(1.0 / noise, 0.0)?)?
        }
    })
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn clean_estimate_and_model_output_are_inverse() {
        let device = Device::Cpu;
        let input = Tensor::randn(0f32, 1.0, (1, 4, 3, 5), &device).unwrap();
        let output = Tensor::randn(0f32, 1.0, (1, 4, 3, 5), &device).unwrap();
        for prediction in [PredictionType::Epsilon, PredictionType::VPrediction] {
            let level = NoiseLevel { alpha_product: 0.3 };
            let clean = clean_estimate(prediction, level, &input, &output).unwrap();
            let back = model_output_for(prediction, level, &input, &clean).unwrap();
            let diff = (back - &output)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(diff < 1e-5, "{prediction:?} round trip differs by {diff}");
        }
    }

    #[test]
    fn windows_cover_the_region_with_a_margin_inside_the_latents() {
        let w = latent_window([100, 40, 164, 120], 64, 64);
        assert_eq!(
            (w.left, w.top),
            (100 / 8 - WINDOW_MARGIN, 40 / 8 - WINDOW_MARGIN)
        );
        assert_eq!(w.left + w.cols, 164usize.div_ceil(8) + WINDOW_MARGIN);
        assert_eq!(w.top + w.rows, 120 / 8 + WINDOW_MARGIN);
        // A region past the edge is clamped, never empty.
        let edge = latent_window([600, 600, 700, 700], 8, 8);
        assert!(edge.rows >= 1 && edge.cols >= 1 && edge.top + edge.rows <= 8);
    }

    #[test]
    fn guided_steps_cover_the_window_and_at_least_one_step() {
        let all = GuidanceSteps::default();
        assert!((0..20).all(|i| all.includes(i, 20)));
        let early = GuidanceSteps {
            start: 0.0,
            end: 0.5,
        };
        assert_eq!((0..20).filter(|&i| early.includes(i, 20)).count(), 10);
        let tiny = GuidanceSteps {
            start: 0.2,
            end: 0.21,
        };
        assert_eq!((0..1).filter(|&i| tiny.includes(i, 1)).count(), 1);
        assert!(GuidanceSteps {
            start: 0.5,
            end: 0.5
        }
        .validate()
        .is_err());
    }
}
