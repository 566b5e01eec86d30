//! The simulated slice of a planned farm. With tenants sharded over schedulers, the farm is that many
//! independent slices (one scheduler and its share of broker, worker and store cores), so one slice
//! shows what the whole does, at a size that simulates in milliseconds: this is a scaled-down model,
//! not a simulation of every node. Cache calls are left out (the smallest CPU cost per job, served by
//! shards shared across slices).

use super::assumptions::Assumptions;
use super::capacity::{Costs, Plan};
use super::sim::{self, Network, Outcome, Pool, Step};

/// Offered loads, as fractions of the slice's capacity (where its busiest pool is fully used).
pub const LOADS: [f64; 7] = [0.5, 0.7, 0.8, 0.9, 0.95, 1.0, 1.1];
/// Jobs per load point: enough for a stable p99, few enough to run in milliseconds.
const JOBS_PER_POINT: usize = 40_000;
/// Any fixed seed: the runs are deterministic, so the printed tables regenerate exactly.
const SEED: u64 = 22;

/// Pools in the order `Network::pools` holds them.
pub const SCHEDULER: usize = 0;
pub const BROKER: usize = 1;
pub const WORKER: usize = 2;
pub const STORE: usize = 3;

pub struct Slice {
    /// The slice's share of the planned rate (jobs/s).
    pub rate: f64,
    pub slices: u64,
    pub network: Network,
}

/// One scheduler's slice of `plan`: its pod, and every other pool sized for the slice's rate at the
/// target utilisation, rounded up to whole cores.
pub fn slice(costs: &Costs, assumptions: &Assumptions, plan: &Plan) -> Slice {
    let rate = plan.rate / plan.schedulers as f64;
    let cores = |ms: f64| ((rate * ms / 1000.0 / assumptions.utilisation).ceil() as usize).max(1);
    let pool = |name, servers| Pool { name, servers };
    let step = |pool, ms: f64| Step {
        pool,
        mean_s: ms / 1000.0,
    };
    let worker_ms = costs.render_ms + costs.worker_ms;
    Slice {
        rate,
        slices: plan.schedulers,
        network: Network {
            pools: vec![
                pool("scheduler", assumptions.scheduler_pod_cores as usize),
                pool("broker", cores(costs.broker_ms)),
                pool("worker", cores(worker_ms)),
                pool("store", cores(costs.store_server_ms)),
            ],
            route: vec![
                step(SCHEDULER, costs.scheduler_ms / 2.0), // intake
                step(BROKER, costs.broker_ms / 2.0),       // the job message
                step(WORKER, worker_ms),                   // batch, render, outputs
                step(STORE, costs.store_server_ms),        // every store call of the job
                step(BROKER, costs.broker_ms / 2.0),       // the result event
                step(SCHEDULER, costs.scheduler_ms / 2.0), // settle
            ],
        },
    }
}

/// The slice at every load of [`LOADS`].
pub fn sweep(slice: &Slice) -> Vec<Outcome> {
    let capacity = slice.network.capacity();
    LOADS
        .iter()
        .map(|load| sim::simulate(&slice.network, load * capacity, JOBS_PER_POINT, SEED))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scale::measured::tests::sample_measured;

    #[test]
    fn a_slice_holds_its_share_below_capacity() {
        let assumptions = Assumptions::default();
        let costs = Costs::new(&sample_measured(), &assumptions);
        let plan = Plan::new(&costs, &assumptions, 10_000.0);
        let slice = slice(&costs, &assumptions, &plan);
        assert_eq!(slice.slices, 3);
        // Sized at 0.6 and rounded up: the planned rate sits at or below 0.6 of capacity.
        assert!(slice.rate <= slice.network.capacity() * assumptions.utilisation + 1e-9);
        // Store: 2 CPU-ms at 3,333 jobs/s is 6.7 cores busy, 11.1 at 0.6: 12 cores.
        assert_eq!(slice.network.pools[STORE].servers, 12);
    }
}
