//! Schedulers that share the farm (`scheduler.shards` > 1).
//!
//! The tenants are split into a fixed number of shards ([`shard_of`]: a stable hash of the tenant
//! id). Each shard is followed by exactly one scheduler at a time, the one holding the shard's claim
//! on the broker (`{prefix}.scheduler.shard.{k}`, an exclusive queue: the broker lets one connection
//! hold it and drops it with that connection). For the shards it holds, a scheduler runs one
//! [`Core`] each, as a farm with one scheduler runs one for everything: the shard's requests,
//! quotas, fairness feeder, open log (`scheduler/open/shard-{k}/`), its requests queue
//! (`{prefix}.requests.{k}`) and its events queue (`{prefix}.events.{k}`, which its jobs name in
//! their `x-reverie-events` header). A tenant's state therefore lives on one scheduler, and the events
//! of one scheduler's requests never reach another.
//!
//! Which scheduler *should* hold a shard comes from the membership ([`membership`]); a scheduler
//! gives up the shards that belong with another live member and takes those that belong with it. A
//! scheduler that dies loses its claims with its connection; once its heartbeat expires the others
//! take its shards, each recovering the shard's open requests from its open log and consuming the
//! events that waited in its queue. A client may call any scheduler: HTTP requests for a tenant held
//! elsewhere are proxied to the holder ([`proxy`]), AMQP requests and events on the shared queues are
//! passed to the shard's queues ([`relay`]).

pub mod membership;
pub mod proxy;
mod relay;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as SyncMutex, RwLock as SyncRwLock};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use reverie_shared::backends::Backends;
use reverie_shared::metrics;
use reverie_shared::queues::{shard_of, QueueNames, ShardNames};
use tokio::sync::{watch, OwnedRwLockReadGuard, RwLock};
use tokio::task::{JoinHandle, JoinSet};
use tower::ServiceExt;

use crate::ingress::IntakeContext;
use crate::lock;
use crate::options::SchedulerOptions;
use crate::runtime;
use crate::service::Core;
use membership::{assignment, Member, Membership, BEAT};
use proxy::{ForwardError, ProxyClient, FORWARDED_BY_HEADER};

/// Builds the API router of one shard's core.
pub type RouterFor = Arc<dyn Fn(Core) -> Router + Send + Sync>;

/// How long giving up a shard waits for the requests it is handling before it says so (and waits on).
const HANDOVER_WAIT: Duration = Duration::from_secs(10);

/// A shard this scheduler holds.
pub(crate) struct HeldShard {
    pub(crate) core: Core,
    router: Router,
    /// HTTP requests and relayed messages hold it shared while the core handles them; giving the
    /// shard up takes it exclusively, so nothing the core accepted is still being written when the
    /// next holder recovers the shard.
    gate: Arc<RwLock<()>>,
    /// Set when the claim check found the claim gone: the shard is no longer this scheduler's.
    lost: Arc<AtomicBool>,
    /// Set when the shard is being given up: whoever entered the gate after that must not use the
    /// core (its requests would be recovered by nobody).
    retired: AtomicBool,
    stop: watch::Sender<bool>,
    task: SyncMutex<Option<JoinHandle<()>>>,
}

impl HeldShard {
    /// Whether the shard is still this scheduler's to act on: its claim check has not found it gone
    /// and the broker connection is the one it was claimed on.
    fn usable(&self) -> bool {
        !self.lost.load(Ordering::SeqCst) && self.core.on_its_connection()
    }
}

/// The shards of one scheduler, cheap to clone.
#[derive(Clone)]
pub struct Shards {
    inner: Arc<Inner>,
}

struct Inner {
    backends: Backends,
    options: SchedulerOptions,
    queues: QueueNames,
    intake: IntakeContext,
    router_for: RouterFor,
    /// Answers what names no tenant (refusals) and consumes the shared queues; follows no tenant.
    lobby: Core,
    lobby_router: Router,
    held: SyncRwLock<HashMap<u16, Arc<HeldShard>>>,
    /// The members as last seen, for forwarding.
    members: SyncRwLock<Vec<Member>>,
    membership: Membership,
    url: SyncRwLock<String>,
    client: ProxyClient,
    /// Whether this scheduler is in the membership (its last heartbeat was written).
    joined: AtomicBool,
    /// Claims of shards given up whose release failed, released in a later round.
    left_over: SyncMutex<std::collections::BTreeSet<String>>,
}

impl Shards {
    pub fn new(
        backends: Backends,
        options: SchedulerOptions,
        intake: IntakeContext,
        lobby: Core,
        router_for: RouterFor,
    ) -> Shards {
        let queues = QueueNames::new(&options.queue_prefix);
        let membership = Membership::new(
            backends.cache.clone(),
            backends.queue.clone(),
            &options.queue_prefix,
            membership::new_member_id(),
        );
        let lobby_router = router_for(lobby.clone());
        Shards {
            inner: Arc::new(Inner {
                backends,
                options,
                queues,
                intake,
                router_for,
                lobby,
                lobby_router,
                held: SyncRwLock::new(HashMap::new()),
                members: SyncRwLock::new(Vec::new()),
                membership,
                url: SyncRwLock::new(String::new()),
                client: proxy::client(),
                joined: AtomicBool::new(false),
                left_over: SyncMutex::new(Default::default()),
            }),
        }
    }

    pub fn count(&self) -> u16 {
        self.inner.options.shards.max(1)
    }

    pub fn member_id(&self) -> &str {
        self.inner.membership.id()
    }

    pub(crate) fn lobby(&self) -> &Core {
        &self.inner.lobby
    }

    pub(crate) fn intake(&self) -> &IntakeContext {
        &self.inner.intake
    }

    pub(crate) fn backends(&self) -> &Backends {
        &self.inner.backends
    }

    pub(crate) fn names(&self, shard: u16) -> ShardNames {
        self.inner.queues.shard(shard, self.count())
    }

    /// Whether this scheduler is in the membership (readiness).
    pub fn joined(&self) -> bool {
        self.inner.joined.load(Ordering::SeqCst)
    }

    /// The shards this scheduler holds, in order.
    pub fn held_shards(&self) -> Vec<u16> {
        let mut shards: Vec<u16> = read(&self.inner.held)
            .iter()
            .filter(|(_, held)| !held.lost.load(Ordering::SeqCst))
            .map(|(shard, _)| *shard)
            .collect();
        shards.sort_unstable();
        shards
    }

    /// Enters the core of `shard` if this scheduler holds it: while the returned guard lives the
    /// shard is not given up, so what the core accepts meanwhile is in its open log before the next
    /// holder recovers it. A shard whose claim went with a lost connection is not entered.
    pub(crate) async fn enter(
        &self,
        shard: u16,
    ) -> Option<(Arc<HeldShard>, OwnedRwLockReadGuard<()>)> {
        let held = read(&self.inner.held)
            .get(&shard)
            .filter(|held| held.usable())
            .cloned()?;
        let entered = held.gate.clone().read_owned().await;
        if held.retired.load(Ordering::SeqCst) || !held.usable() {
            return None;
        }
        Some((held, entered))
    }

    /// Runs the membership and the shards until `stop`: a heartbeat every [`BEAT`] on its own, and
    /// rounds that take or give shards; `joined` is told once this scheduler is in the membership.
    /// On a stop it leaves the membership and gives every shard up (claims released, so the others
    /// take over at once).
    pub async fn run(
        self,
        url: String,
        mut stop: watch::Receiver<bool>,
        joined: tokio::sync::oneshot::Sender<()>,
    ) {
        *write(&self.inner.url) = url;
        if !self.wait_for_an_unsharded_farm_to_drain(&mut stop).await {
            return;
        }
        let mut beside = JoinSet::new();
        beside.spawn(self.clone().beat(stop.clone()));
        beside.spawn(relay::run_requests(self.clone(), stop.clone()));
        beside.spawn(relay::run_events(self.clone(), stop.clone()));
        beside.spawn(self.clone().sample_metrics(stop.clone()));
        let mut joined = Some(joined);
        tracing::info!(
            member = self.member_id(),
            shards = self.count(),
            "scheduler joining the farm"
        );
        loop {
            self.balance().await;
            if self.joined() {
                if let Some(tell) = joined.take() {
                    let _ = tell.send(());
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(BEAT) => {}
                _ = stop.wait_for(|stop| *stop) => break,
            }
        }
        // The heartbeat stops first, so nobody waits for a leaving scheduler to take a shard.
        while beside.join_next().await.is_some() {}
        self.inner.membership.leave().await;
        let held: Vec<u16> = read(&self.inner.held).keys().copied().collect();
        futures::future::join_all(held.into_iter().map(|shard| self.give_up(shard))).await;
        tracing::info!(member = self.member_id(), "scheduler left the farm");
    }

    /// A sharded scheduler must not start beside the one active scheduler of an unsharded farm (it
    /// would relay that scheduler's events away from it), nor while requests that farm accepted are
    /// still open in its open log (no shard's holder recovers them). Waits, saying so, until neither
    /// is the case; `false` when told to stop first.
    async fn wait_for_an_unsharded_farm_to_drain(&self, stop: &mut watch::Receiver<bool>) -> bool {
        let unsharded = self.inner.queues.shard(0, 1);
        let mut told = false;
        loop {
            let active = self.unsharded_scheduler_active(&unsharded.claim).await;
            let open = self
                .inner
                .backends
                .store
                .list(&unsharded.open_log_prefix)
                .await
                .map(|objects| {
                    objects.iter().any(|o| {
                        let rest = o
                            .key
                            .strip_prefix(&unsharded.open_log_prefix)
                            .unwrap_or(&o.key);
                        !rest.contains('/')
                    })
                })
                .unwrap_or(true);
            if !active && !open {
                return true;
            }
            if !told {
                tracing::error!(
                    claim = %unsharded.claim,
                    open_log = %unsharded.open_log_prefix,
                    "an unsharded scheduler is active or its requests are still open: this sharded scheduler waits until that farm is drained (docs/operations.md, \"Changing scheduler.shards\")"
                );
                told = true;
            }
            tokio::select! {
                _ = tokio::time::sleep(BEAT * 2) => {}
                _ = stop.wait_for(|stop| *stop) => return false,
            }
        }
    }

    /// Whether a scheduler of an unsharded farm holds its claim. Sharded schedulers probe it too, each
    /// for an instant, so a claim found held is asked again a few times before it counts.
    async fn unsharded_scheduler_active(&self, claim: &str) -> bool {
        let queue = &self.inner.backends.queue;
        for _ in 0..5 {
            match queue.claim(claim).await {
                Ok(true) => {
                    let _ = queue.release_claim(claim).await;
                    return false;
                }
                Ok(false) => tokio::time::sleep(Duration::from_millis(200)).await,
                Err(_) => return true,
            }
        }
        true
    }

    /// Renews the heartbeat every [`BEAT`], whatever the rounds are doing (a hand-over may take a
    /// while; the heartbeat must not lapse meanwhile).
    async fn beat(self, mut stop: watch::Receiver<bool>) {
        loop {
            let url = read(&self.inner.url).clone();
            let alive = self
                .inner
                .membership
                .beat(&url, self.count(), self.held_shards())
                .await;
            self.inner.joined.store(alive, Ordering::SeqCst);
            tokio::select! {
                _ = tokio::time::sleep(BEAT) => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
        }
    }

    /// One round: give up lost shards, release claims left over, then take and give shards so that
    /// each is held by the member it is assigned to.
    async fn balance(&self) {
        let lost: Vec<u16> = read(&self.inner.held)
            .iter()
            .filter(|(_, held)| !held.usable())
            .map(|(shard, _)| *shard)
            .collect();
        for shard in lost {
            self.give_up(shard).await;
        }
        self.release_left_over_claims().await;
        let Some(members) = self.inner.membership.members().await else {
            // The cache is away: nobody can tell who should hold what, so nothing moves.
            return;
        };
        *write(&self.inner.members) = members.clone();
        let me = self.member_id().to_string();
        if !self.joined() || !members.iter().any(|m| m.id == me) {
            return;
        }
        let disagreeing: Vec<&Member> = members
            .iter()
            .filter(|m| m.shard_count != 0 && m.shard_count != self.count())
            .collect();
        if !disagreeing.is_empty() {
            tracing::error!(
                shards = self.count(),
                others = ?disagreeing.iter().map(|m| (&m.id, m.shard_count)).collect::<Vec<_>>(),
                "schedulers disagree on scheduler.shards: nothing moves until every scheduler has the same value"
            );
            return;
        }
        let owners = assignment(self.count(), &members);
        let mut give = Vec::new();
        let mut take = Vec::new();
        for shard in 0..self.count() {
            let mine = owners.get(usize::from(shard)) == Some(&me);
            let held = read(&self.inner.held).contains_key(&shard);
            if held && !mine {
                give.push(shard);
            } else if !held && mine {
                take.push(shard);
            }
        }
        futures::future::join_all(give.into_iter().map(|shard| self.give_up(shard))).await;
        futures::future::join_all(take.into_iter().map(|shard| self.take(shard))).await;
    }

    /// Takes `shard` if its claim is free: recovers its open requests, then runs its loops.
    async fn take(&self, shard: u16) {
        let names = self.names(shard);
        let queue = &self.inner.backends.queue;
        // Read before claiming: a reconnect in between makes the shard unusable at once rather than
        // pinned to a connection its claim was never on.
        let epoch = queue.connection_epoch();
        match queue.claim(&names.claim).await {
            Ok(true) => {}
            // Its previous holder has not let go yet (it is handing over, or its connection has not
            // been dropped yet): asked again next round.
            Ok(false) => return,
            Err(error) => {
                tracing::warn!(%error, shard, "could not ask for a shard's claim");
                return;
            }
        }
        let core = Core::for_shard(
            self.inner.backends.clone(),
            self.inner.options.clone(),
            names.clone(),
        );
        core.pin_to_connection(epoch);
        let recovered = async {
            core.declare_queues().await?;
            core.recover().await
        }
        .await;
        let recovered = match recovered {
            Ok(recovered) => recovered,
            Err(error) => {
                tracing::warn!(%error, shard, "could not recover a shard; releasing it");
                let _ = queue.release_claim(&names.claim).await;
                return;
            }
        };
        let (stop, stopped) = watch::channel(false);
        let lost = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(run_shard(
            core.clone(),
            self.inner.intake.clone(),
            stopped,
            lost.clone(),
        ));
        let held = Arc::new(HeldShard {
            router: (self.inner.router_for)(core.clone()),
            core,
            gate: Arc::new(RwLock::new(())),
            lost,
            retired: AtomicBool::new(false),
            stop,
            task: SyncMutex::new(Some(task)),
        });
        write(&self.inner.held).insert(shard, held);
        metrics::global()
            .scheduler_shard_moves
            .with_label_values(&["taken"])
            .inc();
        metrics::global()
            .scheduler_shards_held
            .set(i64::try_from(self.held_shards().len()).unwrap_or(i64::MAX));
        tracing::info!(shard, recovered, member = self.member_id(), "took shard");
    }

    /// Gives `shard` up: no new requests reach its core, those being handled finish, its loops stop
    /// (deliveries being handled finish or go back to the queue), then its claim is released if this
    /// scheduler still holds it (a release of a claim another holds does nothing).
    async fn give_up(&self, shard: u16) {
        let Some(held) = write(&self.inner.held).remove(&shard) else {
            return;
        };
        held.retired.store(true, Ordering::SeqCst);
        let lost = !held.usable();
        // Held until the claim is released: nothing enters the core again (see `enter`). Never given
        // up on: a request the core is accepting must be in its open log before anyone recovers it.
        let exclusive = loop {
            match tokio::time::timeout(HANDOVER_WAIT, held.gate.clone().write_owned()).await {
                Ok(exclusive) => break exclusive,
                Err(_) => tracing::warn!(
                    shard,
                    "giving up a shard waits for requests its core is still handling"
                ),
            }
        };
        let _ = held.stop.send(true);
        let task = lock(&held.task).take();
        if let Some(task) = task {
            let _ = task.await;
        }
        held.core.close_streams();
        let claim = self.names(shard).claim;
        if let Err(error) = self.inner.backends.queue.release_claim(&claim).await {
            tracing::warn!(%error, shard, "could not release a shard's claim; trying again next round");
            lock(&self.inner.left_over).insert(claim);
        }
        drop(exclusive);
        let change = if lost { "lost" } else { "released" };
        metrics::global()
            .scheduler_shard_moves
            .with_label_values(&[change])
            .inc();
        metrics::global()
            .scheduler_shards_held
            .set(i64::try_from(self.held_shards().len()).unwrap_or(i64::MAX));
        tracing::info!(shard, member = self.member_id(), change, "gave up shard");
    }

    /// Releases claims whose release failed when their shard was given up, so that a claim this
    /// scheduler no longer uses never keeps the shard from the member it is assigned to.
    async fn release_left_over_claims(&self) {
        let claims: Vec<String> = lock(&self.inner.left_over).iter().cloned().collect();
        for claim in claims {
            let held_again = read(&self.inner.held)
                .values()
                .any(|held| held.core.shard().claim == claim);
            if held_again
                || self
                    .inner
                    .backends
                    .queue
                    .release_claim(&claim)
                    .await
                    .is_ok()
            {
                lock(&self.inner.left_over).remove(&claim);
            }
        }
    }

    /// Answers an API request: on the core of the tenant's shard when this scheduler holds it,
    /// otherwise proxied to the scheduler that does; 503 with `Retry-After` while the shard is moving.
    pub async fn route(&self, request: Request<Body>) -> Response {
        let Some(tenant) = tenant_of_request(&request) else {
            return oneshot(self.inner.lobby_router.clone(), request).await;
        };
        let shard = shard_of(&tenant, self.count());
        if let Some((held, _entered)) = self.enter(shard).await {
            return oneshot(held.router.clone(), request).await;
        }
        let forwarded = request.headers().contains_key(FORWARDED_BY_HEADER);
        let owner = self.holder_of(shard);
        match owner {
            Some(owner) if !forwarded => {
                let result =
                    proxy::forward(&self.inner.client, &owner.url, self.member_id(), request).await;
                let outcome = if result.is_ok() { "ok" } else { "failed" };
                metrics::global()
                    .scheduler_forwarded
                    .with_label_values(&["http", outcome])
                    .inc();
                match result {
                    Ok(response) => response,
                    Err(ForwardError::Unreachable(error)) => {
                        tracing::warn!(shard, holder = %owner.id, %error, "could not reach the shard's scheduler");
                        moving(shard)
                    }
                    Err(ForwardError::NoAnswer(error)) => {
                        tracing::warn!(shard, holder = %owner.id, %error, "the shard's scheduler did not answer a forwarded request");
                        no_answer(shard)
                    }
                }
            }
            _ => moving(shard),
        }
    }

    /// The member that says it holds `shard`, other than this one.
    fn holder_of(&self, shard: u16) -> Option<Member> {
        read(&self.inner.members)
            .iter()
            .find(|m| m.id != self.member_id() && m.shards.contains(&shard))
            .cloned()
    }

    /// Samples the farm's queue depths and workers (the lobby) and the age of the oldest queued job
    /// over the shards held here.
    async fn sample_metrics(self, mut stop: watch::Receiver<bool>) {
        let period = self.inner.options.metrics_interval;
        loop {
            self.inner.lobby.sample_metrics().await;
            let held: Vec<Arc<HeldShard>> = read(&self.inner.held).values().cloned().collect();
            let mut oldest = 0.0f64;
            for shard in held {
                oldest = oldest.max(shard.core.oldest_queued_secs().await);
                let names = shard.core.shard();
                for queue in [&names.requests, &names.events] {
                    if let Ok(depth) = self.inner.backends.queue.depth(queue).await {
                        metrics::global()
                            .queue_depth
                            .with_label_values(&[queue.as_str()])
                            .set(i64::try_from(depth).unwrap_or(i64::MAX));
                    }
                }
            }
            self.inner.lobby.set_oldest_queued(oldest);
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
        }
    }
}

/// A held shard's loops: its requests and events consumers, its fairness feeder, and a check every
/// [`BEAT`] that its claim is still this scheduler's. A claim found gone (the connection was lost and
/// another scheduler took it, or the broker cannot be asked) marks the shard lost and stops it at once,
/// with a log line: two schedulers never follow one shard.
async fn run_shard(
    core: Core,
    intake: IntakeContext,
    stopped: watch::Receiver<bool>,
    lost: Arc<AtomicBool>,
) {
    let (stop_loops, loops_stopped) = watch::channel(false);
    let mut loops = JoinSet::new();
    loops.spawn(runtime::run_requests(
        core.clone(),
        intake,
        loops_stopped.clone(),
    ));
    loops.spawn(runtime::run_events(core.clone(), loops_stopped.clone()));
    loops.spawn(runtime::run_feeder(core.clone(), loops_stopped));
    let claim = core.shard().claim.clone();
    let mut stopped = stopped;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(BEAT) => {}
            _ = stopped.wait_for(|stop| *stop) => break,
        }
        let held = if core.on_its_connection() {
            core.backends().queue.claim(&claim).await
        } else {
            Ok(false)
        };
        if !matches!(held, Ok(true)) || !core.on_its_connection() {
            let reason = match held {
                Ok(_) => "another scheduler holds it, or the connection it was claimed on is gone"
                    .to_string(),
                Err(error) => error.to_string(),
            };
            tracing::error!(%claim, %reason, "lost a shard's claim; stopping the shard at once");
            lost.store(true, Ordering::SeqCst);
            break;
        }
    }
    let _ = stop_loops.send(true);
    while loops.join_next().await.is_some() {}
}

/// The tenant a request's bearer token names (`TENANT:SECRET`), for routing only: the shard's core
/// authenticates it.
fn tenant_of_request(request: &Request<Body>) -> Option<String> {
    let value = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    crate::ingress::token_tenant(value.strip_prefix("Bearer ")?).map(str::to_string)
}

async fn oneshot(router: Router, request: Request<Body>) -> Response {
    match router.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// The answer when the holder took a forwarded request but did not answer: it may have acted on it,
/// so the client retries with the same idempotency key (a duplicate is answered as such).
fn no_answer(shard: u16) -> Response {
    let body = axum::Json(serde_json::json!({
        "error": "bad_gateway",
        "message": format!("the scheduler for this tenant's shard {shard} did not answer; retry with the same Idempotency-Key"),
    }));
    (StatusCode::BAD_GATEWAY, body).into_response()
}

/// The answer while a shard has no reachable holder: retry in a second.
fn moving(shard: u16) -> Response {
    let body = axum::Json(serde_json::json!({
        "error": "moving",
        "message": format!("the scheduler for this tenant's shard {shard} is changing; retry"),
    }));
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, body).into_response();
    response.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        HeaderValue::from_static("1"),
    );
    response
}

fn read<T>(lock: &SyncRwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &SyncRwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
