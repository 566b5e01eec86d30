//! The scheduler role: the core plus its loops and its HTTP server, started by `reverie scheduler`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::response::IntoResponse;

use reverie_shared::backends::Backends;
use reverie_shared::http::{ops_router, serve, ReadinessCheck};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::api::ApiState;
use crate::error::{Result, SchedulerError};
use crate::ingress::IntakeContext;
use crate::library::LibrarySource;
use crate::options::SchedulerOptions;
use crate::runtime;
use crate::service::Core;
use crate::shards::{RouterFor, Shards};

/// A running scheduler.
pub struct Scheduler {
    core: Core,
    intake: IntakeContext,
    /// Routes served beside the API (the library API of `reverie serve`), behind the same standby gate.
    extra_routes: Option<axum::Router>,
    /// Told when a tenant is forgotten over HTTP (see [`crate::tenants::TenantDataHolder`]).
    holders: Vec<Arc<dyn crate::tenants::TenantDataHolder>>,
    /// Whether `/` serves the web app.
    web_app: bool,
}

impl Scheduler {
    /// A scheduler reading each tenant's library manifest (written by `reverie library import`), or a
    /// curated `tenants/{t}/library/catalog.json` when the tenant has no manifest.
    pub fn new(backends: Backends, options: SchedulerOptions) -> Scheduler {
        let library: Arc<dyn LibrarySource> = Arc::new(
            crate::library_manifest::ManifestLibrary::new(backends.store.clone()),
        );
        Scheduler::with_library(backends, options, library)
    }

    /// A scheduler with another library source (the library crate's).
    pub fn with_library(
        backends: Backends,
        options: SchedulerOptions,
        library: Arc<dyn LibrarySource>,
    ) -> Scheduler {
        let library = Arc::new(crate::library::CachedLibrary::new(
            library,
            options.library_fresh_for,
        ));
        Scheduler {
            core: Core::new(backends, options),
            intake: IntakeContext { library },
            extra_routes: None,
            holders: Vec::new(),
            web_app: false,
        }
    }

    /// Serves `routes` beside the API (they answer 503 on a standby like the API does).
    pub fn with_routes(mut self, routes: axum::Router) -> Scheduler {
        self.extra_routes = Some(routes);
        self
    }

    /// Adds a component that keeps tenant data beside the scheduler (forgetting a tenant stops it first).
    pub fn with_tenant_data(
        mut self,
        holder: Arc<dyn crate::tenants::TenantDataHolder>,
    ) -> Scheduler {
        self.holders.push(holder);
        self
    }

    /// Whether `/` serves the embedded web app (`reverie serve` turns it on together with the library
    /// API it needs; a farm's `reverie scheduler` serves the API only).
    pub fn with_web_app(mut self, enabled: bool) -> Scheduler {
        self.web_app = enabled;
        self
    }

    /// The library the scheduler plans with; writers call `invalidate` after a change.
    pub fn library(&self) -> &Arc<crate::library::CachedLibrary> {
        &self.intake.library
    }

    pub fn core(&self) -> &Core {
        &self.core
    }

    /// The HTTP API merged with `/metrics`, `/healthz` and `/readyz`, for a scheduler that is active.
    pub fn router(&self) -> axum::Router {
        self.gated_router(Arc::new(AtomicBool::new(true)))
    }

    /// The router of a scheduler that may be a standby: while `active` is false the API answers 503 and
    /// `/readyz` reports not ready (so a Service routes to the active scheduler only), while `/healthz`
    /// and `/metrics` answer as usual.
    fn gated_router(&self, active: Arc<AtomicBool>) -> axum::Router {
        let core = self.core.clone();
        let routes = (self.router_for())(self.core.clone());
        let ready_active = active.clone();
        let readiness: ReadinessCheck = Arc::new(move || {
            let (core, active) = (core.clone(), ready_active.clone());
            Box::pin(async move {
                if !active.load(Ordering::SeqCst) {
                    return Err("standby: another scheduler is active".to_string());
                }
                core.ready().await
            })
        });
        routes
            .layer(axum::middleware::from_fn(move |request, next| {
                let active = active.clone();
                refuse_while_standby(active, request, next)
            }))
            .merge(ops_router(readiness))
    }

    /// Builds the API routes (with the library API and web app where turned on) over a core: the
    /// one core of a farm with one scheduler, or each shard's core.
    fn router_for(&self) -> RouterFor {
        let intake = self.intake.clone();
        let holders = self.holders.clone();
        let extra_routes = self.extra_routes.clone();
        let web_app = self.web_app;
        Arc::new(move |core: Core| {
            let mut routes = crate::routes::router(ApiState {
                core,
                intake: intake.clone(),
                holders: holders.clone(),
            });
            if let Some(extra) = &extra_routes {
                routes = routes.merge(extra.clone());
            }
            if web_app {
                routes = routes.merge(crate::web::router());
            }
            routes
        })
    }

    /// Declares the queues, serves HTTP, waits until it holds the farm's scheduler claim (a standby
    /// waits here while another scheduler is active), recovers unfinished work, then serves until
    /// `shutdown` turns true: the requests and events consumers, the fairness feeder, the metrics
    /// sampler, and a check that it still holds the claim. Returns the HTTP address through `bound`
    /// once it listens and is active (a standby sends it when it takes over). Fails with
    /// [`SchedulerError::Displaced`] when another scheduler took the claim (its connection to the
    /// broker was lost meanwhile): it stops at once rather than run beside it.
    pub async fn run(
        self,
        shutdown: watch::Receiver<bool>,
        bound: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
    ) -> Result<()> {
        if self.core.options().shards > 1 {
            return self.run_sharded(shutdown, bound).await;
        }
        self.core.declare_queues().await?;
        let (stop_tx, stop) = watch::channel(false);
        let stop_tx = Arc::new(stop_tx);
        let forward = tokio::spawn(forward_stop(shutdown, stop_tx.clone()));
        let active = Arc::new(AtomicBool::new(false));
        let mut http_stop = stop.clone();
        let (address, http) = serve(
            self.core.options().http_addr,
            self.gated_router(active.clone()),
            async move {
                let _ = http_stop.wait_for(|stop| *stop).await;
            },
        )
        .await
        .map_err(|e| SchedulerError::Http(e.to_string()))?;
        tracing::info!(%address, "scheduler HTTP API listening");
        let claim = self.core.queues().scheduler_claim.clone();
        let result = if wait_for_claim(&self.core, &claim, stop.clone()).await {
            self.run_active(&claim, &active, stop, &stop_tx, bound.map(|b| (b, address)))
                .await
        } else {
            Ok(())
        };
        let _ = stop_tx.send(true);
        forward.abort();
        let _ = http.await;
        result
    }

    /// The active scheduler's work, from recovery until a stop or the loss of the claim.
    async fn run_active(
        &self,
        claim: &str,
        active: &AtomicBool,
        stop: watch::Receiver<bool>,
        stop_tx: &Arc<watch::Sender<bool>>,
        bound: Option<(tokio::sync::oneshot::Sender<SocketAddr>, SocketAddr)>,
    ) -> Result<()> {
        let recovered = self.core.recover().await?;
        tracing::info!(recovered, "scheduler active; recovered unfinished requests");
        active.store(true, Ordering::SeqCst);
        if let Some((bound, address)) = bound {
            let _ = bound.send(address);
        }
        let mut tasks = JoinSet::new();
        tasks.spawn(runtime::run_requests(
            self.core.clone(),
            self.intake.clone(),
            stop.clone(),
        ));
        tasks.spawn(runtime::run_events(self.core.clone(), stop.clone()));
        tasks.spawn(runtime::run_feeder(self.core.clone(), stop.clone()));
        tasks.spawn(runtime::run_metrics(self.core.clone(), stop.clone()));
        let holding = tokio::spawn(hold_claim(
            self.core.clone(),
            claim.to_string(),
            stop,
            stop_tx.clone(),
        ));
        while tasks.join_next().await.is_some() {}
        active.store(false, Ordering::SeqCst);
        let displaced = holding.await.unwrap_or(false);
        if displaced {
            return Err(SchedulerError::Displaced {
                claim: claim.to_string(),
            });
        }
        // A graceful stop hands the claim over at once instead of when the connection closes.
        if let Err(error) = self.core.backends().queue.release_claim(claim).await {
            tracing::warn!(%error, "could not release the scheduler claim; it goes with the connection");
        }
        Ok(())
    }

    /// A scheduler of a sharded farm (`scheduler.shards` > 1, see [`crate::shards`]): serves HTTP at
    /// once, joins the membership, takes the shards that belong with it and serves until `shutdown`,
    /// then gives its shards up. `bound` is told the address once it joined. Ready (`/readyz`) while it
    /// is in the membership and the backends answer: it answers every tenant, its own or by forwarding.
    async fn run_sharded(
        self,
        shutdown: watch::Receiver<bool>,
        bound: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
    ) -> Result<()> {
        self.core.declare_queues().await?;
        let options = self.core.options().clone();
        let shards = Shards::new(
            self.core.backends().clone(),
            options.clone(),
            self.intake.clone(),
            self.core.clone(),
            self.router_for(),
        );
        let readiness: ReadinessCheck = {
            let (core, shards) = (self.core.clone(), shards.clone());
            Arc::new(move || {
                let (core, shards) = (core.clone(), shards.clone());
                Box::pin(async move {
                    if !shards.joined() {
                        return Err("not in the farm's membership yet".to_string());
                    }
                    core.ready().await
                })
            })
        };
        let routing = shards.clone();
        let router = axum::Router::new()
            .fallback(move |request: axum::extract::Request| {
                let shards = routing.clone();
                async move { shards.route(request).await }
            })
            .merge(ops_router(readiness));
        let mut http_stop = shutdown.clone();
        let (address, http) = serve(options.http_addr, router, async move {
            let _ = http_stop.wait_for(|stop| *stop).await;
        })
        .await
        .map_err(|e| SchedulerError::Http(e.to_string()))?;
        let url = options
            .advertise_url
            .clone()
            .unwrap_or_else(|| format!("http://{address}"));
        tracing::info!(%address, %url, shards = options.shards, "scheduler HTTP API listening (sharded farm)");
        let (joined_tx, joined_rx) = tokio::sync::oneshot::channel();
        let running = tokio::spawn(shards.run(url, shutdown, joined_tx));
        if joined_rx.await.is_ok() {
            if let Some(bound) = bound {
                let _ = bound.send(address);
            }
        }
        let _ = running.await;
        let _ = http.await;
        Ok(())
    }

    /// Builds the backends from configuration and runs until `shutdown` (the `reverie scheduler` entry).
    pub async fn run_from_config(
        config: &reverie_shared::Config,
        shutdown: watch::Receiver<bool>,
    ) -> Result<()> {
        let backends = Backends::connect(config).await?;
        tracing::info!(backends = %backends.describe(), "scheduler starting");
        Scheduler::new(backends, SchedulerOptions::from_config(config))
            .run(shutdown, None)
            .await
    }
}

/// How often a standby asks for the claim and the active scheduler checks it still holds it.
const CLAIM_CHECK: Duration = Duration::from_secs(1);

/// Turns the caller's shutdown into the scheduler's own stop (which the loss of the claim also sets).
async fn forward_stop(mut shutdown: watch::Receiver<bool>, stop: Arc<watch::Sender<bool>>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
    let _ = stop.send(true);
}

/// Waits until this scheduler holds `claim`; `false` when told to stop first. Broker errors are
/// retried (the connection comes back); another holder is waited out, logged once.
async fn wait_for_claim(core: &Core, claim: &str, mut stop: watch::Receiver<bool>) -> bool {
    let mut told = false;
    loop {
        match core.backends().queue.claim(claim).await {
            Ok(true) => return true,
            Ok(false) if !told => {
                tracing::info!(
                    claim,
                    "standby: another scheduler is active; waiting to take over"
                );
                told = true;
            }
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, claim, "could not ask for the scheduler claim"),
        }
        tokio::select! {
            _ = tokio::time::sleep(CLAIM_CHECK) => {}
            _ = stop.wait_for(|stop| *stop) => return false,
        }
    }
}

/// Checks every [`CLAIM_CHECK`] that this scheduler still holds `claim`; when another holds it, stops
/// everything and returns `true`. A failed check (the broker away) is not a loss: the claim went with
/// the old connection, and the next check on the new one takes it back unless another did.
async fn hold_claim(
    core: Core,
    claim: String,
    mut stop: watch::Receiver<bool>,
    stop_tx: Arc<watch::Sender<bool>>,
) -> bool {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(CLAIM_CHECK) => {}
            _ = stop.wait_for(|stop| *stop) => return false,
        }
        match core.backends().queue.claim(&claim).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::error!(%claim, "another scheduler took over this farm; stopping");
                let _ = stop_tx.send(true);
                return true;
            }
            Err(error) => tracing::warn!(%error, %claim, "could not check the scheduler claim"),
        }
    }
}

/// The API of a standby: 503 with a JSON reason, so clients retry against the active scheduler.
async fn refuse_while_standby(
    active: Arc<AtomicBool>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if active.load(Ordering::SeqCst) {
        return next.run(request).await;
    }
    let body = axum::Json(serde_json::json!({
        "error": "standby",
        "message": "this scheduler is a standby; another one is active, retry",
    }));
    (axum::http::StatusCode::SERVICE_UNAVAILABLE, body).into_response()
}
