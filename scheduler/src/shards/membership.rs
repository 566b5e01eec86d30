//! Which schedulers share the farm, and which of them each shard belongs with.
//!
//! Every scheduler renews a heartbeat in the cache every [`BEAT`] (`reverie::scheduler:{prefix}:{id}`,
//! expiring after [`MEMBER_TTL`]) naming where it answers HTTP and which shards it holds, but only while
//! its broker connection answers: a scheduler cut off from the broker drops out of the membership
//! and its shards go to the others. Membership only decides who *should* own a shard (rendezvous
//! hashing over the live members with an even share each, [`assignment`]); who
//! *does* own one is the broker's claim alone, which two schedulers can never hold at once. The
//! expiry is the cache's own clock, so a scheduler whose clock is wrong changes nothing.

use std::time::Duration;

use bytes::Bytes;
use reverie_shared::keys::scheduler_member_key;
use reverie_shared::ports::cache::SharedCache;
use reverie_shared::ports::queue::SharedQueue;
use reverie_shared::queues::{mix, stable_hash, QueueNames};
use serde::{Deserialize, Serialize};

/// How often a scheduler renews its heartbeat and rebalances.
pub const BEAT: Duration = Duration::from_secs(1);
/// How long a heartbeat lives: three missed beats and the scheduler is gone.
pub const MEMBER_TTL: Duration = Duration::from_secs(3);

/// One scheduler as its heartbeat describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: String,
    /// Base URL of its HTTP API, where others forward its tenants' requests.
    pub url: String,
    /// Shards it holds now.
    #[serde(default)]
    pub shards: Vec<u16>,
    /// Its `scheduler.shards`: schedulers that disagree move nothing (0: not said).
    #[serde(default)]
    pub shard_count: u16,
}

/// This scheduler's side of the membership.
pub struct Membership {
    cache: SharedCache,
    queue: SharedQueue,
    queue_prefix: String,
    id: String,
}

impl Membership {
    pub fn new(
        cache: SharedCache,
        queue: SharedQueue,
        queue_prefix: &str,
        id: String,
    ) -> Membership {
        Membership {
            cache,
            queue,
            queue_prefix: queue_prefix.to_string(),
            id,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Renews this scheduler's heartbeat if the broker answers it (a round trip: a passive declare
    /// of the farm's requests queue); returns whether it did.
    pub async fn beat(&self, url: &str, shard_count: u16, shards: Vec<u16>) -> bool {
        let requests = QueueNames::new(&self.queue_prefix).requests;
        if let Err(error) = self.queue.depth(&requests).await {
            tracing::warn!(%error, "broker unreachable: not renewing membership, shards will move");
            return false;
        }
        let me = Member {
            id: self.id.clone(),
            url: url.to_string(),
            shards,
            shard_count,
        };
        let body = match serde_json::to_vec(&me) {
            Ok(body) => Bytes::from(body),
            Err(_) => return false,
        };
        let key = scheduler_member_key(&self.queue_prefix, &self.id);
        match self.cache.set(&key, body, Some(MEMBER_TTL)).await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(%error, "could not renew membership");
                false
            }
        }
    }

    /// The live members, sorted by id; `None` when the cache cannot be read.
    pub async fn members(&self) -> Option<Vec<Member>> {
        let prefix = scheduler_member_key(&self.queue_prefix, "");
        let keys = self.cache.keys(&prefix).await.ok()?;
        let values = self.cache.get_many(&keys).await.ok()?;
        let mut members: Vec<Member> = values
            .into_iter()
            .flatten()
            .filter_map(|body| serde_json::from_slice(&body).ok())
            .collect();
        members.sort_by(|a, b| a.id.cmp(&b.id));
        members.dedup_by(|a, b| a.id == b.id);
        Some(members)
    }

    /// Leaves the membership at once (a graceful stop), so the others take the shards without
    /// waiting for the heartbeat to expire.
    pub async fn leave(&self) {
        let key = scheduler_member_key(&self.queue_prefix, &self.id);
        let _ = self.cache.delete(&key).await;
    }
}

/// Which member each shard belongs with (index = shard; empty when there are no members). Each
/// shard goes to the member with the highest rendezvous score for it that still has room, room being
/// an even share (`ceil(shards / members)`), so a few shards still spread evenly. Every scheduler that
/// sees the same members computes the same assignment, and a member joining or leaving moves few
/// shards besides its own.
pub fn assignment(count: u16, members: &[Member]) -> Vec<String> {
    if members.is_empty() {
        return Vec::new();
    }
    let room = usize::from(count).div_ceil(members.len());
    let mut load: Vec<usize> = vec![0; members.len()];
    (0..count)
        .map(|shard| {
            let chosen = members
                .iter()
                .enumerate()
                .filter(|(index, _)| load[*index] < room)
                .max_by_key(|(_, member)| (score(&member.id, shard), &member.id))
                .map_or(0, |(index, _)| index);
            load[chosen] += 1;
            members[chosen].id.clone()
        })
        .collect()
}

/// The rendezvous score of `member` for `shard`.
fn score(member: &str, shard: u16) -> u64 {
    mix(stable_hash(member.as_bytes()) ^ mix(u64::from(shard) + 1))
}

/// A fresh member id: the host name (the pod's name in Kubernetes) and a random suffix, so a
/// restarted scheduler is a new member.
pub fn new_member_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .unwrap_or_else(|| "scheduler".to_string());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}", &suffix[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str) -> Member {
        Member {
            id: id.to_string(),
            url: format!("http://{id}"),
            shards: Vec::new(),
            shard_count: 0,
        }
    }

    fn owners(members: &[Member], shards: u16) -> Vec<String> {
        assignment(shards, members)
    }

    #[test]
    fn shards_spread_over_the_members() {
        let members: Vec<Member> = ["a", "b", "c"].iter().map(|id| member(id)).collect();
        let owners = owners(&members, 64);
        for id in ["a", "b", "c"] {
            let held = owners.iter().filter(|o| *o == id).count();
            assert!((21..=22).contains(&held), "{id} holds {held} of 64");
        }
        // Few shards spread evenly too.
        let few = super::assignment(8, &members);
        for id in ["a", "b", "c"] {
            let held = few.iter().filter(|o| *o == id).count();
            assert!((2..=3).contains(&held), "{id} holds {held} of 8: {few:?}");
        }
    }

    #[test]
    fn a_member_joining_takes_its_share_and_moves_little_else() {
        let two: Vec<Member> = ["a", "b"].iter().map(|id| member(id)).collect();
        let three: Vec<Member> = ["a", "b", "c"].iter().map(|id| member(id)).collect();
        let before = owners(&two, 64);
        let after = owners(&three, 64);
        let moved = before
            .iter()
            .zip(&after)
            .filter(|(old, new)| old != new)
            .count();
        let to_c = after.iter().filter(|o| *o == "c").count();
        assert!(to_c >= 21, "{after:?}");
        // Mostly the newcomer's share moves; an even share allows a few more.
        assert!(moved <= to_c + 8, "{moved} of 64 moved for {to_c}");
    }

    #[test]
    fn no_members_no_owner() {
        assert!(assignment(4, &[]).is_empty());
    }
}
