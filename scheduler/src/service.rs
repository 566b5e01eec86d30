//! The scheduler's core: accepting requests (idempotently), publishing their jobs, following their
//! lifecycle from worker events, cancelling, consent revocation and forgetting tenants. Both ingresses
//! (AMQP and HTTP) call into this; it knows nothing of their wire formats.
//!
//! One scheduler process is active per farm: idempotency and the fairness feeder keep their state in
//! this process (records are durable, so a restarted or standby scheduler takes over from the store).

use std::collections::HashMap;
use std::sync::{Arc, Mutex as SyncMutex};

use chrono::Utc;
use reverie_shared::backends::Backends;
use reverie_shared::envelope;
use reverie_shared::ids::{JobId, RequestId, TenantId};
use reverie_shared::jobs::{Job, JobEvent, JobSpec, Priority};
use reverie_shared::keys;
use reverie_shared::metrics;
use reverie_shared::ports::queue::{Message, MessageProps};
use reverie_shared::queues::QueueNames;
use tokio::sync::{broadcast, mpsc, Mutex, Notify};
use tracing::Instrument;

use crate::error::Result;
use crate::fairness::Feeder;
use crate::lock;
use crate::options::SchedulerOptions;
use crate::plan::{self, Plan, PlanInput};
use crate::records::{
    Ingress, JobRecord, JobState, ProvenanceEntry, Records, ReplyRoute, RequestRecord,
};
use crate::replies::{self, Reason, Reply, ReplyBody};
use crate::tenants::{ForgetReport, Tenant, Tenants};

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
    pub album_run: Option<crate::plan::AlbumRun>,
    /// For refinements: parent sources the person swapped for other photos.
    pub replacements: Vec<crate::plan::SourceReplacement>,
    /// [`Core::tenant_changes`] before the tenant record was read: acceptance reads the record again
    /// if a tenant was forgotten or had consent revoked since.
    pub tenant_changes: u64,
}

/// A reply as event streams send it: the reply and its JSON, made once and shared by every watcher.
#[derive(Debug)]
pub struct StreamedReply {
    pub reply: Reply,
    pub json: String,
}

impl StreamedReply {
    pub fn of(reply: &Reply) -> StreamedReply {
        StreamedReply {
            reply: reply.clone(),
            json: serde_json::to_string(reply).unwrap_or_default(),
        }
    }
}

/// A record while the scheduler follows it. `retired` is set when it leaves the open set (finished or
/// its tenant forgotten), so a task still holding it never writes it back.
#[derive(Debug)]
struct Open {
    record: RequestRecord,
    retired: bool,
}

type OpenKey = (TenantId, RequestId);

pub(crate) struct Inner {
    pub backends: Backends,
    pub queues: QueueNames,
    pub options: SchedulerOptions,
    pub tenants: Tenants,
    pub records: Records,
    open: SyncMutex<HashMap<OpenKey, Arc<Mutex<Open>>>>,
    /// Serialises intake per request id: two copies of one request make one set of jobs. Different
    /// requests, of one tenant or of many, are accepted side by side.
    intake_locks: SyncMutex<HashMap<OpenKey, Arc<Mutex<()>>>>,
    /// Unfinished jobs per tenant, counted as requests are accepted and jobs finish, so the quota is
    /// checked (and reserved) in one step instead of visiting every open request.
    tenant_jobs: SyncMutex<HashMap<TenantId, usize>>,
    feeder: SyncMutex<Feeder>,
    pub feeder_wake: Notify,
    streams: SyncMutex<HashMap<OpenKey, broadcast::Sender<Arc<StreamedReply>>>>,
    /// Per tenant: acceptances hold it shared, `forget` and consent revocation exclusively, so neither
    /// runs while a request of the tenant is half accepted (it would miss it) and no request is
    /// accepted on the tenant record as it was before them.
    tenant_gates: SyncMutex<HashMap<TenantId, Arc<tokio::sync::RwLock<()>>>>,
    /// Counts the starts and ends of forgets and revocations (any tenant): see [`Intake::tenant_changes`].
    tenant_changes: std::sync::atomic::AtomicU64,
    /// AMQP replies on their way out, drained by their own tasks (started with the first reply).
    reply_lanes: std::sync::OnceLock<Vec<mpsc::Sender<OutgoingReply>>>,
}

/// Lanes of AMQP replies: a request's replies always take the same lane (so they arrive in order), and
/// each lane publishes one reply at a time. Publishing never holds up intake or event handling: a reply
/// is handed to its lane, and dropped (counted, `backlog`) when the lane is full.
const REPLY_LANES: usize = 8;
/// Replies a lane holds before it drops new ones.
const REPLY_LANE_DEPTH: usize = 512;

/// One reply for one AMQP reply queue.
struct OutgoingReply {
    queue: String,
    message: Message,
    kind: &'static str,
}

fn spawn_reply_lanes(
    queue: reverie_shared::ports::queue::SharedQueue,
) -> Vec<mpsc::Sender<OutgoingReply>> {
    (0..REPLY_LANES)
        .map(|_| {
            let (sender, mut receiver) = mpsc::channel::<OutgoingReply>(REPLY_LANE_DEPTH);
            let queue = queue.clone();
            tokio::spawn(async move {
                while let Some(reply) = receiver.recv().await {
                    deliver_reply(&queue, reply).await;
                }
            });
            sender
        })
        .collect()
}

/// Publishes one reply. Only a lost broker connection is retried (a broker restart must not swallow a
/// final reply); a reply queue that does not exist, or a broker that refuses the message, costs one
/// attempt, one log line and one count.
async fn deliver_reply(queue: &reverie_shared::ports::queue::SharedQueue, reply: OutgoingReply) {
    use reverie_shared::ports::queue::QueueError;
    let backoff = reverie_shared::retry::Backoff {
        initial: std::time::Duration::from_millis(200),
        max: std::time::Duration::from_secs(5),
        max_attempts: 20,
    };
    let result = reverie_shared::retry::with_backoff(
        "reply queue",
        backoff,
        |error: &QueueError| matches!(error, QueueError::Unreachable { .. }),
        || queue.publish_reply(&reply.queue, reply.message.clone()),
    )
    .await;
    if let Err(error) = result {
        let reason = match error {
            QueueError::NoSuchQueue { .. } => "no_such_queue",
            QueueError::NotConfirmed { .. } => "not_confirmed",
            QueueError::Unreachable { .. } => "unreachable",
            _ => "failed",
        };
        metrics::global()
            .replies_undelivered
            .with_label_values(&[reason])
            .inc();
        tracing::warn!(%error, reply_to = %reply.queue, kind = reply.kind, reason, "reply not delivered");
    }
}

fn lane_of(key: &str) -> usize {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut hasher);
    (hasher.finish() % REPLY_LANES as u64) as usize
}

/// The scheduler's core, cheap to clone.
#[derive(Clone)]
pub struct Core {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("queues", &self.inner.queues)
            .finish()
    }
}

fn now_ms() -> u64 {
    u64::try_from(Utc::now().timestamp_millis()).unwrap_or(0)
}

impl Core {
    pub fn new(backends: Backends, options: SchedulerOptions) -> Core {
        // Series that exist from the start read as 0 on dashboards instead of "no data".
        for outcome in ["done", "failed", "skipped"] {
            metrics::global()
                .batch_run_photos
                .with_label_values(&[outcome]);
        }
        let queues = QueueNames::new(&options.queue_prefix);
        let tenants = Tenants::new(backends.store.clone(), backends.cache.clone());
        let records = Records::new(backends.store.clone(), backends.cache.clone());
        let feeder = Feeder::new(options.batch_in_flight_per_tenant);
        Core {
            inner: Arc::new(Inner {
                backends,
                queues,
                options,
                tenants,
                records,
                open: SyncMutex::new(HashMap::new()),
                intake_locks: SyncMutex::new(HashMap::new()),
                tenant_jobs: SyncMutex::new(HashMap::new()),
                feeder: SyncMutex::new(feeder),
                feeder_wake: Notify::new(),
                streams: SyncMutex::new(HashMap::new()),
                reply_lanes: std::sync::OnceLock::new(),
                tenant_gates: SyncMutex::new(HashMap::new()),
                tenant_changes: std::sync::atomic::AtomicU64::new(0),
            }),
        }
    }

    pub fn tenants(&self) -> &Tenants {
        &self.inner.tenants
    }

    pub fn records(&self) -> &Records {
        &self.inner.records
    }

    pub fn queues(&self) -> &QueueNames {
        &self.inner.queues
    }

    pub fn options(&self) -> &SchedulerOptions {
        &self.inner.options
    }

    /// Declares every queue the scheduler uses.
    pub async fn declare_queues(&self) -> Result<()> {
        for spec in self.inner.queues.specs() {
            self.inner.backends.queue.declare(&spec).await?;
        }
        Ok(())
    }

    fn open_entry(&self, key: &OpenKey) -> Option<Arc<Mutex<Open>>> {
        lock(&self.inner.open).get(key).cloned()
    }

    /// Subscribes to the replies of one request (server-sent events).
    pub fn subscribe(
        &self,
        tenant: &TenantId,
        request: &RequestId,
    ) -> broadcast::Receiver<Arc<StreamedReply>> {
        let mut streams = lock(&self.inner.streams);
        streams
            .entry((tenant.clone(), request.clone()))
            .or_insert_with(|| broadcast::channel(64).0)
            .subscribe()
    }

    /// Event streams kept (requests someone subscribed to that have not finished).
    pub fn event_streams(&self) -> usize {
        lock(&self.inner.streams).len()
    }

    /// Drops the event stream of a request when nobody listens to it any more.
    pub fn unsubscribe_idle(&self, tenant: &TenantId, request: &RequestId) {
        let key = (tenant.clone(), request.clone());
        let mut streams = lock(&self.inner.streams);
        if streams.get(&key).is_some_and(|s| s.receiver_count() == 0) {
            streams.remove(&key);
        }
    }

    /// Sends a reply to the request's AMQP reply_to (if any) and to its event-stream subscribers.
    pub async fn relay(
        &self,
        tenant: &TenantId,
        request: &RequestId,
        route: Option<&ReplyRoute>,
        reply: &Reply,
    ) {
        let key = (tenant.clone(), request.clone());
        {
            let mut streams = lock(&self.inner.streams);
            if let Some(sender) = streams.get(&key) {
                // Serialised once for every watcher (a preview makes a reply ~8 KB).
                let _ = sender.send(Arc::new(StreamedReply::of(reply)));
                if reply.is_final() {
                    streams.remove(&key);
                }
            }
        }
        if let Some(route) = route {
            self.send_amqp_reply(route, reply);
        }
    }

    /// Hands a reply to its AMQP reply lane (see [`REPLY_LANES`]); returns at once. The route was
    /// checked at intake (`crate::reply_to`). A requester that went away is logged and counted.
    pub fn send_amqp_reply(&self, route: &ReplyRoute, reply: &Reply) {
        let body = match serde_json::to_vec(reply) {
            Ok(body) => body,
            Err(error) => {
                tracing::error!(%error, "could not encode a reply");
                return;
            }
        };
        let props = MessageProps {
            message_id: Some(reply_message_id(reply)),
            correlation_id: route.correlation_id.clone(),
            content_type: Some("application/json".to_string()),
            headers: [("x-reverie-reply-type".to_string(), reply.kind().to_string())].into(),
            ..MessageProps::default()
        };
        let message = Message::new(body).with_props(props);
        let lanes = self
            .inner
            .reply_lanes
            .get_or_init(|| spawn_reply_lanes(self.inner.backends.queue.clone()));
        // One lane per request, so its replies keep their order.
        let lane = lane_of(reply.request_id.as_deref().unwrap_or(&route.reply_to));
        let outgoing = OutgoingReply {
            queue: route.reply_to.clone(),
            message,
            kind: reply.kind(),
        };
        if let Err(error) = lanes[lane].try_send(outgoing) {
            metrics::global()
                .replies_undelivered
                .with_label_values(&["backlog"])
                .inc();
            tracing::warn!(reply_to = %route.reply_to, kind = reply.kind(), %error, "reply dropped: too many replies waiting to be published");
        }
    }

    fn count_request(ingress: Ingress, outcome: &str) {
        metrics::global()
            .requests
            .with_label_values(&[ingress.label(), outcome])
            .inc();
    }

    /// Reserves `jobs` unfinished jobs of `tenant` under `quota`, or says how many it already has.
    fn reserve_jobs(
        &self,
        tenant: &TenantId,
        jobs: usize,
        quota: usize,
    ) -> std::result::Result<Reservation, usize> {
        let mut counts = lock(&self.inner.tenant_jobs);
        let unfinished = counts.get(tenant).copied().unwrap_or(0);
        if unfinished + jobs > quota {
            return Err(unfinished);
        }
        counts.insert(tenant.clone(), unfinished + jobs);
        Ok(Reservation {
            inner: self.inner.clone(),
            tenant: tenant.clone(),
            jobs,
        })
    }

    /// Counts jobs of `tenant` that are unfinished (recovered or adopted requests).
    fn count_unfinished(&self, tenant: &TenantId, jobs: usize) {
        *lock(&self.inner.tenant_jobs)
            .entry(tenant.clone())
            .or_default() += jobs;
    }

    /// Jobs of `tenant` that finished (or were never made).
    fn release_jobs(&self, tenant: &TenantId, jobs: usize) {
        release(&self.inner, tenant, jobs);
    }

    /// Follows a request whose record exists but that is not open here: its acceptance failed after the
    /// record was written (the retry lands here) or another scheduler accepted it before a take-over.
    async fn adopt(&self, record: &RequestRecord) -> Result<()> {
        let key = (record.tenant.clone(), record.request.clone());
        if record.is_finished() || self.open_entry(&key).is_some() {
            return Ok(());
        }
        self.inner
            .records
            .mark_open(&record.tenant, &record.request)
            .await?;
        let mut open = lock(&self.inner.open);
        if open.contains_key(&key) {
            return Ok(());
        }
        self.count_unfinished(&record.tenant, record.unfinished_jobs());
        open.insert(
            key,
            Arc::new(Mutex::new(Open {
                record: record.clone(),
                retired: false,
            })),
        );
        Ok(())
    }

    /// Unfinished jobs of a tenant (what its quota counts).
    pub fn unfinished_jobs(&self, tenant: &TenantId) -> usize {
        lock(&self.inner.tenant_jobs)
            .get(tenant)
            .copied()
            .unwrap_or(0)
    }

    /// See [`Intake::tenant_changes`]: read before a request's tenant record is.
    pub fn tenant_changes(&self) -> u64 {
        self.inner
            .tenant_changes
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    fn tenant_gate(&self, tenant: &TenantId) -> Arc<tokio::sync::RwLock<()>> {
        lock(&self.inner.tenant_gates)
            .entry(tenant.clone())
            .or_default()
            .clone()
    }

    /// Runs a change of a tenant that acceptance must not interleave with (forget, revocation): it
    /// waits for acceptances under way, and those that come after read the tenant record afresh.
    async fn changing_tenant<T>(
        &self,
        tenant: &TenantId,
        change: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let gate = self.tenant_gate(tenant);
        let _exclusive = gate.write().await;
        let changes = &self.inner.tenant_changes;
        changes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let result = change.await;
        changes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        result
    }

    /// Accepts a request: idempotent on its id, quota- and consent-checked, persisted, then published.
    pub async fn accept(&self, mut intake: Intake) -> Result<Reply> {
        let gate = self.tenant_gate(&intake.tenant);
        let _shared = gate.read().await;
        if self.tenant_changes() != intake.tenant_changes {
            // A forget or a revocation ran since the tenant was read: judge by the record as it is now.
            match self.inner.tenants.get(&intake.tenant).await? {
                Some(fresh) => intake.tenant_record = fresh,
                None => {
                    Self::count_request(intake.ingress, "rejected");
                    let error = crate::tenants::AuthError::Invalid(intake.tenant.to_string());
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
        let guard = {
            let mut locks = lock(&self.inner.intake_locks);
            locks.entry(key.clone()).or_default().clone()
        };
        let result = async {
            let _held = guard.lock().await;
            self.accept_locked(intake).await
        }
        .instrument(span)
        .await;
        {
            let mut locks = lock(&self.inner.intake_locks);
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
        let tenant = &intake.tenant_record;
        let variants = match &intake.album_run {
            Some(run) => run.photos.len(),
            None => intake.input.variants.max(1) as usize,
        };
        let quota = self.inner.options.tenant_queue_quota;
        // Held until the request is followed; dropped (released) on any refusal or failure below.
        let reservation = match self.reserve_jobs(&intake.tenant, variants, quota) {
            Ok(reservation) => reservation,
            Err(unfinished) => {
                Self::count_request(intake.ingress, "rejected");
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
        let mut plan = match &intake.parent {
            Some((_, parent)) => {
                let mut input = intake.input.clone();
                input.places_parent_subjects = parent
                    .references
                    .iter()
                    .any(|r| r.role == reverie_shared::jobs::ReferenceRole::Subject);
                let child = plan::make_plan(&input, &intake.request, &self.inner.options.planner);
                let mut refined = plan::refine_plan(parent, child);
                let unused = plan::replace_sources(&mut refined, &intake.replacements);
                if !unused.is_empty() {
                    Self::count_request(intake.ingress, "rejected");
                    let reasons = unused
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
                        .collect();
                    return Ok(Reply::rejected(request_id, reasons));
                }
                refined
            }
            None => plan::make_plan(&intake.input, &intake.request, &self.inner.options.planner),
        };
        if let Some(run) = intake.album_run.clone() {
            plan = plan::album_plan(plan, run, &intake.request);
        }
        let missing = consent_gaps(tenant, &plan);
        if !missing.is_empty() {
            Self::count_request(intake.ingress, "rejected");
            return Ok(Reply::rejected(request_id, missing));
        }
        let now = Utc::now();
        let jobs = plan::jobs_for(
            &plan,
            &intake.tenant,
            &intake.request,
            &self.inner.options.planner,
        );
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
            self.count_unfinished(&record.tenant, record.jobs.len());
            self.release_jobs(&record.tenant, variants);
        }
        // Persisted before anything is published: a crash after this point is recovered from the record.
        match self.inner.records.save_new(&record).await {
            Ok(true) => {
                if record.plan.album_run.is_some() {
                    metrics::global().batch_runs_active.inc();
                }
            }
            Ok(false) => {
                self.release_jobs(&record.tenant, record.jobs.len());
                return self.duplicate_in_store(intake.ingress, &record).await;
            }
            Err(error) => {
                self.release_jobs(&record.tenant, record.jobs.len());
                return Err(error);
            }
        }
        let reply = accepted_reply(&record, false);
        let key = (record.tenant.clone(), record.request.clone());
        lock(&self.inner.open).insert(
            key,
            Arc::new(Mutex::new(Open {
                record,
                retired: false,
            })),
        );
        // The `published` flags ride along with the job's next durable write (its result): a crash before
        // that republishes the job, and the rerun is harmless (same output keys, the duplicate result is
        // ignored), so no extra write is spent on them here.
        self.publish_jobs(&intake.tenant, &intake.request, false)
            .await?;
        Self::count_request(intake.ingress, "accepted");
        Ok(reply)
    }

    /// The same request again: no new jobs. Follow it again if a failure cut its acceptance short, and
    /// publish anything a crash left unpublished.
    async fn accept_duplicate(&self, ingress: Ingress, existing: RequestRecord) -> Result<Reply> {
        self.adopt(&existing).await?;
        self.ensure_published(&existing.tenant, &existing.request)
            .await?;
        Self::count_request(ingress, "duplicate");
        Ok(accepted_reply(&existing, true))
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
        let Some(existing) = self.inner.records.load_stored(tenant, request).await? else {
            return Err(crate::error::SchedulerError::Unavailable(format!(
                "request {request} was refused as existing but its record cannot be read"
            )));
        };
        if existing.is_finished() {
            self.inner.records.mark_closed(tenant, request);
        }
        self.accept_duplicate(ingress, existing).await
    }

    /// A request this scheduler follows, or whose record the cache holds.
    async fn known(&self, tenant: &TenantId, request: &RequestId) -> Option<RequestRecord> {
        if let Some(entry) = self.open_entry(&(tenant.clone(), request.clone())) {
            return Some(entry.lock().await.record.clone());
        }
        self.inner.records.load_cached(tenant, request).await
    }

    /// The record of a request the scheduler already accepted, open or finished.
    async fn existing(
        &self,
        tenant: &TenantId,
        request: &RequestId,
    ) -> Result<Option<RequestRecord>> {
        if let Some(record) = self.known(tenant, request).await {
            return Ok(Some(record));
        }
        self.inner.records.load_stored(tenant, request).await
    }

    /// The current record of a request of `tenant` (never another tenant's).
    pub async fn record(
        &self,
        tenant: &TenantId,
        request: &RequestId,
    ) -> Result<Option<RequestRecord>> {
        self.existing(tenant, request).await
    }

    fn job_message(
        spec: &reverie_shared::jobs::GenerateJob,
        priority: Priority,
    ) -> Result<(Job, Message)> {
        let job = Job {
            spec: JobSpec::Generate(spec.clone()),
            attempt: 1,
            priority,
            accepted_ms: now_ms(),
        };
        let body = envelope::encode_job(&job)?;
        let props = MessageProps {
            message_id: Some(spec.job.to_string()),
            content_type: Some("application/x-reverie-job".to_string()),
            priority: priority.amqp(),
            ..MessageProps::default()
        };
        Ok((job, Message::new(body).with_props(props)))
    }

    /// Publishes (interactive) or hands to the feeder (batch) every unfinished, unpublished job of an
    /// open request, and records that durably. Idempotent: used on duplicates and by recovery.
    pub async fn ensure_published(&self, tenant: &TenantId, request: &RequestId) -> Result<()> {
        self.publish_jobs(tenant, request, true).await
    }

    /// [`Core::ensure_published`]; with `persist` false the `published` flags are only set in memory.
    async fn publish_jobs(
        &self,
        tenant: &TenantId,
        request: &RequestId,
        persist: bool,
    ) -> Result<()> {
        let Some(entry) = self.open_entry(&(tenant.clone(), request.clone())) else {
            return Ok(());
        };
        let mut open = entry.lock().await;
        if open.retired {
            return Ok(());
        }
        let priority = open.record.plan.priority;
        let mut changed = false;
        for job in open.record.jobs.iter_mut() {
            if job.published || job.state.is_final() {
                continue;
            }
            let (message_job, message) = Self::job_message(&job.spec, priority)?;
            match priority {
                Priority::Interactive => {
                    let span = tracing::info_span!("publish", job = %job.job);
                    self.inner
                        .backends
                        .queue
                        .publish(&self.inner.queues.generate, message)
                        .instrument(span)
                        .await?;
                    metrics::global()
                        .jobs_published
                        .with_label_values(&["generate", priority.label()])
                        .inc();
                    job.published = true;
                    changed = true;
                }
                Priority::Batch => {
                    lock(&self.inner.feeder).push(message_job);
                }
            }
        }
        if priority == Priority::Batch {
            self.inner.feeder_wake.notify_one();
        }
        if changed && persist {
            open.record.updated_at = Utc::now();
            self.inner.records.save(&open.record).await?;
        }
        Ok(())
    }

    /// Publishes the feeder's next batch job, if any has room. Returns whether one was published.
    pub async fn feed_one(&self) -> Result<bool> {
        let Some(job) = lock(&self.inner.feeder).next_to_publish() else {
            return Ok(false);
        };
        let JobSpec::Generate(spec) = &job.spec else {
            return Ok(true);
        };
        let tenant = spec.tenant.clone();
        let Some(entry) = self.open_entry(&(tenant.clone(), spec.request.clone())) else {
            lock(&self.inner.feeder).finished(&tenant, &spec.job);
            return Ok(true);
        };
        let mut open = entry.lock().await;
        let wanted = !open.retired
            && open
                .record
                .jobs
                .iter()
                .any(|j| j.job == spec.job && !j.published && !j.state.is_final());
        if !wanted {
            lock(&self.inner.feeder).finished(&tenant, &spec.job);
            return Ok(true);
        }
        let (_, message) = Self::job_message(spec, Priority::Batch)?;
        let span = tracing::info_span!("publish", job = %spec.job);
        if let Err(error) = self
            .inner
            .backends
            .queue
            .publish(&self.inner.queues.generate, message)
            .instrument(span)
            .await
        {
            lock(&self.inner.feeder).push_front(job.clone());
            return Err(error.into());
        }
        metrics::global()
            .jobs_published
            .with_label_values(&["generate", Priority::Batch.label()])
            .inc();
        if let Some(record_job) = open.record.job_mut(&spec.job) {
            record_job.published = true;
        }
        open.record.updated_at = Utc::now();
        self.inner.records.save(&open.record).await?;
        Ok(true)
    }

    /// Reloads every request with unfinished jobs after a restart and publishes what was not published.
    pub async fn recover(&self) -> Result<usize> {
        let open = self.inner.records.open_requests().await?;
        let mut recovered = 0;
        for (tenant, request) in open {
            let record = self.inner.records.load(&tenant, &request).await?;
            let Some(record) = record.filter(|r| !r.is_finished()) else {
                // Finished (leaving the log is the last step of finishing) or its tenant forgotten.
                self.inner.records.mark_closed(&tenant, &request);
                continue;
            };
            self.count_unfinished(&tenant, record.unfinished_jobs());
            if record.plan.priority == Priority::Batch {
                // Published but unfinished batch jobs still occupy their tenant's share of the broker.
                let mut feeder = lock(&self.inner.feeder);
                for job in record
                    .jobs
                    .iter()
                    .filter(|j| j.published && !j.state.is_final())
                {
                    feeder.mark_in_flight(&tenant, &job.job);
                }
            }
            lock(&self.inner.open).insert(
                (tenant.clone(), request.clone()),
                Arc::new(Mutex::new(Open {
                    record,
                    retired: false,
                })),
            );
            self.ensure_published(&tenant, &request).await?;
            recovered += 1;
        }
        Ok(recovered)
    }

    /// Applies a worker's event to its job's record and relays it to the requester.
    pub async fn handle_event(&self, event: JobEvent) -> Result<()> {
        let (job, tenant) = match &event {
            JobEvent::Started { job, tenant, .. }
            | JobEvent::Progress { job, tenant, .. }
            | JobEvent::Succeeded { job, tenant, .. }
            | JobEvent::Failed { job, tenant, .. } => (job.clone(), tenant.clone()),
        };
        let span = tracing::info_span!("event", job = %job, tenant = %tenant);
        self.handle_event_inner(event, job, tenant)
            .instrument(span)
            .await
    }

    async fn handle_event_inner(
        &self,
        event: JobEvent,
        job: JobId,
        tenant: TenantId,
    ) -> Result<()> {
        let Some(request) = crate::records::request_of(&job) else {
            // Library analysis jobs (`analyse-{shard}`, published by imports) belong to no request:
            // their outcome is the stored analysis, which `people list` reads.
            if job.as_str().starts_with("analyse-") {
                tracing::debug!("library analysis event");
            } else {
                tracing::warn!("event for a job id that names no request; ignored");
            }
            return Ok(());
        };
        let key = (tenant.clone(), request.clone());
        let Some(entry) = self.open_entry(&key) else {
            return self.handle_stray_event(&event, &tenant, &request).await;
        };
        if self.inner.tenants.get(&tenant).await?.is_none() {
            // Forgotten (possibly by another process): stop following it and write nothing back.
            entry.lock().await.retired = true;
            lock(&self.inner.open).remove(&key);
            lock(&self.inner.feeder).forget(&tenant);
            lock(&self.inner.tenant_jobs).remove(&tenant);
            return self.handle_stray_event(&event, &tenant, &request).await;
        }
        let mut open = entry.lock().await;
        if open.retired {
            drop(open);
            return self.handle_stray_event(&event, &tenant, &request).await;
        }
        // The event is applied to a copy, which replaces the followed record only once it is saved: a
        // failed save leaves the record as it was, so the redelivered event applies in full.
        let mut next = open.record.clone();
        let Some(change) = apply_event(&mut next, &event, &job, Utc::now()) else {
            if let JobEvent::Succeeded { outputs, .. } = &event {
                if next
                    .job_mut(&job)
                    .is_some_and(|j| j.state == JobState::Cancelled)
                {
                    // Work that finished after it was cancelled is not delivered; its outputs go.
                    delete_outputs(&self.inner.backends, &tenant, outputs).await;
                }
            }
            return Ok(());
        };
        let finishing = next.is_finished() && !next.final_reply_sent;
        if finishing {
            next.final_reply_sent = true;
            if let Some(run) = next.plan.album_run.clone() {
                if let Err(error) =
                    crate::album::finish_album(&*self.inner.backends.store, &next, &run).await
                {
                    // An outage is retried (the event is requeued); a refusal would be refused again on
                    // every redelivery, so the run finishes without its manifest and contact sheet.
                    if !error.is_permanent() {
                        return Err(error);
                    }
                    tracing::error!(%error, album = %run.to, "the store refuses the album's manifest and contact sheet; the run finishes without them");
                }
            }
        }
        let succeeded = matches!(event, JobEvent::Succeeded { .. }) && change.finished_job;
        match change.write {
            Write::None => {}
            Write::Cache => self.inner.records.save_cached(&next).await?,
            Write::Durable if succeeded => {
                // The provenance entries and the record go side by side: both are idempotent puts, and
                // the event is acked only when both stand.
                tokio::try_join!(
                    self.write_provenance(&next, &job),
                    self.inner.records.save_update(&next),
                )?;
            }
            Write::Durable => self.inner.records.save_update(&next).await?,
        }
        open.record = next;
        if change.finished_job {
            self.job_finished(&open.record, &job, &event);
        }
        let final_reply = if finishing {
            open.retired = true;
            lock(&self.inner.open).remove(&key);
            if open.record.plan.album_run.is_some() {
                metrics::global().batch_runs_active.dec();
            }
            Some(replies::final_reply(&open.record))
        } else {
            None
        };
        let route = open.record.reply.clone();
        drop(open);
        if let Some(reply) = change.relay {
            self.relay(&tenant, &request, route.as_ref(), &reply).await;
        }
        if let Some(reply) = final_reply {
            self.relay(&tenant, &request, route.as_ref(), &reply).await;
            // Last step: until it leaves the open log, recovery finds the record finished and skips it.
            self.inner.records.mark_closed(&tenant, &request);
        }
        Ok(())
    }

    /// Bookkeeping once a job's final state is saved: metrics, the tenant's quota, the fairness feeder.
    fn job_finished(&self, record: &RequestRecord, job: &JobId, event: &JobEvent) {
        let succeeded = matches!(event, JobEvent::Succeeded { .. });
        metrics::global()
            .jobs
            .with_label_values(&["generate", if succeeded { "succeeded" } else { "failed" }])
            .inc();
        let in_album_run = record
            .jobs
            .iter()
            .any(|j| &j.job == job && j.spec.batch_run.is_some());
        if in_album_run {
            metrics::global()
                .batch_run_photos
                .with_label_values(&[if succeeded { "done" } else { "failed" }])
                .inc();
        }
        self.release_jobs(&record.tenant, 1);
        lock(&self.inner.feeder).finished(&record.tenant, job);
        self.inner.feeder_wake.notify_one();
    }

    async fn write_provenance(&self, record: &RequestRecord, job: &JobId) -> Result<()> {
        let Some(record_job) = record.jobs.iter().find(|j| &j.job == job) else {
            return Ok(());
        };
        let entry = ProvenanceEntry {
            request: record.request.clone(),
            job: job.clone(),
            outputs: record_job.outputs.clone(),
            created_at: Utc::now().to_rfc3339(),
        };
        let writes = record_job.spec.references.iter().map(|reference| {
            self.inner
                .records
                .record_provenance(&record.tenant, reference.photo.as_str(), &entry)
        });
        futures::future::try_join_all(writes).await?;
        Ok(())
    }

    /// An event for a request the scheduler is not following: a duplicate after the end, or work of a
    /// tenant that was forgotten (whose late outputs are deleted so nothing of it remains).
    async fn handle_stray_event(
        &self,
        event: &JobEvent,
        tenant: &TenantId,
        request: &RequestId,
    ) -> Result<()> {
        let JobEvent::Succeeded { outputs, job, .. } = event else {
            return Ok(());
        };
        let record = self.inner.records.load(tenant, request).await?;
        let tenant_exists = self.inner.tenants.get(tenant).await?.is_some();
        let cancelled = record
            .as_ref()
            .and_then(|r| r.jobs.iter().find(|j| &j.job == job))
            .is_some_and(|j| j.state == JobState::Cancelled);
        if !tenant_exists || cancelled {
            delete_outputs(&self.inner.backends, tenant, outputs).await;
        }
        Ok(())
    }

    /// Cancels the unfinished jobs of a request for which `which` says so; returns how many.
    async fn cancel_jobs(
        &self,
        tenant: &TenantId,
        request: &RequestId,
        reason: &str,
        which: impl Fn(&JobRecord) -> bool,
    ) -> Result<u64> {
        let key = (tenant.clone(), request.clone());
        let Some(entry) = self.open_entry(&key) else {
            return Ok(0);
        };
        let mut open = entry.lock().await;
        if open.retired {
            return Ok(0);
        }
        // Changed on a copy that replaces the record once saved (see handle_event_inner).
        let now = Utc::now();
        let mut next = open.record.clone();
        let mut cancelled = Vec::new();
        for job in next.jobs.iter_mut() {
            if !job.state.is_final() && which(job) {
                job.transition(JobState::Cancelled, now);
                job.error = Some(reason.to_string());
                cancelled.push(job.job.clone());
            }
        }
        if cancelled.is_empty() {
            return Ok(0);
        }
        let finishing = next.is_finished() && !next.final_reply_sent;
        next.final_reply_sent |= finishing;
        next.updated_at = now;
        self.inner.records.save(&next).await?;
        open.record = next;
        {
            let mut feeder = lock(&self.inner.feeder);
            feeder.remove_pending(tenant, |j| cancelled.contains(j.spec.id()));
            for job in &cancelled {
                feeder.finished(tenant, job);
            }
        }
        self.inner.feeder_wake.notify_one();
        self.release_jobs(tenant, cancelled.len());
        metrics::global()
            .jobs
            .with_label_values(&["generate", "cancelled"])
            .inc_by(cancelled.len() as u64);
        let final_reply = finishing.then(|| {
            open.retired = true;
            lock(&self.inner.open).remove(&key);
            replies::final_reply(&open.record)
        });
        let route = open.record.reply.clone();
        drop(open);
        if let Some(reply) = final_reply {
            self.relay(tenant, request, route.as_ref(), &reply).await;
        }
        Ok(cancelled.len() as u64)
    }

    /// Cancels a request of `tenant`. Queued jobs never run; a worker already rendering one finishes
    /// but its outputs are deleted and not delivered. Returns the record, `None` if there is no such request.
    pub async fn cancel(
        &self,
        tenant: &TenantId,
        request: &RequestId,
    ) -> Result<Option<RequestRecord>> {
        self.cancel_jobs(tenant, request, "cancelled by the requester", |_| true)
            .await?;
        self.record(tenant, request).await
    }

    /// Revokes consent for a source and cancels unfinished jobs that used its photos without another
    /// consented source covering them. Returns how many jobs were cancelled.
    pub async fn revoke_consent(&self, tenant: &TenantId, source: &str) -> Result<u64> {
        self.changing_tenant(tenant, self.revoke_consent_now(tenant, source))
            .await
    }

    async fn revoke_consent_now(&self, tenant: &TenantId, source: &str) -> Result<u64> {
        let updated = self
            .inner
            .tenants
            .set_consent(tenant, source, false)
            .await?;
        let requests: Vec<RequestId> = lock(&self.inner.open)
            .keys()
            .filter(|(t, _)| t == tenant)
            .map(|(_, r)| r.clone())
            .collect();
        let reason = format!("consent for {source} was revoked");
        let mut cancelled = 0;
        for request in requests {
            let albums = match self.open_entry(&(tenant.clone(), request.clone())) {
                Some(entry) => entry.lock().await.record.plan.reference_albums.clone(),
                None => continue,
            };
            cancelled += self
                .cancel_jobs(tenant, &request, &reason, |job| {
                    job.spec.references.iter().any(|r| {
                        let photo_albums =
                            albums.get(r.photo.as_str()).cloned().unwrap_or_default();
                        !updated.may_use(&photo_albums)
                    })
                })
                .await?;
        }
        Ok(cancelled)
    }

    /// Deletes everything of a tenant: its unfinished work is cancelled first, then every object under
    /// `tenants/{t}/` and every cache key under `reverie:{t}:` is deleted.
    pub async fn forget(&self, tenant: &TenantId) -> Result<ForgetReport> {
        self.changing_tenant(tenant, self.forget_now(tenant)).await
    }

    async fn forget_now(&self, tenant: &TenantId) -> Result<ForgetReport> {
        let requests: Vec<RequestId> = lock(&self.inner.open)
            .keys()
            .filter(|(t, _)| t == tenant)
            .map(|(_, r)| r.clone())
            .collect();
        let mut jobs_cancelled = 0;
        for request in &requests {
            jobs_cancelled += self
                .cancel_jobs(tenant, request, "the tenant was forgotten", |_| true)
                .await?;
        }
        // Retire whatever is left so no task writes a record back after the deletion.
        let entries: Vec<Arc<Mutex<Open>>> = {
            let mut open = lock(&self.inner.open);
            let keys: Vec<OpenKey> = open.keys().filter(|(t, _)| t == tenant).cloned().collect();
            keys.iter().filter_map(|k| open.remove(k)).collect()
        };
        for entry in entries {
            entry.lock().await.retired = true;
        }
        lock(&self.inner.feeder).forget(tenant);
        lock(&self.inner.tenant_jobs).remove(tenant);
        lock(&self.inner.streams).retain(|(t, _), _| t != tenant);
        lock(&self.inner.intake_locks).retain(|(t, _), l| t != tenant || Arc::strong_count(l) > 1);
        self.inner.records.open_log().forget(tenant).await?;
        let (store_objects_deleted, cache_keys_deleted) =
            self.inner.tenants.delete_everything(tenant).await?;
        tracing::info!(%tenant, store_objects_deleted, cache_keys_deleted, jobs_cancelled, "tenant forgotten");
        Ok(ForgetReport {
            tenant: tenant.to_string(),
            store_objects_deleted,
            cache_keys_deleted,
            jobs_cancelled,
        })
    }

    /// Samples queue depths and live workers into the metrics.
    /// Age of the oldest job this scheduler published that no worker has started yet (the broker does
    /// not tell message ages over AMQP; the job records do).
    async fn sample_oldest_queued(&self) {
        let entries: Vec<Arc<Mutex<Open>>> = lock(&self.inner.open).values().cloned().collect();
        let now = Utc::now();
        let mut oldest = 0.0f64;
        for entry in entries {
            let open = entry.lock().await;
            for job in open
                .record
                .jobs
                .iter()
                .filter(|j| j.state == JobState::Queued && j.published)
            {
                let age = (now - job.created_at).num_milliseconds().max(0) as f64 / 1000.0;
                oldest = oldest.max(age);
            }
        }
        metrics::global()
            .queue_oldest_age
            .with_label_values(&[self.inner.queues.generate.as_str()])
            .set(oldest);
    }

    pub async fn sample_metrics(&self) {
        let queues = &self.inner.queues;
        for name in [
            &queues.requests,
            &queues.generate,
            &queues.analyse,
            &queues.events,
        ] {
            if let Ok(depth) = self.inner.backends.queue.depth(name).await {
                metrics::global()
                    .queue_depth
                    .with_label_values(&[name.as_str()])
                    .set(i64::try_from(depth).unwrap_or(i64::MAX));
            }
        }
        self.sample_oldest_queued().await;
        // Heartbeats expire after three missed beats, so the keys present are the live workers.
        let prefix = keys::worker_heartbeat_key("");
        if let Ok(workers) = self.inner.backends.cache.keys(&prefix).await {
            metrics::global()
                .workers_alive
                .set(i64::try_from(workers.len()).unwrap_or(i64::MAX));
        }
    }

    /// Live workers, from their heartbeats.
    pub async fn workers_alive(&self) -> Result<usize> {
        Ok(self
            .inner
            .backends
            .cache
            .keys(&keys::worker_heartbeat_key(""))
            .await?
            .len())
    }

    /// Checks the three backends answer (readiness).
    pub async fn ready(&self) -> std::result::Result<(), String> {
        let backends = &self.inner.backends;
        backends.queue.ping().await.map_err(|e| e.to_string())?;
        backends.cache.ping().await.map_err(|e| e.to_string())?;
        backends
            .store
            .head("tenants/.ready")
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    pub fn feeder_pending(&self) -> usize {
        lock(&self.inner.feeder).pending_count()
    }

    pub(crate) fn backends(&self) -> &Backends {
        &self.inner.backends
    }
}

/// The message id of a reply. Acknowledgements and final replies have one per request and kind, so a
/// reply sent again (its publish retried across a broker restart, or the final reply of a request
/// re-sent) carries the id of the first and a requester can drop the copy; progress replies are unique.
fn reply_message_id(reply: &Reply) -> String {
    let duplicate = matches!(
        reply.body,
        ReplyBody::Accepted {
            duplicate: true,
            ..
        }
    );
    match (&reply.request_id, reply.kind()) {
        (Some(request), kind) if kind != "progress" => {
            format!(
                "{request}.{kind}{}",
                if duplicate { ".duplicate" } else { "" }
            )
        }
        _ => uuid::Uuid::new_v4().simple().to_string(),
    }
}

fn accepted_reply(record: &RequestRecord, duplicate: bool) -> Reply {
    Reply::new(
        Some(record.request.to_string()),
        ReplyBody::Accepted {
            jobs: record.jobs.iter().map(|j| j.job.to_string()).collect(),
            duplicate,
            plan: record.plan.explanation.clone(),
        },
    )
}

/// How far the change an event made must be written before the event is acked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Write {
    None,
    /// Only the cache copies: a job started running. A crash loses that state, which the job's next
    /// event (its result) brings back; the durable record is not rewritten for it.
    Cache,
    Durable,
}

/// What applying an event changed.
struct Change {
    relay: Option<Reply>,
    write: Write,
    /// The job reached a final state with this event.
    finished_job: bool,
}

/// Applies a worker's event to `record`; `None` when it changes nothing (a late or duplicate event, or
/// an event for a job the request does not have).
fn apply_event(
    record: &mut RequestRecord,
    event: &JobEvent,
    job: &JobId,
    now: chrono::DateTime<Utc>,
) -> Option<Change> {
    let Some(record_job) = record.job_mut(job) else {
        tracing::warn!("event for a job the request does not have; ignored");
        return None;
    };
    match event {
        JobEvent::Started {
            worker, attempt, ..
        } => {
            if record_job.state.is_final() {
                return None;
            }
            record_job.attempts = record_job.attempts.max(*attempt);
            record_job.worker = Some(worker.clone());
            record_job.transition(JobState::Running, now);
            Some(Change {
                relay: Some(progress(job, JobState::Running, None)),
                write: Write::Cache,
                finished_job: false,
            })
        }
        JobEvent::Progress {
            step,
            total,
            preview_png,
            ..
        } => {
            if record_job.state.is_final() {
                return None;
            }
            let mut reply = progress(job, JobState::Running, preview_png.as_deref());
            if let ReplyBody::Progress {
                step: s, total: t, ..
            } = &mut reply.body
            {
                *s = Some(*step);
                *t = Some(*total);
            }
            Some(Change {
                relay: Some(reply),
                write: Write::None,
                finished_job: false,
            })
        }
        JobEvent::Succeeded {
            outputs,
            render_ms,
            identity,
            ..
        } => {
            // A duplicate result, or one for a cancelled job, changes nothing.
            if !record_job.transition(JobState::Succeeded, now) {
                return None;
            }
            record_job.outputs = outputs.clone();
            record_job.render_ms = Some(*render_ms);
            record_job.identity = identity.clone();
            Some(Change {
                relay: None,
                write: Write::Durable,
                finished_job: true,
            })
        }
        JobEvent::Failed {
            reason,
            retryable,
            attempt,
            ..
        } => {
            if record_job.state.is_final() {
                return None;
            }
            record_job.attempts = record_job.attempts.max(*attempt);
            record_job.error = Some(reason.clone());
            if *retryable {
                // The worker republishes it with the next attempt; it is queued again.
                record_job.state = JobState::Queued;
                record_job.updated_at = now;
            } else {
                record_job.transition(JobState::Failed, now);
            }
            Some(Change {
                relay: None,
                write: Write::Durable,
                finished_job: !*retryable,
            })
        }
    }
}

fn progress(job: &JobId, state: JobState, preview: Option<&[u8]>) -> Reply {
    let request = crate::records::request_of(job).map(|r| r.to_string());
    Reply::new(
        request,
        ReplyBody::Progress {
            job: job.to_string(),
            state,
            step: None,
            total: None,
            preview_png_base64: preview.map(replies::base64),
        },
    )
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

/// Deletes output objects a worker wrote, but only inside the tenant's own prefix.
async fn delete_outputs(backends: &Backends, tenant: &TenantId, outputs: &[String]) {
    let prefix = keys::tenant_prefix(tenant);
    for key in outputs.iter().filter(|k| k.starts_with(&prefix)) {
        if let Err(error) = backends.store.delete(key).await {
            tracing::warn!(%error, key, "could not delete an undelivered output");
        }
    }
}

/// Unfinished jobs reserved under a tenant's quota while a request is being accepted; released when
/// dropped unless kept (the request is then followed and its jobs release it as they finish).
struct Reservation {
    inner: Arc<Inner>,
    tenant: TenantId,
    jobs: usize,
}

impl Reservation {
    fn keep(mut self) {
        self.jobs = 0;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.jobs > 0 {
            release(&self.inner, &self.tenant, self.jobs);
        }
    }
}

fn release(inner: &Inner, tenant: &TenantId, jobs: usize) {
    let mut counts = lock(&inner.tenant_jobs);
    if let Some(count) = counts.get_mut(tenant) {
        *count = count.saturating_sub(jobs);
        if *count == 0 {
            counts.remove(tenant);
        }
    }
}
