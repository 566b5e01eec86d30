//! `reverie serve`: Reverie for one person on one machine — the scheduler, in-process workers and the
//! web app in one process on the embedded adapters (state under the data directory, so a restart
//! resumes where it stopped). With service addresses configured it serves the same web app against
//! the real farm: the farm's workers do the work and this process is its scheduler.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use reverie_scheduler::{Core, Scheduler, SchedulerOptions};
use reverie_shared::ids::TenantId;
use reverie_shared::queues::QueueNames;
use reverie_shared::{Backends, Config};
use reverie_worker::{run_worker, WorkerContext};

use crate::app::{self, GlobalArgs};
use crate::library_api::{LibraryApi, LibraryApiSettings};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A folder of photos the web app may import from (repeatable; adds to `serve.import_roots`).
    #[arg(long = "photos", value_name = "DIR")]
    pub photos: Vec<PathBuf>,
    /// Address of the web app and the API (default: `scheduler.http_addr`, 127.0.0.1:8080).
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// Workers in this process (default: `serve.workers` on the embedded queue, none with RabbitMQ).
    #[arg(long)]
    pub workers: Option<usize>,
}

/// Token lifetime of the token `serve` prints (it is kept and printed again until it expires).
const TOKEN_TTL: Duration = Duration::from_secs(90 * 24 * 3600);

pub async fn run(global: &GlobalArgs, args: ServeArgs) -> anyhow::Result<()> {
    let mut config = app::start(global)?;
    if let Some(listen) = args.listen {
        config.scheduler.http_addr = listen;
    }
    // In-process workers share the scheduler's /metrics; their own endpoints would collide.
    config.worker.http_addr = "127.0.0.1:0".parse()?;
    let roots = import_roots(&config, &args.photos)?;
    let backends = Backends::connect(&config).await?;
    let embedded_queue = config.amqp.url.is_none() && config.amqp.url_file.is_none();
    let workers = args.workers.unwrap_or(if embedded_queue {
        config.serve.workers
    } else {
        0
    });
    if embedded_queue && workers == 0 {
        println!("warning: no workers on the embedded queue: nothing will render (--workers 1)");
    }

    let analyser = Arc::new(crate::commands::demo::load_analyser_fetching_models(&config).await);
    // One process is the whole farm here: its tenants are never shared with another scheduler.
    let options = SchedulerOptions {
        shards: 1,
        ..SchedulerOptions::from_config(&config)
    };
    let scheduler = Scheduler::new(backends.clone(), options);
    let core = scheduler.core().clone();
    let tenant = TenantId::new(config.serve.tenant.clone())
        .with_context(|| format!("serve.tenant {:?}", config.serve.tenant))?;
    let token = first_token(&core, &tenant, &config.data_dir).await?;
    let library = LibraryApi::new(
        core.clone(),
        backends.clone(),
        scheduler.library().clone(),
        Some(analyser.clone()),
        LibraryApiSettings {
            import_roots: roots.clone(),
            private_dirs: private_dirs(&config),
            max_upload_bytes: (config.serve.max_upload_mb * 1024 * 1024) as usize,
            preview_interval_ms: config.worker.preview_interval_ms,
        },
    );
    let scheduler = scheduler
        .with_tenant_data(Arc::new(library.clone()))
        .with_routes(library.router())
        .with_web_app(true);

    let shutdown = app::shutdown_signal();
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let scheduler_task = tokio::spawn(scheduler.run(shutdown.clone(), Some(bound_tx)));
    let address = match bound_rx.await {
        Ok(address) => address,
        Err(_) => {
            // The scheduler stopped before listening: its error says why (a port in use, ...).
            scheduler_task.await??;
            anyhow::bail!("the scheduler stopped before it listened");
        }
    };
    let mut worker_tasks = Vec::new();
    if workers > 0 {
        let renderers = crate::commands::renderers(&config, &backends.store).await?;
        for n in 0..workers {
            let ctx = Arc::new(WorkerContext {
                worker_id: format!("serve-worker-{n}"),
                backends: backends.clone(),
                queues: QueueNames::new(&config.queues.prefix),
                settings: config.worker.clone(),
                retry: config.retry.clone(),
                cache_prefix: config.cache.prefix.clone(),
                renderers: renderers.clone(),
                photo_cache: None,
                analyser: Some(analyser.clone()),
                event_routes: Default::default(),
            });
            worker_tasks.push(tokio::spawn(run_worker(ctx, shutdown.clone())));
        }
    }
    print_welcome(&config, &backends, address, &token, &roots, workers);
    let result = scheduler_task.await;
    for task in worker_tasks {
        let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
    }
    result??;
    Ok(())
}

/// The server's own folders, never imported even when an import root contains them.
fn private_dirs(config: &Config) -> Vec<PathBuf> {
    [config.data_dir.clone(), config.models_dir()]
        .into_iter()
        .filter_map(|dir| std::fs::canonicalize(dir).ok())
        .collect()
}

/// `serve.import_roots` and every `--photos`, each an existing folder.
fn import_roots(config: &Config, photos: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut roots = config.serve.import_roots();
    roots.extend(photos.iter().cloned());
    roots
        .into_iter()
        .map(|root| {
            std::fs::canonicalize(&root)
                .ok()
                .filter(|p| p.is_dir())
                .with_context(|| format!("--photos {}: not a folder", root.display()))
        })
        .collect()
}

/// The tenant's serve token: the one kept under the data directory while it still works, else a new
/// one (the tenant is created on first start, with no consent: the person grants it in the app).
async fn first_token(core: &Core, tenant: &TenantId, data_dir: &Path) -> anyhow::Result<String> {
    if core.tenants().get(tenant).await?.is_none() {
        core.tenants().create(tenant).await?;
    }
    let kept = data_dir.join(format!("serve-token-{tenant}"));
    if let Ok(token) = std::fs::read_to_string(&kept) {
        let token = token.trim().to_string();
        if core.tenants().authenticate(&token).await.is_ok() {
            return Ok(token);
        }
    }
    let token = core
        .tenants()
        .issue_token(tenant, Some(TOKEN_TTL), Some("reverie serve".to_string()))
        .await?;
    std::fs::create_dir_all(data_dir)?;
    write_private(&kept, &token)
        .with_context(|| format!("keeping the token in {}", kept.display()))?;
    Ok(token)
}

/// Writes a secret readable by its owner only.
fn write_private(path: &Path, secret: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    // An existing file keeps its mode on open: narrow it too.
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    std::io::Write::write_all(&mut file, secret.as_bytes())
}

fn print_welcome(
    config: &Config,
    backends: &Backends,
    address: std::net::SocketAddr,
    token: &str,
    roots: &[PathBuf],
    workers: usize,
) {
    println!("\nReverie is running — backends: {}", backends.describe());
    println!("  workers in this process: {workers}");
    println!("  {}", crate::commands::demo::renderer_note(config));
    match roots {
        [] => println!("  imports: none allowed (start with --photos DIR to import a folder)"),
        roots => {
            for root in roots {
                println!("  imports from: {}", root.display());
            }
        }
    }
    println!("\n  open   http://{address}/#token={token}");
    println!("  token  {token}");
    println!("\n  the CLI works against it too: REVERIE_API=http://{address} REVERIE_TOKEN={token} reverie submit …");
}
