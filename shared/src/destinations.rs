//! A tenant's own output buckets. Outputs go only to the tenant's own storage: by default that is the
//! tenant's prefix of Reverie's store; an operator may also register buckets the tenant owns
//! (`reverie tenant add-destination T s3://bucket/prefix`), and album runs may then deliver there
//! (`reverie batch --to s3://bucket/prefix/...`). The scheduler refuses an unregistered destination and
//! the worker checks again before it writes, so a forged job cannot send a tenant's images elsewhere.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::ids::TenantId;
use crate::keys;
use crate::ports::store::{validate_bucket, validate_key, ObjectStore, SharedStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    #[error("{url:?} is not an s3://bucket/prefix destination: {reason}")]
    Invalid { url: String, reason: String },
    #[error("{url:?} is not one of tenant {tenant}'s registered output destinations")]
    NotRegistered { url: String, tenant: TenantId },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A bucket and a key prefix in it (no leading or trailing `/`; empty for the whole bucket).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub bucket: String,
    pub prefix: String,
}

impl Destination {
    /// Parses `s3://bucket[/prefix]`, refusing bucket names S3 would refuse and prefixes that could
    /// escape (`..`, empty segments).
    pub fn parse(url: &str) -> Result<Destination, DestinationError> {
        let invalid = |reason: &str| DestinationError::Invalid {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| invalid("it must start with s3://"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        validate_bucket(bucket).map_err(|e| invalid(&e.to_string()))?;
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty() {
            validate_key(prefix).map_err(|e| invalid(&e.to_string()))?;
        }
        Ok(Destination {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }

    pub fn is_url(text: &str) -> bool {
        text.starts_with("s3://")
    }

    pub fn url(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }

    /// Whether `inner` is this destination or lies under it (whole path segments only).
    pub fn contains(&self, inner: &Destination) -> bool {
        self.bucket == inner.bucket
            && (self.prefix.is_empty()
                || inner.prefix == self.prefix
                || inner.prefix.starts_with(&format!("{}/", self.prefix)))
    }

    /// The key of `name` inside this destination.
    pub fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }
}

/// What an operator registered for one tenant, kept at `tenants/{tenant}/destinations.json` (so that
/// forgetting the tenant forgets it too).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantDestinations {
    pub destinations: Vec<String>,
}

impl TenantDestinations {
    pub async fn load(
        store: &dyn ObjectStore,
        tenant: &TenantId,
    ) -> Result<TenantDestinations, DestinationError> {
        match store.get(&keys::tenant_destinations(tenant)).await {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                DestinationError::Store(StoreError::Backend {
                    backend: store.backend(),
                    operation: "parse",
                    key: keys::tenant_destinations(tenant),
                    detail: e.to_string(),
                })
            }),
            Err(e) if e.is_not_found() => Ok(TenantDestinations::default()),
            Err(e) => Err(e.into()),
        }
    }

    /// Registers `url` for `tenant` (idempotent) and returns the parsed destination.
    pub async fn register(
        store: &dyn ObjectStore,
        tenant: &TenantId,
        url: &str,
    ) -> Result<Destination, DestinationError> {
        let destination = Destination::parse(url)?;
        let mut registered = TenantDestinations::load(store, tenant).await?;
        if !registered.destinations.contains(&destination.url()) {
            registered.destinations.push(destination.url());
            registered.destinations.sort();
            let body = serde_json::to_vec_pretty(&registered).expect("plain data serialises");
            store
                .put(&keys::tenant_destinations(tenant), Bytes::from(body))
                .await?;
        }
        Ok(destination)
    }

    /// `url` parsed, if it lies inside one of the registered destinations.
    pub fn allow(&self, tenant: &TenantId, url: &str) -> Result<Destination, DestinationError> {
        let wanted = Destination::parse(url)?;
        let registered = self
            .destinations
            .iter()
            .filter_map(|d| Destination::parse(d).ok())
            .any(|d| d.contains(&wanted));
        if registered {
            Ok(wanted)
        } else {
            Err(DestinationError::NotRegistered {
                url: url.to_string(),
                tenant: tenant.clone(),
            })
        }
    }
}

/// Where outputs of one tenant go: a prefix of Reverie's own store, or a registered bucket of theirs.
#[derive(Debug, Clone)]
pub enum OutputPlace {
    /// A prefix (ending in `/`) inside the tenant's part of Reverie's store.
    Tenant(String),
    /// The tenant's own bucket, checked against the registrations.
    Bucket {
        store: SharedStore,
        destination: Destination,
    },
}

impl OutputPlace {
    /// Resolves a job's destination: `s3://…` must be registered for `tenant`; anything else is a key
    /// prefix that must lie inside the tenant's prefix.
    pub async fn resolve(
        store: &dyn ObjectStore,
        tenant: &TenantId,
        destination: &str,
    ) -> Result<OutputPlace, DestinationError> {
        if Destination::is_url(destination) {
            let registered = TenantDestinations::load(store, tenant).await?;
            let destination = registered.allow(tenant, destination)?;
            let bucket = store.other_bucket(&destination.bucket)?;
            return Ok(OutputPlace::Bucket {
                store: bucket,
                destination,
            });
        }
        let prefix = format!("{}/", destination.trim_end_matches('/'));
        if !prefix.starts_with(&keys::tenant_prefix(tenant)) {
            return Err(DestinationError::Invalid {
                url: destination.to_string(),
                reason: format!("not inside tenant {tenant}'s storage"),
            });
        }
        Ok(OutputPlace::Tenant(prefix))
    }

    /// The store to write `name` to and its key there.
    pub fn locate<'a>(
        &'a self,
        main: &'a dyn ObjectStore,
        name: &str,
    ) -> (&'a dyn ObjectStore, String) {
        match self {
            OutputPlace::Tenant(prefix) => (main, format!("{prefix}{name}")),
            OutputPlace::Bucket { store, destination } => (store.as_ref(), destination.key(name)),
        }
    }

    /// How the place is named in provenance and manifests (`s3://bucket/key` for a tenant's bucket).
    pub fn describe(&self, name: &str) -> String {
        match self {
            OutputPlace::Tenant(prefix) => format!("{prefix}{name}"),
            OutputPlace::Bucket { destination, .. } => {
                format!("s3://{}/{}", destination.bucket, destination.key(name))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks_containment() {
        let root = Destination::parse("s3://ann-photos/art/").unwrap();
        assert_eq!(root.prefix, "art");
        assert!(root.contains(&Destination::parse("s3://ann-photos/art/hawaii").unwrap()));
        assert!(root.contains(&Destination::parse("s3://ann-photos/art").unwrap()));
        assert!(!root.contains(&Destination::parse("s3://ann-photos/artwork").unwrap()));
        assert!(!root.contains(&Destination::parse("s3://bob-photos/art").unwrap()));
        let whole = Destination::parse("s3://ann-photos").unwrap();
        assert!(whole.contains(&root));
        assert_eq!(root.key("a.png"), "art/a.png");
    }

    #[test]
    fn refuses_malformed_urls() {
        for bad in [
            "ann-photos/art",
            "s3://",
            "s3://UPPER/x",
            "s3://ann-photos/../bob",
            "s3://ann-photos//x",
        ] {
            assert!(Destination::parse(bad).is_err(), "{bad} is refused");
        }
    }

    #[test]
    fn only_registered_destinations_are_allowed() {
        let tenant = TenantId::new("ann").unwrap();
        let registered = TenantDestinations {
            destinations: vec!["s3://ann-photos/art".into()],
        };
        assert!(registered
            .allow(&tenant, "s3://ann-photos/art/italy")
            .is_ok());
        let error = registered
            .allow(&tenant, "s3://bob-photos/art")
            .unwrap_err();
        assert!(
            error.to_string().contains("not one of tenant ann's"),
            "{error}"
        );
    }
}
