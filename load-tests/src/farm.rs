//! One load run: optional in-process farm, the raw broker baseline, render-alone timings, then the load.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use reverie_scheduler::{Scheduler, SchedulerOptions};
use reverie_shared::config::Config;
use reverie_shared::ids::TenantId;
use reverie_shared::ports::queue::{JobQueue, Message, MessageProps, QueueSpec};
use reverie_shared::queues::QueueNames;
use reverie_shared::Backends;
use reverie_worker::render::PainterlyRenderer;
use reverie_worker::{run_worker, Renderers, WorkerContext};
use tokio::sync::{watch, Semaphore};

use crate::baselines::{raw_broker, raw_store, render_alone};
use crate::cpu::CpuSnapshot;
use crate::stats::{histogram, Baselines, Report};
use crate::Args;

pub async fn run(args: &Args, mut config: Config) -> anyhow::Result<Report> {
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();
    if !args.external {
        config.queues.prefix = format!("reverie-load-{run_id}");
    }
    config.worker.batch_max = args.batch_max;
    config.worker.http_addr = "127.0.0.1:0".parse()?;
    config.scheduler.http_addr = "127.0.0.1:0".parse()?;
    config.scheduler.tenant_queue_quota = u32::MAX;
    let backends = Backends::connect(&config).await?;
    let queues = QueueNames::new(&config.queues.prefix);
    let tenant = TenantId::new(
        args.tenant
            .clone()
            .unwrap_or_else(|| format!("load-{run_id}")),
    )?;
    let (stop, shutdown) = watch::channel(false);

    let mut roles = Vec::new();
    let token = if args.external {
        args.token.clone().context("--external needs --token")?
    } else {
        let token = start_farm(
            args,
            &config,
            &backends,
            &tenant,
            shutdown.clone(),
            &mut roles,
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        token
    };
    let request_body = request_json(&tenant, args);

    let baselines = if args.no_baseline {
        Baselines::default()
    } else {
        let (render, output_bytes) = render_alone(args)?;
        Baselines {
            broker_messages_per_second: raw_broker(
                &*backends.queue,
                &format!("{}.baseline", queues.requests),
                request_body.len(),
                args.in_flight,
            )
            .await?,
            store_writes_per_second: raw_store(
                &*backends.store,
                &format!("load-baseline/{run_id}/"),
                output_bytes,
            )
            .await?,
            store_concurrency: crate::baselines::STORE_CONCURRENCY,
            output_bytes,
            render,
        }
    };
    let (before, cpu_before) = (crate::hops::Snapshot::take(), CpuSnapshot::take());
    // Replies come back on the tenant's own reply queue (docs/api.md, "Reply queues").
    let reply_queue = format!(
        "{}:{run_id}",
        reverie_scheduler::reply_to::tenant_reply_queue(&config.queues.prefix, &tenant)
    );
    let result = drive(
        args,
        &backends,
        &queues,
        &token,
        &request_body,
        &reply_queue,
        &run_id,
    )
    .await;
    let (hops, cpu_after) = (
        crate::hops::Snapshot::take().since(&before),
        CpuSnapshot::take(),
    );

    let _ = stop.send(true);
    for role in roles {
        let _ = tokio::time::timeout(Duration::from_secs(30), role).await;
    }
    for index in 0..args.workers {
        let _ = std::fs::remove_dir_all(photo_cache_dir(index));
    }
    if !args.external {
        let core =
            reverie_scheduler::Core::new(backends.clone(), SchedulerOptions::from_config(&config));
        let _ = core.forget(&tenant).await;
        for spec in queues.specs() {
            let _ = backends.queue.delete(&spec.name).await;
        }
    }
    let (sent, done, failed, rejected, seconds, end_to_end, publish_failed) = result?;
    Ok(Report {
        publish_failed,
        sent,
        done,
        failed,
        rejected,
        seconds,
        end_to_end,
        baselines,
        message_bytes: request_body.len(),
        hops,
        cpu: cpu_after.per_job_since(&cpu_before, done),
    })
}

/// Writes the one-photo library of `tenant` to the configured store (for a farm started elsewhere).
pub async fn seed_only(tenant: &str, config: &Config) -> anyhow::Result<()> {
    let tenant = TenantId::new(tenant.to_string())?;
    let store = reverie_shared::backends::connect_store(
        config,
        reverie_shared::retry::Backoff::from(&config.retry),
    )
    .await?;
    crate::seed::seed_library(&*store, &tenant).await
}

/// Deletes the farm's queues under the configured prefix, each with its dead-letter queue.
pub async fn delete_queues(config: &Config) -> anyhow::Result<usize> {
    let queue = reverie_shared::backends::connect_queue(
        config,
        reverie_shared::retry::Backoff::from(&config.retry),
    )
    .await?;
    let specs = QueueNames::new(&config.queues.prefix).specs();
    for spec in &specs {
        queue.delete(&spec.name).await?;
    }
    Ok(specs.len() * 2)
}

async fn start_farm(
    args: &Args,
    config: &Config,
    backends: &Backends,
    tenant: &TenantId,
    shutdown: watch::Receiver<bool>,
    roles: &mut Vec<tokio::task::JoinHandle<()>>,
) -> anyhow::Result<String> {
    let scheduler = Scheduler::new(backends.clone(), SchedulerOptions::from_config(config));
    let core = scheduler.core().clone();
    core.tenants().create(tenant).await?;
    let token = core.tenants().issue_token(tenant, None, None).await?;
    core.tenants().set_consent(tenant, "library", true).await?;
    crate::seed::seed_library(&*backends.store, tenant).await?;
    let scheduler_shutdown = shutdown.clone();
    roles.push(tokio::spawn(async move {
        if let Err(error) = scheduler.run(scheduler_shutdown, None).await {
            eprintln!("scheduler stopped: {error}");
        }
    }));
    for index in 0..args.workers {
        // Like `reverie worker`: photos come from a local disk cache after the first fetch.
        let cache_dir = photo_cache_dir(index);
        let photo_cache = reverie_worker::inputs::PhotoCache::open(
            &cache_dir,
            config.worker.shard_cache_mb * 1024 * 1024,
        )
        .with_context(|| format!("photo cache in {}", cache_dir.display()))?;
        let ctx = Arc::new(WorkerContext {
            worker_id: format!("load-worker-{index}"),
            backends: backends.clone(),
            queues: QueueNames::new(&config.queues.prefix),
            settings: config.worker.clone(),
            retry: config.retry.clone(),
            cache_prefix: config.cache.prefix.clone(),
            renderers: Renderers::default().with(Arc::new(PainterlyRenderer)),
            photo_cache: Some(Arc::new(photo_cache)),
            analyser: None,
            event_routes: Default::default(),
        });
        let worker_shutdown = shutdown.clone();
        roles.push(tokio::spawn(async move {
            if let Err(error) = run_worker(ctx, worker_shutdown).await {
                eprintln!("worker stopped: {error}");
            }
        }));
    }
    Ok(token)
}

/// The photo cache of in-process worker `index`, private to this process.
fn photo_cache_dir(index: usize) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("reverie-load-{}-{index}", std::process::id()))
}

fn request_json(tenant: &TenantId, args: &Args) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schema_version": 1,
        "tenant": tenant.as_str(),
        "prompt": "bold shapes and bright colours",
        "n": 1,
        "size": { "width": args.size, "height": args.size },
        "style": args.style,
        "priority": "interactive",
        "kind": "generate",
    }))
    .unwrap_or_default()
}

async fn reconsume(
    queue: &dyn JobQueue,
    name: &str,
    limit: Duration,
) -> Option<Box<dyn reverie_shared::ports::queue::Consumer>> {
    let started = Instant::now();
    while started.elapsed() < limit {
        match queue.consume(name, 1000).await {
            Ok(consumer) => return Some(consumer),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    None
}

type Outcome = (u64, u64, u64, u64, f64, Histogram<u64>, u64);

/// One line per thing that happened to a request, for tests that check exactly-once completion.
#[derive(Clone, Default)]
struct EventLog(Arc<Mutex<Vec<String>>>);

impl EventLog {
    fn note(&self, request: &str, event: &str) {
        if let Ok(mut lines) = self.0.lock() {
            lines.push(format!("{request} {event}"));
        }
    }

    fn write(&self, path: &std::path::Path) -> anyhow::Result<()> {
        let lines = self
            .0
            .lock()
            .map_err(|_| anyhow::anyhow!("event log lock poisoned"))?;
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }
}

/// The headers of every request: the tenant's token, and the reply choice.
fn request_headers(token: &str, final_replies_only: bool) -> BTreeMap<String, String> {
    let mut headers = request_headers_with_token(token);
    if final_replies_only {
        headers.insert(
            reverie_scheduler::ingress::REPLIES_HEADER.to_string(),
            "final".to_string(),
        );
    }
    headers
}

/// The tenant's token header (docs/api.md), which every request carries.
fn request_headers_with_token(token: &str) -> BTreeMap<String, String> {
    [(
        reverie_scheduler::ingress::TOKEN_HEADER.to_string(),
        token.to_string(),
    )]
    .into()
}

/// Publishes what a broken client or a bug would: a request that is not JSON and a job body that is not
/// an envelope. Both must be dead-lettered (or rejected), never crash or stall the farm. The job queue is
/// the farm's (declared by its workers with their priority arguments), so it is not declared here.
async fn publish_malformed(
    backends: &Backends,
    queues: &QueueNames,
    reply_queue: &str,
    token: &str,
    run_id: &str,
) -> anyhow::Result<()> {
    let id = format!("malformed-{run_id}");
    let props = MessageProps {
        message_id: Some(id.clone()),
        correlation_id: Some(id),
        reply_to: Some(reply_queue.to_string()),
        content_type: Some("application/json".into()),
        // The token names the tenant whose reply queue may carry the rejection (docs/api.md).
        headers: request_headers_with_token(token),
        ..MessageProps::default()
    };
    let not_json = Message::new(b"{ this is not json".to_vec()).with_props(props);
    backends.queue.publish(&queues.requests, not_json).await?;
    // A known envelope version (1) followed by bytes that are no job: `malformed`, not `unknown_version`.
    backends
        .queue
        .publish(
            &queues.generate,
            Message::new(vec![1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
        )
        .await?;
    Ok(())
}

async fn drive(
    args: &Args,
    backends: &Backends,
    queues: &QueueNames,
    token: &str,
    body: &[u8],
    reply_queue: &str,
    run_id: &str,
) -> anyhow::Result<Outcome> {
    let reply_queue = reply_queue.to_string();
    backends
        .queue
        .declare(&QueueSpec::new(&reply_queue))
        .await?;
    let stall_limit = Duration::from_secs(args.stall_limit_s.max(1));
    let events = EventLog::default();
    let publish_failed = Arc::new(AtomicU64::new(0));
    if args.malformed {
        publish_malformed(backends, queues, &reply_queue, token, run_id).await?;
    }
    let sent_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let permits = Arc::new(Semaphore::new(args.in_flight.max(1)));
    let counters = Arc::new([
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
        AtomicU64::new(0),
    ]);
    let end_to_end = Arc::new(Mutex::new(histogram()));

    let mut consumer = backends.queue.consume(&reply_queue, 1000).await?;
    let collector = {
        let (sent_at, permits, counters, end_to_end) = (
            sent_at.clone(),
            permits.clone(),
            counters.clone(),
            end_to_end.clone(),
        );
        let (queue, reply_queue, events) =
            (backends.queue.clone(), reply_queue.clone(), events.clone());
        tokio::spawn(async move {
            let mut seen = std::collections::HashSet::new();
            loop {
                let delivery = match tokio::time::timeout(stall_limit, consumer.next()).await {
                    Ok(Ok(delivery)) => delivery,
                    Ok(Err(error)) => {
                        // The broker went away (a restart): consume again once it is back; replies wait
                        // in the durable reply queue meanwhile.
                        eprintln!("reply consumer lost ({error}); reconnecting");
                        match reconsume(&*queue, &reply_queue, stall_limit).await {
                            Some(fresh) => {
                                consumer = fresh;
                                continue;
                            }
                            None => return,
                        }
                    }
                    Err(_) => return,
                };
                let reply: serde_json::Value =
                    serde_json::from_slice(delivery.body()).unwrap_or_default();
                let message_id = delivery.props().message_id.clone();
                let _ = delivery.ack().await;
                let id = reply["request_id"].as_str().unwrap_or("-").to_string();
                // The reply path is at-least-once: a reply whose publish was retried across a broker
                // restart may arrive twice with the same message id. A client keeps the first.
                if let Some(message_id) = message_id {
                    if !seen.insert(message_id) {
                        events.note(&id, "redelivered-reply");
                        continue;
                    }
                }
                let kind = match reply["type"].as_str() {
                    // A redelivered request answered again: no new work, marked duplicate.
                    Some("accepted") if reply["duplicate"].as_bool() == Some(true) => {
                        "accepted-duplicate"
                    }
                    Some(kind) => kind,
                    None => "unknown",
                };
                events.note(&id, kind);
                let slot = match reply["type"].as_str() {
                    Some("done") => 0,
                    Some("failed") | Some("cancelled") => 1,
                    Some("rejected") => {
                        if counters[2].load(Ordering::SeqCst) == 0 {
                            eprintln!("first rejection: {}", reply["reasons"]);
                        }
                        2
                    }
                    _ => continue,
                };
                if let Some(started) = sent_at.lock().map(|mut m| m.remove(&id)).ok().flatten() {
                    if let Ok(mut h) = end_to_end.lock() {
                        let _ = h.record(started.elapsed().as_micros().max(1) as u64);
                    }
                    counters[slot].fetch_add(1, Ordering::SeqCst);
                    counters[3].fetch_add(1, Ordering::SeqCst);
                    permits.add_permits(1);
                }
            }
        })
    };

    let started = Instant::now();
    let deadline = args.duration.map(|s| started + Duration::from_secs(s));
    let interval = (args.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / args.rate));
    let mut sent = 0u64;
    loop {
        let finished = match deadline {
            Some(deadline) => Instant::now() >= deadline,
            None => sent >= args.count,
        };
        if finished {
            break;
        }
        if let Some(interval) = interval {
            let due = started + interval.mul_f64(sent as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        permits.acquire().await?.forget();
        let id = format!("load-{run_id}-{sent}");
        let props = MessageProps {
            message_id: Some(id.clone()),
            correlation_id: Some(id.clone()),
            reply_to: Some(reply_queue.clone()),
            content_type: Some("application/json".into()),
            headers: request_headers(token, args.final_replies_only),
            ..MessageProps::default()
        };
        sent_at
            .lock()
            .map_err(|_| anyhow::anyhow!("lock"))?
            .insert(id.clone(), Instant::now());
        let queue = backends.queue.clone();
        let target = queues.requests.clone();
        let message = Message::new(body.to_vec()).with_props(props);
        let (events, sent_at, permits, counters, publish_failed) = (
            events.clone(),
            sent_at.clone(),
            permits.clone(),
            counters.clone(),
            publish_failed.clone(),
        );
        tokio::spawn(async move {
            match queue.publish(&target, message).await {
                Ok(()) => events.note(&id, "published"),
                Err(error) => {
                    // Not confirmed: the farm never took it, so no reply is owed; the client would retry.
                    eprintln!("publish failed: {error}");
                    events.note(&id, "publish_failed");
                    if sent_at
                        .lock()
                        .map(|mut m| m.remove(&id))
                        .ok()
                        .flatten()
                        .is_some()
                    {
                        publish_failed.fetch_add(1, Ordering::SeqCst);
                        counters[3].fetch_add(1, Ordering::SeqCst);
                        permits.add_permits(1);
                    }
                }
            }
        });
        sent += 1;
    }
    // Wait for every reply, or for the replies to stall.
    let mut last = (0, Instant::now());
    while counters[3].load(Ordering::SeqCst) < sent {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = counters[3].load(Ordering::SeqCst);
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > stall_limit {
            eprintln!("replies stalled at {now} of {sent}");
            break;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    collector.abort();
    let _ = backends.queue.delete(&reply_queue).await;
    if let Some(path) = &args.replies_out {
        events.write(path)?;
    }
    let histogram = end_to_end
        .lock()
        .map(|h| h.clone())
        .unwrap_or_else(|_| histogram());
    Ok((
        sent,
        counters[0].load(Ordering::SeqCst),
        counters[1].load(Ordering::SeqCst),
        counters[2].load(Ordering::SeqCst),
        seconds,
        histogram,
        publish_failed.load(Ordering::SeqCst),
    ))
}
