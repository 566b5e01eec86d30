//! The binary envelope of scheduler↔worker messages: one version byte, then bincode (2.x, serde) of that
//! version's types. A worker reads every version it knows and dead-letters the rest, so old and new
//! workers can share the queues during a rolling deploy.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::jobs::{Job, JobEvent};

/// The version this build writes.
pub const CURRENT_VERSION: u8 = 1;
/// Versions this build reads.
pub const READABLE_VERSIONS: &[u8] = &[1];
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

fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, EnvelopeError> {
    let mut body = vec![CURRENT_VERSION];
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

fn decode<T: DeserializeOwned>(what: &'static str, body: &[u8]) -> Result<T, EnvelopeError> {
    let (&version, payload) = body.split_first().ok_or(EnvelopeError::Empty)?;
    if body.len() > MAX_BODY_BYTES {
        return Err(EnvelopeError::TooLarge {
            size: body.len(),
            limit: MAX_BODY_BYTES,
        });
    }
    if !READABLE_VERSIONS.contains(&version) {
        return Err(EnvelopeError::UnknownVersion {
            found: version,
            readable: READABLE_VERSIONS,
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
    encode("job", job)
}

pub fn decode_job(body: &[u8]) -> Result<Job, EnvelopeError> {
    decode("job", body)
}

pub fn encode_event(event: &JobEvent) -> Result<Vec<u8>, EnvelopeError> {
    encode("job event", event)
}

pub fn decode_event(body: &[u8]) -> Result<JobEvent, EnvelopeError> {
    decode("job event", body)
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
}
