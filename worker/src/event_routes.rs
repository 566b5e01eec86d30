//! Where each job's events go. On a farm whose schedulers share the tenants (`scheduler.shards` > 1)
//! a job names, in its [`EVENTS_HEADER`], the events queue of the shard whose scheduler follows its
//! request; every event of the job goes there, from the first `Started` to the final result, and a
//! retried job carries the header on. A job without the header (one scheduler, or one of an earlier
//! version) is answered on the farm's shared events queue.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reverie_shared::ids::JobId;
use reverie_shared::ports::queue::MessageProps;
use reverie_shared::queues::{QueueNames, EVENTS_HEADER};

/// Routes kept above this many are pruned of the ones older than [`STALE_AFTER`] (a job requeued to
/// another worker never sends its final event from here).
const PRUNE_ABOVE: usize = 10_000;
const STALE_AFTER: Duration = Duration::from_secs(3600);

/// Job id → events queue, for the jobs this worker holds. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct EventRoutes {
    routes: Arc<Mutex<HashMap<JobId, (String, Instant)>>>,
}

impl EventRoutes {
    /// Notes where `job`'s events go, from its delivery's headers. A header naming a queue outside this
    /// farm's events queues is ignored (logged): a job cannot send events elsewhere.
    pub fn note(&self, job: &JobId, props: &MessageProps, queues: &QueueNames) {
        let Some(queue) = props.headers.get(EVENTS_HEADER) else {
            self.lock().remove(job);
            return;
        };
        if !queues.is_events_queue(queue) {
            tracing::warn!(%job, queue, "job names an events queue outside this farm; using the shared one");
            self.lock().remove(job);
            return;
        }
        let mut routes = self.lock();
        if routes.len() > PRUNE_ABOVE {
            routes.retain(|_, (_, since)| since.elapsed() < STALE_AFTER);
        }
        routes.insert(job.clone(), (queue.clone(), Instant::now()));
    }

    /// The queue `job`'s events go to: its noted route, or the farm's shared events queue.
    pub fn queue_for(&self, job: &JobId, queues: &QueueNames) -> String {
        self.lock()
            .get(job)
            .map_or_else(|| queues.events.clone(), |(queue, _)| queue.clone())
    }

    /// The job's final event was sent: its route is no longer needed.
    pub fn forget(&self, job: &JobId) {
        self.lock().remove(job);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, (String, Instant)>> {
        self.routes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props_with(queue: &str) -> MessageProps {
        let mut props = MessageProps::default();
        props
            .headers
            .insert(EVENTS_HEADER.to_string(), queue.to_string());
        props
    }

    #[test]
    fn a_job_is_answered_where_its_header_says_or_on_the_shared_queue() {
        let queues = QueueNames::new("farm");
        let routes = EventRoutes::default();
        let routed = JobId::new("req.0").unwrap();
        let plain = JobId::new("other.0").unwrap();
        routes.note(&routed, &props_with("farm.events.5"), &queues);
        routes.note(&plain, &MessageProps::default(), &queues);
        assert_eq!(routes.queue_for(&routed, &queues), "farm.events.5");
        assert_eq!(routes.queue_for(&plain, &queues), "farm.events");
        routes.forget(&routed);
        assert_eq!(routes.queue_for(&routed, &queues), "farm.events");
    }

    #[test]
    fn a_header_naming_a_queue_outside_the_farm_is_ignored() {
        let queues = QueueNames::new("farm");
        let routes = EventRoutes::default();
        let job = JobId::new("req.0").unwrap();
        routes.note(&job, &props_with("farm.jobs.generate"), &queues);
        assert_eq!(routes.queue_for(&job, &queues), "farm.events");
        routes.note(&job, &props_with("elsewhere.events.1"), &queues);
        assert_eq!(routes.queue_for(&job, &queues), "farm.events");
    }
}
