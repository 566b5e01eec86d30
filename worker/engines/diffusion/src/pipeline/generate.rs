//! The sampling loop: text-to-image, img2img and masked img2img with per-sample guidance.
//!
//! The UNet batch is `[unconditional rows of the samples with guidance > 1, conditional rows of
//! every sample]` (diffusers' order, minus the unconditional rows nobody needs), so a batch that
//! mixes guided and unguided samples costs exactly the rows it uses.

use std::ops::ControlFlow;

use candle_core::{DType, Tensor};
use image::RgbImage;

use super::guidance::{GuidanceSchedule, GuidedStep};
use super::images::{latent_mask, preview};
use super::request::{GenerationRequest, SampleSpec};
use super::text::{ModelFamily, PromptText, TextConditioner};
use super::StableDiffusion;
use crate::error::{DiffusionError, Result};
use crate::rng::{gaussian_tensor, NoiseStream};
use crate::schedulers::{build_scheduler, Scheduler};
use crate::unet::ImageTokens;
use crate::unet::{AddedConditions, Conditions};

/// The result of a request.
#[derive(Debug, Clone)]
pub struct Generation {
    /// Final latents `(B, 4, H/8, W/8)` f32, before the VAE's scaling and decoding.
    pub latents: Tensor,
    /// Non-fatal problems, such as prompts cut to the token limit.
    pub warnings: Vec<String>,
}

/// What the progress callback sees after each step.
pub struct StepProgress<'a> {
    /// Steps done so far (1-based) and in all.
    pub step: usize,
    pub total: usize,
    /// The model timestep of the step just run.
    pub timestep: f64,
    latents: &'a Tensor,
}

impl StepProgress<'_> {
    /// The current latents of `sample`.
    pub fn latents(&self, sample: usize) -> Result<Tensor> {
        Ok(self.latents.get(sample)?)
    }

    /// A cheap latent-resolution picture of `sample` (see `images::PREVIEW_MATRIX`).
    pub fn preview(&self, sample: usize) -> Result<RgbImage> {
        preview(&self.latents.get(sample)?)
    }
}

/// The image-conditioned part of a run: clean init latents, the noise that re-noises them, and
/// the per-sample latent masks (all ones for samples without a mask).
struct InitLatents {
    clean: Tensor,
    noise: Tensor,
    mask: Option<Tensor>,
}

/// What the UNet reads besides the latents, in UNet batch order.
struct Conditioning {
    /// Text embeddings in the UNet dtype.
    context: Tensor,
    /// SDXL's pooled text and time ids.
    added: Option<AddedConditions>,
    /// IP-Adapter image prompt tokens and scales.
    image: Option<ImageTokens>,
}

/// How the rows of the UNet batch map back to samples.
struct GuidancePlan {
    /// Rows of the latents to feed the UNet, in UNet batch order.
    rows: Tensor,
    /// For each sample, the UNet output row to use as its unconditional prediction (its own
    /// conditional row when it runs no guidance, so the guidance formula leaves it unchanged).
    uncond_rows: Tensor,
    /// For each sample, its conditional row.
    cond_rows: Tensor,
    /// `(B, 1, 1, 1)` guidance scales.
    scales: Tensor,
}

impl StableDiffusion {
    /// Runs `request`, calling `progress` after every step; `ControlFlow::Break` stops the run
    /// with `DiffusionError::Cancelled`.
    pub fn generate(
        &self,
        request: &GenerationRequest,
        progress: &mut dyn FnMut(&StepProgress<'_>) -> ControlFlow<()>,
    ) -> Result<Generation> {
        request.validate()?;
        if self.is_refiner() && !request.is_img2img() {
            return Err(DiffusionError::InvalidInput(format!(
                "{} is an SDXL refiner: it refines an image (give an init image, img2img) and \
                 cannot start from noise; generate with an SDXL base model",
                self.dir.display()
            )));
        }
        let kind = request.scheduler.unwrap_or(self.default_scheduler);
        let config = self.scheduler_config.with_overrides(&request.overrides);
        let mut scheduler = build_scheduler(kind, &config, request.steps)?;
        let first = request.first_step()?;
        let mut warnings = Vec::new();
        let (plan, conditioning) = self.plan_guidance(request, &mut warnings)?;
        let init = if request.is_img2img() {
            Some(self.init_latents(request)?)
        } else {
            None
        };
        let mut latents =
            self.starting_latents(request, scheduler.as_ref(), first, init.as_ref())?;
        let timesteps = scheduler.timesteps().to_vec();
        let schedule = GuidanceSchedule::new(&config);
        for index in first..timesteps.len() {
            let guided = self.predict_noise(
                &plan,
                &conditioning,
                scheduler.as_ref(),
                &latents,
                index,
                timesteps[index],
            )?;
            let step = (&schedule, scheduler.as_ref(), index, first);
            let guided = self.guide(request, step, &latents, guided)?;
            let noise = self.step_noise(request, scheduler.as_ref(), index, first)?;
            latents = scheduler.step(&guided, index, &latents, noise.as_ref())?;
            if let Some(init) = &init {
                latents = keep_unmasked(init, scheduler.as_ref(), &latents, index)?;
            }
            let update = StepProgress {
                step: index + 1 - first,
                total: timesteps.len() - first,
                timestep: timesteps[index],
                latents: &latents,
            };
            if progress(&update).is_break() {
                return Err(DiffusionError::Cancelled);
            }
        }
        Ok(Generation { latents, warnings })
    }

    /// The model output after identity guidance, when the request has it and step `index` is
    /// one of its guided steps.
    fn guide(
        &self,
        request: &GenerationRequest,
        (schedule, scheduler, index, first): (&GuidanceSchedule, &dyn Scheduler, usize, usize),
        latents: &Tensor,
        model_output: Tensor,
    ) -> Result<Tensor> {
        let Some(identity) = &request.identity else {
            return Ok(model_output);
        };
        let run_steps = scheduler.timesteps().len() - first;
        let strengths: Vec<f64> = request
            .samples
            .iter()
            .map(|s| s.identity_strength)
            .collect();
        if strengths.iter().all(|&s| s == 0.0) || !identity.steps.includes(index - first, run_steps)
        {
            return Ok(model_output);
        }
        let step = GuidedStep {
            schedule,
            scheduler,
            latents,
            index,
            timestep: scheduler.timesteps()[index],
            strengths: &strengths,
        };
        self.steer(identity, step, model_output)
    }

    /// The UNet's conditioning in UNet batch order and the map from UNet rows to samples.
    fn plan_guidance(
        &self,
        request: &GenerationRequest,
        warnings: &mut Vec<String>,
    ) -> Result<(GuidancePlan, Conditioning)> {
        let samples = &request.samples;
        let guided: Vec<usize> = (0..samples.len())
            .filter(|&i| samples[i].uses_guidance())
            .collect();
        let zero_negatives = matches!(
            self.text.family(),
            ModelFamily::Xl {
                force_zeros_for_empty_prompt: true,
                ..
            }
        );
        let mut prompts: Vec<PromptText<'_>> = guided
            .iter()
            .map(|&i| match &samples[i].negative_prompt {
                Some(negative) => PromptText::Text(negative),
                None if zero_negatives => PromptText::Zeros,
                None => PromptText::Text(""),
            })
            .collect();
        prompts.extend(samples.iter().map(|s| PromptText::Text(&s.prompt)));
        let conditioning = self.conditioning(request, &prompts, &guided, warnings)?;

        let cond_base = guided.len();
        let mut uncond_rows = Vec::with_capacity(samples.len());
        for i in 0..samples.len() {
            let own = guided.iter().position(|&g| g == i);
            uncond_rows.push(own.unwrap_or(cond_base + i) as u32);
        }
        let mut rows: Vec<u32> = guided.iter().map(|&i| i as u32).collect();
        rows.extend(0..samples.len() as u32);
        let cond_rows: Vec<u32> = (0..samples.len()).map(|i| (cond_base + i) as u32).collect();
        let scales: Vec<f32> = samples.iter().map(|s| s.guidance_scale as f32).collect();
        let device = &self.device;
        let plan = GuidancePlan {
            rows: Tensor::new(rows, device)?,
            uncond_rows: Tensor::new(uncond_rows, device)?,
            cond_rows: Tensor::new(cond_rows, device)?,
            scales: Tensor::from_vec(scales, (samples.len(), 1, 1, 1), device)?,
        };
        Ok((plan, conditioning))
    }

    /// Encodes `prompts` (first the negatives of the `guided` samples, then every sample's
    /// prompt), builds SDXL's added conditioning of every row and the image prompt tokens.
    fn conditioning(
        &self,
        request: &GenerationRequest,
        prompts: &[PromptText<'_>],
        guided: &[usize],
        warnings: &mut Vec<String>,
    ) -> Result<Conditioning> {
        let unconditional = guided.len();
        let encoded = self.text.encode(prompts, warnings, &self.device)?;
        let size = (request.height, request.width);
        let added = match &encoded.pooled {
            Some(pooled) => {
                let time_ids = (0..prompts.len())
                    .map(|row| {
                        self.text
                            .time_ids(&request.micro, size, row < unconditional)
                            .unwrap_or_default()
                    })
                    .collect::<Vec<_>>();
                Some(TextConditioner::added_conditions(
                    pooled,
                    &time_ids,
                    &self.device,
                )?)
            }
            None => None,
        };
        Ok(Conditioning {
            context: encoded.context.to_dtype(self.dtype)?,
            added,
            image: self.image_tokens(request, guided)?,
        })
    }

    /// The image prompt tokens of every UNet row (the negative embeddings for unconditional rows);
    /// samples without an image prompt get scale 0. `None` when no sample has one.
    fn image_tokens(
        &self,
        request: &GenerationRequest,
        guided: &[usize],
    ) -> Result<Option<ImageTokens>> {
        let samples = &request.samples;
        let Some(first) = samples.iter().find_map(|s| s.image_prompt.as_ref()) else {
            return Ok(None);
        };
        let adapter = self.ip_adapter.as_ref().ok_or_else(|| {
            DiffusionError::InvalidInput(format!(
                "a sample has an image prompt but {} was loaded without an IP-Adapter",
                self.dir.display()
            ))
        })?;
        let blank = first.embeds.positive.zeros_like()?;
        let rows: Vec<(usize, bool)> = guided
            .iter()
            .map(|&sample| (sample, true))
            .chain((0..samples.len()).map(|sample| (sample, false)))
            .collect();
        let mut embeds = Vec::with_capacity(rows.len());
        let mut scales = Vec::with_capacity(rows.len());
        for (sample, unconditional) in rows {
            let (embed, scale) = match &samples[sample].image_prompt {
                Some(prompt) if unconditional => (&prompt.embeds.negative, prompt.scale),
                Some(prompt) => (&prompt.embeds.positive, prompt.scale),
                None => (&blank, 0.0),
            };
            embeds.push(embed.to_device(&self.device)?.to_dtype(DType::F32)?);
            scales.push(scale as f32);
        }
        let count = scales.len();
        Ok(Some(ImageTokens {
            tokens: adapter.project(&Tensor::cat(&embeds, 0)?)?,
            scales: Tensor::from_vec(scales, (count, 1, 1), &self.device)?,
        }))
    }

    /// The guided noise prediction `uncond + g * (cond - uncond)` for every sample, in f32.
    fn predict_noise(
        &self,
        plan: &GuidancePlan,
        conditioning: &Conditioning,
        scheduler: &dyn Scheduler,
        latents: &Tensor,
        index: usize,
        timestep: f64,
    ) -> Result<Tensor> {
        let model_input = scheduler
            .scale_model_input(latents, index)?
            .index_select(&plan.rows, 0)?
            .to_dtype(self.dtype)?;
        let rows = model_input.dim(0)?;
        let timesteps = Tensor::full(timestep as f32, rows, &self.device)?;
        let output = self
            .unet
            .forward_with(
                &model_input,
                &timesteps,
                &Conditions {
                    text: &conditioning.context,
                    added: conditioning.added.as_ref(),
                    image: conditioning.image.as_ref(),
                },
            )?
            .to_dtype(DType::F32)?;
        let cond = output.index_select(&plan.cond_rows, 0)?;
        let uncond = output.index_select(&plan.uncond_rows, 0)?;
        let difference = (&cond - &uncond)?;
        Ok((uncond + difference.broadcast_mul(&plan.scales)?)?)
    }

    /// One sample's draw: the caller's tensor if given, else the seed's stream.
    fn noise_for(
        &self,
        sample: &SampleSpec,
        given: Option<&Tensor>,
        stream: NoiseStream,
        shape: &[usize],
    ) -> Result<Tensor> {
        match given {
            Some(tensor) => Ok(tensor.to_device(&self.device)?.to_dtype(DType::F32)?),
            None => gaussian_tensor(sample.seed, stream, shape, &self.device),
        }
    }

    /// The batch of one draw per sample, `(B, 4, H/8, W/8)`.
    fn batch_noise(
        &self,
        request: &GenerationRequest,
        stream: NoiseStream,
        given: impl Fn(&SampleSpec) -> Option<&Tensor>,
    ) -> Result<Tensor> {
        let (rows, cols) = request.latent_size();
        let shape = [1, 4, rows, cols];
        let draws = request
            .samples
            .iter()
            .map(|s| self.noise_for(s, given(s), stream, &shape))
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&draws, 0)?)
    }

    /// Ancestral schedulers' noise for step `index`, if the scheduler wants any.
    fn step_noise(
        &self,
        request: &GenerationRequest,
        scheduler: &dyn Scheduler,
        index: usize,
        first: usize,
    ) -> Result<Option<Tensor>> {
        if !scheduler.needs_noise(index) {
            return Ok(None);
        }
        let noise = self.batch_noise(request, NoiseStream::Step(index), |s| {
            s.noise.step_noise.get(index - first)
        })?;
        Ok(Some(noise))
    }

    /// Clean init latents of every sample (VAE sample with its own draw), the noise added to
    /// them, and the latent masks.
    fn init_latents(&self, request: &GenerationRequest) -> Result<InitLatents> {
        let (rows, cols) = request.latent_size();
        let shape = [1, 4, rows, cols];
        let mut clean = Vec::with_capacity(request.samples.len());
        for sample in &request.samples {
            let image = sample.init_image.as_ref().ok_or_else(|| {
                DiffusionError::InvalidInput("img2img sample without init image".into())
            })?;
            let draw = self.noise_for(
                sample,
                sample.noise.vae_sample.as_ref(),
                NoiseStream::VaeSample,
                &shape,
            )?;
            clean.push(self.encode_image(image, &draw)?);
        }
        let noise = self.batch_noise(request, NoiseStream::AddedNoise, |s| {
            s.noise.added_noise.as_ref()
        })?;
        let mask = if request.samples.iter().any(|s| s.mask.is_some()) {
            let masks = request
                .samples
                .iter()
                .map(|s| match &s.mask {
                    Some(mask) => latent_mask(&mask.to_device(&self.device)?, rows, cols),
                    None => Ok(Tensor::ones((1, 1, rows, cols), DType::F32, &self.device)?),
                })
                .collect::<Result<Vec<_>>>()?;
            Some(Tensor::cat(&masks, 0)?)
        } else {
            None
        };
        Ok(InitLatents {
            clean: Tensor::cat(&clean, 0)?,
            noise,
            mask,
        })
    }

    /// The latents before the first step run.
    fn starting_latents(
        &self,
        request: &GenerationRequest,
        scheduler: &dyn Scheduler,
        first: usize,
        init: Option<&InitLatents>,
    ) -> Result<Tensor> {
        let sigma = scheduler.init_noise_sigma();
        let Some(init) = init else {
            let noise = self.batch_noise(request, NoiseStream::InitialLatents, |s| {
                s.noise.initial_latents.as_ref()
            })?;
            return Ok(noise.affine(sigma, 0.0)?);
        };
        let noised = scheduler.add_noise(&init.clean, &init.noise, first)?;
        // diffusers' inpainting starts a full-strength run from pure scaled noise, while
        // img2img always noises the init latents; follow each per sample.
        if request.strength < 1.0 {
            return Ok(noised);
        }
        let pure = init.noise.affine(sigma, 0.0)?;
        let rows = request
            .samples
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let source = if s.mask.is_some() { &pure } else { &noised };
                Ok(source.narrow(0, i, 1)?)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&rows, 0)?)
    }
}

/// Masked img2img: the kept region (mask 0) goes back to the init latents noised to the next
/// step's level, or to the clean init latents after the last step.
fn keep_unmasked(
    init: &InitLatents,
    scheduler: &dyn Scheduler,
    latents: &Tensor,
    index: usize,
) -> Result<Tensor> {
    let Some(mask) = &init.mask else {
        return Ok(latents.clone());
    };
    let next = index + 1;
    let kept = if next < scheduler.timesteps().len() {
        scheduler.add_noise(&init.clean, &init.noise, next)?
    } else {
        init.clean.clone()
    };
    let keep_weight = mask.affine(-1.0, 1.0)?;
    Ok((kept.broadcast_mul(&keep_weight)? + latents.broadcast_mul(mask)?)?)
}
