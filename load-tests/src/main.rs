//! `reverie-load`: drives requests through the farm over AMQP and reports throughput and end-to-end
//! latency percentiles next to the raw broker's throughput for the same message size, measured in the
//! same run, so the farm's cost reads as a ratio on any machine. It also writes output-size objects to the
//! store (the raw store baseline), reads the calls each job made from the farm's metrics, and the CPU
//! time each process (farm, broker, cache, S3 server) spent per job: together, where a job's cost goes.
//!
//!   cargo run --release -p reverie-load-tests -- --count 2000
//!
//! By default it starts a scheduler and `--workers` workers in-process against the configured real
//! services (REVERIE_AMQP_URL, REVERIE_REDIS_URL, REVERIE_S3_*), with queue names private to the run.
//! With `--external` it only publishes, to a farm that is already running (`--token` then required).

mod baselines;
mod cpu;
mod farm;
mod hops;
mod scale;
mod seed;
mod stats;

use std::time::Duration;

use anyhow::Context;

/// The same allocator as the `reverie` binary, so the in-process farm measures what production runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use clap::Parser;
use reverie_shared::config::Config;

#[derive(Debug, Parser)]
#[command(name = "reverie-load", about = "Load generator for a Reverie farm.")]
pub struct Args {
    /// Requests to send (ignored when --duration is given).
    #[arg(long, default_value_t = 2000)]
    pub count: u64,
    /// Send for this many seconds instead of a count.
    #[arg(long)]
    pub duration: Option<u64>,
    /// Target requests per second; 0 sends as fast as the farm accepts.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Requests in flight at most (open-loop rate limiting still applies).
    #[arg(long, default_value_t = 512)]
    pub in_flight: usize,
    /// In-process workers to start.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Jobs per render pass on each worker.
    #[arg(long, default_value_t = 16)]
    pub batch_max: usize,
    /// Output side in pixels (the cheapest renderer paints this many pixels per job).
    #[arg(long, default_value_t = 64)]
    pub size: u32,
    /// Painterly style of every job (`pop-art` is the cheapest).
    #[arg(long, default_value = "pop-art")]
    pub style: String,
    /// Publish to an already running farm instead of starting one.
    #[arg(long)]
    pub external: bool,
    /// Token for --external (`reverie tenant create`).
    #[arg(long, env = "REVERIE_TOKEN")]
    pub token: Option<String>,
    /// Tenant of the requests with --external (default: a fresh `load-{run}` tenant of the in-process farm).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only write the one-photo library of --tenant to the configured store, then exit (to prepare a tenant
    /// of an external farm).
    #[arg(long)]
    pub seed_only: bool,
    /// Only delete the farm's queues (and their dead-letter queues) under the configured `queues.prefix`,
    /// then exit: how a test run cleans up the broker it shares.
    #[arg(long)]
    pub delete_queues: bool,
    /// Skip the raw broker and raw store baselines and the render-alone timing (fault and metrics tests need only the load).
    #[arg(long)]
    pub no_baseline: bool,
    /// Also publish malformed messages (a request that is not JSON, a job that is not an envelope) so the
    /// dead-letter paths run.
    #[arg(long)]
    pub malformed: bool,
    /// Stop waiting when no reply arrived for this many seconds.
    #[arg(long, default_value_t = 120)]
    pub stall_limit_s: u64,
    /// Write one line per event, `{request} {event}` (published, publish_failed, accepted, done, failed,
    /// rejected, ...), so a test can check that every accepted request finished exactly once.
    #[arg(long)]
    pub replies_out: Option<std::path::PathBuf>,
    /// Ask the farm for final replies only (`x-reverie-replies: final`): no `accepted` acknowledgement per
    /// request, one confirmed publish fewer per job. Off by default: the fault checks count acceptances.
    #[arg(long)]
    pub final_replies_only: bool,
    /// Also write the report as JSON to this file (read by `load-tests/peer/compare` and `--scale-model`).
    #[arg(long)]
    pub report_json: Option<std::path::PathBuf>,
    /// Print the farm-at-scale model fed by this `--report-json` file (Markdown), then exit without
    /// connecting anywhere.
    #[arg(long, value_name = "REPORT_JSON")]
    pub scale_model: Option<std::path::PathBuf>,
    /// Target rates of the scale model, jobs/s.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
    pub scale_rates: Vec<f64>,
    /// GPU milliseconds per diffusion job in the scale model (a 4-step turbo 512x512 render in a batch).
    #[arg(long, default_value_t = 1000.0)]
    pub scale_render_ms_gpu: f64,
    /// Any other assumption of the scale model, by the name its inputs table shows.
    #[arg(long = "scale-set", value_name = "NAME=VALUE")]
    pub scale_set: Vec<String>,
    /// Any configuration key, as for `reverie --set`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(report) = &args.scale_model {
        return scale::run(report, &args);
    }
    let mut config = Config::load(None).context("configuration")?;
    for assignment in &args.overrides {
        config.set(assignment)?;
    }
    reverie_shared::telemetry::init(config.log_format, "warn");
    if config.amqp_url()?.is_none() {
        anyhow::bail!("set REVERIE_AMQP_URL (a load test measures the real broker)");
    }
    if args.seed_only {
        let tenant = args.tenant.clone().context("--seed-only needs --tenant")?;
        farm::seed_only(&tenant, &config).await?;
        println!("library of {tenant} seeded");
        return Ok(());
    }
    if args.delete_queues {
        let deleted = farm::delete_queues(&config).await?;
        println!("deleted {deleted} queues under {}", config.queues.prefix);
        return Ok(());
    }
    let report = farm::run(&args, config).await?;
    report.print(&args);
    if let Some(path) = &args.report_json {
        let json = serde_json::to_string_pretty(&report.to_json(&args))?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    // Let connection tear-down finish before the runtime stops.
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(())
}
