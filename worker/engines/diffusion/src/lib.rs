//! Reverie diffusion engine.
//!
//! The CLIP tokenizer and text encoder, the noise schedulers (Euler, Euler ancestral, DDIM,
//! DPM-Solver++ 2M with and without Karras sigmas, LCM) built from a diffusers
//! `scheduler_config.json`, the UNet and the VAE, the pipelines that join them
//! (`pipeline::StableDiffusion`), per-sample noise (`rng`) and the model registry.

pub mod clip;
pub mod clip_vision;
pub mod error;
pub mod ip_adapter;
pub mod lora;
pub mod nn;
pub mod pipeline;
pub mod registry;
pub mod rng;
pub mod schedulers;
pub mod tokenizer;
pub mod unet;
pub mod vae;
pub mod weights;

pub use clip::{ClipActivation, ClipTextConfig, ClipTextEncoder, ClipTextOutput};
pub use error::DiffusionError;
pub use schedulers::{
    build_scheduler, BetaSchedule, PredictionType, Scheduler, SchedulerConfig, SchedulerKind,
    SchedulerOverrides, TimestepSpacing,
};
pub use tokenizer::{ClipTokenizer, Encoding};
pub use unet::{UNet2DConditionModel, UNetConfig};
pub use vae::{AutoencoderKl, LatentDistribution, VaeConfig};
