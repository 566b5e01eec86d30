//! Why a request was refused: one error per step of parsing, and for the value rules every broken
//! rule at once.

use serde::{Deserialize, Serialize};

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
