//! Tenants: API tokens (only their SHA-256 is stored), the broker users bound to a tenant, consent per
//! source, and forgetting a tenant.
//!
//! State lives in the object store at `tenants/{t}/tenant.json` (durable, the truth) with a read-through
//! copy in the cache at `reverie:{t}:tenant`. Writes go to the store first, then refresh the cache, so a
//! crash between the two leaves a stale cache entry that the next write replaces, never a lost grant.
//!
//! A token reads `{tenant}:{secret}`: the tenant part finds the record without an index, the secret (256
//! random bits as hex) is compared by hash in constant time against every unexpired token of the tenant.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use reverie_shared::ids::TenantId;
use reverie_shared::keys;
use reverie_shared::ports::cache::SharedCache;
use reverie_shared::ports::store::SharedStore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{from_json, to_json, Result, SchedulerError};

/// The consent source covering the whole library; albums are `album:{name}`.
pub const LIBRARY_SOURCE: &str = "library";

/// How long the cache keeps a tenant record before reading the store again.
const TENANT_CACHE_TTL: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// A short public id to list and revoke tokens by (the first 8 hex digits of the hash).
    pub id: String,
    /// SHA-256 of the secret part, as hex.
    pub sha256: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub label: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentRecord {
    pub granted: bool,
    pub changed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: TenantId,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub tokens: Vec<TokenRecord>,
    /// Broker users (the AMQP `user_id` property, validated by RabbitMQ) whose requests act for this tenant.
    #[serde(default)]
    pub amqp_users: Vec<String>,
    /// Consent by source (`library`, `album:{name}`); revoked sources stay listed with `granted: false`.
    #[serde(default)]
    pub consents: BTreeMap<String, ConsentRecord>,
}

impl Tenant {
    /// Whether generation may use a photo that belongs to `albums`: consent for the whole library, or for
    /// one of the albums the photo is in.
    pub fn may_use(&self, albums: &[String]) -> bool {
        let granted = |source: &str| self.consents.get(source).is_some_and(|c| c.granted);
        granted(LIBRARY_SOURCE) || albums.iter().any(|album| granted(&album_source(album)))
    }

    pub fn granted_sources(&self) -> Vec<String> {
        self.consents
            .iter()
            .filter(|(_, c)| c.granted)
            .map(|(source, _)| source.clone())
            .collect()
    }
}

pub fn album_source(album: &str) -> String {
    format!("album:{album}")
}

/// Checks a consent source name: `library` or `album:{name}` with a non-empty name.
pub fn validate_source(source: &str) -> std::result::Result<(), String> {
    if source == LIBRARY_SOURCE {
        return Ok(());
    }
    match source.strip_prefix("album:") {
        Some(name) if !name.trim().is_empty() && !name.chars().any(char::is_control) => Ok(()),
        _ => Err(format!(
            "consent source {source:?} must be \"library\" or \"album:NAME\""
        )),
    }
}

/// Why a token was not accepted. Each says what is wrong without revealing anything secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials: send a bearer token (HTTP) or an x-reverie-token header (AMQP)")]
    Missing,
    #[error("malformed token: expected TENANT:SECRET")]
    Malformed,
    #[error("unknown tenant {0:?}")]
    UnknownTenant(String),
    #[error("invalid token for tenant {0:?}")]
    Invalid(String),
    #[error("token for tenant {0:?} expired at {1}")]
    Expired(String, String),
    #[error("broker user {0:?} is not bound to any tenant")]
    UnboundUser(String),
    #[error("credentials name tenant {authenticated:?} but the request names {requested:?}")]
    TenantMismatch {
        authenticated: String,
        requested: String,
    },
    #[error("could not check credentials: {0}")]
    Unavailable(String),
}

impl AuthError {
    /// Machine-readable code for replies.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "unauthenticated",
            AuthError::Malformed | AuthError::Invalid(_) => "invalid_token",
            AuthError::UnknownTenant(_) => "unknown_tenant",
            AuthError::Expired(..) => "token_expired",
            AuthError::UnboundUser(_) => "unbound_user",
            AuthError::TenantMismatch { .. } => "tenant_mismatch",
            AuthError::Unavailable(_) => "unavailable",
        }
    }
}

/// What `forget` deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ForgetReport {
    pub tenant: String,
    pub store_objects_deleted: u64,
    pub cache_keys_deleted: u64,
    pub jobs_cancelled: u64,
}

fn tenant_key(tenant: &TenantId) -> String {
    format!("{}tenant.json", keys::tenant_prefix(tenant))
}

fn tenant_cache_key(tenant: &TenantId) -> String {
    format!("{}tenant", keys::tenant_cache_prefix(tenant))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Compares two byte strings in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// 256 random bits from the OS generator (through two v4 UUIDs, which use getrandom), as hex.
fn random_secret() -> String {
    let first = uuid::Uuid::new_v4();
    let second = uuid::Uuid::new_v4();
    // v4 UUIDs carry 122 random bits each; hashing both spreads them over 256 bits of output.
    let mut hasher = Sha256::new();
    hasher.update(first.as_bytes());
    hasher.update(second.as_bytes());
    hex::encode(hasher.finalize())
}

#[derive(Debug, Clone)]
pub struct Tenants {
    store: SharedStore,
    cache: SharedCache,
}

impl Tenants {
    pub fn new(store: SharedStore, cache: SharedCache) -> Tenants {
        Tenants { store, cache }
    }

    /// Reads a tenant through the cache; `None` when it does not exist.
    pub async fn get(&self, tenant: &TenantId) -> Result<Option<Tenant>> {
        let cache_key = tenant_cache_key(tenant);
        match self.cache.get(&cache_key).await {
            Ok(Some(bytes)) => {
                if let Ok(record) = serde_json::from_slice::<Tenant>(&bytes) {
                    return Ok(Some(record));
                }
            }
            Ok(None) => {}
            // The store is the truth; a cache outage only costs a slower read.
            Err(error) => tracing::warn!(%error, tenant = %tenant, "tenant cache read failed"),
        }
        let key = tenant_key(tenant);
        let bytes = match self.store.get(&key).await {
            Ok(bytes) => bytes,
            Err(error) if error.is_not_found() => return Ok(None),
            Err(error) => return Err(error.into()),
        };
        let record: Tenant = from_json(&key, &bytes)?;
        if let Err(error) = self
            .cache
            .set(&cache_key, bytes, Some(TENANT_CACHE_TTL))
            .await
        {
            tracing::warn!(%error, tenant = %tenant, "tenant cache fill failed");
        }
        Ok(Some(record))
    }

    pub async fn require(&self, tenant: &TenantId) -> Result<Tenant> {
        self.get(tenant)
            .await?
            .ok_or_else(|| SchedulerError::UnknownTenant(tenant.to_string()))
    }

    async fn save(&self, record: &Tenant) -> Result<()> {
        let bytes = Bytes::from(to_json("tenant record", record)?);
        self.store
            .put(&tenant_key(&record.id), bytes.clone())
            .await?;
        self.cache
            .set(&tenant_cache_key(&record.id), bytes, Some(TENANT_CACHE_TTL))
            .await?;
        Ok(())
    }

    /// Creates a tenant with no tokens and no consent.
    pub async fn create(&self, tenant: &TenantId) -> Result<Tenant> {
        if self.get(tenant).await?.is_some() {
            return Err(SchedulerError::TenantExists(tenant.to_string()));
        }
        let record = Tenant {
            id: tenant.clone(),
            created_at: Utc::now(),
            tokens: Vec::new(),
            amqp_users: Vec::new(),
            consents: BTreeMap::new(),
        };
        self.save(&record).await?;
        Ok(record)
    }

    /// Issues a new token; the returned string is the only time the secret exists outside its holder.
    pub async fn issue_token(
        &self,
        tenant: &TenantId,
        ttl: Option<Duration>,
        label: Option<String>,
    ) -> Result<String> {
        let mut record = self.require(tenant).await?;
        let secret = random_secret();
        let sha256 = sha256_hex(secret.as_bytes());
        let now = Utc::now();
        let expires_at = ttl
            .and_then(|ttl| chrono::Duration::from_std(ttl).ok())
            .map(|ttl| now + ttl);
        record.tokens.push(TokenRecord {
            id: sha256[..8].to_string(),
            sha256,
            created_at: now,
            expires_at,
            label,
        });
        self.save(&record).await?;
        Ok(format!("{tenant}:{secret}"))
    }

    /// Removes a token by its public id; returns whether it existed.
    pub async fn revoke_token(&self, tenant: &TenantId, token_id: &str) -> Result<bool> {
        let mut record = self.require(tenant).await?;
        let before = record.tokens.len();
        record.tokens.retain(|t| t.id != token_id);
        let removed = record.tokens.len() != before;
        if removed {
            self.save(&record).await?;
        }
        Ok(removed)
    }

    /// Resolves a presented token to its tenant.
    pub async fn authenticate(&self, token: &str) -> std::result::Result<Tenant, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let (tenant, secret) = token.split_once(':').ok_or(AuthError::Malformed)?;
        let tenant_id = TenantId::new(tenant).map_err(|_| AuthError::Malformed)?;
        let record = self
            .get(&tenant_id)
            .await
            .map_err(|e| AuthError::Unavailable(e.to_string()))?;
        let presented = sha256_hex(secret.as_bytes());
        // An unknown tenant is answered exactly as a wrong secret (same code, message and work), so a
        // caller cannot learn which tenants exist.
        let Some(record) = record else {
            let _ = constant_time_eq(presented.as_bytes(), presented.as_bytes());
            return Err(AuthError::Invalid(tenant.to_string()));
        };
        // Every token is compared (no early exit), so timing says nothing about which one nearly matched.
        let matched = record
            .tokens
            .iter()
            .filter(|t| constant_time_eq(t.sha256.as_bytes(), presented.as_bytes()))
            .fold(None, |_, t| Some(t.clone()));
        let Some(matched) = matched else {
            return Err(AuthError::Invalid(tenant.to_string()));
        };
        if let Some(expires_at) = matched.expires_at {
            if expires_at <= Utc::now() {
                return Err(AuthError::Expired(
                    tenant.to_string(),
                    expires_at.to_rfc3339(),
                ));
            }
        }
        Ok(record)
    }

    /// Lets requests published by broker user `user` act for `tenant`.
    pub async fn bind_amqp_user(&self, tenant: &TenantId, user: &str) -> Result<()> {
        let mut record = self.require(tenant).await?;
        if !record.amqp_users.iter().any(|u| u == user) {
            record.amqp_users.push(user.to_string());
            self.save(&record).await?;
        }
        Ok(())
    }

    /// Sets consent for one source; returns the updated tenant.
    pub async fn set_consent(
        &self,
        tenant: &TenantId,
        source: &str,
        granted: bool,
    ) -> Result<Tenant> {
        let mut record = self.require(tenant).await?;
        record.consents.insert(
            source.to_string(),
            ConsentRecord {
                granted,
                changed_at: Utc::now(),
            },
        );
        self.save(&record).await?;
        Ok(record)
    }

    /// Deletes everything of a tenant from the store and the cache, and counts what was deleted.
    pub async fn delete_everything(&self, tenant: &TenantId) -> Result<(u64, u64)> {
        let store_objects = self
            .store
            .delete_prefix(&keys::tenant_prefix(tenant))
            .await?;
        let cache_keys = self
            .cache
            .delete_prefix(&keys::tenant_cache_prefix(tenant))
            .await?;
        Ok((store_objects, cache_keys))
    }
}

/// Something beside the scheduler that keeps a tenant's data (the library API of `reverie serve`:
/// imports in flight, thumbnails). Forgetting a tenant over HTTP first asks each holder to stop the
/// tenant's work and hold off new writes (until the returned guard is dropped), then clears the store
/// and the cache, then tells the holders to drop what they keep in memory.
#[async_trait::async_trait]
pub trait TenantDataHolder: Send + Sync {
    /// Stops the tenant's work; no write of the tenant's lands until the guard is dropped.
    async fn hold(&self, tenant: &TenantId) -> Box<dyn std::any::Any + Send>;
    /// The tenant is gone: forget everything kept about it.
    fn forgotten(&self, tenant: &TenantId);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_compare_agrees_with_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn secrets_are_long_and_distinct() {
        let a = random_secret();
        assert_eq!(a.len(), 64);
        assert_ne!(a, random_secret());
    }

    #[test]
    fn consent_by_library_or_album() {
        let mut tenant = Tenant {
            id: TenantId::new("t").unwrap(),
            created_at: Utc::now(),
            tokens: vec![],
            amqp_users: vec![],
            consents: BTreeMap::new(),
        };
        let albums = vec!["Italy 2023".to_string()];
        assert!(!tenant.may_use(&albums));
        let granted = ConsentRecord {
            granted: true,
            changed_at: Utc::now(),
        };
        tenant
            .consents
            .insert(album_source("Italy 2023"), granted.clone());
        assert!(tenant.may_use(&albums));
        assert!(!tenant.may_use(&[]));
        tenant.consents.insert(LIBRARY_SOURCE.into(), granted);
        assert!(tenant.may_use(&[]));
    }

    fn embedded(dir: &std::path::Path) -> Tenants {
        use reverie_shared::ports::cache::MemoryCache;
        use reverie_shared::ports::store::LocalStore;
        let store: SharedStore = std::sync::Arc::new(LocalStore::open(dir.join("store")).unwrap());
        let cache: SharedCache =
            std::sync::Arc::new(MemoryCache::open(&dir.join("cache.bin"), 1 << 20).unwrap());
        Tenants::new(store, cache)
    }

    #[tokio::test]
    async fn tokens_are_stored_hashed_and_checked_with_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let tenants = embedded(dir.path());
        let tenant = TenantId::new("alice").unwrap();
        tenants.create(&tenant).await.unwrap();
        assert!(matches!(
            tenants.create(&tenant).await,
            Err(SchedulerError::TenantExists(_))
        ));
        let token = tenants
            .issue_token(&tenant, None, Some("cli".into()))
            .await
            .unwrap();
        let (_, secret) = token.split_once(':').unwrap();
        let stored = tenants.require(&tenant).await.unwrap();
        let json = serde_json::to_string(&stored).unwrap();
        assert!(!json.contains(secret), "the secret itself is never stored");
        assert_eq!(tenants.authenticate(&token).await.unwrap().id, tenant);
        let wrong = format!("alice:{}", "0".repeat(64));
        assert_eq!(
            tenants.authenticate(&wrong).await.unwrap_err().code(),
            "invalid_token"
        );
        // An unknown tenant is answered as a wrong secret (no tenant enumeration).
        assert_eq!(
            tenants.authenticate("bob:xyz").await.unwrap_err().code(),
            "invalid_token"
        );
        assert_eq!(
            tenants
                .authenticate("bob:xyz")
                .await
                .unwrap_err()
                .to_string(),
            tenants
                .authenticate("alice:xyz")
                .await
                .unwrap_err()
                .to_string()
                .replace("alice", "bob")
        );
        assert_eq!(
            tenants.authenticate("no-colon").await.unwrap_err().code(),
            "invalid_token"
        );
        assert_eq!(
            tenants.authenticate("").await.unwrap_err().code(),
            "unauthenticated"
        );
        let short = tenants
            .issue_token(&tenant, Some(Duration::from_millis(1)), None)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(
            tenants.authenticate(&short).await.unwrap_err().code(),
            "token_expired"
        );
        let id = stored.tokens[0].id.clone();
        assert!(tenants.revoke_token(&tenant, &id).await.unwrap());
        assert_eq!(
            tenants.authenticate(&token).await.unwrap_err().code(),
            "invalid_token"
        );
    }

    #[test]
    fn sources_are_validated() {
        assert!(validate_source("library").is_ok());
        assert!(validate_source("album:Summer").is_ok());
        assert!(validate_source("album:").is_err());
        assert!(validate_source("photos").is_err());
    }
}
