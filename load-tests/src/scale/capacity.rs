//! Per-job costs by role, and the capacity a target rate needs: cores per role, schedulers, GPUs, cache
//! shards, and the ceilings of the parts that exist once per farm today.

use super::assumptions::Assumptions;
use super::measured::Measured;

/// Messages on the job queue per job: each job is published once (redeliveries and retries aside).
pub const JOB_MESSAGES: f64 = 1.0;
/// Request messages per job: the measured load sends one single-image request per job; requests with
/// several images would need fewer.
pub const REQUEST_MESSAGES: f64 = 1.0;

/// What one job costs each role and service, from the measured report and the assumptions.
#[derive(Debug, Clone, PartialEq)]
pub struct Costs {
    /// Painterly render CPU per job: the render alone, p50 (one core, the same run).
    pub render_ms: f64,
    pub gpu_ms: f64,
    pub scheduler_ms: f64,
    /// The worker's CPU beyond the render: batching, inputs, output writes, the result event.
    pub worker_ms: f64,
    pub broker_ms: f64,
    pub cache_ms: f64,
    pub store_server_ms: f64,
    /// Published messages per job (requests, jobs, events, replies) and the events and replies among them.
    pub messages: f64,
    pub event_messages: f64,
    pub reply_messages: f64,
    pub cache_calls: f64,
    pub store_puts: f64,
    pub store_deletes: f64,
    /// GET and HEAD (range reads are GETs).
    pub store_reads: f64,
    pub store_lists: f64,
}

impl Costs {
    /// Splits the one farm process: the render alone is the worker's render CPU; the rest is overhead,
    /// shared between scheduler, workers and the load generator by the assumed shares.
    pub fn new(measured: &Measured, assumptions: &Assumptions) -> Costs {
        let overhead = measured.cpu.farm - measured.render_ms;
        let worker_share = 1.0 - assumptions.scheduler_share - assumptions.client_share;
        let publishes = measured.per_job("queue", &["publish"]);
        let reply_messages = measured.per_job("queue", &["publish_reply"]);
        Costs {
            render_ms: measured.render_ms,
            gpu_ms: assumptions.gpu_ms_per_job,
            scheduler_ms: overhead * assumptions.scheduler_share,
            worker_ms: overhead * worker_share,
            broker_ms: measured.cpu.broker,
            cache_ms: measured.cpu.cache,
            store_server_ms: measured.cpu.store_server,
            messages: publishes + reply_messages,
            event_messages: (publishes - JOB_MESSAGES - REQUEST_MESSAGES).max(0.0),
            reply_messages,
            cache_calls: measured.per_job("cache", &[]),
            store_puts: measured.per_job("store", &["put"]),
            store_deletes: measured.per_job("store", &["delete"]),
            store_reads: measured.per_job("store", &["get", "get_range", "head"]),
            store_lists: measured.per_job("store", &["list"]),
        }
    }

    /// The broker's measured CPU per published message (its publish, routing, delivery and ack).
    pub fn broker_ms_per_message(&self) -> f64 {
        self.broker_ms / self.messages.max(1e-9)
    }

    /// The scheduler's CPU if all of the farm's overhead were the scheduler's: the bound on the estimate.
    pub fn scheduler_ms_at_most(&self, assumptions: &Assumptions) -> f64 {
        self.scheduler_ms / assumptions.scheduler_share.max(1e-9)
            * (1.0 - assumptions.client_share).max(0.0)
    }
}

/// Cores that `rate` jobs/s keep busy at the target utilisation, for a cost of `ms` CPU-ms per job.
pub fn cores(rate: f64, ms: f64, utilisation: f64) -> f64 {
    rate * ms / 1000.0 / utilisation
}

/// Whole units of `size` cores for `cores`.
pub fn units(cores: f64, size: f64) -> u64 {
    (cores / size).ceil().max(1.0) as u64
}

/// The roles at one target rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub rate: f64,
    pub scheduler_cores: f64,
    pub schedulers: u64,
    /// Schedulers if all of the farm's non-render CPU were the scheduler's.
    pub schedulers_at_most: u64,
    pub shards: u64,
    pub painterly_worker_cores: f64,
    pub gpus: f64,
    /// CPU of the diffusion workers beside their GPUs (batching, inputs, outputs, events).
    pub gpu_worker_cores: f64,
    pub broker_cores: f64,
    pub store_server_cores: f64,
    pub cache_ops: f64,
    /// Cache shards at the nominal rate per core, and at the rate this run measured.
    pub cache_shards: u64,
    pub cache_shards_measured: u64,
}

impl Plan {
    pub fn new(costs: &Costs, assumptions: &Assumptions, rate: f64) -> Plan {
        let u = assumptions.utilisation;
        let scheduler_cores = cores(rate, costs.scheduler_ms, u);
        let schedulers = units(scheduler_cores, assumptions.scheduler_pod_cores);
        let cache_ops = rate * costs.cache_calls;
        Plan {
            rate,
            scheduler_cores,
            schedulers,
            schedulers_at_most: units(
                cores(rate, costs.scheduler_ms_at_most(assumptions), u),
                assumptions.scheduler_pod_cores,
            ),
            shards: schedulers * assumptions.shards_per_scheduler.max(1.0) as u64,
            painterly_worker_cores: cores(rate, costs.render_ms + costs.worker_ms, u),
            gpus: cores(rate, costs.gpu_ms, u),
            gpu_worker_cores: cores(rate, costs.worker_ms, u),
            broker_cores: cores(rate, costs.broker_ms, u),
            store_server_cores: cores(rate, costs.store_server_ms, u),
            cache_ops,
            cache_shards: units(cache_ops / u, assumptions.redis_ops_per_core),
            cache_shards_measured: units(cores(rate, costs.cache_ms, u), 1.0),
        }
    }

    /// Every CPU core of the farm for diffusion jobs (schedulers, GPU workers' CPU, broker, cache,
    /// a self-hosted store), to set beside the GPUs.
    pub fn diffusion_farm_cores(&self, assumptions: &Assumptions) -> f64 {
        self.schedulers as f64 * assumptions.scheduler_pod_cores
            + self.gpu_worker_cores
            + self.broker_cores
            + self.cache_shards_measured as f64
            + self.store_server_cores
    }
}

/// A part that exists once per farm (or per tenant) in today's design, and the jobs/s it allows at 100%.
#[derive(Debug, Clone, PartialEq)]
pub struct Ceiling {
    pub part: String,
    pub jobs_per_second: f64,
    /// False for limits that bind one tenant, not the farm (tenants spread over S3 prefixes).
    pub farm_wide: bool,
}

/// The single parts, lowest ceiling first.
pub fn ceilings(costs: &Costs, measured: &Measured, assumptions: &Assumptions) -> Vec<Ceiling> {
    let ceiling = |part: String, jobs_per_second: f64, farm_wide: bool| Ceiling {
        part,
        jobs_per_second,
        farm_wide,
    };
    let queue_rate = measured.raw_broker_messages_per_second;
    let mut all = vec![
        ceiling(
            format!(
                "the one active scheduler (one pod of {} cores)",
                assumptions.scheduler_pod_cores
            ),
            assumptions.scheduler_pod_cores * 1000.0 / costs.scheduler_ms,
            true,
        ),
        ceiling(
            "one classic queue (jobs, or requests: one Erlang process; the raw broker rate)".into(),
            queue_rate / JOB_MESSAGES.max(REQUEST_MESSAGES),
            true,
        ),
        ceiling(
            format!(
                "one RabbitMQ node, {} cores, all the farm's messages",
                assumptions.broker_node_cores
            ),
            assumptions.broker_node_cores * 1000.0 / costs.broker_ms,
            true,
        ),
        ceiling(
            "one Redis (one thread), at this run's CPU per call".into(),
            1000.0 / costs.cache_ms,
            true,
        ),
        ceiling(
            "one S3 prefix before S3 splits it (one tenant's writes)".into(),
            assumptions.s3_writes_per_prefix / (costs.store_puts + costs.store_deletes),
            false,
        ),
    ];
    all.sort_by(|a, b| a.jobs_per_second.total_cmp(&b.jobs_per_second));
    all
}

/// The first part to run out as the farm's rate rises: the lowest ceiling that binds the farm (a
/// tenant's S3 prefix binds only that tenant).
pub fn first_bottleneck(ceilings: &[Ceiling]) -> Option<&Ceiling> {
    ceilings.iter().find(|ceiling| ceiling.farm_wide)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scale::measured::tests::sample_measured;

    fn near(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn the_farm_process_splits_into_render_and_roles() {
        // Farm 3 CPU-ms, render 1: overhead 2, scheduler 0.5 of it, client 0.15, workers 0.35.
        let costs = Costs::new(&sample_measured(), &Assumptions::default());
        assert!(near(costs.scheduler_ms, 1.0));
        assert!(near(costs.worker_ms, 0.7));
        assert!(near(
            costs.scheduler_ms_at_most(&Assumptions::default()),
            1.7
        ));
        assert!(near(costs.messages, 5.0));
        assert!(near(costs.event_messages, 2.0));
        assert!(near(costs.broker_ms_per_message(), 0.2));
    }

    #[test]
    fn a_plan_is_rate_times_cost_over_utilisation() {
        let assumptions = Assumptions::default();
        let costs = Costs::new(&sample_measured(), &assumptions);
        let plan = Plan::new(&costs, &assumptions, 10_000.0);
        // 10,000 jobs/s x 1 CPU-ms = 10 cores busy; at 0.6, 16.7 cores; 8-core pods: 3.
        assert!(near(plan.scheduler_cores, 10_000.0 / 1000.0 / 0.6));
        assert_eq!(plan.schedulers, 3);
        assert_eq!(plan.shards, 12);
        // At most 1.7 CPU-ms: 28.3 cores, 4 pods.
        assert_eq!(plan.schedulers_at_most, 4);
        // Render 1 + worker 0.7 CPU-ms.
        assert!(near(plan.painterly_worker_cores, 10.0 * 1.7 / 0.6));
        // 1 GPU-second per job: 10,000 GPUs busy, 16,667 at 0.6.
        assert!(near(plan.gpus, 10_000.0 / 0.6));
        // 6 cache calls: 60,000 ops/s, 100,000 at 0.6: one nominal shard; measured 0.2 ms: 3.3 cores, 4.
        assert_eq!(plan.cache_shards, 1);
        assert_eq!(plan.cache_shards_measured, 4);
        assert!(plan.gpus > 100.0 * plan.diffusion_farm_cores(&assumptions));
    }

    #[test]
    fn the_lowest_ceiling_comes_first() {
        let measured = sample_measured();
        let assumptions = Assumptions::default();
        let costs = Costs::new(&measured, &assumptions);
        let ceilings = ceilings(&costs, &measured, &assumptions);
        // Redis: 1000 / 0.2 = 5,000 jobs/s, below the queue (10,000) and the scheduler (8,000).
        let first = first_bottleneck(&ceilings).unwrap();
        assert!(first.part.contains("Redis"), "{ceilings:?}");
        assert!(near(first.jobs_per_second, 5000.0));
        // The per-tenant S3 limit, 3,500 / 4 writes, is lower still but binds one tenant only.
        assert!(!ceilings[0].farm_wide && near(ceilings[0].jobs_per_second, 875.0));
    }
}
