//! Fairness between tenants for batch work.
//!
//! Interactive jobs go to the broker at once at a high priority. Batch jobs wait here, one queue per
//! tenant, and are handed out round-robin over tenants with at most `per_tenant_in_flight` of each
//! tenant's batch jobs on the broker (published and not finished). So a tenant's 10,000-job batch keeps a
//! handful of messages on the broker, and another tenant's batch job, published as soon as it arrives,
//! is at most a handful of deliveries behind — while interactive work overtakes both by priority.
//!
//! Held jobs are not lost on a restart: their records say `published: false` and recovery feeds them again.

use std::collections::{HashMap, HashSet, VecDeque};

use reverie_shared::ids::{JobId, TenantId};
use reverie_shared::jobs::Job;

#[derive(Debug)]
pub struct Feeder {
    per_tenant_in_flight: usize,
    pending: HashMap<TenantId, VecDeque<Job>>,
    /// Tenants with pending jobs, in round-robin order.
    turn: VecDeque<TenantId>,
    in_flight: HashMap<TenantId, HashSet<JobId>>,
}

impl Feeder {
    pub fn new(per_tenant_in_flight: usize) -> Feeder {
        Feeder {
            per_tenant_in_flight: per_tenant_in_flight.max(1),
            pending: HashMap::new(),
            turn: VecDeque::new(),
            in_flight: HashMap::new(),
        }
    }

    /// Queues a batch job behind the tenant's others.
    pub fn push(&mut self, job: Job) {
        let tenant = job.spec.tenant().clone();
        let queue = self.pending.entry(tenant.clone()).or_default();
        if queue.iter().any(|j| j.spec.id() == job.spec.id()) {
            return;
        }
        queue.push_back(job);
        if !self.turn.contains(&tenant) {
            self.turn.push_back(tenant);
        }
    }

    /// Puts a job whose publish failed back at the head of its tenant's queue.
    pub fn push_front(&mut self, job: Job) {
        let tenant = job.spec.tenant().clone();
        if let Some(set) = self.in_flight.get_mut(&tenant) {
            set.remove(job.spec.id());
        }
        self.pending
            .entry(tenant.clone())
            .or_default()
            .push_front(job);
        if !self.turn.contains(&tenant) {
            self.turn.push_front(tenant);
        }
    }

    /// The next job to publish: the next tenant in turn that has room on the broker. The job counts as
    /// in flight from here on.
    pub fn next_to_publish(&mut self) -> Option<Job> {
        for _ in 0..self.turn.len() {
            let tenant = self.turn.pop_front()?;
            let room =
                self.in_flight.get(&tenant).map_or(0, HashSet::len) < self.per_tenant_in_flight;
            let queue = self.pending.get_mut(&tenant);
            let job = if room {
                queue.and_then(VecDeque::pop_front)
            } else {
                None
            };
            let still_pending = self.pending.get(&tenant).is_some_and(|q| !q.is_empty());
            if still_pending {
                self.turn.push_back(tenant.clone());
            } else {
                self.pending.remove(&tenant);
            }
            if let Some(job) = job {
                self.in_flight
                    .entry(tenant)
                    .or_default()
                    .insert(job.spec.id().clone());
                return Some(job);
            }
        }
        None
    }

    /// Counts a job already on the broker (recovery after a restart).
    pub fn mark_in_flight(&mut self, tenant: &TenantId, job: &JobId) {
        self.in_flight
            .entry(tenant.clone())
            .or_default()
            .insert(job.clone());
    }

    /// A job finished (or was cancelled after publishing): its tenant has room again.
    pub fn finished(&mut self, tenant: &TenantId, job: &JobId) -> bool {
        let removed = self
            .in_flight
            .get_mut(tenant)
            .is_some_and(|set| set.remove(job));
        if self.in_flight.get(tenant).is_some_and(HashSet::is_empty) {
            self.in_flight.remove(tenant);
        }
        removed
    }

    /// Drops held jobs matching `cancel`, returning their ids.
    pub fn remove_pending(
        &mut self,
        tenant: &TenantId,
        cancel: impl Fn(&Job) -> bool,
    ) -> Vec<JobId> {
        let Some(queue) = self.pending.get_mut(tenant) else {
            return Vec::new();
        };
        let mut removed = Vec::new();
        queue.retain(|job| {
            let drop = cancel(job);
            if drop {
                removed.push(job.spec.id().clone());
            }
            !drop
        });
        if queue.is_empty() {
            self.pending.remove(tenant);
            self.turn.retain(|t| t != tenant);
        }
        removed
    }

    /// Forgets everything of a tenant.
    pub fn forget(&mut self, tenant: &TenantId) {
        self.pending.remove(tenant);
        self.in_flight.remove(tenant);
        self.turn.retain(|t| t != tenant);
    }

    pub fn pending_count(&self) -> usize {
        self.pending.values().map(VecDeque::len).sum()
    }

    pub fn in_flight_count(&self, tenant: &TenantId) -> usize {
        self.in_flight.get(tenant).map_or(0, HashSet::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reverie_shared::ids::ShardId;
    use reverie_shared::jobs::{AnalyseJob, JobSpec, Priority};

    fn job(tenant: &str, id: &str) -> Job {
        Job {
            spec: JobSpec::Analyse(AnalyseJob {
                job: JobId::new(id).unwrap(),
                tenant: TenantId::new(tenant).unwrap(),
                shard: ShardId::new("s").unwrap(),
                analyses: vec![],
            }),
            attempt: 1,
            priority: Priority::Batch,
            accepted_ms: 0,
        }
    }

    #[test]
    fn a_big_batch_does_not_starve_a_late_tenant() {
        let mut feeder = Feeder::new(2);
        for i in 0..1000 {
            feeder.push(job("big", &format!("big.{i}")));
        }
        let first: Vec<_> = std::iter::from_fn(|| feeder.next_to_publish()).collect();
        assert_eq!(first.len(), 2, "only two of big's jobs go to the broker");
        feeder.push(job("small", "small.0"));
        let next = feeder.next_to_publish().expect("small gets a turn at once");
        assert_eq!(next.spec.tenant().as_str(), "small");
        assert!(
            feeder.next_to_publish().is_none(),
            "big is at its in-flight limit"
        );
        assert!(feeder.finished(&TenantId::new("big").unwrap(), first[0].spec.id()));
        assert_eq!(
            feeder.next_to_publish().unwrap().spec.tenant().as_str(),
            "big"
        );
    }

    #[test]
    fn round_robin_alternates_tenants() {
        let mut feeder = Feeder::new(100);
        for i in 0..3 {
            feeder.push(job("a", &format!("a.{i}")));
            feeder.push(job("b", &format!("b.{i}")));
        }
        let order: Vec<String> = std::iter::from_fn(|| feeder.next_to_publish())
            .map(|j| j.spec.tenant().to_string())
            .collect();
        assert_eq!(order, ["a", "b", "a", "b", "a", "b"]);
    }

    #[test]
    fn cancelled_pending_jobs_are_removed() {
        let mut feeder = Feeder::new(1);
        feeder.push(job("a", "a.0"));
        feeder.push(job("a", "a.1"));
        let removed = feeder.remove_pending(&TenantId::new("a").unwrap(), |j| {
            j.spec.id().as_str() == "a.1"
        });
        assert_eq!(removed.len(), 1);
        assert_eq!(feeder.pending_count(), 1);
    }
}
