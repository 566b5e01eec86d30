//! Reverie diffusion engine.
