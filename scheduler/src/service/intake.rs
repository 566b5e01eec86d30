//! Intake: accepting a request the ingress (`ingress.rs`) validated, authenticated and resolved.
//! Once per request id (a duplicate is answered as one, without new jobs), within the tenant's quota,
//! planned (the one conversion of a request into its plan and job records), consent-checked,
//! persisted with its open-log entry, and only then handed to dispatch. Also follows requests
//! accepted before: adopted ones and, after a restart, those the open log names. Owns the
//! per-request intake locks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as SyncMutex};

use chrono::Utc;
use reverie_shared::ids::{RequestId, TenantId};
use reverie_shared::jobs::ReferenceRole;
use reverie_shared::metrics;
use tokio::sync::Mutex;
use tracing::Instrument;

use super::dispatch::Dispatch;
use super::state::{OpenRequests, Quotas, TenantGates};
use crate::error::{Result, SchedulerError};
use crate::lock;
use crate::open_log::OpenKey;
use crate::plan::{self, AlbumRun, Plan, PlanInput, PlannerSettings, SourceReplacement};
use crate::records::{Ingress, JobRecord, Records, ReplyRoute, RequestRecord};
use crate::replies::{self, Reason, Reply};
use crate::tenants::{AuthError, Tenant, Tenants};

/// A request that passed validation and authentication, with its plan inputs resolved.
#[derive(Debug, Clone)]
pub struct Intake {
    pub request: RequestId,
    pub tenant: TenantId,
    /// The tenant's record as authentication read it (consents), so acceptance does not read it again.
    pub tenant_record: Tenant,
    pub ingress: Ingress,
    pub reply: Option<ReplyRoute>,
    pub prompt: String,
    pub body: serde_json::Value,
    pub input: PlanInput,
    /// For refinements: the parent's plan (already checked to belong to the same tenant).
    pub parent: Option<(RequestId, Plan)>,
    /// For album-to-art requests: the album's photos.
    pub album_run: Option<AlbumRun>,
    /// For refinements: parent sources the person swapped for other photos.
    pub replacements: Vec<SourceReplacement>,
    /// [`super::Core::tenant_changes`] before the tenant record was read: acceptance reads the record
    /// again if a tenant was forgotten or had consent revoked since.
    pub tenant_changes: u64,
}

/// Accepts requests and follows the ones accepted before.
pub(crate) struct Acceptor {
    records: Records,
    tenants: Tenants,
    planner: PlannerSettings,
    /// Most unfinished jobs one tenant may have.
    quota: usize,
    open: Arc<OpenRequests>,
    quotas: Arc<Quotas>,
    gates: Arc<TenantGates>,
    dispatch: Arc<Dispatch>,
    /// Serialises intake per request id: two copies of one request make one set of jobs. Different
    /// requests, of one tenant or of many, are accepted side by side.
    locks: SyncMutex<HashMap<OpenKey, Arc<Mutex<()>>>>,
}

impl Acceptor {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        records: Records,
        tenants: Tenants,
        planner: PlannerSettings,
        quota: usize,
        open: Arc<OpenRequests>,
        quotas: Arc<Quotas>,
        gates: Arc<TenantGates>,
        dispatch: Arc<Dispatch>,
    ) -> Acceptor {
        Acceptor {
            records,
            tenants,
            planner,
            quota,
            open,
            quotas,
            gates,
            dispatch,
            locks: SyncMutex::new(HashMap::new()),
        }
    }

    /// Accepts a request: idempotent on its id, quota- and consent-checked, persisted, then published.
    pub async fn accept(&self, mut intake: Intake) -> Result<Reply> {
        let gate = self.gates.gate(&intake.tenant);
        let _shared = gate.read().await;
        if self.gates.changes() != intake.tenant_changes {
            // A forget or a revocation ran since the tenant was read: judge by the record as it is now.
            match self.tenants.get(&intake.tenant).await? {
                Some(fresh) => intake.tenant_record = fresh,
                None => {
                    count_request(intake.ingress, "rejected");
                    let error = AuthError::Invalid(intake.tenant.to_string());
                    return Ok(Reply::rejected(
                        Some(intake.request.to_string()),
                        vec![Reason::new(error.code(), error.to_string())],
                    ));
                }
            }
        }
        let key = (intake.tenant.clone(), intake.request.clone());
        let span =
            tracing::info_span!("request", request = %intake.request, tenant = %intake.tenant);
        let guard = lock(&self.locks).entry(key.clone()).or_default().clone();
        let result = async {
            let _held = guard.lock().await;
            self.accept_locked(intake).await
        }
        .instrument(span)
        .await;
        // Only the map's own reference left: nobody else waits on this request, so its lock goes.
        drop(guard);
        {
            let mut locks = lock(&self.locks);
            if locks.get(&key).is_some_and(|l| Arc::strong_count(l) == 1) {
                locks.remove(&key);
            }
        }
        result
    }

    async fn accept_locked(&self, intake: Intake) -> Result<Reply> {
        let request_id = Some(intake.request.to_string());
        // Followed here or still cached: a duplicate found without touching the store. A request the
        // cache does not know is checked durably by its record's conditional first write below.
        if let Some(existing) = self.known(&intake.tenant, &intake.request).await {
            return self.accept_duplicate(intake.ingress, existing).await;
        }
        let variants = match &intake.album_run {
            Some(run) => run.photos.len(),
            None => intake.input.variants.max(1) as usize,
        };
        let quota = self.quota;
        // Held until the request is followed; dropped (released) on any refusal or failure below.
        let reservation = match self.quotas.reserve(&intake.tenant, variants, quota) {
            Ok(reservation) => reservation,
            Err(unfinished) => {
                count_request(intake.ingress, "rejected");
                return Ok(Reply::rejected(
                request_id,
                vec![Reason::new(
                    "quota_exceeded",
                    format!(
                        "tenant {} has {unfinished} unfinished jobs; {variants} more would exceed its quota of {quota}",
                        intake.tenant
                    ),
                )
                .on_field("n")],
                ));
            }
        };
        let plan = match self.plan(&intake) {
            Ok(plan) => plan,
            Err(reasons) => {
                count_request(intake.ingress, "rejected");
                return Ok(Reply::rejected(request_id, reasons));
            }
        };
        let missing = consent_gaps(&intake.tenant_record, &plan);
        if !missing.is_empty() {
            count_request(intake.ingress, "rejected");
            return Ok(Reply::rejected(request_id, missing));
        }
        let now = Utc::now();
        let jobs = plan::jobs_for(&plan, &intake.tenant, &intake.request, &self.planner);
        let record = RequestRecord {
            request: intake.request.clone(),
            tenant: intake.tenant.clone(),
            ingress: intake.ingress,
            created_at: now,
            updated_at: now,
            prompt: intake.prompt,
            body: intake.body,
            parent: intake.parent.map(|(id, _)| id),
            reply: intake.reply,
            plan,
            jobs: jobs
                .into_iter()
                .map(|spec| JobRecord::new(spec, now))
                .collect(),
            final_reply_sent: false,
        };
        reservation.keep();
        if record.jobs.len() != variants {
            // The plan made another number of jobs than reserved: count what it made.
            self.quotas.count(&record.tenant, record.jobs.len());
            self.quotas.release(&record.tenant, variants);
        }
        // Persisted before anything is published: a crash after this point is recovered from the record.
        match self.records.save_new(&record).await {
            Ok(true) => {
                if record.plan.album_run.is_some() {
                    metrics::global().batch_runs_active.inc();
                }
            }
            Ok(false) => {
                self.quotas.release(&record.tenant, record.jobs.len());
                return self.duplicate_in_store(intake.ingress, &record).await;
            }
            Err(error) => {
                self.quotas.release(&record.tenant, record.jobs.len());
                return Err(error);
            }
        }
        let reply = replies::accepted(&record, false);
        self.open.open(record);
        self.dispatch
            .publish(&intake.tenant, &intake.request, false)
            .await?;
        count_request(intake.ingress, "accepted");
        Ok(reply)
    }

    /// The request's plan: a new one, or for a refinement the parent's refined by the new prompt (and
    /// the sources the person swapped); an album run's plan names the album's photos. The reasons when
    /// a swapped source is no longer one.
    fn plan(&self, intake: &Intake) -> std::result::Result<Plan, Vec<Reason>> {
        let mut plan = match &intake.parent {
            Some((_, parent)) => {
                let mut input = intake.input.clone();
                input.places_parent_subjects = parent
                    .references
                    .iter()
                    .any(|r| r.role == ReferenceRole::Subject);
                let child = plan::make_plan(&input, &intake.request, &self.planner);
                let mut refined = plan::refine_plan(parent, child);
                let unused = plan::replace_sources(&mut refined, &intake.replacements);
                if !unused.is_empty() {
                    return Err(unused
                        .iter()
                        .map(|photo| {
                            Reason::new(
                                "invalid_field",
                                format!(
                                    "photo {photo} is no longer a source: the new prompt chose its own photo in that role"
                                ),
                            )
                            .on_field("replace_sources")
                        })
                        .collect());
                }
                refined
            }
            None => plan::make_plan(&intake.input, &intake.request, &self.planner),
        };
        if let Some(run) = intake.album_run.clone() {
            plan = plan::album_plan(plan, run, &intake.request);
        }
        Ok(plan)
    }

    /// The same request again: no new jobs. Follow it again if a failure cut its acceptance short, and
    /// publish anything a crash left unpublished.
    async fn accept_duplicate(&self, ingress: Ingress, existing: RequestRecord) -> Result<Reply> {
        self.adopt(&existing).await?;
        self.dispatch
            .publish(&existing.tenant, &existing.request, true)
            .await?;
        count_request(ingress, "duplicate");
        Ok(replies::accepted(&existing, true))
    }

    /// The conditional first write found a stored record of this id (accepted before and no longer
    /// cached): answer as a duplicate. The open-log entry written beside the refused record stays only if
    /// that request is unfinished.
    async fn duplicate_in_store(
        &self,
        ingress: Ingress,
        attempted: &RequestRecord,
    ) -> Result<Reply> {
        let (tenant, request) = (&attempted.tenant, &attempted.request);
        let Some(existing) = self.records.load_stored(tenant, request).await? else {
            return Err(SchedulerError::Unavailable(format!(
                "request {request} was refused as existing but its record cannot be read"
            )));
        };
        if existing.is_finished() {
            self.records.mark_closed(tenant, request);
        }
        self.accept_duplicate(ingress, existing).await
    }

    /// Follows a request whose record exists but that is not open here: its acceptance failed after the
    /// record was written (the retry lands here) or another scheduler accepted it before a take-over.
    async fn adopt(&self, record: &RequestRecord) -> Result<()> {
        if record.is_finished() || self.open.get(&record.tenant, &record.request).is_some() {
            return Ok(());
        }
        self.records
            .mark_open(&record.tenant, &record.request)
            .await?;
        self.open.open_if_absent(record, || {
            self.quotas.count(&record.tenant, record.unfinished_jobs())
        });
        Ok(())
    }

    /// A request this scheduler follows, or whose record the cache holds.
    async fn known(&self, tenant: &TenantId, request: &RequestId) -> Option<RequestRecord> {
        if let Some(entry) = self.open.get(tenant, request) {
            return Some(entry.lock().await.record.clone());
        }
        self.records.load_cached(tenant, request).await
    }

    /// The current record of a request of `tenant` (never another tenant's), open or finished.
    pub async fn record(
        &self,
        tenant: &TenantId,
        request: &RequestId,
    ) -> Result<Option<RequestRecord>> {
        if let Some(record) = self.known(tenant, request).await {
            return Ok(Some(record));
        }
        self.records.load_stored(tenant, request).await
    }

    /// Reloads every request with unfinished jobs after a restart and publishes what was not published.
    pub async fn recover(&self) -> Result<usize> {
        let open = self.records.open_requests().await?;
        let mut recovered = 0;
        for (tenant, request) in open {
            let record = self.records.load(&tenant, &request).await?;
            let Some(record) = record.filter(|r| !r.is_finished()) else {
                // Finished (leaving the log is the last step of finishing) or its tenant forgotten.
                self.records.mark_closed(&tenant, &request);
                continue;
            };
            self.quotas.count(&tenant, record.unfinished_jobs());
            self.dispatch.recovered(&record);
            self.open.open(record);
            self.dispatch.publish(&tenant, &request, true).await?;
            recovered += 1;
        }
        Ok(recovered)
    }

    /// Drops the idle intake locks of a forgotten tenant.
    pub fn forget(&self, tenant: &TenantId) {
        lock(&self.locks).retain(|(t, _), l| t != tenant || Arc::strong_count(l) > 1);
    }
}

fn count_request(ingress: Ingress, outcome: &str) {
    metrics::global()
        .requests
        .with_label_values(&[ingress.label(), outcome])
        .inc();
}

/// Reasons a plan may not run: photos none of whose sources the tenant consented to.
fn consent_gaps(tenant: &Tenant, plan: &Plan) -> Vec<Reason> {
    plan.references
        .iter()
        .filter_map(|reference| {
            let albums = plan
                .reference_albums
                .get(reference.photo.as_str())
                .cloned()
                .unwrap_or_default();
            if tenant.may_use(&albums) {
                return None;
            }
            let name = reference
                .label
                .clone()
                .unwrap_or_else(|| reference.photo.short().to_string());
            let sources = std::iter::once("library".to_string())
                .chain(albums.iter().map(|a| crate::tenants::album_source(a)))
                .collect::<Vec<_>>()
                .join(" or ");
            Some(
                Reason::new(
                    "no_consent",
                    format!(
                        "photo {} ({name}) may not be used: grant consent for {sources}",
                        reference.photo.short()
                    ),
                )
                .suggesting(vec![format!(
                    "reverie consent grant --tenant {} library",
                    tenant.id
                )]),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replies::ReplyBody;
    use crate::service::testing::{self, Embedded};
    use reverie_shared::jobs::Priority;

    async fn acceptor(embedded: &Embedded, quota: usize) -> (Acceptor, Arc<Quotas>, Tenant) {
        let open = Arc::new(OpenRequests::default());
        let quotas = Arc::new(Quotas::default());
        let tenants = Tenants::new(
            embedded.backends.store.clone(),
            embedded.backends.cache.clone(),
        );
        let tenant = tenants.create(&TenantId::new("t1").unwrap()).await.unwrap();
        let dispatch = Arc::new(Dispatch::new(
            embedded.backends.queue.clone(),
            embedded.queues.clone(),
            embedded.queues.shard(0, 1),
            embedded.records.clone(),
            open.clone(),
            1,
        ));
        let acceptor = Acceptor::new(
            embedded.records.clone(),
            tenants,
            PlannerSettings::default(),
            quota,
            open,
            quotas.clone(),
            Arc::new(TenantGates::default()),
            dispatch,
        );
        (acceptor, quotas, tenant)
    }

    fn intake(tenant: &Tenant, request: &str, variants: u32) -> Intake {
        Intake {
            request: RequestId::new(request).unwrap(),
            tenant: tenant.id.clone(),
            tenant_record: tenant.clone(),
            ingress: Ingress::Http,
            reply: None,
            prompt: "a quiet harbour".into(),
            body: serde_json::Value::Null,
            input: testing::input(variants, Priority::Interactive),
            parent: None,
            album_run: None,
            replacements: Vec::new(),
            tenant_changes: 0,
        }
    }

    #[tokio::test]
    async fn a_request_is_accepted_once_within_its_tenants_quota() {
        let embedded = testing::embedded().await;
        let (acceptor, quotas, tenant) = acceptor(&embedded, 3).await;
        let reply = acceptor.accept(intake(&tenant, "r1", 2)).await.unwrap();
        assert!(matches!(
            reply.body,
            ReplyBody::Accepted {
                duplicate: false,
                ..
            }
        ));
        assert_eq!(quotas.unfinished(&tenant.id), 2);
        let depth = embedded.backends.queue.depth(&embedded.queues.generate);
        assert_eq!(depth.await.unwrap(), 2, "published once persisted");
        let again = acceptor.accept(intake(&tenant, "r1", 2)).await.unwrap();
        assert!(matches!(
            again.body,
            ReplyBody::Accepted {
                duplicate: true,
                ..
            }
        ));
        assert_eq!(
            quotas.unfinished(&tenant.id),
            2,
            "a duplicate makes no jobs"
        );
        assert!(
            lock(&acceptor.locks).is_empty(),
            "a request's intake lock goes once nobody waits on it"
        );
        let over = acceptor.accept(intake(&tenant, "r2", 2)).await.unwrap();
        let ReplyBody::Rejected { reasons } = over.body else {
            panic!("over the quota: {over:?}");
        };
        assert_eq!(reasons[0].code, "quota_exceeded");
        assert_eq!(
            quotas.unfinished(&tenant.id),
            2,
            "a refusal releases its reservation"
        );
        let r1 = RequestId::new("r1").unwrap();
        let record = acceptor.record(&tenant.id, &r1).await.unwrap().unwrap();
        assert_eq!(record.jobs.len(), 2);
    }
}
