//! A worker's life: declare queues, serve health and metrics, heartbeat, run the job loops, and drain on
//! shutdown (SIGTERM in Kubernetes) within the grace period.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reverie_shared::http::{ops_router, serve, ListenError, ReadinessCheck};
use reverie_shared::keys;
use reverie_shared::metrics;
use reverie_shared::ports::queue::QueueError;
use serde::Serialize;
use tokio::sync::watch;

use crate::context::WorkerContext;
use crate::runner::run_generation;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Listen(#[from] ListenError),
}

#[derive(Serialize)]
struct Heartbeat<'a> {
    worker: &'a str,
    version: &'a str,
    renderers: Vec<&'static str>,
    at: String,
}

/// Runs a worker until `shutdown` turns true, then drains and returns.
pub async fn run_worker(
    ctx: Arc<WorkerContext>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), WorkerError> {
    for spec in ctx.queues.specs() {
        ctx.backends.queue.declare(&spec).await?;
    }
    let m = metrics::global();
    // Every outcome series exists from the start: dashboards read 0, not "no data".
    for kind in ["generate", "analyse"] {
        for outcome in [
            "succeeded",
            "failed",
            "retried",
            "dead_lettered",
            "cancelled",
        ] {
            m.jobs.with_label_values(&[kind, outcome]);
        }
        m.job_retries.with_label_values(&[kind]);
    }
    m.worker_slots.set(1);
    m.worker_info
        .with_label_values(&[ctx.worker_id.as_str(), env!("CARGO_PKG_VERSION")])
        .set(1);

    let readiness = readiness_check(ctx.clone());
    let mut http_shutdown = shutdown.clone();
    let (address, http) = serve(ctx.settings.http_addr, ops_router(readiness), async move {
        let _ = http_shutdown.changed().await;
    })
    .await?;
    tracing::info!(worker = %ctx.worker_id, %address, "worker serving /metrics, /healthz, /readyz");

    let heartbeat = tokio::spawn(heartbeat_loop(ctx.clone(), shutdown.clone()));
    let analysis = ctx.analyser.clone().map(|analyser| {
        tokio::spawn(crate::analysis_jobs::run_analysis(
            ctx.clone(),
            analyser,
            shutdown.clone(),
        ))
    });
    let result = run_generation(ctx.clone(), shutdown).await;
    if let Some(analysis) = analysis {
        match analysis.await {
            Ok(Err(error)) => tracing::warn!(%error, "analysis loop stopped with an error"),
            Err(error) => tracing::warn!(%error, "analysis loop panicked"),
            Ok(Ok(())) => {}
        }
    }
    heartbeat.abort();
    // A clean exit removes the heartbeat at once instead of letting it expire.
    let _ = ctx
        .backends
        .cache
        .delete(&keys::worker_heartbeat_key(&ctx.worker_id))
        .await;
    let _ = http.await;
    result.map_err(WorkerError::from)
}

fn readiness_check(ctx: Arc<WorkerContext>) -> ReadinessCheck {
    Arc::new(move || {
        let ctx = ctx.clone();
        Box::pin(async move {
            ctx.backends.queue.ping().await.map_err(|e| e.to_string())?;
            ctx.backends.cache.ping().await.map_err(|e| e.to_string())?;
            ctx.backends
                .store
                .list("models/")
                .await
                .map_err(|e| e.to_string())?;
            if ctx.renderers.kinds().is_empty() {
                return Err("no renderer is configured".to_string());
            }
            Ok(())
        })
    })
}

async fn heartbeat_loop(ctx: Arc<WorkerContext>, mut shutdown: watch::Receiver<bool>) {
    let period = Duration::from_secs(ctx.settings.heartbeat_s.max(1));
    let key = keys::worker_heartbeat_key(&ctx.worker_id);
    loop {
        let beat = Heartbeat {
            worker: &ctx.worker_id,
            version: env!("CARGO_PKG_VERSION"),
            renderers: ctx
                .renderers
                .kinds()
                .into_iter()
                .map(|k| k.label())
                .collect(),
            at: chrono::Utc::now().to_rfc3339(),
        };
        if let Ok(body) = serde_json::to_vec(&beat) {
            if let Err(error) = ctx
                .backends
                .cache
                .set(&key, Bytes::from(body), Some(period * 3))
                .await
            {
                tracing::warn!(%error, "heartbeat not written");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = shutdown.changed() => return,
        }
    }
}
