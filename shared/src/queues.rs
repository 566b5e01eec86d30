//! Queue names, derived from one prefix so farms and test runs can share a broker without colliding.

use crate::jobs::Priority;
use crate::ports::queue::QueueSpec;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueNames {
    /// Other services publish JSON requests here.
    pub requests: String,
    pub generate: String,
    pub analyse: String,
    /// Worker → scheduler: job events.
    pub events: String,
    /// The claim the one active scheduler of the farm holds (`JobQueue::claim`); not a queue messages
    /// go through.
    pub scheduler_claim: String,
}

impl QueueNames {
    pub fn new(prefix: &str) -> QueueNames {
        QueueNames {
            requests: format!("{prefix}.requests"),
            generate: format!("{prefix}.jobs.generate"),
            analyse: format!("{prefix}.jobs.analyse"),
            events: format!("{prefix}.events"),
            scheduler_claim: format!("{prefix}.scheduler.active"),
        }
    }

    /// Every queue with how it is declared: job queues carry priorities (interactive before batch).
    pub fn specs(&self) -> Vec<QueueSpec> {
        vec![
            QueueSpec::new(&self.requests),
            QueueSpec::new(&self.generate).with_priorities(Priority::MAX),
            QueueSpec::new(&self.analyse).with_priorities(Priority::MAX),
            QueueSpec::new(&self.events),
        ]
    }
}
