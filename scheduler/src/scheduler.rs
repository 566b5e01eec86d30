//! The scheduler role: the core plus its loops and its HTTP server, started by `reverie scheduler`.

use std::net::SocketAddr;
use std::sync::Arc;

use reverie_shared::backends::Backends;
use reverie_shared::http::{ops_router, serve, ReadinessCheck};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::api::{self, ApiState};
use crate::error::{Result, SchedulerError};
use crate::ingress::IntakeContext;
use crate::library::LibrarySource;
use crate::options::SchedulerOptions;
use crate::runtime;
use crate::service::Core;

/// A running scheduler.
pub struct Scheduler {
    core: Core,
    intake: IntakeContext,
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
        }
    }

    pub fn core(&self) -> &Core {
        &self.core
    }

    /// The HTTP API merged with `/metrics`, `/healthz` and `/readyz`.
    pub fn router(&self) -> axum::Router {
        let core = self.core.clone();
        let readiness: ReadinessCheck = Arc::new(move || {
            let core = core.clone();
            Box::pin(async move { core.ready().await })
        });
        api::router(ApiState {
            core: self.core.clone(),
            intake: self.intake.clone(),
        })
        .merge(ops_router(readiness))
    }

    /// Declares the queues, recovers unfinished work, then serves until `shutdown` turns true: the
    /// requests and events consumers, the fairness feeder, the metrics sampler and the HTTP API on
    /// `options.http_addr`. Returns the HTTP address through `bound` as soon as it listens.
    pub async fn run(
        self,
        shutdown: watch::Receiver<bool>,
        bound: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
    ) -> Result<()> {
        self.core.declare_queues().await?;
        let recovered = self.core.recover().await?;
        tracing::info!(recovered, "scheduler recovered unfinished requests");
        let mut http_shutdown = shutdown.clone();
        let (address, http) = serve(self.core.options().http_addr, self.router(), async move {
            let _ = http_shutdown.wait_for(|stop| *stop).await;
        })
        .await
        .map_err(|e| SchedulerError::Http(e.to_string()))?;
        tracing::info!(%address, "scheduler HTTP API listening");
        if let Some(bound) = bound {
            let _ = bound.send(address);
        }
        let mut tasks = JoinSet::new();
        tasks.spawn(runtime::run_requests(
            self.core.clone(),
            self.intake.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(runtime::run_events(self.core.clone(), shutdown.clone()));
        tasks.spawn(runtime::run_feeder(self.core.clone(), shutdown.clone()));
        tasks.spawn(runtime::run_metrics(self.core.clone(), shutdown.clone()));
        while tasks.join_next().await.is_some() {}
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
