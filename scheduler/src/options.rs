//! The scheduler's settings, taken from the shared configuration plus what only the scheduler uses.

use std::net::SocketAddr;
use std::time::Duration;

use reverie_shared::config::Config;

use crate::plan::PlannerSettings;

#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    pub queue_prefix: String,
    pub http_addr: SocketAddr,
    /// Most unfinished jobs one tenant may have; a request that would exceed it is rejected.
    pub tenant_queue_quota: usize,
    /// Batch jobs of one tenant on the broker at once (see [`crate::fairness`]).
    pub batch_in_flight_per_tenant: usize,
    /// Largest `n` (variants) one request may ask for.
    pub max_variants: u32,
    /// How often queue depths and live workers are sampled for the metrics.
    pub metrics_interval: Duration,
    /// How long intake reuses a tenant's library before reading it again (see
    /// [`crate::library::CachedLibrary`]).
    pub library_fresh_for: Duration,
    pub planner: PlannerSettings,
    /// Tenant shares of the farm (`scheduler.shards`): 1, one active scheduler with standbys; more,
    /// every scheduler active for the shares it holds (see [`crate::shards`]).
    pub shards: u16,
    /// The base URL other schedulers forward this one's tenants' HTTP requests to; `None`:
    /// `http://{the address it listens on}`.
    pub advertise_url: Option<String>,
}

impl SchedulerOptions {
    pub fn from_config(config: &Config) -> SchedulerOptions {
        SchedulerOptions {
            queue_prefix: config.queues.prefix.clone(),
            http_addr: config.scheduler.http_addr,
            tenant_queue_quota: config.scheduler.tenant_queue_quota as usize,
            shards: config.scheduler.shards,
            advertise_url: Some(config.scheduler.advertise_url.trim().to_string())
                .filter(|url| !url.is_empty()),
            planner: PlannerSettings {
                // Workers load this model; without one, every job is planned painterly.
                diffusion_model: config.diffusion.model.clone(),
                diffusion_steps: config.diffusion.steps,
                default_size: config.diffusion.size,
                // Subjects become image prompts only where the workers' model has an IP-Adapter.
                image_prompt_scale: match config.diffusion.ip_adapter {
                    Some(_) => config.diffusion.ip_scale,
                    None => 0.0,
                },
                ..PlannerSettings::default()
            },
            ..SchedulerOptions::default()
        }
    }
}

impl Default for SchedulerOptions {
    fn default() -> SchedulerOptions {
        SchedulerOptions {
            queue_prefix: "reverie".to_string(),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tenant_queue_quota: 10_000,
            // Enough to keep a worker's batch full (worker.batch_max defaults to 8) without letting one
            // tenant's backlog sit on the broker in front of others.
            batch_in_flight_per_tenant: 8,
            max_variants: 16,
            metrics_interval: Duration::from_secs(5),
            library_fresh_for: Duration::from_secs(2),
            planner: PlannerSettings::default(),
            shards: 1,
            advertise_url: None,
        }
    }
}
