//! Where a tenant's library is read from: the [`LibrarySource`] port, [`StoreLibrary`] (a catalog
//! JSON in the object store) and the [`CachedLibrary`] intake reads through.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reverie_shared::ids::TenantId;
use reverie_shared::keys;
use reverie_shared::ports::store::SharedStore;

use super::TenantLibrary;
use crate::error::{from_json, Result};

#[async_trait]
pub trait LibrarySource: Send + Sync + std::fmt::Debug {
    /// The tenant's library; an empty one when the tenant imported nothing yet.
    async fn load(&self, tenant: &TenantId) -> Result<TenantLibrary>;
}

/// Where [`StoreLibrary`] reads a tenant's library.
pub fn catalog_key(tenant: &TenantId) -> String {
    format!("{}library/catalog.json", keys::tenant_prefix(tenant))
}

/// Reads `tenants/{t}/library/catalog.json` from the object store.
#[derive(Debug, Clone)]
pub struct StoreLibrary {
    store: SharedStore,
}

impl StoreLibrary {
    pub fn new(store: SharedStore) -> StoreLibrary {
        StoreLibrary { store }
    }
}

#[async_trait]
impl LibrarySource for StoreLibrary {
    async fn load(&self, tenant: &TenantId) -> Result<TenantLibrary> {
        let key = catalog_key(tenant);
        let mut library: TenantLibrary = match self.store.get(&key).await {
            Ok(bytes) => from_json(&key, &bytes)?,
            Err(error) if error.is_not_found() => TenantLibrary::default(),
            Err(error) => return Err(error.into()),
        };
        library.loras = tenant_loras(&self.store, tenant).await?;
        Ok(library)
    }
}

/// The tenant's registered LoRAs, read beside its library.
pub async fn tenant_loras(
    store: &SharedStore,
    tenant: &TenantId,
) -> Result<Vec<reverie_shared::tenant_loras::TenantLora>> {
    reverie_shared::tenant_loras::load_loras(&**store, tenant)
        .await
        .map(|index| index.loras)
        .map_err(|e| crate::error::SchedulerError::Unavailable(e.to_string()))
}

/// A tenant's library as intake last read it, kept for `fresh_for` so requests do not each read and
/// parse it from the store. Library writers (import, face clustering, people naming) run in other
/// processes, so a change is seen within `fresh_for`, or at once when [`CachedLibrary::invalidate`] is
/// called; and a request whose prompt does not resolve against a cached copy is resolved again against a
/// fresh read before it is refused, so a name imported a moment ago is never reported unknown.
#[derive(Debug)]
pub struct CachedLibrary {
    source: Arc<dyn LibrarySource>,
    fresh_for: Duration,
    tenants: SyncMutex<HashMap<TenantId, Arc<tokio::sync::Mutex<Option<Cached>>>>>,
}

#[derive(Debug)]
struct Cached {
    read_at: Instant,
    library: Arc<TenantLibrary>,
}

/// A library and whether it came from the cache (a fresh read when false).
pub struct Loaded {
    pub library: Arc<TenantLibrary>,
    pub cached: bool,
}

impl CachedLibrary {
    pub fn new(source: Arc<dyn LibrarySource>, fresh_for: Duration) -> CachedLibrary {
        CachedLibrary {
            source,
            fresh_for,
            tenants: SyncMutex::new(HashMap::new()),
        }
    }

    fn slot(&self, tenant: &TenantId) -> Arc<tokio::sync::Mutex<Option<Cached>>> {
        let mut tenants = self
            .tenants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tenants.entry(tenant.clone()).or_default().clone()
    }

    /// The tenant's library, from the cache while it is fresh. Concurrent misses of one tenant wait for
    /// a single read.
    pub async fn load(&self, tenant: &TenantId) -> Result<Loaded> {
        let slot = self.slot(tenant);
        let mut cached = slot.lock().await;
        if let Some(entry) = cached
            .as_ref()
            .filter(|c| c.read_at.elapsed() < self.fresh_for)
        {
            return Ok(Loaded {
                library: entry.library.clone(),
                cached: true,
            });
        }
        let library = Arc::new(self.source.load(tenant).await?);
        *cached = Some(Cached {
            read_at: Instant::now(),
            library: library.clone(),
        });
        Ok(Loaded {
            library,
            cached: false,
        })
    }

    /// Reads the tenant's library from its source now, replacing the cached copy.
    pub async fn reload(&self, tenant: &TenantId) -> Result<Arc<TenantLibrary>> {
        self.invalidate(tenant);
        Ok(self.load(tenant).await?.library)
    }

    /// Forgets the cached copy of a tenant's library (after an import, or when the tenant is forgotten).
    pub fn invalidate(&self, tenant: &TenantId) {
        self.tenants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(tenant);
    }
}
