//! SSE fan-out of one generation to many watchers (issue 19): how fast the scheduler delivers a job's
//! progress events, each with a live preview, to W concurrent `GET /v1/generations/{id}/events` streams.
//!
//! `cargo run --release -p reverie-scheduler --example sse_fanout_bench -- [--watchers 1,10,100,1000]
//! [--events 200] [--preview-bytes 6000] [--intervals-ms 0,10,50] [--timeout-s 60]`
//!
//! One process: a scheduler on the embedded backends (memory queue and cache, local store in a temporary
//! folder) serving HTTP on 127.0.0.1, one generation submitted over HTTP (no worker runs, so its job stays
//! queued), then per round W watchers open the event stream over their own HTTP/1.1 connections and, once
//! each has its first (state) event, E progress events for job `bench.0` are injected with
//! `Core::handle_event`, as the scheduler's event consumer would after a worker's message, each with a
//! preview of `--preview-bytes` (base64 in the SSE data). Injection is either a burst (interval 0: as fast
//! as `handle_event` returns) or paced (one event per interval). Measured per round: the time from the
//! first injection until every watcher has received the last event, deliveries per second, the delay
//! between an event's injection and its receipt (p50/p99 over every delivery of every watcher), and the
//! events a watcher never received: the stream's broadcast channel holds 64 replies and a watcher that
//! falls further behind skips the oldest (`RecvError::Lagged` in `api::generation_events`). A watcher
//! stops at the last event or at `--timeout-s` after the first injection. Watchers and server share the
//! runtime and the machine's cores.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use reverie_scheduler::{Core, Scheduler, SchedulerOptions};
use reverie_shared::ids::{JobId, RequestId, TenantId};
use reverie_shared::jobs::JobEvent;
use reverie_shared::{Backends, Config};
use tokio::net::TcpStream;
use tokio::sync::watch;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const TENANT: &str = "bench";
const REQUEST: &str = "bench";

struct Options {
    watchers: Vec<usize>,
    events: u32,
    preview_bytes: usize,
    intervals_ms: Vec<u64>,
    timeout: Duration,
}

fn list<T: std::str::FromStr>(value: &str) -> Result<Vec<T>>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    value
        .split(',')
        .map(|v| v.trim().parse::<T>().map_err(Into::into))
        .collect()
}

fn parse_args() -> Result<Options> {
    let mut options = Options {
        watchers: vec![1, 10, 100, 1000],
        events: 200,
        preview_bytes: 6000,
        intervals_ms: vec![0, 10, 50],
        timeout: Duration::from_secs(60),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().ok_or(format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--watchers" => options.watchers = list(&value)?,
            "--events" => options.events = value.parse()?,
            "--preview-bytes" => options.preview_bytes = value.parse()?,
            "--intervals-ms" => options.intervals_ms = list(&value)?,
            "--timeout-s" => options.timeout = Duration::from_secs(value.parse()?),
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    if options.events == 0 {
        return Err("--events must be at least 1".into());
    }
    Ok(options)
}

/// A PNG-sized payload: the PNG signature, then bytes that do not compress (as a noisy preview's).
fn preview_payload(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.push(state as u8);
    }
    bytes.truncate(len);
    bytes
}

/// What one watcher saw: for each progress event received, its step and when it arrived.
struct Watched {
    received: Vec<(u32, Instant)>,
    /// Bytes of one progress event on the wire (`event:` and `data:` lines), for the report.
    event_bytes: usize,
    error: Option<String>,
}

/// The step of an SSE progress event (`"step":N` in its data); `None` for the first, state-only event.
fn progress_step(block: &str) -> Option<u32> {
    if !block.lines().any(|l| l.trim_end() == "event: progress") {
        return None;
    }
    let at = block.find("\"step\":")? + "\"step\":".len();
    let digits: String = block[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// One watcher: its own connection, the event stream read until the last step or the deadline.
async fn watch_events(
    address: std::net::SocketAddr,
    token: Arc<String>,
    last: u32,
    ready: tokio::sync::mpsc::Sender<()>,
    deadline: watch::Receiver<Option<tokio::time::Instant>>,
) -> Watched {
    let mut watched = Watched {
        received: Vec::with_capacity(last as usize),
        event_bytes: 0,
        error: None,
    };
    if let Err(error) = read_stream(address, &token, last, &ready, deadline, &mut watched).await {
        watched.error = Some(error.to_string());
    }
    watched
}

async fn read_stream(
    address: std::net::SocketAddr,
    token: &str,
    last: u32,
    ready: &tokio::sync::mpsc::Sender<()>,
    mut deadline: watch::Receiver<Option<tokio::time::Instant>>,
    watched: &mut Watched,
) -> Result<()> {
    let stream = TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let connection = tokio::spawn(connection);
    let request = Request::get(format!("/v1/generations/{REQUEST}/events"))
        .header("host", address.to_string())
        .header("authorization", format!("Bearer {token}"))
        .header("accept", "text/event-stream")
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status()).into());
    }
    let mut body = response.into_body();
    let mut buffer = String::new();
    let mut announced = false;
    let result = loop {
        let until = *deadline.borrow_and_update();
        let frame = match until {
            Some(at) => match tokio::time::timeout_at(at, body.frame()).await {
                Ok(frame) => frame,
                Err(_) => break Ok(()),
            },
            None => tokio::select! {
                frame = body.frame() => frame,
                _ = deadline.changed() => continue,
            },
        };
        let Some(frame) = frame else {
            break Err("the stream ended".into());
        };
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        let now = Instant::now();
        buffer.push_str(std::str::from_utf8(&data)?);
        let mut done = false;
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            if !announced {
                // The first event (the request's state) means this watcher is subscribed.
                announced = true;
                let _ = ready.send(()).await;
            }
            if let Some(step) = progress_step(&block) {
                watched.event_bytes = block.len();
                watched.received.push((step, now));
                done |= step == last;
            }
        }
        if done {
            break Ok(());
        }
    };
    connection.abort();
    result
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

struct Round {
    seconds: f64,
    delivered: usize,
    delays_ms: Vec<f64>,
    lost_total: usize,
    lost_max: usize,
    watchers_lossy: usize,
    event_bytes: usize,
}

async fn run_round(
    core: &Core,
    address: std::net::SocketAddr,
    token: &Arc<String>,
    watchers: usize,
    interval: Duration,
    options: &Options,
    payload: &[u8],
) -> Result<Round> {
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(watchers.max(1));
    let (deadline_tx, deadline_rx) = watch::channel(None);
    let tasks: Vec<_> = (0..watchers)
        .map(|_| {
            tokio::spawn(watch_events(
                address,
                token.clone(),
                options.events,
                ready_tx.clone(),
                deadline_rx.clone(),
            ))
        })
        .collect();
    drop(ready_tx);
    let mut subscribed = 0;
    let connect_by = tokio::time::Instant::now() + Duration::from_secs(30);
    while subscribed < watchers {
        match tokio::time::timeout_at(connect_by, ready_rx.recv()).await {
            Ok(Some(())) => subscribed += 1,
            // Every sender gone: the watchers that never subscribed failed.
            Ok(None) | Err(_) => break,
        }
    }
    if subscribed < watchers {
        let _ = deadline_tx.send(Some(tokio::time::Instant::now()));
        let mut errors = Vec::new();
        for task in tasks {
            if let Some(error) = task.await?.error {
                errors.push(error);
            }
        }
        errors.dedup();
        return Err(format!(
            "only {subscribed} of {watchers} watchers subscribed within 30 s: {}",
            errors.into_iter().take(3).collect::<Vec<_>>().join("; ")
        )
        .into());
    }

    let job = JobId::for_request(&RequestId::new(REQUEST)?, 0);
    let tenant = TenantId::new(TENANT)?;
    let mut injected = Vec::with_capacity(options.events as usize);
    let start = tokio::time::Instant::now();
    let _ = deadline_tx.send(Some(start + options.timeout));
    for step in 1..=options.events {
        if !interval.is_zero() {
            tokio::time::sleep_until(start + interval * (step - 1)).await;
        }
        injected.push(Instant::now());
        core.handle_event(JobEvent::Progress {
            job: job.clone(),
            tenant: tenant.clone(),
            step,
            total: options.events,
            preview_png: Some(payload.to_vec()),
        })
        .await?;
    }
    let first = injected[0];

    let mut round = Round {
        seconds: 0.0,
        delivered: 0,
        delays_ms: Vec::with_capacity(watchers * options.events as usize),
        lost_total: 0,
        lost_max: 0,
        watchers_lossy: 0,
        event_bytes: 0,
    };
    let mut errors = Vec::new();
    for task in tasks {
        let watched = task.await?;
        if let Some(error) = watched.error {
            errors.push(error);
        }
        let lost = options.events as usize - watched.received.len();
        round.lost_total += lost;
        round.lost_max = round.lost_max.max(lost);
        round.watchers_lossy += usize::from(lost > 0);
        round.delivered += watched.received.len();
        round.event_bytes = round.event_bytes.max(watched.event_bytes);
        for (step, at) in watched.received {
            let sent = injected[step as usize - 1];
            round
                .delays_ms
                .push(at.duration_since(sent).as_secs_f64() * 1000.0);
            round.seconds = round.seconds.max(at.duration_since(first).as_secs_f64());
        }
    }
    if !errors.is_empty() {
        errors.dedup();
        eprintln!(
            "  {} watcher(s) ended with an error: {}",
            errors.len(),
            errors.into_iter().take(3).collect::<Vec<_>>().join("; ")
        );
    }
    round.delays_ms.sort_by(f64::total_cmp);
    Ok(round)
}

async fn submit(address: std::net::SocketAddr, token: &str) -> Result<()> {
    let stream = TcpStream::connect(address).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let connection = tokio::spawn(connection);
    let body = serde_json::json!({
        "schema_version": 1, "tenant": TENANT, "prompt": "a red balloon", "n": 1,
        "priority": "interactive", "kind": "generate"
    });
    let request = Request::post("/v1/generations")
        .header("host", address.to_string())
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("idempotency-key", REQUEST)
        .body(http_body_util::Full::new(Bytes::from(serde_json::to_vec(
            &body,
        )?)))?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let answer = response.into_body().collect().await?.to_bytes();
    connection.abort();
    if !status.is_success() {
        return Err(format!(
            "submission: HTTP {status}: {}",
            String::from_utf8_lossy(&answer)
        )
        .into());
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let options = parse_args()?;
    let data = tempfile::tempdir()?;
    let mut config = Config {
        data_dir: data.path().to_path_buf(),
        ..Config::default()
    };
    config.scheduler.http_addr = "127.0.0.1:0".parse()?;
    let backends = Backends::connect(&config).await?;
    let scheduler = Scheduler::new(backends.clone(), SchedulerOptions::from_config(&config));
    let core = scheduler.core().clone();
    let tenant = TenantId::new(TENANT)?;
    core.tenants().create(&tenant).await?;
    core.tenants().set_consent(&tenant, "library", true).await?;
    let token = core
        .tenants()
        .issue_token(&tenant, Some(Duration::from_secs(3600)), None)
        .await?;
    let token = Arc::new(token);
    let (stop, shutdown) = watch::channel(false);
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let scheduler_task = tokio::spawn(scheduler.run(shutdown, Some(bound_tx)));
    let address = bound_rx.await?;
    submit(address, &token).await?;

    let payload = preview_payload(options.preview_bytes);
    eprintln!(
        "backends: {}; {} worker threads; scheduler on {address}; open-file limit: {}",
        backends.describe(),
        tokio::runtime::Handle::current().metrics().num_workers(),
        std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|l| l
                .lines()
                .find(|l| l.starts_with("Max open files"))
                .map(|l| l.split_whitespace().nth(3).unwrap_or("?").to_string()))
            .unwrap_or_else(|| "?".into())
    );
    println!(
        "| injection | watchers | events | seconds | deliveries/s | p50 ms | p99 ms | lost (total; watchers \
         with losses; most one lost) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut event_bytes = 0;
    let mut largest_ok = None;
    'intervals: for &interval_ms in &options.intervals_ms {
        let interval = Duration::from_millis(interval_ms);
        let injection = if interval.is_zero() {
            "burst".to_string()
        } else {
            format!("every {interval_ms} ms")
        };
        for &watchers in &options.watchers {
            let round = run_round(
                &core, address, &token, watchers, interval, &options, &payload,
            )
            .await;
            let round = match round {
                Ok(round) => round,
                Err(error) => {
                    println!(
                        "| {injection} | {watchers} | {} | failed: {error} | | | | |",
                        options.events
                    );
                    continue 'intervals;
                }
            };
            largest_ok = largest_ok.max(Some(watchers));
            event_bytes = event_bytes.max(round.event_bytes);
            let wanted = watchers * options.events as usize;
            println!(
                "| {injection} | {watchers} | {} | {:.3} | {:.0} | {:.2} | {:.2} | {} ({:.1}%); {} of {watchers}; {} |",
                options.events,
                round.seconds,
                round.delivered as f64 / round.seconds,
                percentile(&round.delays_ms, 50.0),
                percentile(&round.delays_ms, 99.0),
                round.lost_total,
                round.lost_total as f64 * 100.0 / wanted as f64,
                round.watchers_lossy,
                round.lost_max,
            );
            // Let the server notice the closed streams before the next round.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    println!(
        "\none progress event on the wire: {event_bytes} bytes of SSE (a {}-byte preview, base64 in JSON); \
         largest watcher count that worked: {}",
        options.preview_bytes,
        largest_ok.map_or("none".to_string(), |w| w.to_string())
    );
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), scheduler_task).await;
    Ok(())
}
