//! What the scheduler tells requesters: the reply schema v1 (docs/schemas/reply.v1.json), sent as JSON to
//! an AMQP request's `reply_to` with its `correlation_id`, and as server-sent events over HTTP.

use reverie_shared::ids::JobId;
use serde::{Deserialize, Serialize};

use crate::records::{request_of, JobState, RequestRecord};

pub const REPLY_SCHEMA: &str = "reverie.reply.v1";

/// Why a request was refused, or what went wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Reason {
    /// A stable machine-readable code (`invalid_json`, `unknown_schema_version`, `missing_field`,
    /// `token_expired`, `no_consent`, `quota_exceeded`, `unresolved_reference`, ...).
    pub code: String,
    /// The request field it concerns, as a JSON pointer-like path (`prompt`, `n`), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
    /// Close known names for an unresolved reference ("did you mean").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suggestions: Vec<String>,
}

impl Reason {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Reason {
        Reason {
            code: code.into(),
            field: None,
            message: message.into(),
            suggestions: Vec::new(),
        }
    }

    pub fn on_field(mut self, field: impl Into<String>) -> Reason {
        self.field = Some(field.into());
        self
    }

    pub fn suggesting(mut self, suggestions: Vec<String>) -> Reason {
        self.suggestions = suggestions;
        self
    }
}

/// One job's outputs in a `done` or `failed` reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobResult {
    pub job: String,
    pub index: u32,
    pub state: JobState,
    pub outputs: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The identity check of a picture with people: per person `{person, distance, verdict}`, or
    /// `unchecked` with the reason it could not run; `best_of` candidates are listed too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub identity: Option<reverie_shared::jobs::IdentityReport>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ReplyBody {
    /// The request was persisted and its jobs published (or queued for fair publishing).
    Accepted {
        jobs: Vec<String>,
        /// True when this request id was seen before: no new jobs were made.
        duplicate: bool,
        /// The plan's explanation lines.
        plan: Vec<String>,
    },
    Rejected {
        reasons: Vec<Reason>,
    },
    Progress {
        job: String,
        state: JobState,
        #[serde(skip_serializing_if = "Option::is_none")]
        step: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        total: Option<u32>,
        /// A small PNG preview, base64.
        #[serde(skip_serializing_if = "Option::is_none")]
        preview_png_base64: Option<String>,
    },
    Done {
        results: Vec<JobResult>,
    },
    Failed {
        reasons: Vec<Reason>,
        results: Vec<JobResult>,
    },
    Cancelled {
        results: Vec<JobResult>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Reply {
    /// Always `reverie.reply.v1`.
    pub schema: String,
    /// The request this reply is about, when it got that far.
    pub request_id: Option<String>,
    #[serde(flatten)]
    pub body: ReplyBody,
}

impl Reply {
    pub fn new(request_id: Option<String>, body: ReplyBody) -> Reply {
        Reply {
            schema: REPLY_SCHEMA.to_string(),
            request_id,
            body,
        }
    }

    pub fn rejected(request_id: Option<String>, reasons: Vec<Reason>) -> Reply {
        Reply::new(request_id, ReplyBody::Rejected { reasons })
    }

    pub fn kind(&self) -> &'static str {
        match self.body {
            ReplyBody::Accepted { .. } => "accepted",
            ReplyBody::Rejected { .. } => "rejected",
            ReplyBody::Progress { .. } => "progress",
            ReplyBody::Done { .. } => "done",
            ReplyBody::Failed { .. } => "failed",
            ReplyBody::Cancelled { .. } => "cancelled",
        }
    }

    /// Whether no more replies follow for this request.
    pub fn is_final(&self) -> bool {
        !matches!(
            self.body,
            ReplyBody::Accepted { .. } | ReplyBody::Progress { .. }
        )
    }

    /// Whether this reply goes out on `route`: every reply, or only the final one when the requester
    /// asked for that (`x-reverie-replies: final`).
    pub fn wanted_on(&self, route: &crate::records::ReplyRoute) -> bool {
        !route.final_only || self.is_final()
    }
}

pub fn job_results(record: &RequestRecord) -> Vec<JobResult> {
    record
        .jobs
        .iter()
        .map(|job| JobResult {
            job: job.job.to_string(),
            index: job.index,
            state: job.state,
            outputs: job.outputs.clone(),
            error: job.error.clone(),
            identity: job.identity.clone(),
        })
        .collect()
}

/// The final reply of a finished request.
pub fn final_reply(record: &RequestRecord) -> Reply {
    let results = job_results(record);
    let body = match record.state() {
        JobState::Succeeded => ReplyBody::Done { results },
        JobState::Cancelled => ReplyBody::Cancelled { results },
        _ => {
            let reasons = record
                .jobs
                .iter()
                .filter(|j| j.state == JobState::Failed)
                .map(|j| {
                    Reason::new(
                        "job_failed",
                        format!(
                            "job {} failed: {}",
                            j.job,
                            j.error.as_deref().unwrap_or("no reason given")
                        ),
                    )
                })
                .collect();
            ReplyBody::Failed { reasons, results }
        }
    };
    Reply::new(Some(record.request.to_string()), body)
}

/// The answer to an accepted request (`duplicate`: accepted before, so no new jobs were made).
pub fn accepted(record: &RequestRecord, duplicate: bool) -> Reply {
    Reply::new(
        Some(record.request.to_string()),
        ReplyBody::Accepted {
            jobs: record.jobs.iter().map(|j| j.job.to_string()).collect(),
            duplicate,
            plan: record.plan.explanation.clone(),
        },
    )
}

/// A job's progress while it runs: started, or at `step` of `total` steps with the renderer's preview.
pub fn progress(job: &JobId, step: Option<(u32, u32)>, preview: Option<&[u8]>) -> Reply {
    Reply::new(
        request_of(job).map(|r| r.to_string()),
        ReplyBody::Progress {
            job: job.to_string(),
            state: JobState::Running,
            step: step.map(|(step, _)| step),
            total: step.map(|(_, total)| total),
            preview_png_base64: preview.map(base64),
        },
    )
}

/// Where an unfinished request stands, for the first event of its event stream.
pub fn standing(record: &RequestRecord) -> Reply {
    Reply::new(
        Some(record.request.to_string()),
        ReplyBody::Progress {
            job: String::new(),
            state: record.state(),
            step: None,
            total: None,
            preview_png_base64: None,
        },
    )
}

/// Standard base64 (RFC 4648 section 4: the `+/` alphabet, padded with `=`) for previews
/// (`preview_png_base64` in replies and SSE events, docs/api.md).
pub fn base64(bytes: &[u8]) -> String {
    use ::base64::Engine as _;
    ::base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected);
        }
        // Both ends of the alphabet, which the URL-safe alphabet would write as `-` and `_`.
        assert_eq!(base64(&[0xFB, 0xFF, 0xBF]), "+/+/");
    }

    /// The hand-written encoder the crate replaced, kept as the reference the output must match.
    fn hand_written_base64(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
                if i <= chunk.len() {
                    out.push(ALPHABET[((n >> shift) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        #[test]
        fn base64_is_byte_identical_to_the_hand_written_encoder(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
        ) {
            proptest::prop_assert_eq!(base64(&bytes), hand_written_base64(&bytes));
        }
    }

    #[test]
    fn replies_are_tagged_json() {
        let reply = Reply::rejected(
            Some("r1".into()),
            vec![Reason::new("quota_exceeded", "too many").on_field("n")],
        );
        let json = serde_json::to_value(&reply).unwrap();
        assert_eq!(json["schema"], "reverie.reply.v1");
        assert_eq!(json["type"], "rejected");
        assert_eq!(json["reasons"][0]["field"], "n");
    }
}
