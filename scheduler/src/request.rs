//! Generation requests, schema v1: the JSON other services publish to the requests queue and POST to
//! `/v1/generations`. The wire format is documented by `docs/schemas/request.v1.json`; this module is
//! its executable twin, and `tests/request_schema.rs` keeps the two in step.
//!
//! Parsing happens in three steps so that every rejection names what was wrong: size and syntax,
//! then the schema version (before anything version-specific is interpreted), then the typed fields,
//! and finally the value rules, all of which are collected into one answer.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use reverie_shared::ids::{RequestId, TenantId};
use reverie_shared::jobs::{Priority, MAX_BEST_OF, MAX_IDENTITY_STRENGTH};

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

/// Why a request was refused. Each variant names the field or the limit involved.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum RequestError {
    #[error("request body is {bytes} bytes; the limit is {limit}")]
    TooLarge { bytes: usize, limit: usize },
    #[error("request is not valid JSON at line {line}, column {column}: {reason}")]
    MalformedJson {
        line: usize,
        column: usize,
        reason: String,
    },
    #[error("request must be a JSON object, found {found}")]
    NotAnObject { found: String },
    #[error("field `schema_version` is missing; this scheduler reads schema version {supported}")]
    MissingSchemaVersion { supported: u32 },
    #[error("unsupported schema_version {found}; this scheduler reads schema version {supported}")]
    UnsupportedSchemaVersion { found: String, supported: u32 },
    #[error("required field `{field}` is missing")]
    MissingField { field: String },
    #[error("unknown field `{field}`")]
    UnknownField { field: String },
    #[error("field has the wrong type or value: {reason}")]
    WrongType { reason: String },
    #[error("{}", describe(violations))]
    Invalid { violations: Vec<Violation> },
}

impl RequestError {
    /// A stable machine-readable code for replies ("missing_field", "invalid", ...).
    pub fn code(&self) -> &'static str {
        match self {
            RequestError::TooLarge { .. } => "too_large",
            RequestError::MalformedJson { .. } => "malformed_json",
            RequestError::NotAnObject { .. } => "not_an_object",
            RequestError::MissingSchemaVersion { .. } => "missing_schema_version",
            RequestError::UnsupportedSchemaVersion { .. } => "unsupported_schema_version",
            RequestError::MissingField { .. } => "missing_field",
            RequestError::UnknownField { .. } => "unknown_field",
            RequestError::WrongType { .. } => "wrong_type",
            RequestError::Invalid { .. } => "invalid",
        }
    }
}

/// One broken rule: the field (a JSON path such as `size.width`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub field: String,
    pub reason: String,
}

fn describe(violations: &[Violation]) -> String {
    let parts: Vec<String> = violations
        .iter()
        .map(|v| format!("`{}` {}", v.field, v.reason))
        .collect();
    format!("invalid request: {}", parts.join("; "))
}

/// Width and height in pixels; both multiples of 8 (the latent grid) within [`MIN_SIDE`]..=[`MAX_SIDE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Size {
    pub width: u32,
    pub height: u32,
}

/// What kind of work the request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KindName {
    Generate,
    AlbumToArt,
}

/// Turn an album of the tenant's photos into art.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlbumToArt {
    /// The source album's name.
    pub album: String,
    /// The art style to render every photo in ("watercolor").
    pub style: String,
    /// At most this many photos of the album.
    pub limit: u32,
    /// The album the results are written to, or `s3://bucket/prefix` of a bucket registered for the
    /// tenant.
    pub to: String,
}

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

/// One source of a refined request's parent replaced by another photo ("use this photo instead").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSwap {
    /// A photo the parent used (its id).
    pub photo: String,
    /// The tenant's photo to use in its place, in the same role.
    pub with: String,
}

/// At most this many swaps per refinement (a plan has only a handful of sources).
pub const MAX_SOURCE_SWAPS: usize = 16;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestKind {
    Generate,
    AlbumToArt(AlbumToArt),
}

/// The wire form of schema v1, field for field. Unknown fields are refused so a typo ("promt") is an
/// error rather than a silently missing prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestV1 {
    pub schema_version: u32,
    pub tenant: String,
    pub prompt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    pub n: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<Size>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guidance: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub style: Option<String>,
    pub priority: Priority,
    pub kind: KindName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub album_to_art: Option<AlbumToArt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refine_of: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_strength: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_of: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replace_sources: Vec<SourceSwap>,
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

    /// The wire form, as another service would publish it.
    pub fn to_wire(&self) -> RequestV1 {
        let (kind, album_to_art) = match &self.kind {
            RequestKind::Generate => (KindName::Generate, None),
            RequestKind::AlbumToArt(spec) => (KindName::AlbumToArt, Some(spec.clone())),
        };
        RequestV1 {
            schema_version: SCHEMA_VERSION,
            tenant: self.tenant.to_string(),
            prompt: self.prompt.clone(),
            negative_prompt: self.negative_prompt.clone(),
            n: self.variants,
            size: self.size,
            steps: self.steps,
            guidance: self.guidance,
            seed: self.seed,
            style: self.style.clone(),
            priority: self.priority,
            kind,
            album_to_art,
            refine_of: self.refine_of.as_ref().map(ToString::to_string),
            identity_strength: self.identity_strength,
            best_of: self.best_of,
            replace_sources: self.replace_sources.clone(),
        }
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

/// Why a text field is unacceptable, if it is: control characters (other than tab and newlines) and
/// bidirectional overrides, which can make a prompt display differently from what it says.
fn text_problem(text: &str, max_chars: usize) -> Option<String> {
    let chars = text.chars().count();
    if chars > max_chars {
        return Some(format!(
            "is {chars} characters long; the limit is {max_chars}"
        ));
    }
    let bad = text.chars().find(|c| {
        (c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
            || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    });
    bad.map(|c| format!("contains the control character U+{:04X}", u32::from(c)))
}

impl RequestV1 {
    /// Checks every value rule and collects all violations, so one reply lists everything to fix.
    pub fn validate(self) -> Result<GenerationRequest, RequestError> {
        let mut violations = Vec::new();
        let mut violation = |field: &str, reason: String| {
            violations.push(Violation {
                field: field.to_string(),
                reason,
            })
        };
        let tenant = TenantId::new(self.tenant.clone())
            .map_err(|e| violation("tenant", format!("is not a valid tenant id: {}", e.reason)))
            .ok();
        if self.prompt.trim().is_empty() && self.kind == KindName::Generate {
            violation("prompt", "is empty".to_string());
        }
        if let Some(problem) = text_problem(&self.prompt, MAX_PROMPT_CHARS) {
            violation("prompt", problem);
        }
        if let Some(problem) = self
            .negative_prompt
            .as_deref()
            .and_then(|n| text_problem(n, MAX_NEGATIVE_PROMPT_CHARS))
        {
            violation("negative_prompt", problem);
        }
        if !(1..=MAX_VARIANTS).contains(&self.n) {
            violation(
                "n",
                format!("is {}; it must be between 1 and {MAX_VARIANTS}", self.n),
            );
        }
        if let Some(size) = self.size {
            for (field, side) in [("size.width", size.width), ("size.height", size.height)] {
                if !(MIN_SIDE..=MAX_SIDE).contains(&side) {
                    violation(
                        field,
                        format!("is {side}; it must be between {MIN_SIDE} and {MAX_SIDE}"),
                    );
                } else if side % 8 != 0 {
                    violation(field, format!("is {side}; it must be a multiple of 8"));
                }
            }
        }
        if let Some(steps) = self.steps {
            if !(1..=MAX_STEPS).contains(&steps) {
                violation(
                    "steps",
                    format!("is {steps}; it must be between 1 and {MAX_STEPS}"),
                );
            }
        }
        if let Some(guidance) = self.guidance {
            if !(guidance.is_finite() && (0.0..=MAX_GUIDANCE).contains(&guidance)) {
                violation(
                    "guidance",
                    format!("is {guidance}; it must be between 0 and {MAX_GUIDANCE}"),
                );
            }
        }
        if let Some(problem) = self.style.as_deref().and_then(style_problem) {
            violation("style", problem);
        }
        if let Some(strength) = self.identity_strength {
            // NaN fails the range test too (every comparison with NaN is false).
            if !(strength.is_finite() && (0.0..=MAX_IDENTITY_STRENGTH).contains(&strength)) {
                violation(
                    "identity_strength",
                    format!(
                        "is {strength}; it must be a number between 0 (off) and {MAX_IDENTITY_STRENGTH}"
                    ),
                );
            }
        }
        if let Some(best_of) = self.best_of {
            if !(1..=MAX_BEST_OF).contains(&best_of) {
                violation(
                    "best_of",
                    format!("is {best_of}; it must be between 1 and {MAX_BEST_OF}"),
                );
            }
        }
        let refine_of = match self.refine_of.as_deref() {
            None => None,
            Some(id) => RequestId::new(id)
                .map_err(|e| {
                    violation(
                        "refine_of",
                        format!("is not a valid request id: {}", e.reason),
                    )
                })
                .ok(),
        };
        // Whether there is a parent to swap sources of is ingress's check: the HTTP refine route
        // names the parent in its path, not in `refine_of`.
        if self.replace_sources.len() > MAX_SOURCE_SWAPS {
            violation(
                "replace_sources",
                format!(
                    "has {} swaps; at most {MAX_SOURCE_SWAPS} are allowed",
                    self.replace_sources.len()
                ),
            );
        }
        for (i, swap) in self.replace_sources.iter().enumerate() {
            for (name, id) in [("photo", &swap.photo), ("with", &swap.with)] {
                if let Err(e) = reverie_shared::ids::PhotoId::parse(id) {
                    violation(
                        &format!("replace_sources[{i}].{name}"),
                        format!("is not a photo id: {e}"),
                    );
                }
            }
        }
        let kind = match (self.kind, self.album_to_art) {
            (KindName::Generate, None) => Some(RequestKind::Generate),
            (KindName::Generate, Some(_)) => {
                violation(
                    "album_to_art",
                    "is only allowed when kind is \"album_to_art\"".to_string(),
                );
                None
            }
            (KindName::AlbumToArt, None) => {
                violation(
                    "album_to_art",
                    "is required when kind is \"album_to_art\"".to_string(),
                );
                None
            }
            (KindName::AlbumToArt, Some(spec)) => {
                for (field, text) in [
                    ("album_to_art.album", &spec.album),
                    ("album_to_art.to", &spec.to),
                ] {
                    if text.trim().is_empty() {
                        violation(field, "is empty".to_string());
                    } else if let Some(problem) = text_problem(text, MAX_ALBUM_NAME_CHARS) {
                        violation(field, problem);
                    }
                }
                if let Some(problem) = style_problem(&spec.style) {
                    violation("album_to_art.style", problem);
                }
                if !(1..=MAX_ALBUM_LIMIT).contains(&spec.limit) {
                    violation(
                        "album_to_art.limit",
                        format!(
                            "is {}; it must be between 1 and {MAX_ALBUM_LIMIT}",
                            spec.limit
                        ),
                    );
                }
                if refine_of.is_some() {
                    violation(
                        "refine_of",
                        "cannot refine an album_to_art request".to_string(),
                    );
                }
                Some(RequestKind::AlbumToArt(spec))
            }
        };
        match (tenant, kind) {
            (Some(tenant), Some(kind)) if violations.is_empty() => Ok(GenerationRequest {
                tenant,
                prompt: self.prompt,
                negative_prompt: self.negative_prompt,
                variants: self.n,
                size: self.size,
                steps: self.steps,
                guidance: self.guidance,
                seed: self.seed,
                style: self.style,
                priority: self.priority,
                kind,
                refine_of,
                identity_strength: self.identity_strength,
                best_of: self.best_of,
                replace_sources: self.replace_sources,
            }),
            _ => Err(RequestError::Invalid { violations }),
        }
    }
}

fn style_problem(style: &str) -> Option<String> {
    if style.trim().is_empty() {
        return Some("is empty".to_string());
    }
    text_problem(style, MAX_STYLE_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> Value {
        serde_json::json!({
            "schema_version": 1,
            "tenant": "t1",
            "prompt": "me and my dog at sunset",
            "n": 2,
            "priority": "interactive",
            "kind": "generate"
        })
    }

    fn with(field: &str, value: Value) -> Vec<u8> {
        let mut request = minimal();
        request[field] = value;
        serde_json::to_vec(&request).unwrap_or_default()
    }

    fn violation_fields(error: RequestError) -> Vec<String> {
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

    #[test]
    fn limits_are_enforced_with_reasons() {
        let long = "a".repeat(MAX_PROMPT_CHARS + 1);
        let error = GenerationRequest::from_json(&with("prompt", Value::String(long))).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("2001 characters long; the limit is 2000"),
            "{error}"
        );
        let huge = "a".repeat(100 * 1024);
        let error = GenerationRequest::from_json(&with("prompt", Value::String(huge))).unwrap_err();
        assert_eq!(violation_fields(error), ["prompt"]);
        let error =
            GenerationRequest::from_json(&with("prompt", Value::String("a\u{0007}b".into())))
                .unwrap_err();
        assert!(error.to_string().contains("U+0007"), "{error}");
        let error =
            GenerationRequest::from_json(&with("n", serde_json::json!(10_000))).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("`n` is 10000; it must be between 1 and 16"),
            "{error}"
        );
        let error = GenerationRequest::from_json(&with(
            "size",
            serde_json::json!({"width": 500, "height": 4096}),
        ))
        .unwrap_err();
        assert_eq!(violation_fields(error), ["size.width", "size.height"]);
        let body = vec![b' '; MAX_REQUEST_BYTES + 1];
        assert!(matches!(
            GenerationRequest::from_json(&body),
            Err(RequestError::TooLarge { .. })
        ));
    }

    #[test]
    fn album_to_art_needs_its_object_and_only_then() {
        let error = GenerationRequest::from_json(&with("kind", serde_json::json!("album_to_art")))
            .unwrap_err();
        assert_eq!(violation_fields(error), ["album_to_art"]);
        let spec = serde_json::json!({"album": "Hawaii", "style": "watercolor", "limit": 20, "to": "Hawaii art"});
        let error = GenerationRequest::from_json(&with("album_to_art", spec.clone())).unwrap_err();
        assert_eq!(violation_fields(error), ["album_to_art"]);
        let mut request = minimal();
        request["kind"] = serde_json::json!("album_to_art");
        request["album_to_art"] = spec;
        let body = serde_json::to_vec(&request).unwrap_or_default();
        let parsed = GenerationRequest::from_json(&body).expect("valid album_to_art");
        assert!(matches!(
            parsed.kind,
            RequestKind::AlbumToArt(AlbumToArt { limit: 20, .. })
        ));
    }

    #[test]
    fn every_violation_is_reported_at_once() {
        let mut request = minimal();
        request["n"] = serde_json::json!(0);
        request["steps"] = serde_json::json!(1000);
        request["tenant"] = serde_json::json!("../other");
        request["guidance"] = serde_json::json!(-1.0);
        let body = serde_json::to_vec(&request).unwrap_or_default();
        let fields = violation_fields(GenerationRequest::from_json(&body).unwrap_err());
        assert_eq!(fields, ["tenant", "n", "steps", "guidance"]);
    }

    #[test]
    fn identity_strength_and_best_of_are_optional_and_bounded() {
        let old = GenerationRequest::from_json(&serde_json::to_vec(&minimal()).unwrap()).unwrap();
        assert_eq!((old.identity_strength, old.best_of), (None, None));
        let mut request = minimal();
        request["identity_strength"] = serde_json::json!(2.5);
        request["best_of"] = serde_json::json!(4);
        let body = serde_json::to_vec(&request).unwrap();
        let parsed = GenerationRequest::from_json(&body).expect("valid");
        assert_eq!(
            (parsed.identity_strength, parsed.best_of),
            (Some(2.5), Some(4))
        );
        assert_eq!(
            GenerationRequest::from_json(&parsed.to_json()).unwrap(),
            parsed
        );
        for (field, value, message) in [
            (
                "identity_strength",
                serde_json::json!(-0.5),
                "`identity_strength` is -0.5",
            ),
            (
                "identity_strength",
                serde_json::json!(21),
                "between 0 (off) and 20",
            ),
            (
                "best_of",
                serde_json::json!(0),
                "`best_of` is 0; it must be between 1 and 8",
            ),
            ("best_of", serde_json::json!(9), "`best_of` is 9"),
        ] {
            let error = GenerationRequest::from_json(&with(field, value)).unwrap_err();
            assert!(error.to_string().contains(message), "{error}");
            assert_eq!(violation_fields(error), [field]);
        }
        // JSON has no NaN; a NaN that reaches validation another way is refused all the same.
        let mut wire = parsed.to_wire();
        wire.identity_strength = Some(f32::NAN);
        assert_eq!(
            violation_fields(wire.validate().unwrap_err()),
            ["identity_strength"]
        );
        let error =
            GenerationRequest::from_json(&with("best_of", serde_json::json!(-1))).unwrap_err();
        assert!(matches!(error, RequestError::WrongType { .. }), "{error:?}");
    }
}
