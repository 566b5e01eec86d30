//! Schema v1 on the wire, field for field, and the one conversion each way between it and the
//! validated [`GenerationRequest`]: [`RequestV1::validate`] checks every value rule on the way in,
//! [`GenerationRequest::to_wire`] writes the wire form on the way out.

use serde::{Deserialize, Serialize};

use reverie_shared::ids::{RequestId, TenantId};
use reverie_shared::jobs::{Priority, MAX_BEST_OF, MAX_IDENTITY_STRENGTH};

use super::{
    GenerationRequest, RequestError, RequestKind, Violation, MAX_ALBUM_LIMIT, MAX_ALBUM_NAME_CHARS,
    MAX_GUIDANCE, MAX_NEGATIVE_PROMPT_CHARS, MAX_PROMPT_CHARS, MAX_SIDE, MAX_STEPS,
    MAX_STYLE_CHARS, MAX_VARIANTS, MIN_SIDE, SCHEMA_VERSION,
};

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
    use super::super::tests::{minimal, violation_fields, with};
    use super::*;
    use crate::request::MAX_REQUEST_BYTES;
    use serde_json::Value;

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
