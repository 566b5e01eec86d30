//! The model's tables, in Markdown, as docs/operations.md shows them.

use super::assumptions::Assumptions;
use super::capacity::{self, Ceiling, Costs, Plan};
use super::measured::Measured;
use super::pipeline::{Slice, LOADS};
use super::sim::{self, Outcome};
use super::{broker, store};

/// A count with thousands separators: 16667 -> "16,667".
pub fn grouped(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

pub fn costs(measured: &Measured, costs: &Costs, assumptions: &Assumptions) {
    let shares = |share: f64| format!("farm process minus the render, x {share}");
    println!("| per-job cost | value | from |");
    println!("|---|---|---|");
    println!(
        "| painterly render | {:.2} CPU-ms | the render alone, p50 |",
        costs.render_ms
    );
    println!(
        "| scheduler | {:.2} CPU-ms | {} (`scheduler_share`) |",
        costs.scheduler_ms,
        shares(assumptions.scheduler_share)
    );
    let worker_share = 1.0 - assumptions.scheduler_share - assumptions.client_share;
    println!(
        "| worker beyond the render | {:.2} CPU-ms | {} |",
        costs.worker_ms,
        shares(worker_share)
    );
    println!(
        "| load generator (left out) | {:.2} CPU-ms | {} (`client_share`) |",
        (measured.cpu.farm - costs.render_ms) * assumptions.client_share,
        shares(assumptions.client_share)
    );
    println!(
        "| RabbitMQ | {:.2} CPU-ms, {:.3} per message, {:.2} messages | beam.smp; publishes and replies |",
        costs.broker_ms,
        costs.broker_ms_per_message(),
        costs.messages
    );
    println!(
        "| Redis | {:.2} CPU-ms, {:.2} calls | redis-server; cache calls |",
        costs.cache_ms, costs.cache_calls
    );
    println!(
        "| S3 server | {:.2} CPU-ms; {:.2} PUT, {:.2} DELETE, {:.2} GET | s3s-fs; store calls |",
        costs.store_server_ms, costs.store_puts, costs.store_deletes, costs.store_reads
    );
    println!(
        "| diffusion render | {} GPU-ms | `gpu_ms_per_job` (assumed) |",
        grouped(costs.gpu_ms)
    );
    println!();
}

/// The store's request price per job beside the GPU's, the two costs that grow with every job.
pub fn money_per_job(costs: &Costs, assumptions: &Assumptions) {
    let s3 = store::usd_per_job(costs, assumptions);
    let gpu =
        costs.gpu_ms / 1000.0 / 3600.0 * assumptions.gpu_usd_per_hour / assumptions.utilisation;
    println!(
        "Per job at list prices: S3 requests ${:.7}; a diffusion render ${:.7} (its GPU time at \
         `gpu_usd_per_hour`, paid at the target utilisation), so S3 requests are {:.0}% of the GPU.",
        s3,
        gpu,
        100.0 * s3 / gpu
    );
    println!();
}

pub fn assumptions(assumptions: &Assumptions) {
    println!("| assumption (`--scale-set NAME=VALUE`) | value | why |");
    println!("|---|---|---|");
    for row in assumptions.rows() {
        println!("| `{}` | {} | {} |", row.name, row.value, row.source);
    }
    println!();
}

pub fn ceilings(ceilings: &[Ceiling]) {
    println!("| one of (today's farm has one of each) | jobs/s at 100% | binds |");
    println!("|---|---|---|");
    for ceiling in ceilings {
        let binds = if ceiling.farm_wide {
            "the farm"
        } else {
            "one tenant"
        };
        println!(
            "| {} | {} | {binds} |",
            ceiling.part,
            grouped(ceiling.jobs_per_second)
        );
    }
    if let Some(first) = capacity::first_bottleneck(ceilings) {
        println!();
        println!(
            "First bottleneck of today's farm as the rate rises: {}, at {} jobs/s.",
            first.part,
            grouped(first.jobs_per_second)
        );
    }
    println!();
}

pub fn roles(plan: &Plan, costs: &Costs, assumptions: &Assumptions) {
    let u = assumptions.utilisation;
    let busy = |ms: f64| grouped(plan.rate * ms / 1000.0);
    println!("| role | per job | busy at this rate | needed at utilisation {u} |");
    println!("|---|---|---|---|");
    println!(
        "| schedulers, tenant-sharded (not built: today one) | {:.2} CPU-ms | {} cores | {:.0} cores: {} pods of {} ({} if all the farm overhead were the scheduler's); {} tenant shards |",
        costs.scheduler_ms,
        busy(costs.scheduler_ms),
        plan.scheduler_cores.ceil(),
        plan.schedulers,
        assumptions.scheduler_pod_cores,
        plan.schedulers_at_most,
        plan.shards
    );
    println!(
        "| painterly workers | {:.2} CPU-ms | {} cores | {} cores |",
        costs.render_ms + costs.worker_ms,
        busy(costs.render_ms + costs.worker_ms),
        grouped(plan.painterly_worker_cores.ceil())
    );
    println!(
        "| diffusion workers | {} GPU-ms + {:.2} CPU-ms | {} GPUs | {} GPUs + {} cores |",
        grouped(costs.gpu_ms),
        costs.worker_ms,
        busy(costs.gpu_ms),
        grouped(plan.gpus.ceil()),
        grouped(plan.gpu_worker_cores.ceil())
    );
    println!(
        "| RabbitMQ, classic (cost as measured) | {:.2} CPU-ms | {} cores | {} cores (layouts below) |",
        costs.broker_ms,
        busy(costs.broker_ms),
        grouped(plan.broker_cores.ceil())
    );
    println!(
        "| Redis | {:.2} calls, {:.2} CPU-ms | {} ops/s | {} shards nominal, {} at this run's CPU per call |",
        costs.cache_calls,
        costs.cache_ms,
        grouped(plan.cache_ops),
        plan.cache_shards,
        plan.cache_shards_measured
    );
    println!(
        "| S3-compatible server, self-hosted (s3s-fs's cost) | {:.2} CPU-ms | {} cores | {} cores |",
        costs.store_server_ms,
        busy(costs.store_server_ms),
        grouped(plan.store_server_cores.ceil())
    );
    println!();
    println!(
        "Diffusion: {} GPUs against {} CPU cores for everything else of the farm ({:.0}x).",
        grouped(plan.gpus.ceil()),
        grouped(plan.diffusion_farm_cores(assumptions).ceil()),
        plan.gpus / plan.diffusion_farm_cores(assumptions)
    );
    println!();
}

pub fn broker(layouts: &[broker::Layout], rate: f64) {
    println!("| broker layout | messages/s | one queue's limit (msg/s) | queues per kind | cores | nodes |");
    println!("|---|---|---|---|---|---|");
    for layout in layouts {
        let nodes = match layout.holds_up_to {
            Some(limit) if rate > limit => {
                format!("cannot: one node holds up to {} jobs/s", grouped(limit))
            }
            Some(limit) => format!("{} (holds up to {} jobs/s)", layout.nodes, grouped(limit)),
            None => layout.nodes.to_string(),
        };
        println!(
            "| {} | {} | {} | {} | {} | {nodes} |",
            layout.name,
            grouped(layout.messages_per_second),
            grouped(layout.queue_limit),
            layout.queues_per_kind,
            grouped(layout.cores.ceil()),
        );
    }
    println!();
}

pub fn store(kinds: &[store::Kind]) {
    println!("| S3 requests | per job | per second | prefixes | USD per month |");
    println!("|---|---|---|---|---|");
    for kind in kinds {
        println!(
            "| {} | {:.2} | {} | {} | {} |",
            kind.name,
            kind.per_job,
            grouped(kind.per_second),
            kind.prefixes,
            grouped(kind.usd_per_month)
        );
    }
    println!(
        "| all | | | {} | {} |",
        store::prefixes_needed(kinds),
        grouped(store::usd_per_month(kinds))
    );
    println!();
}

pub fn simulation(slice: &Slice, sweep: &[Outcome], assumptions: &Assumptions) {
    let pools = &slice.network.pools;
    let capacity = slice.network.capacity();
    let servers: Vec<String> = pools
        .iter()
        .map(|pool| format!("{} {}", pool.name, pool.servers))
        .collect();
    println!(
        "Simulated: one scheduler's slice of {} ({} jobs/s; cores: {}), capacity {} jobs/s, so the plan \
         runs it at {:.0}% (target {}).",
        slice.slices,
        grouped(slice.rate),
        servers.join(", "),
        grouped(capacity),
        100.0 * slice.rate / capacity,
        assumptions.utilisation
    );
    println!();
    let names: Vec<&str> = pools.iter().map(|pool| pool.name).collect();
    println!(
        "| offered, of capacity | farm jobs/s | {} busy | p50 ms | p99 ms |",
        names.join(" busy | ")
    );
    println!("|---|---|{}---|---|", "---|".repeat(pools.len()));
    for (load, outcome) in LOADS.iter().zip(sweep) {
        let busy: Vec<String> = outcome
            .utilisation
            .iter()
            .map(|u| format!("{u:.2}"))
            .collect();
        println!(
            "| {:.0}% | {} | {} | {:.2} | {:.2} |",
            load * 100.0,
            grouped(outcome.offered * slice.slices as f64),
            busy.join(" | "),
            outcome.p50_s * 1000.0,
            outcome.p99_s * 1000.0
        );
    }
    if let Some(pool) = sim::first_bottleneck(sweep) {
        println!();
        println!(
            "First to saturate in the simulation: {}. Every pool is sized to the same target, so they \
             saturate within a few percent of one another; the first is the one that rounding to whole \
             cores and pods left with the least headroom.",
            pools[pool].name
        );
    }
    println!();
}
