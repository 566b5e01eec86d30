//! The scheduler's core: what happens to a request between its ingress and its stored images, in
//! parts that each own their state and their stretch of the request's life, in the order a request
//! meets them:
//!
//! 1. [`intake`]: accept once per request id, within quota and consent, planned into job records,
//!    persisted with the open log (and recovery of what the open log names after a restart);
//! 2. [`dispatch`]: the jobs onto the broker, batch jobs through the fairness feeder;
//! 3. [`settle`]: worker events into the request's record, provenance, album finishing, cancellation;
//! 4. [`streams`]: replies to AMQP `reply_to` queues and event-stream subscribers.
//!
//! Beside them, [`tenancy`] (consent revocation, forgetting a tenant) drives the others for one tenant,
//! and [`health`] samples metrics and answers readiness. What several parts share is in [`state`].
//! [`Core`] only wires them; both ingresses (AMQP and HTTP) call into it, and it knows nothing of their
//! wire formats.
//!
//! One core follows each tenant at a time: the one core of a farm with one active scheduler, or the
//! core of the tenant's shard on the scheduler holding it ([`crate::shards`]). Idempotency and the
//! fairness feeder keep their state in that core (records are durable, so whoever takes over recovers
//! from the store).

mod dispatch;
mod health;
mod intake;
mod settle;
mod state;
mod streams;
mod tenancy;
#[cfg(test)]
mod testing;

use std::sync::Arc;

use reverie_shared::backends::Backends;
use reverie_shared::ids::{RequestId, TenantId};
use reverie_shared::jobs::JobEvent;
use reverie_shared::queues::{QueueNames, ShardNames};
use tokio::sync::broadcast;

pub use intake::Intake;
pub use streams::StreamedReply;

use crate::error::Result;
use crate::options::SchedulerOptions;
use crate::records::{Records, ReplyRoute, RequestRecord};
use crate::replies::Reply;
use crate::tenants::{ForgetReport, Tenants};

/// The scheduler's core, cheap to clone: the parts, wired.
#[derive(Clone)]
pub struct Core {
    parts: Arc<Parts>,
}

struct Parts {
    backends: Backends,
    queues: QueueNames,
    /// The share of the farm's tenants this core follows (with `scheduler.shards` = 1: all of them).
    shard: ShardNames,
    /// The broker connection (`JobQueue::connection_epoch`) a sharded core's claim was taken on;
    /// `u64::MAX`: not pinned (one scheduler, which takes its claim back on a new connection).
    claimed_on: std::sync::atomic::AtomicU64,
    options: SchedulerOptions,
    tenants: Tenants,
    records: Records,
    quotas: Arc<state::Quotas>,
    gates: Arc<state::TenantGates>,
    intake: Arc<intake::Acceptor>,
    dispatch: Arc<dispatch::Dispatch>,
    settle: Arc<settle::Settler>,
    replies: Arc<streams::ReplyRouter>,
    tenancy: tenancy::Tenancy,
    health: health::Health,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("queues", &self.parts.queues)
            .finish()
    }
}

impl Core {
    /// The core of a farm with one scheduler: every tenant, the farm's shared names.
    pub fn new(backends: Backends, options: SchedulerOptions) -> Core {
        let shard = QueueNames::new(&options.queue_prefix).shard(0, 1);
        Core::for_shard(backends, options, shard)
    }

    /// The core that follows the tenants of one shard (docs/architecture.md, "Schedulers that share
    /// the farm"): its own open log, events queue and requests queue.
    pub fn for_shard(backends: Backends, options: SchedulerOptions, shard: ShardNames) -> Core {
        let queues = QueueNames::new(&options.queue_prefix);
        let tenants = Tenants::new(backends.store.clone(), backends.cache.clone());
        let records = Records::with_open_log(
            backends.store.clone(),
            backends.cache.clone(),
            &shard.open_log_prefix,
        );
        let open = Arc::new(state::OpenRequests::default());
        let quotas = Arc::new(state::Quotas::default());
        let gates = Arc::new(state::TenantGates::default());
        let replies = Arc::new(streams::ReplyRouter::new(backends.queue.clone()));
        let dispatch = Arc::new(dispatch::Dispatch::new(
            backends.queue.clone(),
            queues.clone(),
            shard.clone(),
            records.clone(),
            open.clone(),
            options.batch_in_flight_per_tenant,
        ));
        let intake = Arc::new(intake::Acceptor::new(
            records.clone(),
            tenants.clone(),
            options.planner.clone(),
            options.tenant_queue_quota,
            open.clone(),
            quotas.clone(),
            gates.clone(),
            dispatch.clone(),
        ));
        let settle = Arc::new(settle::Settler::new(
            backends.store.clone(),
            records.clone(),
            tenants.clone(),
            open.clone(),
            quotas.clone(),
            dispatch.clone(),
            replies.clone(),
        ));
        let tenancy = tenancy::Tenancy::new(
            tenants.clone(),
            records.clone(),
            open.clone(),
            quotas.clone(),
            gates.clone(),
            intake.clone(),
            dispatch.clone(),
            settle.clone(),
            replies.clone(),
        );
        let health = health::Health::new(backends.clone(), queues.clone(), open);
        Core {
            parts: Arc::new(Parts {
                backends,
                queues,
                shard,
                claimed_on: std::sync::atomic::AtomicU64::new(u64::MAX),
                options,
                tenants,
                records,
                quotas,
                gates,
                intake,
                dispatch,
                settle,
                replies,
                tenancy,
                health,
            }),
        }
    }

    pub fn tenants(&self) -> &Tenants {
        &self.parts.tenants
    }

    pub fn records(&self) -> &Records {
        &self.parts.records
    }

    pub fn queues(&self) -> &QueueNames {
        &self.parts.queues
    }

    /// The share of the tenants this core follows, and the names it uses for them.
    pub fn shard(&self) -> &ShardNames {
        &self.parts.shard
    }

    /// Pins the core to the broker connection its shard's claim was taken on: once the queue
    /// reconnects, its consumers do not start again (the shard is taken afresh, recovered from the
    /// store, by whoever it is assigned to).
    pub fn pin_to_connection(&self, epoch: u64) {
        self.parts
            .claimed_on
            .store(epoch, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether the core may still act on its claim: not pinned, or its connection is the one it
    /// claimed on.
    pub fn on_its_connection(&self) -> bool {
        let pinned = self
            .parts
            .claimed_on
            .load(std::sync::atomic::Ordering::SeqCst);
        pinned == u64::MAX || pinned == self.parts.backends.queue.connection_epoch()
    }

    pub fn options(&self) -> &SchedulerOptions {
        &self.parts.options
    }

    pub(crate) fn backends(&self) -> &Backends {
        &self.parts.backends
    }

    // Intake.

    /// See [`Intake::tenant_changes`]: read before a request's tenant record is.
    pub fn tenant_changes(&self) -> u64 {
        self.parts.gates.changes()
    }

    /// Accepts a request: idempotent on its id, quota- and consent-checked, persisted, then published.
    pub async fn accept(&self, intake: Intake) -> Result<Reply> {
        self.parts.intake.accept(intake).await
    }

    /// The current record of a request of `tenant` (never another tenant's).
    pub async fn record(
        &self,
        tenant: &TenantId,
        request: &RequestId,
    ) -> Result<Option<RequestRecord>> {
        self.parts.intake.record(tenant, request).await
    }

    /// Reloads every request with unfinished jobs after a restart and publishes what was not published.
    pub async fn recover(&self) -> Result<usize> {
        self.parts.intake.recover().await
    }

    /// Unfinished jobs of a tenant (what its quota counts).
    pub fn unfinished_jobs(&self, tenant: &TenantId) -> usize {
        self.parts.quotas.unfinished(tenant)
    }

    // Dispatch.

    /// Declares every queue the scheduler uses.
    pub async fn declare_queues(&self) -> Result<()> {
        self.parts.dispatch.declare_queues().await
    }

    /// Publishes (interactive) or hands to the feeder (batch) every unfinished, unpublished job of an
    /// open request, and records that durably. Idempotent: used on duplicates and by recovery.
    pub async fn ensure_published(&self, tenant: &TenantId, request: &RequestId) -> Result<()> {
        self.parts.dispatch.publish(tenant, request, true).await
    }

    /// Publishes the feeder's next batch job, if any has room. Returns whether one was published.
    pub async fn feed_one(&self) -> Result<bool> {
        self.parts.dispatch.feed_one().await
    }

    /// Returns when the feeder may have work again (see `runtime::run_feeder`).
    pub(crate) async fn feeder_woken(&self) {
        self.parts.dispatch.woken().await
    }

    /// Batch jobs the fairness feeder holds back.
    pub fn feeder_pending(&self) -> usize {
        self.parts.dispatch.pending()
    }

    // Settling.

    /// Applies a worker's event to its job's record and relays it to the requester.
    pub async fn handle_event(&self, event: JobEvent) -> Result<()> {
        self.parts.settle.handle_event(event).await
    }

    /// Cancels a request of `tenant`. Queued jobs never run; a worker already rendering one finishes
    /// but its outputs are deleted and not delivered. Returns the record, `None` if there is no such request.
    pub async fn cancel(
        &self,
        tenant: &TenantId,
        request: &RequestId,
    ) -> Result<Option<RequestRecord>> {
        self.parts
            .settle
            .cancel_jobs(tenant, request, "cancelled by the requester", |_| true)
            .await?;
        self.record(tenant, request).await
    }

    // Tenancy.

    /// Revokes consent for a source and cancels unfinished jobs that used its photos without another
    /// consented source covering them. Returns how many jobs were cancelled.
    pub async fn revoke_consent(&self, tenant: &TenantId, source: &str) -> Result<u64> {
        self.parts.tenancy.revoke_consent(tenant, source).await
    }

    /// Deletes everything of a tenant: its unfinished work is cancelled first, then every object under
    /// `tenants/{t}/` and every cache key under `reverie:{t}:` is deleted.
    pub async fn forget(&self, tenant: &TenantId) -> Result<ForgetReport> {
        self.parts.tenancy.forget(tenant).await
    }

    // Replies and streams.

    /// Subscribes to the replies of one request (server-sent events).
    pub fn subscribe(
        &self,
        tenant: &TenantId,
        request: &RequestId,
    ) -> broadcast::Receiver<Arc<StreamedReply>> {
        self.parts.replies.subscribe(tenant, request)
    }

    /// Event streams kept (requests someone subscribed to that have not finished).
    pub fn event_streams(&self) -> usize {
        self.parts.replies.event_streams()
    }

    /// Drops the event stream of a request when nobody listens to it any more.
    pub fn unsubscribe_idle(&self, tenant: &TenantId, request: &RequestId) {
        self.parts.replies.unsubscribe_idle(tenant, request)
    }

    /// Sends a reply to the request's AMQP reply_to (if any) and to its event-stream subscribers.
    pub async fn relay(
        &self,
        tenant: &TenantId,
        request: &RequestId,
        route: Option<&ReplyRoute>,
        reply: &Reply,
    ) {
        self.parts.replies.relay(tenant, request, route, reply)
    }

    /// Hands a reply to its AMQP reply lane; returns at once. The route was checked at intake
    /// (`crate::reply_to`). A requester that went away is logged and counted.
    pub fn send_amqp_reply(&self, route: &ReplyRoute, reply: &Reply) {
        self.parts.replies.send_amqp_reply(route, reply)
    }

    // Health.

    /// Samples queue depths, the oldest queued job and live workers into the metrics.
    pub async fn sample_metrics(&self) {
        self.parts.health.sample_metrics().await
    }

    /// Age in seconds of the oldest published, unstarted job of the requests this core follows.
    pub async fn oldest_queued_secs(&self) -> f64 {
        self.parts.health.oldest_queued_secs().await
    }

    /// Sets the oldest-queued gauge (a sharded scheduler: the oldest over its shards).
    pub fn set_oldest_queued(&self, seconds: f64) {
        self.parts.health.set_oldest_queued(seconds)
    }

    /// Ends every event stream of this core (its shard moved to another scheduler).
    pub fn close_streams(&self) {
        self.parts.replies.close_all()
    }

    /// Live workers, from their heartbeats.
    pub async fn workers_alive(&self) -> Result<usize> {
        self.parts.health.workers_alive().await
    }

    /// Checks the three backends answer (readiness).
    pub async fn ready(&self) -> std::result::Result<(), String> {
        self.parts.health.ready().await
    }
}
