//! What the scheduler sends workers and what workers send back: the domain of one job.
//!
//! These types travel inside the versioned binary envelope (`envelope`); they are `V1`. A change that old
//! workers could not read is a new version with its own types and a conversion, never an edit here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::{JobId, PhotoId, RequestId, ShardId, TenantId};

/// Interactive requests are served before batch work. The numbers are AMQP priorities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    #[default]
    Interactive,
    Batch,
}

impl Priority {
    pub const MAX: u8 = 9;

    pub fn amqp(self) -> u8 {
        match self {
            Priority::Interactive => 8,
            Priority::Batch => 2,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Priority::Interactive => "interactive",
            Priority::Batch => "batch",
        }
    }
}

/// Which renderer paints a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RendererKind {
    /// Weight-free painterly styles (reverie-paint).
    Painterly,
    /// Stable Diffusion on candle (reverie-diffusion).
    Diffusion,
}

impl RendererKind {
    pub fn label(self) -> &'static str {
        match self {
            RendererKind::Painterly => "painterly",
            RendererKind::Diffusion => "diffusion",
        }
    }
}

/// Why a photo takes part in a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReferenceRole {
    /// A person or pet to place in the picture.
    Subject,
    /// The setting the picture is painted from (also the img2img init image).
    Background,
    /// Where "in my colours" takes its palette from.
    Palette,
    /// A further good photo of a person of the picture: never drawn, used only for the person's
    /// reference descriptor (the identity check, identity guidance). Carries the person's label, the
    /// same as their `Subject` reference, which is how the worker groups them; listed in provenance.
    /// Appended last: its bincode index is new, so jobs that carry it are envelope version 3.
    Identity,
}

/// A photo a job uses, with where to find its bytes without reading the manifest again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhotoRef {
    pub photo: PhotoId,
    pub shard: ShardId,
    /// Byte range of the image inside the shard tar, for ranged reads.
    pub offset: u64,
    pub length: u64,
    pub role: ReferenceRole,
    /// Face box (left, top, right, bottom) when the subject is a person's face.
    pub face_box: Option<[u32; 4]>,
    /// The user's label for it ("Anna", "Rex"): for provenance, never for routing.
    pub label: Option<String>,
}

/// Everything a worker needs to render one image, fixed by the plan so a retry renders the same image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RenderSpec {
    pub renderer: RendererKind,
    /// Text for the model: the prompt with resolved references removed.
    pub prompt: String,
    pub negative_prompt: String,
    /// A painterly style name (`watercolour`, `impressionist`, ...) or a diffusion style hint.
    pub style: String,
    /// Model name in the registry (diffusion only).
    pub model: Option<String>,
    pub width: u32,
    pub height: u32,
    pub steps: u32,
    pub guidance: f32,
    pub scheduler: Option<String>,
    pub seed: u64,
    /// img2img strength when a background photo is the init image.
    pub strength: f32,
    /// Recolour toward the palette of the `Palette` references.
    pub palette_transfer: bool,
    /// How strongly sampling is steered toward the people's identity (0 = off, at most
    /// [`MAX_IDENTITY_STRENGTH`]). Only diffusion uses it; absent in records written before it existed.
    #[serde(default)]
    pub identity_strength: f32,
    /// Candidates rendered (seeds `seed`, `seed + 1`, ...); the one whose people are closest to their
    /// references is kept. 1 (the default) renders one image.
    #[serde(default = "one")]
    pub best_of: u32,
    /// LoRAs and image prompts (version-5 jobs; absent from earlier layouts: none).
    #[serde(default)]
    pub adapters: RenderAdapters,
}

fn one() -> u32 {
    1
}

/// One of the tenant's LoRAs a job renders with: its name (for people), its file (by SHA-256, read
/// from the tenant's own storage) and its weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraUse {
    pub name: String,
    pub sha256: String,
    pub weight: f32,
}

/// What a job renders with beyond the base model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RenderAdapters {
    /// Fused into the model in this order; jobs with another LoRA set batch apart.
    pub loras: Vec<LoraUse>,
    /// IP-Adapter image prompt strength (0 = none): the job's subject photos are the image prompts,
    /// when the worker's model has an IP-Adapter.
    pub image_prompt_scale: f32,
}

impl RenderAdapters {
    pub fn is_empty(&self) -> bool {
        self.loras.is_empty() && self.image_prompt_scale == 0.0
    }

    /// The LoRA set as the batch key spells it: `name@sha256[..12]*weight`, in order.
    pub fn lora_key(&self) -> String {
        self.loras
            .iter()
            .map(|l| {
                format!(
                    "{}@{}*{}",
                    l.name,
                    &l.sha256[..l.sha256.len().min(12)],
                    l.weight
                )
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The most LoRAs one job may use.
pub const MAX_LORAS: usize = 4;
/// The largest image prompt scale a job may ask for.
pub const MAX_IMAGE_PROMPT_SCALE: f32 = 5.0;

/// The most identity guidance a request may ask for: the sampler's own limit
/// (`reverie_diffusion::pipeline::guidance::MAX_IDENTITY_STRENGTH`), beyond which one guided update
/// moves the latents by more than their whole spread and the picture dissolves.
pub const MAX_IDENTITY_STRENGTH: f32 = 20.0;
/// The identity strength of a request that does not set one: pictures with people are restyled
/// whole and their faces held by guidance (0, set explicitly, keeps the subjects' pixels instead).
pub const DEFAULT_IDENTITY_STRENGTH: f32 = 1.0;
/// The most candidates one job renders: each is a full render, so a job costs up to this many.
pub const MAX_BEST_OF: u32 = 8;

/// The identity check's word on one person (`reverie_faces::identity::Verdict` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityVerdict {
    Verified,
    Weak,
    Missing,
}

impl IdentityVerdict {
    pub fn label(self) -> &'static str {
        match self {
            IdentityVerdict::Verified => "verified",
            IdentityVerdict::Weak => "weak",
            IdentityVerdict::Missing => "missing",
        }
    }
}

/// One person of a picture as the identity check found them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersonIdentity {
    /// The person's label (their name in the library), or the subject photo's id without one.
    pub person: String,
    /// Descriptor distance to the person's reference; `None` when no face was at their place.
    pub distance: Option<f32>,
    pub verdict: IdentityVerdict,
}

/// One rendered candidate of a `best_of` job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdentityCandidate {
    pub seed: u64,
    pub people: Vec<PersonIdentity>,
}

/// The identity check of a job's output (only for pictures with people).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct IdentityReport {
    /// The people of the kept output, in plan order; empty when the check could not run.
    pub people: Vec<PersonIdentity>,
    /// Why the check could not run (no face models on the worker, a reference without a face),
    /// so a missing verdict is never mistaken for a checked one.
    pub unchecked: Option<String>,
    /// The seed of the kept output.
    pub seed: u64,
    /// Every candidate of a `best_of` job, in seed order (empty when one image was rendered).
    pub candidates: Vec<IdentityCandidate>,
}

impl RenderSpec {
    /// Jobs with the same key can be rendered in one batch.
    pub fn batch_key(&self) -> String {
        let key = format!(
            "{}|{}|{}x{}|{}|{}",
            self.renderer.label(),
            self.model.as_deref().unwrap_or("-"),
            self.width,
            self.height,
            self.steps,
            self.scheduler.as_deref().unwrap_or("-")
        );
        // LoRAs are fused into the weights: a batch runs one LoRA set.
        match self.adapters.loras.is_empty() {
            true => key,
            false => format!("{key}|loras:{}", self.adapters.lora_key()),
        }
    }
}

/// Where a job's outputs go. Results default to `tenants/{tenant}/results/{request}/`; album-to-art runs
/// may name another prefix of the tenant's own storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct OutputTarget {
    /// `s3://bucket/prefix` of the tenant's own bucket, or `None` for the default results prefix.
    pub destination: Option<String>,
    /// File stem inside the destination (`{index}` by default; album runs use the photo id).
    pub name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerateJob {
    pub job: JobId,
    pub request: RequestId,
    pub tenant: TenantId,
    /// The job's index within its request: the output's file name.
    pub index: u32,
    pub render: RenderSpec,
    pub references: Vec<PhotoRef>,
    pub output: OutputTarget,
    /// The album-to-art run this job belongs to, if any.
    pub batch_run: Option<String>,
}

/// Which analyses a shard needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Analysis {
    Faces,
    Palettes,
    Fingerprints,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalyseJob {
    pub job: JobId,
    pub tenant: TenantId,
    pub shard: ShardId,
    pub analyses: Vec<Analysis>,
}

// The variants differ in size, but a JobSpec lives only while one message is handled; boxing would
// complicate every match for no measurable gain.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum JobSpec {
    Generate(GenerateJob),
    Analyse(AnalyseJob),
}

impl JobSpec {
    pub fn id(&self) -> &JobId {
        match self {
            JobSpec::Generate(job) => &job.job,
            JobSpec::Analyse(job) => &job.job,
        }
    }

    pub fn tenant(&self) -> &TenantId {
        match self {
            JobSpec::Generate(job) => &job.tenant,
            JobSpec::Analyse(job) => &job.tenant,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            JobSpec::Generate(_) => "generate",
            JobSpec::Analyse(_) => "analyse",
        }
    }
}

/// A job as it travels on a job queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub spec: JobSpec,
    /// 1 for the first attempt; a retried job is republished with attempt + 1.
    pub attempt: u32,
    pub priority: Priority,
    /// When the scheduler accepted the request (milliseconds since the epoch), for time-in-queue.
    pub accepted_ms: u64,
}

/// What a worker tells the scheduler about a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum JobEvent {
    Started {
        job: JobId,
        tenant: TenantId,
        worker: String,
        attempt: u32,
    },
    Progress {
        job: JobId,
        tenant: TenantId,
        step: u32,
        total: u32,
        /// A small PNG preview, when the renderer has one.
        preview_png: Option<Vec<u8>>,
    },
    Succeeded {
        job: JobId,
        tenant: TenantId,
        /// Object keys of the outputs (image and provenance JSON).
        outputs: Vec<String>,
        render_ms: u64,
        /// The identity check of a generation with people (event envelope version 4 only).
        #[serde(default)]
        identity: Option<IdentityReport>,
    },
    Failed {
        job: JobId,
        tenant: TenantId,
        reason: String,
        /// False when retrying cannot help (bad input, missing photo).
        retryable: bool,
        attempt: u32,
    },
}

impl JobEvent {
    /// Whether this is the last event of this attempt (a result or a failure).
    pub fn is_final(&self) -> bool {
        matches!(self, JobEvent::Succeeded { .. } | JobEvent::Failed { .. })
    }

    pub fn tenant(&self) -> &TenantId {
        match self {
            JobEvent::Started { tenant, .. }
            | JobEvent::Progress { tenant, .. }
            | JobEvent::Succeeded { tenant, .. }
            | JobEvent::Failed { tenant, .. } => tenant,
        }
    }

    pub fn job(&self) -> &JobId {
        match self {
            JobEvent::Started { job, .. }
            | JobEvent::Progress { job, .. }
            | JobEvent::Succeeded { job, .. }
            | JobEvent::Failed { job, .. } => job,
        }
    }
}

/// An embedding of a photo (face descriptor, style fingerprint, palette), as cached and persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Embedding {
    pub kind: String,
    pub model_hash: String,
    pub photo: PhotoId,
    pub vectors: Vec<Vec<f32>>,
}

/// What every output records about how it was made (PNG text chunks and the JSON beside the image).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub job: JobId,
    pub request: RequestId,
    pub tenant: TenantId,
    pub renderer: RendererKind,
    pub prompt: String,
    pub negative_prompt: String,
    pub style: String,
    pub model: Option<String>,
    pub model_hash: Option<String>,
    pub seed: u64,
    pub steps: u32,
    pub guidance: f32,
    pub scheduler: Option<String>,
    pub width: u32,
    pub height: u32,
    /// The photos the image was made from.
    pub references: Vec<PhotoId>,
    pub created_at: String,
    pub worker: String,
    pub extra: BTreeMap<String, String>,
    /// The identity check of the people in the picture (absent for pictures without people).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<IdentityReport>,
    /// The `Identity` photos the people's reference descriptors came from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identity_references: Vec<PhotoId>,
    /// The tenant's LoRAs the image was rendered with (by file hash), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loras: Vec<LoraUse>,
    /// The photo the IP-Adapter read as the image prompt, and its scale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_prompt: Option<ImagePromptUse>,
}

/// An image prompt an output was rendered with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImagePromptUse {
    pub photo: PhotoId,
    pub scale: f32,
    /// The IP-Adapter's identity (the SHA-256 of its file listing; docs/diffusion.md, "Adapters").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
}

/// The renderer's detail key naming the image prompt's photo (see [`Provenance::image_prompt`]).
pub const IMAGE_PROMPT_DETAIL: &str = "image_prompt_photo";
/// The renderer's detail key holding the image prompt's adapter identity.
pub const IMAGE_PROMPT_ADAPTER_DETAIL: &str = "image_prompt_adapter";
