//! Health: what the scheduler tells operators. The metrics sampler's gauges (queue depths, the age of
//! the oldest published job no worker started, live workers) and readiness (the three backends answer).
//! Owns no state: it reads the open requests and the backends.

use std::sync::Arc;

use chrono::Utc;
use reverie_shared::backends::Backends;
use reverie_shared::keys;
use reverie_shared::metrics;
use reverie_shared::queues::QueueNames;

use super::state::OpenRequests;
use crate::error::Result;
use crate::records::JobState;

pub(crate) struct Health {
    backends: Backends,
    queues: QueueNames,
    open: Arc<OpenRequests>,
}

impl Health {
    pub fn new(backends: Backends, queues: QueueNames, open: Arc<OpenRequests>) -> Health {
        // Series that exist from the start read as 0 on dashboards instead of "no data".
        for outcome in ["done", "failed", "skipped"] {
            metrics::global()
                .batch_run_photos
                .with_label_values(&[outcome]);
        }
        for change in ["taken", "released", "lost"] {
            metrics::global()
                .scheduler_shard_moves
                .with_label_values(&[change]);
        }
        for ingress in ["http", "amqp", "events"] {
            for outcome in ["ok", "failed"] {
                metrics::global()
                    .scheduler_forwarded
                    .with_label_values(&[ingress, outcome]);
            }
        }
        Health {
            backends,
            queues,
            open,
        }
    }

    /// Samples queue depths, the oldest queued job and live workers into the metrics.
    pub async fn sample_metrics(&self) {
        let queues = &self.queues;
        for name in [
            &queues.requests,
            &queues.generate,
            &queues.analyse,
            &queues.events,
        ] {
            if let Ok(depth) = self.backends.queue.depth(name).await {
                metrics::global()
                    .queue_depth
                    .with_label_values(&[name.as_str()])
                    .set(i64::try_from(depth).unwrap_or(i64::MAX));
            }
        }
        self.sample_oldest_queued().await;
        // Heartbeats expire after three missed beats, so the keys present are the live workers.
        let prefix = keys::worker_heartbeat_key("");
        if let Ok(workers) = self.backends.cache.keys(&prefix).await {
            metrics::global()
                .workers_alive
                .set(i64::try_from(workers.len()).unwrap_or(i64::MAX));
        }
    }

    /// Age of the oldest job this scheduler published that no worker has started yet (the broker does
    /// not tell message ages over AMQP; the job records do).
    async fn sample_oldest_queued(&self) {
        let oldest = self.oldest_queued_secs().await;
        self.set_oldest_queued(oldest);
    }

    /// Sets the oldest-queued gauge (a sharded scheduler: the oldest over its shards).
    pub fn set_oldest_queued(&self, seconds: f64) {
        metrics::global()
            .queue_oldest_age
            .with_label_values(&[self.queues.generate.as_str()])
            .set(seconds);
    }

    /// Age in seconds of the oldest published job of this core's requests that no worker started.
    pub async fn oldest_queued_secs(&self) -> f64 {
        let now = Utc::now();
        let mut oldest = 0.0f64;
        for entry in self.open.all() {
            let open = entry.lock().await;
            for job in open
                .record
                .jobs
                .iter()
                .filter(|j| j.state == JobState::Queued && j.published)
            {
                let age = (now - job.created_at).num_milliseconds().max(0) as f64 / 1000.0;
                oldest = oldest.max(age);
            }
        }
        oldest
    }

    /// Live workers, from their heartbeats.
    pub async fn workers_alive(&self) -> Result<usize> {
        Ok(self
            .backends
            .cache
            .keys(&keys::worker_heartbeat_key(""))
            .await?
            .len())
    }

    /// Checks the three backends answer (readiness).
    pub async fn ready(&self) -> std::result::Result<(), String> {
        let backends = &self.backends;
        backends.queue.ping().await.map_err(|e| e.to_string())?;
        backends.cache.ping().await.map_err(|e| e.to_string())?;
        backends
            .store
            .head("tenants/.ready")
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}
