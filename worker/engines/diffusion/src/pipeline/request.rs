//! What a generation asks for: shared settings plus one spec per sample, and their checks.

use candle_core::Tensor;

use super::guidance::{IdentityGuidance, MAX_IDENTITY_STRENGTH};
use crate::error::{DiffusionError, Result};
use crate::ip_adapter::{ImagePrompt, MAX_IP_SCALE};
use crate::schedulers::{SchedulerKind, SchedulerOverrides, TimestepSpacing};

/// The most inference steps a request may ask for (train schedules have 1000 timesteps).
pub const MAX_STEPS: usize = 1000;
/// The largest side in pixels; far above what SD 1.x/2.x produce sensibly.
pub const MAX_SIDE: usize = 4096;

/// Noise tensors given by the caller instead of drawn from the sample's seed (parity tests,
/// `--init-latents`). Shapes are those of one sample's latents, `(1, 4, H/8, W/8)`.
#[derive(Debug, Clone, Default)]
pub struct ExplicitNoise {
    /// Text-to-image starting latents, before multiplication by `init_noise_sigma`.
    pub initial_latents: Option<Tensor>,
    /// The draw that samples the VAE's latent distribution of the init image.
    pub vae_sample: Option<Tensor>,
    /// The noise added to the init latents at the first kept timestep.
    pub added_noise: Option<Tensor>,
    /// Ancestral schedulers' per-step noise, by step index from the first run step.
    pub step_noise: Vec<Tensor>,
}

/// One image of a batch.
#[derive(Debug, Clone)]
pub struct SampleSpec {
    pub prompt: String,
    /// `None` is the empty prompt, as in diffusers.
    pub negative_prompt: Option<String>,
    pub seed: u64,
    /// Classifier-free guidance; at most 1 runs no unconditional branch for this sample.
    pub guidance_scale: f64,
    /// `(1, 3, H, W)` in [-1, 1]: img2img starts from this picture.
    pub init_image: Option<Tensor>,
    /// `(1, 1, H, W)` in [0, 1], white = repaint, black = keep; needs an init image.
    pub mask: Option<Tensor>,
    pub noise: ExplicitNoise,
    /// How hard identity guidance pulls this sample toward its people (0 = off); needs the
    /// request's [`GenerationRequest::identity`].
    pub identity_strength: f64,
    /// An IP-Adapter image prompt (the model must be loaded with an adapter).
    pub image_prompt: Option<ImagePrompt>,
}

impl SampleSpec {
    /// A text-to-image sample with the empty negative prompt.
    pub fn new(prompt: impl Into<String>, seed: u64, guidance_scale: f64) -> Self {
        Self {
            prompt: prompt.into(),
            negative_prompt: None,
            seed,
            guidance_scale,
            init_image: None,
            mask: None,
            noise: ExplicitNoise::default(),
            identity_strength: 0.0,
            image_prompt: None,
        }
    }

    /// Whether this sample runs the unconditional branch (diffusers: guidance > 1).
    pub fn uses_guidance(&self) -> bool {
        self.guidance_scale > 1.0
    }
}

/// SDXL's micro-conditioning, shared by a batch: what the model is told about the picture's
/// origin (diffusers' `original_size`, `crops_coords_top_left`, `target_size`, and for the
/// refiner `aesthetic_score` / `negative_aesthetic_score`). Sizes are `(height, width)`; `None`
/// means the generated size. SD 1.x / 2.x ignore it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MicroConditioning {
    pub original_size: Option<(usize, usize)>,
    pub crop_top_left: (usize, usize),
    pub target_size: Option<(usize, usize)>,
    pub aesthetic_score: f64,
    pub negative_aesthetic_score: f64,
}

impl Default for MicroConditioning {
    /// diffusers' defaults: sizes of the output, no crop, scores 6 and 2.5.
    fn default() -> Self {
        Self {
            original_size: None,
            crop_top_left: (0, 0),
            target_size: None,
            aesthetic_score: 6.0,
            negative_aesthetic_score: 2.5,
        }
    }
}

/// A batch of samples that share the model, the size, the step count and the scheduler.
#[derive(Debug, Clone)]
pub struct GenerationRequest {
    pub width: usize,
    pub height: usize,
    pub steps: usize,
    /// `None`: the checkpoint's own scheduler.
    pub scheduler: Option<SchedulerKind>,
    pub overrides: SchedulerOverrides,
    /// img2img only: the fraction of the schedule that is run (1 = from pure noise level).
    pub strength: f64,
    pub samples: Vec<SampleSpec>,
    /// Energy guidance toward the samples' people; samples with `identity_strength` 0 ignore it.
    pub identity: Option<IdentityGuidance>,
    /// SDXL's size, crop and aesthetic-score conditioning.
    pub micro: MicroConditioning,
}

impl GenerationRequest {
    /// Text-to-image defaults: 512x512, 30 steps, the checkpoint's scheduler, strength 1.
    pub fn new(samples: Vec<SampleSpec>) -> Self {
        Self {
            width: 512,
            height: 512,
            steps: 30,
            scheduler: None,
            overrides: SchedulerOverrides::default(),
            strength: 1.0,
            samples,
            identity: None,
            micro: MicroConditioning::default(),
        }
    }

    /// SD-Turbo style: one step, no guidance, Euler with trailing spacing.
    pub fn turbo(mut samples: Vec<SampleSpec>) -> Self {
        for sample in &mut samples {
            sample.guidance_scale = 0.0;
        }
        Self {
            steps: 1,
            scheduler: Some(SchedulerKind::Euler),
            overrides: SchedulerOverrides {
                timestep_spacing: Some(TimestepSpacing::Trailing),
                ..SchedulerOverrides::default()
            },
            ..Self::new(samples)
        }
    }

    /// Whether the samples start from init images.
    pub fn is_img2img(&self) -> bool {
        self.samples.iter().any(|s| s.init_image.is_some())
    }

    /// The latent grid `(rows, cols)`.
    pub fn latent_size(&self) -> (usize, usize) {
        (self.height / 8, self.width / 8)
    }

    /// Everything that can be checked without the model.
    pub fn validate(&self) -> Result<()> {
        let bad = |message: String| Err(DiffusionError::InvalidInput(message));
        if self.samples.is_empty() {
            return bad("the request has no samples".into());
        }
        for (name, side) in [("width", self.width), ("height", self.height)] {
            if side == 0 || !side.is_multiple_of(8) || side > MAX_SIDE {
                return bad(format!(
                    "{name} {side} must be a positive multiple of 8 up to {MAX_SIDE}"
                ));
            }
        }
        if self.steps == 0 || self.steps > MAX_STEPS {
            return bad(format!(
                "steps {} must be between 1 and {MAX_STEPS}",
                self.steps
            ));
        }
        if self.is_img2img() {
            if !(self.strength > 0.0 && self.strength <= 1.0) {
                return bad(format!(
                    "strength {} must be above 0 and at most 1",
                    self.strength
                ));
            }
            if self.samples.iter().any(|s| s.init_image.is_none()) {
                return bad("either every sample of a batch has an init image or none".into());
            }
        }
        if let Some(identity) = &self.identity {
            identity.validate().map_err(DiffusionError::InvalidInput)?;
        }
        let micro = &self.micro;
        for (name, score) in [
            ("aesthetic score", micro.aesthetic_score),
            ("negative aesthetic score", micro.negative_aesthetic_score),
        ] {
            if !score.is_finite() || !(0.0..=10.0).contains(&score) {
                return bad(format!("{name} {score} must be between 0 and 10"));
            }
        }
        for (name, size) in [
            ("original size", micro.original_size),
            ("target size", micro.target_size),
        ] {
            if let Some((h, w)) = size {
                if h == 0 || w == 0 || h > 4 * MAX_SIDE || w > 4 * MAX_SIDE {
                    return bad(format!(
                        "{name} {h}x{w} must be positive and at most {} a side",
                        4 * MAX_SIDE
                    ));
                }
            }
        }
        for (index, sample) in self.samples.iter().enumerate() {
            self.validate_sample(sample)
                .map_err(|e| DiffusionError::InvalidInput(format!("sample {index}: {e}")))?;
        }
        Ok(())
    }

    fn validate_sample(&self, sample: &SampleSpec) -> std::result::Result<(), String> {
        if !sample.guidance_scale.is_finite() || sample.guidance_scale < 0.0 {
            return Err(format!(
                "guidance scale {} must be a finite number of at least 0",
                sample.guidance_scale
            ));
        }
        if let Some(prompt) = &sample.image_prompt {
            if !prompt.scale.is_finite() || !(0.0..=MAX_IP_SCALE).contains(&prompt.scale) {
                return Err(format!(
                    "image prompt scale {} must be between 0 and {MAX_IP_SCALE}",
                    prompt.scale
                ));
            }
            if prompt.embeds.positive.dims() != prompt.embeds.negative.dims() {
                return Err("the image prompt's negative embeddings differ in shape".into());
            }
        }
        let strength = sample.identity_strength;
        if !strength.is_finite() || !(0.0..=MAX_IDENTITY_STRENGTH).contains(&strength) {
            return Err(format!(
                "identity strength {strength} must be between 0 (off) and {MAX_IDENTITY_STRENGTH}"
            ));
        }
        if strength > 0.0 && self.identity.is_none() {
            return Err(format!(
                "identity strength {strength} needs identity references to guide toward"
            ));
        }
        let (rows, cols) = self.latent_size();
        let latent = [1, 4, rows, cols];
        let expect = |what: &str, tensor: &Option<Tensor>, shape: &[usize]| match tensor {
            Some(t) if t.dims() != shape => Err(format!(
                "{what} has shape {:?}, expected {shape:?}",
                t.dims()
            )),
            _ => Ok(()),
        };
        expect(
            "the init image",
            &sample.init_image,
            &[1, 3, self.height, self.width],
        )?;
        expect("the mask", &sample.mask, &[1, 1, self.height, self.width])?;
        if sample.mask.is_some() && sample.init_image.is_none() {
            return Err("a mask needs an init image".into());
        }
        let noise = &sample.noise;
        expect("the initial latents", &noise.initial_latents, &latent)?;
        expect("the VAE sample noise", &noise.vae_sample, &latent)?;
        expect("the added noise", &noise.added_noise, &latent)?;
        for step in &noise.step_noise {
            expect("a step noise", &Some(step.clone()), &latent)?;
        }
        Ok(())
    }

    /// The first step index run: diffusers' `get_timesteps` keeps the last
    /// `min(floor(steps * strength), steps)` steps.
    pub fn first_step(&self) -> Result<usize> {
        if !self.is_img2img() {
            return Ok(0);
        }
        let kept = ((self.steps as f64 * self.strength).floor() as usize).min(self.steps);
        if kept == 0 {
            return Err(DiffusionError::InvalidInput(format!(
                "strength {} of {} steps runs no step; raise the strength or the steps",
                self.strength, self.steps
            )));
        }
        Ok(self.steps - kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    fn request() -> GenerationRequest {
        GenerationRequest::new(vec![SampleSpec::new("a cat", 1, 7.5)])
    }

    #[test]
    fn rejects_sizes_steps_and_strengths_outside_their_ranges() {
        let mut r = request();
        r.width = 500;
        assert!(r
            .validate()
            .unwrap_err()
            .to_string()
            .contains("multiple of 8"));
        for steps in [0, 10_000] {
            let mut r = request();
            r.steps = steps;
            assert!(r.validate().unwrap_err().to_string().contains("steps"));
        }
        let image = Tensor::zeros((1, 3, 512, 512), DType::F32, &Device::Cpu).unwrap();
        for strength in [0.0, -0.5, 1.5, f64::NAN] {
            let mut r = request();
            r.samples[0].init_image = Some(image.clone());
            r.strength = strength;
            assert!(r.validate().unwrap_err().to_string().contains("strength"));
        }
    }

    #[test]
    fn rejects_negative_absurd_or_unanchored_identity_strengths() {
        for strength in [-0.1, f64::NAN, f64::INFINITY, MAX_IDENTITY_STRENGTH * 2.0] {
            let mut r = request();
            r.samples[0].identity_strength = strength;
            let message = r.validate().unwrap_err().to_string();
            assert!(message.contains("identity strength"), "{message}");
        }
        let mut r = request();
        r.samples[0].identity_strength = 1.0;
        let message = r.validate().unwrap_err().to_string();
        assert!(message.contains("needs identity references"), "{message}");
    }

    #[test]
    fn rejects_a_mask_of_another_size() {
        let mut r = request();
        r.samples[0].init_image =
            Some(Tensor::zeros((1, 3, 512, 512), DType::F32, &Device::Cpu).unwrap());
        r.samples[0].mask =
            Some(Tensor::zeros((1, 1, 256, 512), DType::F32, &Device::Cpu).unwrap());
        r.strength = 0.5;
        assert!(r.validate().unwrap_err().to_string().contains("the mask"));
    }

    #[test]
    fn strength_keeps_the_last_steps_like_diffusers() {
        let mut r = request();
        r.samples[0].init_image =
            Some(Tensor::zeros((1, 3, 512, 512), DType::F32, &Device::Cpu).unwrap());
        r.steps = 10;
        r.strength = 0.6;
        assert_eq!(r.first_step().unwrap(), 4);
        r.strength = 0.05;
        assert!(r.first_step().is_err());
    }
}
