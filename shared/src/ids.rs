//! Identifiers shared by every role. Each is a validated newtype so a tenant id can never be passed
//! where a photo id is expected, and so no id can smuggle a `/` into an object-store key.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: {reason}")]
pub struct InvalidId {
    pub kind: &'static str,
    pub value: String,
    pub reason: &'static str,
}

/// Tenant ids, shard ids and request ids share one alphabet: safe in keys, queue names and URLs.
fn check_token(kind: &'static str, value: &str, max_len: usize) -> Result<(), InvalidId> {
    let fail = |reason| {
        Err(InvalidId {
            kind,
            value: value.chars().take(80).collect(),
            reason,
        })
    };
    if value.is_empty() {
        return fail("empty");
    }
    if value.len() > max_len {
        return fail("too long");
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return fail("only ASCII letters, digits, '-', '_' and '.' are allowed");
    }
    if value.starts_with('.') {
        return fail("must not start with '.'");
    }
    Ok(())
}

macro_rules! token_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Result<Self, InvalidId> {
                let value = value.into();
                check_token($kind, &value, $max)?;
                Ok(Self(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(value: String) -> Result<Self, InvalidId> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, InvalidId> {
                Self::new(s)
            }
        }
    };
}

token_id!(
    /// A tenant: one person's or one customer's isolated library.
    TenantId, "tenant id", 64
);
token_id!(
    /// A shard of a tenant's library (a tar of photos and their metadata).
    ShardId, "shard id", 128
);
token_id!(
    /// A request from a person or a service; the idempotency key of everything it causes.
    RequestId, "request id", 128
);
token_id!(
    /// A job: derived from the request id and the job's index so a retry overwrites, never duplicates.
    JobId, "job id", 160
);

impl JobId {
    /// The job id of the `index`-th job of a request.
    pub fn for_request(request: &RequestId, index: u32) -> JobId {
        JobId(format!("{}.{index}", request.as_str()))
    }
}

impl RequestId {
    /// A fresh random request id for callers that bring none.
    pub fn random() -> RequestId {
        RequestId(uuid::Uuid::new_v4().simple().to_string())
    }
}

/// A photo is its content: the SHA-256 of its bytes, as 64 lowercase hex digits. The same bytes imported
/// twice under different names are one photo.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhotoId(String);

impl PhotoId {
    pub fn of_bytes(bytes: &[u8]) -> PhotoId {
        PhotoId(hex::encode(Sha256::digest(bytes)))
    }

    pub fn parse(value: &str) -> Result<PhotoId, InvalidId> {
        let ok = value.len() == 64
            && value
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
        if ok {
            Ok(PhotoId(value.to_string()))
        } else {
            Err(InvalidId {
                kind: "photo id",
                value: value.chars().take(80).collect(),
                reason: "must be 64 lowercase hex digits (a SHA-256)",
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex digits: enough to tell photos apart in logs.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

impl TryFrom<String> for PhotoId {
    type Error = InvalidId;
    fn try_from(value: String) -> Result<Self, InvalidId> {
        PhotoId::parse(&value)
    }
}

impl From<PhotoId> for String {
    fn from(id: PhotoId) -> String {
        id.0
    }
}

impl fmt::Display for PhotoId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_reject_path_tricks() {
        assert!(TenantId::new("alice").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "a b", "ä"] {
            assert!(TenantId::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn photo_id_is_content_hash() {
        let a = PhotoId::of_bytes(b"same bytes");
        assert_eq!(a, PhotoId::of_bytes(b"same bytes"));
        assert_ne!(a, PhotoId::of_bytes(b"other bytes"));
        assert_eq!(PhotoId::parse(a.as_str()).unwrap(), a);
        assert!(PhotoId::parse("XYZ").is_err());
    }

    #[test]
    fn job_ids_derive_from_request() {
        let request = RequestId::new("req-1").unwrap();
        assert_eq!(JobId::for_request(&request, 3).as_str(), "req-1.3");
    }
}
