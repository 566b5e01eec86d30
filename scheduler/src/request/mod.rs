//! Generation requests, schema v1: the JSON other services publish to the requests queue and POST to
//! `/v1/generations`. The wire format is documented by `docs/schemas/request.v1.json`; this module is
//! its executable twin, and `tests/request_schema.rs` keeps the two in step.
//!
//! Parsing happens in three steps so that every rejection names what was wrong: size and syntax,
//! then the schema version (before anything version-specific is interpreted), then the typed fields,
//! and finally the value rules, all of which are collected into one answer. This module holds the
//! steps and the validated [`GenerationRequest`]; `wire` the schema's form field for field and the
//! conversions between it and the validated request (the value rules); `error` the answers.

mod error;
mod wire;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use reverie_shared::ids::{RequestId, TenantId};
use reverie_shared::jobs::Priority;

pub use error::{RequestError, Violation};
pub use wire::{AlbumToArt, KindName, RequestV1, Size, SourceSwap, MAX_SOURCE_SWAPS};

/// The only schema version this scheduler reads.
pub const SCHEMA_VERSION: u32 = 1;
/// Bodies above this are refused before parsing; generous so that an over-long prompt is reported as
/// such rather than as an over-large body.
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;
/// Characters (Unicode scalar values, as JSON Schema's `maxLength` counts them).
pub const MAX_PROMPT_CHARS: usize = 2000;
pub const MAX_NEGATIVE_PROMPT_CHARS: usize = 1000;
pub const MAX_STYLE_CHARS: usize = 200;
pub const MAX_ALBUM_NAME_CHARS: usize = 200;
pub const MAX_VARIANTS: u32 = 16;
pub const MIN_SIDE: u32 = 64;
pub const MAX_SIDE: u32 = 2048;
pub const MAX_STEPS: u32 = 150;
pub const MAX_GUIDANCE: f32 = 30.0;
pub const MAX_ALBUM_LIMIT: u32 = 1000;

/// The validated request.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationRequest {
    pub tenant: TenantId,
    pub prompt: String,
    pub negative_prompt: Option<String>,
    pub variants: u32,
    pub size: Option<Size>,
    pub steps: Option<u32>,
    pub guidance: Option<f32>,
    pub seed: Option<u64>,
    pub style: Option<String>,
    pub priority: Priority,
    pub kind: RequestKind,
    pub refine_of: Option<RequestId>,
    /// Identity guidance strength, 0 (off) to [`MAX_IDENTITY_STRENGTH`]; `None` = off.
    pub identity_strength: Option<f32>,
    /// Candidates per image, 1 to [`MAX_BEST_OF`]; `None` = 1.
    pub best_of: Option<u32>,
    /// For refinements: parent sources to replace with other photos of the library.
    pub replace_sources: Vec<SourceSwap>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestKind {
    Generate,
    AlbumToArt(AlbumToArt),
}

impl GenerationRequest {
    /// Parses and validates a request body.
    pub fn from_json(body: &[u8]) -> Result<GenerationRequest, RequestError> {
        if body.len() > MAX_REQUEST_BYTES {
            return Err(RequestError::TooLarge {
                bytes: body.len(),
                limit: MAX_REQUEST_BYTES,
            });
        }
        let value: Value =
            serde_json::from_slice(body).map_err(|e| RequestError::MalformedJson {
                line: e.line(),
                column: e.column(),
                reason: e.to_string(),
            })?;
        Self::from_value(value)
    }

    /// Validates an already parsed JSON value.
    pub fn from_value(mut value: Value) -> Result<GenerationRequest, RequestError> {
        // JSON (and JSON Schema) do not distinguish 2 from 2.0; serde's integer types do.
        integral_floats_to_integers(&mut value);
        let Value::Object(object) = &value else {
            return Err(RequestError::NotAnObject {
                found: json_type(&value).to_string(),
            });
        };
        match object.get("schema_version") {
            None => {
                return Err(RequestError::MissingSchemaVersion {
                    supported: SCHEMA_VERSION,
                })
            }
            Some(Value::Number(n)) if n.as_u64() == Some(u64::from(SCHEMA_VERSION)) => {}
            Some(other) => {
                return Err(RequestError::UnsupportedSchemaVersion {
                    found: other.to_string().chars().take(40).collect(),
                    supported: SCHEMA_VERSION,
                })
            }
        }
        let wire: RequestV1 =
            serde_json::from_value(value).map_err(|e| classify_serde_error(&e))?;
        wire.validate()
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain owned data with string keys cannot fail.
        serde_json::to_vec(&self.to_wire()).unwrap_or_default()
    }
}

impl Serialize for GenerationRequest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_wire().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for GenerationRequest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        GenerationRequest::from_value(value).map_err(serde::de::Error::custom)
    }
}

/// Rewrites numbers such as `2.0` as the integer `2`, everywhere in the document.
fn integral_floats_to_integers(value: &mut Value) {
    match value {
        Value::Number(number) => {
            let integral = number
                .as_f64()
                .filter(|f| number.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15);
            if let Some(float) = integral {
                // Exact: the float is integral and well within i64's range.
                *number = serde_json::Number::from(float as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats_to_integers),
        Value::Object(fields) => fields.values_mut().for_each(integral_floats_to_integers),
        Value::Null | Value::Bool(_) | Value::String(_) => {}
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Turns serde's messages into the error kinds replies distinguish.
fn classify_serde_error(error: &serde_json::Error) -> RequestError {
    let message = error.to_string();
    let quoted = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
            .map(str::to_string)
    };
    if let Some(field) = quoted("missing field `") {
        return RequestError::MissingField { field };
    }
    if let Some(field) = quoted("unknown field `") {
        return RequestError::UnknownField { field };
    }
    RequestError::WrongType { reason: message }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn minimal() -> Value {
        serde_json::json!({
            "schema_version": 1,
            "tenant": "t1",
            "prompt": "me and my dog at sunset",
            "n": 2,
            "priority": "interactive",
            "kind": "generate"
        })
    }

    pub(super) fn with(field: &str, value: Value) -> Vec<u8> {
        let mut request = minimal();
        request[field] = value;
        serde_json::to_vec(&request).unwrap_or_default()
    }

    pub(super) fn violation_fields(error: RequestError) -> Vec<String> {
        match error {
            RequestError::Invalid { violations } => {
                violations.into_iter().map(|v| v.field).collect()
            }
            other => panic!("expected violations, got {other:?}"),
        }
    }

    #[test]
    fn a_minimal_request_is_accepted_and_round_trips() {
        let body = serde_json::to_vec(&minimal()).unwrap_or_default();
        let request = GenerationRequest::from_json(&body).expect("valid request");
        assert_eq!(request.variants, 2);
        assert_eq!(request.kind, RequestKind::Generate);
        let again = GenerationRequest::from_json(&request.to_json()).expect("round trip");
        assert_eq!(again, request);
    }

    #[test]
    fn malformed_json_names_line_and_column() {
        let error =
            GenerationRequest::from_json(b"{\"schema_version\": 1,\n \"tenant\": }").unwrap_err();
        assert!(
            matches!(error, RequestError::MalformedJson { line: 2, .. }),
            "{error:?}"
        );
        assert_eq!(error.code(), "malformed_json");
    }

    #[test]
    fn schema_version_is_checked_first() {
        let error = GenerationRequest::from_json(&with("schema_version", serde_json::json!(2)))
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "unsupported schema_version 2; this scheduler reads schema version 1"
        );
        let error = GenerationRequest::from_json(br#"{"prompt": "x"}"#).unwrap_err();
        assert!(matches!(error, RequestError::MissingSchemaVersion { .. }));
        let error = GenerationRequest::from_json(b"[1, 2]").unwrap_err();
        assert!(matches!(error, RequestError::NotAnObject { .. }));
    }

    #[test]
    fn missing_and_unknown_fields_are_named() {
        let mut request = minimal();
        request.as_object_mut().map(|o| o.remove("tenant"));
        let body = serde_json::to_vec(&request).unwrap_or_default();
        let error = GenerationRequest::from_json(&body).unwrap_err();
        assert_eq!(
            error,
            RequestError::MissingField {
                field: "tenant".into()
            }
        );
        let error =
            GenerationRequest::from_json(&with("promt", serde_json::json!("x"))).unwrap_err();
        assert_eq!(
            error,
            RequestError::UnknownField {
                field: "promt".into()
            }
        );
        let error = GenerationRequest::from_json(&with("n", serde_json::json!("two"))).unwrap_err();
        assert!(matches!(error, RequestError::WrongType { .. }), "{error:?}");
    }
}
