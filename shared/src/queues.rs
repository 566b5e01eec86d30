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

/// The most tenant shares (`scheduler.shards`) a farm may have.
pub const MAX_SHARDS: u16 = 1024;

/// The AMQP header on a job that names the queue its worker sends the job's events to (the events
/// queue of the shard whose scheduler follows the request). A job without it, or one naming a queue
/// outside its farm, has its events sent to the farm's shared events queue.
pub const EVENTS_HEADER: &str = "x-reverie-events";

/// A tenant's share of the farm: which of `count` shards follows its requests. Stable across
/// processes, versions and platforms (FNV-1a of the tenant id), so every scheduler and client that
/// knows the count agrees.
pub fn shard_of(tenant: &str, count: u16) -> u16 {
    let count = u64::from(count.max(1));
    (mix(stable_hash(tenant.as_bytes())) % count) as u16
}

/// A 64-bit finaliser (MurmurHash3's fmix64): FNV-1a leaves the high bits of names that differ only
/// at the end nearly equal, which would make a comparison of hashes (rendezvous) always pick the
/// same name; mixed, every bit depends on every input bit.
pub fn mix(mut hash: u64) -> u64 {
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

/// 64-bit FNV-1a: small, stable and good enough to spread names; never used where an adversary's
/// choice of name could hurt more than the balance of its own shard.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(PRIME)
    })
}

/// The names one shard of the farm uses. With one shard they are the single scheduler's names of
/// earlier versions, so a farm that does not shard is unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardNames {
    pub index: u16,
    pub count: u16,
    /// The claim the shard's owner holds (`JobQueue::claim`).
    pub claim: String,
    /// Requests of the shard's tenants, forwarded by the scheduler that took them off the shared
    /// requests queue (with one shard: the shared requests queue itself).
    pub requests: String,
    /// Worker events of the shard's jobs.
    pub events: String,
    /// Where the shard's open-log segments live in the object store.
    pub open_log_prefix: String,
}

impl QueueNames {
    /// The names of shard `index` of `count`.
    pub fn shard(&self, index: u16, count: u16) -> ShardNames {
        if count <= 1 {
            return ShardNames {
                index: 0,
                count: 1,
                claim: self.scheduler_claim.clone(),
                requests: self.requests.clone(),
                events: self.events.clone(),
                open_log_prefix: "scheduler/open/".to_string(),
            };
        }
        ShardNames {
            index,
            count,
            claim: format!("{}.shard.{index}", self.scheduler_claim_base()),
            requests: format!("{}.{index}", self.requests),
            events: format!("{}.{index}", self.events),
            open_log_prefix: format!("scheduler/open/shard-{index}/"),
        }
    }

    /// `{prefix}.scheduler`, the stem of every scheduler claim.
    fn scheduler_claim_base(&self) -> &str {
        self.scheduler_claim
            .strip_suffix(".active")
            .unwrap_or(&self.scheduler_claim)
    }

    /// Whether `name` is one of this farm's events queues (the shared one or a shard's): what a worker
    /// accepts in a job's [`EVENTS_HEADER`].
    pub fn is_events_queue(&self, name: &str) -> bool {
        name == self.events
            || name
                .strip_prefix(&self.events)
                .and_then(|rest| rest.strip_prefix('.'))
                .and_then(|index| index.parse::<u16>().ok())
                .is_some_and(|index| index < MAX_SHARDS)
    }
}

impl ShardNames {
    /// The shard's queues, declared like the shared ones they stand in for.
    pub fn specs(&self) -> Vec<QueueSpec> {
        vec![QueueSpec::new(&self.requests), QueueSpec::new(&self.events)]
    }
}

#[cfg(test)]
mod shard_tests {
    use super::*;

    #[test]
    fn one_shard_keeps_the_single_schedulers_names() {
        let names = QueueNames::new("farm");
        let shard = names.shard(0, 1);
        assert_eq!(shard.claim, "farm.scheduler.active");
        assert_eq!(shard.events, "farm.events");
        assert_eq!(shard.requests, "farm.requests");
        assert_eq!(shard.open_log_prefix, "scheduler/open/");
    }

    #[test]
    fn shards_have_names_of_their_own() {
        let names = QueueNames::new("farm");
        let shard = names.shard(3, 8);
        assert_eq!(shard.claim, "farm.scheduler.shard.3");
        assert_eq!(shard.events, "farm.events.3");
        assert_eq!(shard.requests, "farm.requests.3");
        assert_eq!(shard.open_log_prefix, "scheduler/open/shard-3/");
        assert!(names.is_events_queue("farm.events"));
        assert!(names.is_events_queue("farm.events.3"));
        assert!(!names.is_events_queue("farm.events.x"));
        assert!(!names.is_events_queue("other.events.3"));
        assert!(!names.is_events_queue("farm.events.99999"));
    }

    #[test]
    fn the_shard_of_a_tenant_is_stable_and_spread() {
        // Pinned: a different value here moves tenants between shards on upgrade.
        assert_eq!(stable_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(stable_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(shard_of("anyone", 1), 0);
        let mut counts = [0usize; 8];
        for i in 0..800 {
            counts[usize::from(shard_of(&format!("tenant-{i}"), 8))] += 1;
        }
        assert!(counts.iter().all(|&c| c > 50), "{counts:?}");
    }
}
