//! Planning: a validated request plus the references its prompt resolved to become the jobs that render
//! it. A pure function of its inputs, so a plan can be explained and reproduced from the record alone.
//!
//! A plan's life, top-down: `choose` picks references, renderer, parameters and seeds
//! ([`make_plan`]); a refinement keeps what its parent chose unless it names its own, and may swap
//! sources (`refine`); an album run turns the plan into one job per album photo (`album`); and
//! `jobs` turns the plan into the jobs workers render ([`jobs_for`]: the one plan-to-job
//! conversion).

mod album;
mod choose;
mod jobs;
mod refine;

use std::collections::BTreeMap;

use reverie_shared::ids::{PhotoId, RequestId};
use reverie_shared::jobs::{PhotoRef, Priority, RenderAdapters, RendererKind};
use reverie_shared::tenant_loras::TenantLora;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use album::{album_output_prefix, album_plan, album_slug, AlbumRun};
pub use choose::{make_plan, IDENTITY_PHOTOS, PALETTE_PHOTOS};
pub use jobs::jobs_for;
pub use refine::{refine_plan, replace_sources, SourceReplacement};

/// What the farm can render, from configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannerSettings {
    /// The diffusion model to use; `None` means no weights are configured and the painterly renderer
    /// paints every job.
    pub diffusion_model: Option<String>,
    pub diffusion_steps: u32,
    pub diffusion_scheduler: String,
    pub diffusion_guidance: f32,
    pub default_size: u32,
    pub painterly_style: String,
    /// img2img strength when a background photo is the init image.
    pub background_strength: f32,
    /// Most subject photos per job (the renderer composes at most this many).
    pub max_subjects: usize,
    /// IP-Adapter image prompt scale of jobs that place subjects (0: the farm's model has no
    /// IP-Adapter, `diffusion.ip_adapter` unset).
    #[serde(default)]
    pub image_prompt_scale: f32,
}

impl Default for PlannerSettings {
    fn default() -> PlannerSettings {
        PlannerSettings {
            diffusion_model: None,
            diffusion_steps: 20,
            diffusion_scheduler: "ddim".to_string(),
            diffusion_guidance: 7.5,
            default_size: 512,
            painterly_style: "impressionist".to_string(),
            background_strength: 0.6,
            max_subjects: 4,
            image_prompt_scale: 0.0,
        }
    }
}

/// A photo the resolution offers for one role, with how well it fits (higher is better).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub reference: PhotoRef,
    pub score: f32,
    /// The albums the photo is in: consent is checked against them.
    pub albums: Vec<String>,
    /// Which resolved reference it answers ("person:Anna", "place:Lisbon", ...), to pick one per reference.
    pub answers: String,
    /// Catalog ids of the people and pets the photo shows (for a subject: the one it stands for). A
    /// setting photo that shows a subject of the picture is never its background: they would be in
    /// the picture twice.
    #[serde(default)]
    pub shows: Vec<String>,
    /// The photo is a close-up portrait (see `library::CLOSE_UP_FACE_SHARE`): never a setting for
    /// placed people.
    #[serde(default)]
    pub close_up: bool,
}

/// What a fallback background answers ([`Candidate::answers`]): a library photo offered when the
/// prompt names no setting and no subject. The plan uses such photos only for renderers that must
/// paint over a photo.
pub const FALLBACK_ANSWER: &str = "fallback: no setting or subject named";

/// The request's wishes, already validated.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PlanInput {
    /// Prompt text for the model, resolved references removed.
    pub model_prompt: String,
    pub negative_prompt: String,
    pub style: Option<String>,
    pub variants: u32,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub steps: Option<u32>,
    pub guidance: Option<f32>,
    pub scheduler: Option<String>,
    pub seed: Option<u64>,
    pub renderer: Option<RendererKind>,
    pub priority: Priority,
    pub palette_transfer: bool,
    /// Identity guidance strength (0 = off), validated at intake.
    pub identity_strength: f32,
    /// Candidates per job (0 is taken as 1), validated at intake.
    pub best_of: u32,
    pub subjects: Vec<Candidate>,
    pub backgrounds: Vec<Candidate>,
    pub palettes: Vec<Candidate>,
    /// People will be placed even if `subjects` is empty: a refinement keeps its parent's
    /// (`refine_plan`), so its setting must not be anyone's close-up either.
    #[serde(default)]
    pub places_parent_subjects: bool,
    /// The tenant's registered LoRAs; those bound to a placed subject are used.
    #[serde(default)]
    pub loras: Vec<TenantLora>,
}

/// The plan as recorded: enough to explain the result and render it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub renderer: RendererKind,
    pub model: Option<String>,
    pub width: u32,
    pub height: u32,
    pub steps: u32,
    pub scheduler: Option<String>,
    pub guidance: f32,
    pub style: String,
    pub model_prompt: String,
    pub negative_prompt: String,
    pub seeds: Vec<u64>,
    pub references: Vec<PhotoRef>,
    /// For every reference, the albums it is in (consent re-checks after a revoke).
    pub reference_albums: BTreeMap<String, Vec<String>>,
    pub priority: Priority,
    /// Human-readable reasons for each choice.
    pub explanation: Vec<String>,
    /// Set for album-to-art runs: one job per album photo instead of one per variant.
    #[serde(default)]
    pub album_run: Option<AlbumRun>,
    /// Identity guidance strength of every job (0 = off; absent in records of earlier versions).
    #[serde(default)]
    pub identity_strength: f32,
    /// Candidates each job renders, keeping the best identity (absent in earlier records: 1).
    #[serde(default = "one")]
    pub best_of: u32,
    /// LoRAs of the placed subjects and the image prompt scale (absent in earlier records: none).
    #[serde(default)]
    pub adapters: RenderAdapters,
}

fn one() -> u32 {
    1
}

/// The seed of the `index`-th variant: the given seed plus the index, or a hash of the request id and
/// the index, so the same request always renders the same images.
pub fn variant_seed(request: &RequestId, index: u32, given: Option<u64>) -> u64 {
    match given {
        Some(seed) => seed.wrapping_add(u64::from(index)),
        None => {
            let digest = Sha256::digest(format!("{request}#{index}").as_bytes());
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&digest[..8]);
            u64::from_le_bytes(bytes)
        }
    }
}

/// The photos a plan uses.
pub fn photos_of(plan: &Plan) -> Vec<PhotoId> {
    let mut photos: Vec<PhotoId> = plan.references.iter().map(|r| r.photo.clone()).collect();
    photos.sort();
    photos.dedup();
    photos
}

#[cfg(test)]
mod tests {
    use super::*;
    use reverie_shared::ids::ShardId;
    use reverie_shared::jobs::ReferenceRole;

    /// A subject candidate for `answers`: photo `byte`, labelled and showing `answers`.
    pub(super) fn candidate(byte: u8, answers: &str, score: f32) -> Candidate {
        Candidate {
            reference: PhotoRef {
                photo: PhotoId::of_bytes(&[byte]),
                shard: ShardId::new("s-0").unwrap(),
                offset: 0,
                length: 10,
                role: ReferenceRole::Subject,
                face_box: None,
                label: Some(answers.to_string()),
            },
            score,
            albums: vec![],
            answers: answers.to_string(),
            shows: vec![answers.to_string()],
            close_up: false,
        }
    }

    #[test]
    fn seeds_are_deterministic_per_request_and_index() {
        let request = RequestId::new("r1").unwrap();
        assert_eq!(
            variant_seed(&request, 0, None),
            variant_seed(&request, 0, None)
        );
        assert_ne!(
            variant_seed(&request, 0, None),
            variant_seed(&request, 1, None)
        );
        assert_eq!(variant_seed(&request, 2, Some(40)), 42);
    }
}
