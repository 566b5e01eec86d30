//! The binary envelope of scheduler↔worker messages: one version byte, then bincode (2.x, serde) of that
//! version's types. A worker reads every version it knows and dead-letters the rest, so old and new
//! workers can share the queues during a rolling deploy.
//!
//! Jobs are written as version 3 (the identity fields of `RenderSpec`, `ReferenceRole::Identity`), or
//! as version 5 when they render with adapters (`RenderSpec::adapters`: LoRAs, image prompts), which
//! version 3 cannot carry; versions 1 (the layout before identity) and 3 are still read and converted.
//! So workers are deployed before a scheduler that plans adapters, and adapter-free jobs stay readable
//! to every worker of the last two releases. Events are version 1 (one
//! [`JobEvent`] in the version-1 layout), version 2 (several, in order, version-1 layout: a worker
//! reports the results of a render batch in one message) or version 4 (one or more, current layout,
//! with the identity check). A worker answers a version-1 job (an older scheduler sent it) in the
//! version-1/2 layout and a version-3 job in version 4, so the rolling deploy of this change updates
//! the workers before the scheduler, and old and new peers stay readable to each other.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::jobs::{Job, JobEvent};

/// The version of single events in the version-1 layout (and of version-1 jobs).
pub const CURRENT_VERSION: u8 = 1;
/// The version of a batch of events in the version-1 layout.
pub const EVENT_BATCH_VERSION: u8 = 2;
/// The version this build writes jobs without adapters in (and the first whose events are answered in
/// the current layout).
pub const JOB_VERSION: u8 = 3;
/// The version of jobs with adapters (LoRAs, image prompts): the current layout.
pub const JOB_ADAPTERS_VERSION: u8 = 5;
/// The version of events in the current layout (a list of one or more).
pub const EVENT_LIST_VERSION: u8 = 4;
/// Versions this build reads (jobs: 1, 3 and 5; events: 1, 2 and 4). Job and event versions never
/// share a number above 1, so a message on the wrong queue is `unknown_version`, never misread.
pub const READABLE_VERSIONS: &[u8] = &[1, 2, 3, 4, 5];
const JOB_VERSIONS: &[u8] = &[1, 3, 5];
/// Bodies above this are refused before decoding: no job is anywhere near it.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("empty message body")]
    Empty,
    #[error("unknown envelope version {found} (this build reads {readable:?})")]
    UnknownVersion { found: u8, readable: &'static [u8] },
    #[error("message body of {size} bytes exceeds the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("malformed v{version} {what}: {detail}")]
    Malformed {
        version: u8,
        what: &'static str,
        detail: String,
    },
    #[error("could not encode {what}: {detail}")]
    Encode { what: &'static str, detail: String },
}

impl EnvelopeError {
    /// The dead-letter reason label (a small fixed set, so it can be a metric label).
    pub fn reason(&self) -> &'static str {
        match self {
            EnvelopeError::UnknownVersion { .. } => "unknown_version",
            _ => "malformed",
        }
    }
}

fn encode<T: Serialize>(
    what: &'static str,
    version: u8,
    value: &T,
) -> Result<Vec<u8>, EnvelopeError> {
    let mut body = vec![version];
    let payload =
        bincode::serde::encode_to_vec(value, bincode::config::standard()).map_err(|e| {
            EnvelopeError::Encode {
                what,
                detail: e.to_string(),
            }
        })?;
    body.extend_from_slice(&payload);
    Ok(body)
}

/// The version byte of a body, once its size is checked.
fn version_of(body: &[u8]) -> Result<u8, EnvelopeError> {
    let (&version, _) = body.split_first().ok_or(EnvelopeError::Empty)?;
    if body.len() > MAX_BODY_BYTES {
        return Err(EnvelopeError::TooLarge {
            size: body.len(),
            limit: MAX_BODY_BYTES,
        });
    }
    Ok(version)
}

/// Decodes a body of one of the `readable` versions as `T`.
fn decode<T: DeserializeOwned>(
    what: &'static str,
    readable: &'static [u8],
    body: &[u8],
) -> Result<T, EnvelopeError> {
    let version = version_of(body)?;
    let payload = &body[1..];
    if !readable.contains(&version) {
        return Err(EnvelopeError::UnknownVersion {
            found: version,
            readable,
        });
    }
    let config = bincode::config::standard().with_limit::<MAX_BODY_BYTES>();
    let (value, used) = bincode::serde::decode_from_slice(payload, config).map_err(|e| {
        EnvelopeError::Malformed {
            version,
            what,
            detail: e.to_string(),
        }
    })?;
    if used != payload.len() {
        return Err(EnvelopeError::Malformed {
            version,
            what,
            detail: format!("{} trailing bytes", payload.len() - used),
        });
    }
    Ok(value)
}

/// A job in the oldest layout that carries it: version 3, or version 5 when it has adapters.
pub fn encode_job(job: &Job) -> Result<Vec<u8>, EnvelopeError> {
    match v3::Job::try_from(job) {
        Ok(layout) => encode("job", JOB_VERSION, &layout),
        Err(()) => encode("job", JOB_ADAPTERS_VERSION, job),
    }
}

/// A job in the version-1 layout, for workers that predate version 3; `None` when the job uses what
/// version 1 cannot say (identity strength, best-of, identity references).
pub fn encode_job_v1(job: &Job) -> Option<Result<Vec<u8>, EnvelopeError>> {
    let legacy = v1::Job::try_from(job).ok()?;
    Some(encode("job", CURRENT_VERSION, &legacy))
}

pub fn decode_job(body: &[u8]) -> Result<Job, EnvelopeError> {
    decode_job_versioned(body).map(|(job, _)| job)
}

/// A job and the envelope version it came in (a worker answers in the layout its sender reads).
pub fn decode_job_versioned(body: &[u8]) -> Result<(Job, u8), EnvelopeError> {
    match version_of(body)? {
        CURRENT_VERSION => {
            let legacy: v1::Job = decode("job", JOB_VERSIONS, body)?;
            Ok((legacy.into(), CURRENT_VERSION))
        }
        JOB_VERSION => {
            let layout: v3::Job = decode("job", JOB_VERSIONS, body)?;
            Ok((layout.into(), JOB_VERSION))
        }
        _ => Ok((decode("job", JOB_VERSIONS, body)?, JOB_ADAPTERS_VERSION)),
    }
}

fn encode_event(event: &v1::JobEvent) -> Result<Vec<u8>, EnvelopeError> {
    encode("job event", CURRENT_VERSION, event)
}

/// Events in the version-1 layout, which every scheduler reads: several in one message (version 2), a
/// single one as version 1. The identity check does not travel in it.
pub fn encode_events(events: &[JobEvent]) -> Result<Vec<u8>, EnvelopeError> {
    let legacy: Vec<v1::JobEvent> = events.iter().map(v1::JobEvent::from).collect();
    match legacy.as_slice() {
        [single] => encode_event(single),
        _ => encode("job events", EVENT_BATCH_VERSION, &legacy),
    }
}

/// Events in the current layout (version 4), for schedulers that sent version-3 jobs.
pub fn encode_events_current(events: &[JobEvent]) -> Result<Vec<u8>, EnvelopeError> {
    encode("job events", EVENT_LIST_VERSION, &events)
}

/// The events of a message of any readable version, in order.
pub fn decode_events(body: &[u8]) -> Result<Vec<JobEvent>, EnvelopeError> {
    let version = version_of(body)?;
    let events: Vec<JobEvent> = match version {
        EVENT_LIST_VERSION => decode("job events", &[EVENT_LIST_VERSION], body)?,
        EVENT_BATCH_VERSION => {
            let legacy: Vec<v1::JobEvent> = decode("job events", &[EVENT_BATCH_VERSION], body)?;
            legacy.into_iter().map(JobEvent::from).collect()
        }
        _ => {
            let legacy: v1::JobEvent = decode("job event", &[CURRENT_VERSION], body)?;
            return Ok(vec![legacy.into()]);
        }
    };
    if events.is_empty() {
        return Err(EnvelopeError::Malformed {
            version,
            what: "job events",
            detail: "no events".to_string(),
        });
    }
    Ok(events)
}

/// The version-3 layout of jobs: the current one without `RenderSpec::adapters`, written for every
/// job that has none (so workers that predate version 5 read them).
mod v3 {
    use serde::{Deserialize, Serialize};

    use crate::ids::{JobId, RequestId, TenantId};
    use crate::jobs::{self, AnalyseJob, OutputTarget, PhotoRef, Priority};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct RenderSpec {
        pub renderer: jobs::RendererKind,
        pub prompt: String,
        pub negative_prompt: String,
        pub style: String,
        pub model: Option<String>,
        pub width: u32,
        pub height: u32,
        pub steps: u32,
        pub guidance: f32,
        pub scheduler: Option<String>,
        pub seed: u64,
        pub strength: f32,
        pub palette_transfer: bool,
        pub identity_strength: f32,
        pub best_of: u32,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct GenerateJob {
        pub job: JobId,
        pub request: RequestId,
        pub tenant: TenantId,
        pub index: u32,
        pub render: RenderSpec,
        pub references: Vec<PhotoRef>,
        pub output: OutputTarget,
        pub batch_run: Option<String>,
    }

    #[allow(clippy::large_enum_variant)]
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub enum JobSpec {
        Generate(GenerateJob),
        Analyse(AnalyseJob),
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Job {
        pub spec: JobSpec,
        pub attempt: u32,
        pub priority: Priority,
        pub accepted_ms: u64,
    }

    impl From<RenderSpec> for jobs::RenderSpec {
        fn from(r: RenderSpec) -> jobs::RenderSpec {
            jobs::RenderSpec {
                renderer: r.renderer,
                prompt: r.prompt,
                negative_prompt: r.negative_prompt,
                style: r.style,
                model: r.model,
                width: r.width,
                height: r.height,
                steps: r.steps,
                guidance: r.guidance,
                scheduler: r.scheduler,
                seed: r.seed,
                strength: r.strength,
                palette_transfer: r.palette_transfer,
                identity_strength: r.identity_strength,
                best_of: r.best_of,
                adapters: jobs::RenderAdapters::default(),
            }
        }
    }

    impl From<Job> for jobs::Job {
        fn from(job: Job) -> jobs::Job {
            let spec = match job.spec {
                JobSpec::Analyse(analyse) => jobs::JobSpec::Analyse(analyse),
                JobSpec::Generate(g) => jobs::JobSpec::Generate(jobs::GenerateJob {
                    job: g.job,
                    request: g.request,
                    tenant: g.tenant,
                    index: g.index,
                    render: g.render.into(),
                    references: g.references,
                    output: g.output,
                    batch_run: g.batch_run,
                }),
            };
            jobs::Job {
                spec,
                attempt: job.attempt,
                priority: job.priority,
                accepted_ms: job.accepted_ms,
            }
        }
    }

    /// Refused when the job renders with adapters, which version 3 cannot carry.
    impl TryFrom<&jobs::Job> for Job {
        type Error = ();

        fn try_from(job: &jobs::Job) -> Result<Job, ()> {
            let spec = match &job.spec {
                jobs::JobSpec::Analyse(analyse) => JobSpec::Analyse(analyse.clone()),
                jobs::JobSpec::Generate(g) => {
                    let r = &g.render;
                    if !r.adapters.is_empty() {
                        return Err(());
                    }
                    JobSpec::Generate(GenerateJob {
                        job: g.job.clone(),
                        request: g.request.clone(),
                        tenant: g.tenant.clone(),
                        index: g.index,
                        render: RenderSpec {
                            renderer: r.renderer,
                            prompt: r.prompt.clone(),
                            negative_prompt: r.negative_prompt.clone(),
                            style: r.style.clone(),
                            model: r.model.clone(),
                            width: r.width,
                            height: r.height,
                            steps: r.steps,
                            guidance: r.guidance,
                            scheduler: r.scheduler.clone(),
                            seed: r.seed,
                            strength: r.strength,
                            palette_transfer: r.palette_transfer,
                            identity_strength: r.identity_strength,
                            best_of: r.best_of,
                        },
                        references: g.references.clone(),
                        output: g.output.clone(),
                        batch_run: g.batch_run.clone(),
                    })
                }
            };
            Ok(Job {
                spec,
                attempt: job.attempt,
                priority: job.priority,
                accepted_ms: job.accepted_ms,
            })
        }
    }
}

/// The version-1 layout of jobs and events, kept to read (and write for) peers that predate version 2.
/// Only what changed is redefined; unchanged types are shared (`ReferenceRole` gained a variant at
/// the end, so version-1 bytes decode into it unchanged).
mod v1 {
    use serde::{Deserialize, Serialize};

    use crate::ids::{JobId, RequestId, TenantId};
    use crate::jobs::{self, AnalyseJob, OutputTarget, PhotoRef, Priority, ReferenceRole};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct RenderSpec {
        pub renderer: jobs::RendererKind,
        pub prompt: String,
        pub negative_prompt: String,
        pub style: String,
        pub model: Option<String>,
        pub width: u32,
        pub height: u32,
        pub steps: u32,
        pub guidance: f32,
        pub scheduler: Option<String>,
        pub seed: u64,
        pub strength: f32,
        pub palette_transfer: bool,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct GenerateJob {
        pub job: JobId,
        pub request: RequestId,
        pub tenant: TenantId,
        pub index: u32,
        pub render: RenderSpec,
        pub references: Vec<PhotoRef>,
        pub output: OutputTarget,
        pub batch_run: Option<String>,
    }

    #[allow(clippy::large_enum_variant)]
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub enum JobSpec {
        Generate(GenerateJob),
        Analyse(AnalyseJob),
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Job {
        pub spec: JobSpec,
        pub attempt: u32,
        pub priority: Priority,
        pub accepted_ms: u64,
    }

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
            preview_png: Option<Vec<u8>>,
        },
        Succeeded {
            job: JobId,
            tenant: TenantId,
            outputs: Vec<String>,
            render_ms: u64,
        },
        Failed {
            job: JobId,
            tenant: TenantId,
            reason: String,
            retryable: bool,
            attempt: u32,
        },
    }

    impl From<Job> for jobs::Job {
        fn from(job: Job) -> jobs::Job {
            let spec = match job.spec {
                JobSpec::Analyse(analyse) => jobs::JobSpec::Analyse(analyse),
                JobSpec::Generate(g) => {
                    let r = g.render;
                    jobs::JobSpec::Generate(jobs::GenerateJob {
                        job: g.job,
                        request: g.request,
                        tenant: g.tenant,
                        index: g.index,
                        render: jobs::RenderSpec {
                            renderer: r.renderer,
                            prompt: r.prompt,
                            negative_prompt: r.negative_prompt,
                            style: r.style,
                            model: r.model,
                            width: r.width,
                            height: r.height,
                            steps: r.steps,
                            guidance: r.guidance,
                            scheduler: r.scheduler,
                            seed: r.seed,
                            strength: r.strength,
                            palette_transfer: r.palette_transfer,
                            identity_strength: 0.0,
                            best_of: 1,
                            adapters: jobs::RenderAdapters::default(),
                        },
                        references: g.references,
                        output: g.output,
                        batch_run: g.batch_run,
                    })
                }
            };
            jobs::Job {
                spec,
                attempt: job.attempt,
                priority: job.priority,
                accepted_ms: job.accepted_ms,
            }
        }
    }

    /// Refused when the job uses anything version 1 cannot carry.
    impl TryFrom<&jobs::Job> for Job {
        type Error = ();

        fn try_from(job: &jobs::Job) -> Result<Job, ()> {
            let spec = match &job.spec {
                jobs::JobSpec::Analyse(analyse) => JobSpec::Analyse(analyse.clone()),
                jobs::JobSpec::Generate(g) => {
                    let r = &g.render;
                    let identity_refs = g
                        .references
                        .iter()
                        .any(|p| p.role == ReferenceRole::Identity);
                    if r.identity_strength != 0.0
                        || r.best_of != 1
                        || identity_refs
                        || !r.adapters.is_empty()
                    {
                        return Err(());
                    }
                    JobSpec::Generate(GenerateJob {
                        job: g.job.clone(),
                        request: g.request.clone(),
                        tenant: g.tenant.clone(),
                        index: g.index,
                        render: RenderSpec {
                            renderer: r.renderer,
                            prompt: r.prompt.clone(),
                            negative_prompt: r.negative_prompt.clone(),
                            style: r.style.clone(),
                            model: r.model.clone(),
                            width: r.width,
                            height: r.height,
                            steps: r.steps,
                            guidance: r.guidance,
                            scheduler: r.scheduler.clone(),
                            seed: r.seed,
                            strength: r.strength,
                            palette_transfer: r.palette_transfer,
                        },
                        references: g.references.clone(),
                        output: g.output.clone(),
                        batch_run: g.batch_run.clone(),
                    })
                }
            };
            Ok(Job {
                spec,
                attempt: job.attempt,
                priority: job.priority,
                accepted_ms: job.accepted_ms,
            })
        }
    }

    impl From<JobEvent> for jobs::JobEvent {
        fn from(event: JobEvent) -> jobs::JobEvent {
            match event {
                JobEvent::Started {
                    job,
                    tenant,
                    worker,
                    attempt,
                } => jobs::JobEvent::Started {
                    job,
                    tenant,
                    worker,
                    attempt,
                },
                JobEvent::Progress {
                    job,
                    tenant,
                    step,
                    total,
                    preview_png,
                } => jobs::JobEvent::Progress {
                    job,
                    tenant,
                    step,
                    total,
                    preview_png,
                },
                JobEvent::Succeeded {
                    job,
                    tenant,
                    outputs,
                    render_ms,
                } => jobs::JobEvent::Succeeded {
                    job,
                    tenant,
                    outputs,
                    render_ms,
                    identity: None,
                },
                JobEvent::Failed {
                    job,
                    tenant,
                    reason,
                    retryable,
                    attempt,
                } => jobs::JobEvent::Failed {
                    job,
                    tenant,
                    reason,
                    retryable,
                    attempt,
                },
            }
        }
    }

    /// The identity check is dropped: version 1 has no place for it.
    impl From<&jobs::JobEvent> for JobEvent {
        fn from(event: &jobs::JobEvent) -> JobEvent {
            match event.clone() {
                jobs::JobEvent::Started {
                    job,
                    tenant,
                    worker,
                    attempt,
                } => JobEvent::Started {
                    job,
                    tenant,
                    worker,
                    attempt,
                },
                jobs::JobEvent::Progress {
                    job,
                    tenant,
                    step,
                    total,
                    preview_png,
                } => JobEvent::Progress {
                    job,
                    tenant,
                    step,
                    total,
                    preview_png,
                },
                jobs::JobEvent::Succeeded {
                    job,
                    tenant,
                    outputs,
                    render_ms,
                    ..
                } => JobEvent::Succeeded {
                    job,
                    tenant,
                    outputs,
                    render_ms,
                },
                jobs::JobEvent::Failed {
                    job,
                    tenant,
                    reason,
                    retryable,
                    attempt,
                } => JobEvent::Failed {
                    job,
                    tenant,
                    reason,
                    retryable,
                    attempt,
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{JobId, ShardId, TenantId};
    use crate::jobs::{AnalyseJob, Analysis, JobSpec, Priority};

    fn sample() -> Job {
        Job {
            spec: JobSpec::Analyse(AnalyseJob {
                job: JobId::new("r1.0").unwrap(),
                tenant: TenantId::new("alice").unwrap(),
                shard: ShardId::new("s-0001").unwrap(),
                analyses: vec![Analysis::Faces, Analysis::Palettes],
            }),
            attempt: 1,
            priority: Priority::Batch,
            accepted_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn round_trips_with_a_version_byte() {
        let body = encode_job(&sample()).unwrap();
        assert_eq!(body[0], JOB_VERSION);
        assert_eq!(decode_job(&body).unwrap(), sample());
        let legacy = encode_job_v1(&sample()).unwrap().unwrap();
        assert_eq!(legacy[0], CURRENT_VERSION);
        assert_eq!(
            decode_job_versioned(&legacy).unwrap(),
            (sample(), CURRENT_VERSION)
        );
    }

    #[test]
    fn unknown_versions_and_garbage_are_named() {
        let mut body = encode_job(&sample()).unwrap();
        body[0] = 99;
        assert_eq!(decode_job(&body).unwrap_err().reason(), "unknown_version");
        assert_eq!(decode_job(&[]).unwrap_err(), EnvelopeError::Empty);
        let error = decode_job(&[1, 0xff, 0xff, 0xff]).unwrap_err();
        assert_eq!(error.reason(), "malformed");
        let mut padded = encode_job(&sample()).unwrap();
        padded.push(0);
        assert!(decode_job(&padded)
            .unwrap_err()
            .to_string()
            .contains("trailing"));
    }

    fn succeeded(job: &str) -> JobEvent {
        JobEvent::Succeeded {
            job: JobId::new(job).unwrap(),
            tenant: TenantId::new("alice").unwrap(),
            outputs: vec![format!("tenants/alice/results/r1/{job}.png")],
            render_ms: 3,
            identity: None,
        }
    }

    fn generate(best_of: u32, identity_ref: bool) -> Job {
        use crate::ids::{PhotoId, RequestId};
        use crate::jobs::{
            GenerateJob, OutputTarget, PhotoRef, ReferenceRole, RenderSpec, RendererKind,
        };
        let reference = |role| PhotoRef {
            photo: PhotoId::of_bytes(b"p"),
            shard: ShardId::new("s-1").unwrap(),
            offset: 0,
            length: 1,
            role,
            face_box: Some([1, 2, 3, 4]),
            label: Some("Anna".into()),
        };
        let mut references = vec![reference(ReferenceRole::Subject)];
        if identity_ref {
            references.push(reference(ReferenceRole::Identity));
        }
        Job {
            spec: JobSpec::Generate(GenerateJob {
                job: JobId::new("r1.0").unwrap(),
                request: RequestId::new("r1").unwrap(),
                tenant: TenantId::new("alice").unwrap(),
                index: 0,
                render: RenderSpec {
                    renderer: RendererKind::Painterly,
                    prompt: "Anna".into(),
                    negative_prompt: String::new(),
                    style: "watercolour".into(),
                    model: None,
                    width: 64,
                    height: 64,
                    steps: 1,
                    guidance: 0.0,
                    scheduler: None,
                    seed: 7,
                    strength: 1.0,
                    palette_transfer: false,
                    identity_strength: 0.0,
                    best_of,
                    adapters: Default::default(),
                },
                references,
                output: OutputTarget::default(),
                batch_run: None,
            }),
            attempt: 1,
            priority: Priority::Interactive,
            accepted_ms: 1,
        }
    }

    /// Version-1 jobs (older schedulers) still decode, with identity off and one candidate; a job that
    /// needs version 2 is never written as version 1.
    #[test]
    fn version_1_generate_jobs_decode_with_defaults() {
        let plain = generate(1, false);
        let legacy = encode_job_v1(&plain).unwrap().unwrap();
        let (decoded, version) = decode_job_versioned(&legacy).unwrap();
        assert_eq!((decoded, version), (plain, CURRENT_VERSION));
        assert!(encode_job_v1(&generate(3, false)).is_none());
        assert!(encode_job_v1(&generate(1, true)).is_none());
        let current = generate(3, true);
        let (decoded, version) = decode_job_versioned(&encode_job(&current).unwrap()).unwrap();
        assert_eq!((decoded, version), (current, JOB_VERSION));
    }

    /// Jobs with adapters travel as version 5 (workers that predate it dead-letter them rather than
    /// render without the LoRA); jobs without stay version 3, readable by those workers.
    #[test]
    fn jobs_with_adapters_are_version_5_and_others_stay_version_3() {
        use crate::jobs::{LoraUse, RenderAdapters};
        let mut job = generate(1, false);
        let JobSpec::Generate(generate_job) = &mut job.spec else {
            unreachable!("a generate job")
        };
        generate_job.render.adapters = RenderAdapters {
            loras: vec![LoraUse {
                name: "anna".into(),
                sha256: "ab".repeat(32),
                weight: 0.8,
            }],
            image_prompt_scale: 0.6,
        };
        let body = encode_job(&job).unwrap();
        assert_eq!(body[0], JOB_ADAPTERS_VERSION);
        assert_eq!(
            decode_job_versioned(&body).unwrap(),
            (job.clone(), JOB_ADAPTERS_VERSION)
        );
        assert!(encode_job_v1(&job).is_none());
        let plain = generate(1, false);
        let body = encode_job(&plain).unwrap();
        assert_eq!(body[0], JOB_VERSION);
        assert_eq!(decode_job_versioned(&body).unwrap(), (plain, JOB_VERSION));
        // Version 5 is a job version: never read as events.
        assert_eq!(
            decode_events(&encode_job(&job).unwrap())
                .unwrap_err()
                .reason(),
            "unknown_version"
        );
    }

    /// Version 4 carries the identity check; the version-1 layout drops it.
    #[test]
    fn current_events_carry_the_identity_check() {
        use crate::jobs::{IdentityReport, IdentityVerdict, PersonIdentity};
        let mut event = succeeded("r1.0");
        if let JobEvent::Succeeded { identity, .. } = &mut event {
            *identity = Some(IdentityReport {
                people: vec![PersonIdentity {
                    person: "Anna".into(),
                    distance: Some(0.41),
                    verdict: IdentityVerdict::Verified,
                }],
                unchecked: None,
                seed: 7,
                candidates: Vec::new(),
            });
        }
        let body = encode_events_current(std::slice::from_ref(&event)).unwrap();
        assert_eq!(body[0], EVENT_LIST_VERSION);
        assert_eq!(decode_events(&body).unwrap(), vec![event.clone()]);
        let legacy = encode_events(std::slice::from_ref(&event)).unwrap();
        assert_eq!(legacy[0], CURRENT_VERSION);
        assert_eq!(decode_events(&legacy).unwrap(), vec![succeeded("r1.0")]);
        let empty = encode_events_current(&[]).unwrap();
        assert!(decode_events(&empty).is_err());
        // Jobs and events never share a version above 1: neither is misread as the other.
        assert_eq!(decode_job(&body).unwrap_err().reason(), "unknown_version");
        let job = encode_job(&generate(1, false)).unwrap();
        assert_eq!(decode_events(&job).unwrap_err().reason(), "unknown_version");
    }

    #[test]
    fn events_travel_one_or_several_to_a_message() {
        let one = encode_events(&[succeeded("r1.0")]).unwrap();
        assert_eq!(
            one[0], CURRENT_VERSION,
            "a single event stays readable by older schedulers"
        );
        assert_eq!(decode_events(&one).unwrap(), vec![succeeded("r1.0")]);
        let batch = vec![succeeded("r1.0"), succeeded("r2.0"), succeeded("r1.1")];
        let body = encode_events(&batch).unwrap();
        assert_eq!(body[0], EVENT_BATCH_VERSION);
        assert_eq!(decode_events(&body).unwrap(), batch, "order kept");
        // A batch is no job, and an empty batch is refused.
        assert_eq!(decode_job(&body).unwrap_err().reason(), "unknown_version");
        let empty = encode("job events", EVENT_BATCH_VERSION, &Vec::<JobEvent>::new()).unwrap();
        assert!(decode_events(&empty)
            .unwrap_err()
            .to_string()
            .contains("no events"));
    }
}
