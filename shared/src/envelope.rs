//! The binary envelope of scheduler↔worker messages: one version byte, then bincode (2.x, serde) of that
//! version's types. A worker reads every version it knows and dead-letters the rest, so old and new
//! workers can share the queues during a rolling deploy.
//!
//! Jobs are written as version 1. Events are version 1 (one [`JobEvent`]) or version 2 (several, in
//! order): a worker reports the results of a render batch in one message. Schedulers read both, so a
//! rolling deploy updates the scheduler before the workers.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::jobs::{Job, JobEvent};

/// The version this build writes jobs and single events in.
pub const CURRENT_VERSION: u8 = 1;
/// The version of a batch of events.
pub const EVENT_BATCH_VERSION: u8 = 2;
/// Versions this build reads (jobs: 1; events: 1 and 2).
pub const READABLE_VERSIONS: &[u8] = &[1, 2];
const JOB_VERSIONS: &[u8] = &[1];
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

pub fn encode_job(job: &Job) -> Result<Vec<u8>, EnvelopeError> {
    encode("job", CURRENT_VERSION, job)
}

pub fn decode_job(body: &[u8]) -> Result<Job, EnvelopeError> {
    decode("job", JOB_VERSIONS, body)
}

fn encode_event(event: &JobEvent) -> Result<Vec<u8>, EnvelopeError> {
    encode("job event", CURRENT_VERSION, event)
}

/// Several events in one message (version 2); a single one is written as version 1.
pub fn encode_events(events: &[JobEvent]) -> Result<Vec<u8>, EnvelopeError> {
    match events {
        [single] => encode_event(single),
        _ => encode("job events", EVENT_BATCH_VERSION, &events),
    }
}

/// The events of a message of either version, in order.
pub fn decode_events(body: &[u8]) -> Result<Vec<JobEvent>, EnvelopeError> {
    if version_of(body)? == EVENT_BATCH_VERSION {
        let events: Vec<JobEvent> = decode("job events", &[EVENT_BATCH_VERSION], body)?;
        if events.is_empty() {
            return Err(EnvelopeError::Malformed {
                version: EVENT_BATCH_VERSION,
                what: "job events",
                detail: "no events".to_string(),
            });
        }
        return Ok(events);
    }
    Ok(vec![decode("job event", &[CURRENT_VERSION], body)?])
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
        assert_eq!(body[0], CURRENT_VERSION);
        assert_eq!(decode_job(&body).unwrap(), sample());
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
        }
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
