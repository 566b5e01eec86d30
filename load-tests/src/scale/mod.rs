//! The farm at internet scale, on paper and by simulation (`reverie-load --scale-model REPORT_JSON`):
//! the per-job costs a load run measured (calls per job, CPU per job of every process, the raw broker
//! rate, the render alone) turned into what a target rate needs — schedulers, workers, GPUs, broker
//! nodes and queues, S3 requests, prefixes and their price, Redis shards — the ceiling of each part the
//! farm has exactly one of today, and a small simulation of one slice of the planned farm as the load
//! rises past its capacity. It connects to nothing.
//!
//! What is measured and what is not: calls and CPU per job come from the report; how the one farm
//! process splits between scheduler, workers and load generator, the GPU time of a diffusion job, the
//! node sizes, the quorum-queue and stream factors and S3's limits and prices are assumptions, each
//! named, sourced and overridable (`--scale-set NAME=VALUE`). Several schedulers sharing the load by
//! tenant shard is the design under discussion, not built: today exactly one scheduler is active.

mod assumptions;
mod broker;
mod capacity;
mod measured;
mod pipeline;
mod print;
mod sim;
mod store;

use assumptions::Assumptions;
use capacity::{Costs, Plan};
use measured::Measured;

/// Prints the model for `--scale-model`.
pub fn run(path: &std::path::Path, args: &crate::Args) -> anyhow::Result<()> {
    let measured = Measured::read(path)?;
    let assumptions = Assumptions {
        gpu_ms_per_job: args.scale_render_ms_gpu,
        ..Assumptions::default()
    }
    .with_overrides(&args.scale_set)?;
    let costs = Costs::new(&measured, &assumptions);
    println!("# Reverie at internet scale (model)");
    println!();
    println!(
        "Measured: `{}` ({}), {:.1} jobs/s on the measuring machine.",
        path.display(),
        measured.workload,
        measured.jobs_per_second
    );
    println!();
    print::costs(&measured, &costs, &assumptions);
    print::money_per_job(&costs, &assumptions);
    print::assumptions(&assumptions);
    println!("## The parts there is one of");
    println!();
    print::ceilings(&capacity::ceilings(&costs, &measured, &assumptions));
    for &rate in &args.scale_rates {
        rate_section(&costs, &measured, &assumptions, rate);
    }
    Ok(())
}

fn rate_section(costs: &Costs, measured: &Measured, assumptions: &Assumptions, rate: f64) {
    let plan = Plan::new(costs, assumptions, rate);
    println!("## {} jobs/s", print::grouped(rate));
    println!();
    print::roles(&plan, costs, assumptions);
    print::broker(&broker::layouts(costs, measured, assumptions, rate), rate);
    print::store(&store::kinds(costs, assumptions, rate));
    let slice = pipeline::slice(costs, assumptions, &plan);
    print::simulation(&slice, &pipeline::sweep(&slice), assumptions);
}
