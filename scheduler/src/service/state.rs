//! The in-memory state that several parts of the scheduler share, each map behind its own lock: the
//! requests it follows, the tenants' unfinished-job counts (their quotas) and the tenant gates. Each
//! type says which parts change it; state a single part uses lives in that part.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as SyncMutex};

use reverie_shared::ids::{RequestId, TenantId};
use tokio::sync::{Mutex, RwLock};

use crate::error::Result;
use crate::lock;
use crate::open_log::OpenKey;
use crate::records::RequestRecord;

/// A record while the scheduler follows it. `retired` is set when it leaves the open set (finished or
/// its tenant forgotten), so a task still holding it never writes it back.
#[derive(Debug)]
pub(crate) struct Open {
    pub record: RequestRecord,
    pub retired: bool,
}

/// One followed request, locked while an event, a publish or a cancellation changes it.
pub(crate) type OpenEntry = Arc<Mutex<Open>>;

fn entry(record: RequestRecord) -> OpenEntry {
    Arc::new(Mutex::new(Open {
        record,
        retired: false,
    }))
}

/// The requests this scheduler follows (accepted and not finished). Intake opens entries (accepted,
/// adopted and recovered requests), settling closes them (finished), tenancy takes a forgotten tenant's;
/// dispatch and health only read them.
#[derive(Debug, Default)]
pub(crate) struct OpenRequests {
    entries: SyncMutex<HashMap<OpenKey, OpenEntry>>,
}

impl OpenRequests {
    pub fn get(&self, tenant: &TenantId, request: &RequestId) -> Option<OpenEntry> {
        lock(&self.entries)
            .get(&(tenant.clone(), request.clone()))
            .cloned()
    }

    /// Follows `record`, in place of any entry of the same request.
    pub fn open(&self, record: RequestRecord) {
        let key = (record.tenant.clone(), record.request.clone());
        lock(&self.entries).insert(key, entry(record));
    }

    /// Follows `record` unless its request is followed already; `opening` runs, under the map's lock,
    /// only when it was not. Returns whether it was opened.
    pub fn open_if_absent(&self, record: &RequestRecord, opening: impl FnOnce()) -> bool {
        let key = (record.tenant.clone(), record.request.clone());
        let mut entries = lock(&self.entries);
        if entries.contains_key(&key) {
            return false;
        }
        opening();
        entries.insert(key, entry(record.clone()));
        true
    }

    /// Stops following a request (the caller retires the entry it holds).
    pub fn close(&self, tenant: &TenantId, request: &RequestId) -> Option<OpenEntry> {
        lock(&self.entries).remove(&(tenant.clone(), request.clone()))
    }

    /// The followed requests of `tenant`.
    pub fn requests_of(&self, tenant: &TenantId) -> Vec<RequestId> {
        lock(&self.entries)
            .keys()
            .filter(|(t, _)| t == tenant)
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// Stops following every request of `tenant`; returns their entries, for the caller to retire.
    pub fn take_tenant(&self, tenant: &TenantId) -> Vec<OpenEntry> {
        let mut entries = lock(&self.entries);
        let keys: Vec<OpenKey> = entries
            .keys()
            .filter(|(t, _)| t == tenant)
            .cloned()
            .collect();
        keys.iter().filter_map(|k| entries.remove(k)).collect()
    }

    /// Every followed request.
    pub fn all(&self) -> Vec<OpenEntry> {
        lock(&self.entries).values().cloned().collect()
    }
}

/// Unfinished jobs per tenant, counted as requests are accepted and jobs finish, so the quota is checked
/// (and reserved) in one step instead of visiting every open request. Intake reserves and counts,
/// settling releases, tenancy drops a forgotten tenant's count.
#[derive(Debug, Default)]
pub(crate) struct Quotas {
    counts: SyncMutex<HashMap<TenantId, usize>>,
}

impl Quotas {
    /// Reserves `jobs` unfinished jobs of `tenant` under `quota`, or says how many it already has.
    pub fn reserve(
        self: &Arc<Self>,
        tenant: &TenantId,
        jobs: usize,
        quota: usize,
    ) -> std::result::Result<Reservation, usize> {
        let mut counts = lock(&self.counts);
        let unfinished = counts.get(tenant).copied().unwrap_or(0);
        if unfinished + jobs > quota {
            return Err(unfinished);
        }
        counts.insert(tenant.clone(), unfinished + jobs);
        Ok(Reservation {
            quotas: self.clone(),
            tenant: tenant.clone(),
            jobs,
        })
    }

    /// Counts jobs of `tenant` that are unfinished (recovered or adopted requests).
    pub fn count(&self, tenant: &TenantId, jobs: usize) {
        *lock(&self.counts).entry(tenant.clone()).or_default() += jobs;
    }

    /// Jobs of `tenant` that finished (or were never made).
    pub fn release(&self, tenant: &TenantId, jobs: usize) {
        let mut counts = lock(&self.counts);
        if let Some(count) = counts.get_mut(tenant) {
            *count = count.saturating_sub(jobs);
            if *count == 0 {
                counts.remove(tenant);
            }
        }
    }

    /// Unfinished jobs of a tenant (what its quota counts).
    pub fn unfinished(&self, tenant: &TenantId) -> usize {
        lock(&self.counts).get(tenant).copied().unwrap_or(0)
    }

    /// Drops the count of a forgotten tenant.
    pub fn forget(&self, tenant: &TenantId) {
        lock(&self.counts).remove(tenant);
    }
}

/// Unfinished jobs reserved under a tenant's quota while a request is being accepted; released when
/// dropped unless kept (the request is then followed and its jobs release it as they finish).
pub(crate) struct Reservation {
    quotas: Arc<Quotas>,
    tenant: TenantId,
    jobs: usize,
}

impl Reservation {
    pub fn keep(mut self) {
        self.jobs = 0;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.jobs > 0 {
            self.quotas.release(&self.tenant, self.jobs);
        }
    }
}

/// Per tenant: acceptances hold its gate shared, forget and consent revocation exclusively, so neither
/// runs while a request of the tenant is half accepted (it would miss it) and no request is accepted on
/// the tenant record as it was before them. Tenancy changes tenants through it; intake reads.
#[derive(Debug, Default)]
pub(crate) struct TenantGates {
    gates: SyncMutex<HashMap<TenantId, Arc<RwLock<()>>>>,
    /// Counts the starts and ends of forgets and revocations (any tenant): an acceptance that sees
    /// another count than when its tenant record was read reads the record again.
    changes: AtomicU64,
}

impl TenantGates {
    /// Read before a request's tenant record is (see `Intake::tenant_changes`).
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::SeqCst)
    }

    pub fn gate(&self, tenant: &TenantId) -> Arc<RwLock<()>> {
        lock(&self.gates).entry(tenant.clone()).or_default().clone()
    }

    /// Runs a change of a tenant that acceptance must not interleave with (forget, revocation): it
    /// waits for acceptances under way, and those that come after read the tenant record afresh.
    pub async fn changing<T>(
        &self,
        tenant: &TenantId,
        change: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let gate = self.gate(tenant);
        let _exclusive = gate.write().await;
        self.changes.fetch_add(1, Ordering::SeqCst);
        let result = change.await;
        self.changes.fetch_add(1, Ordering::SeqCst);
        result
    }
}
