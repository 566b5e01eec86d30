use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use reverie_shared::queues::QueueNames;
use reverie_shared::Backends;
use reverie_worker::inputs::PhotoCache;
use reverie_worker::{run_worker, WorkerContext};

use crate::app::{self, GlobalArgs};

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// This worker's name in heartbeats and metrics (default: host name and process id).
    #[arg(long)]
    pub id: Option<String>,
}

pub fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".to_string());
    format!("{host}-{}", std::process::id())
}

pub async fn run(global: &GlobalArgs, args: WorkerArgs) -> anyhow::Result<()> {
    let config = app::start(global)?;
    let backends = Backends::connect(&config).await?;
    tracing::info!(backends = %backends.describe(), "worker starting");
    let cache_dir = config.data_dir.join("worker-photo-cache");
    let photo_cache = PhotoCache::open(&cache_dir, config.worker.shard_cache_mb * 1024 * 1024)
        .with_context(|| format!("photo cache in {}", cache_dir.display()))?;
    let renderers = crate::commands::renderers(&config, &backends.store).await?;
    let ctx = Arc::new(WorkerContext {
        worker_id: args.id.unwrap_or_else(default_worker_id),
        backends,
        queues: QueueNames::new(&config.queues.prefix),
        settings: config.worker.clone(),
        retry: config.retry.clone(),
        cache_prefix: config.cache.prefix.clone(),
        renderers,
        photo_cache: Some(Arc::new(photo_cache)),
        analyser: Some(Arc::new(reverie_worker::analysis::Analyser::load(
            &config.models_dir(),
            std::time::Duration::from_secs(config.cache.embedding_ttl_s),
        ))),
        event_routes: Default::default(),
    });
    run_worker(ctx, app::shutdown_signal()).await?;
    Ok(())
}
