//! RabbitMQ at a target rate under four layouts: today's classic queues on one node, classic queues
//! sharded over nodes, quorum queues (replicated) sharded into K queues per kind, and the same with the
//! result events on streams.
//!
//! Two limits apply. A node has so many cores, and each message costs the broker the CPU this run
//! measured. And one queue is one Erlang process on one node (a quorum queue's leader does the work for
//! its followers too), so one queue's rate is capped near what one core moves: the raw broker rate the
//! same run measured through one queue. Past that cap the only way on is more queues, which is what
//! tenant shards give (each shard its own requests, jobs and events queues).

use super::assumptions::Assumptions;
use super::capacity::{Costs, JOB_MESSAGES, REQUEST_MESSAGES};
use super::measured::Measured;

#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub name: &'static str,
    pub messages_per_second: f64,
    /// The most one queue of this layout moves (messages/s).
    pub queue_limit: f64,
    /// Queues each of the requests and jobs queues must be split into at the target utilisation.
    pub queues_per_kind: u64,
    pub cores: f64,
    pub nodes: u64,
    /// The layout's most jobs/s (one node for the single-node layout; otherwise unbounded by nodes).
    pub holds_up_to: Option<f64>,
}

/// The four layouts at `rate` jobs/s.
pub fn layouts(
    costs: &Costs,
    measured: &Measured,
    assumptions: &Assumptions,
    rate: f64,
) -> Vec<Layout> {
    vec![
        classic_one_node(costs, measured, assumptions, rate),
        classic_sharded(costs, measured, assumptions, rate),
        replicated(costs, measured, assumptions, rate, false),
        replicated(costs, measured, assumptions, rate, true),
    ]
}

/// Today: classic queues (needed for priorities), one node, one queue per kind.
fn classic_one_node(
    costs: &Costs,
    measured: &Measured,
    assumptions: &Assumptions,
    rate: f64,
) -> Layout {
    let u = assumptions.utilisation;
    let queue_limit = measured.raw_broker_messages_per_second;
    let per_node = assumptions.broker_node_cores * 1000.0 / costs.broker_ms;
    let per_queue = queue_limit / JOB_MESSAGES.max(REQUEST_MESSAGES);
    let cores = rate * costs.broker_ms / 1000.0 / u;
    Layout {
        name: "classic queues, one node (today)",
        messages_per_second: rate * costs.messages,
        queue_limit,
        queues_per_kind: 1,
        cores,
        nodes: 1,
        holds_up_to: Some(per_node.min(per_queue) * u),
    }
}

/// Sharding alone: classic queues, K per kind, spread over nodes; no copy of a message anywhere else,
/// so a node lost takes its queues (and their jobs) away until it returns.
fn classic_sharded(
    costs: &Costs,
    measured: &Measured,
    assumptions: &Assumptions,
    rate: f64,
) -> Layout {
    let u = assumptions.utilisation;
    let queue_limit = measured.raw_broker_messages_per_second;
    let cores = rate * costs.broker_ms / 1000.0 / u;
    Layout {
        name: "classic queues sharded over nodes (no replication)",
        messages_per_second: rate * costs.messages,
        queue_limit,
        queues_per_kind: queues_per_kind(rate, queue_limit, u),
        cores,
        nodes: nodes(cores, assumptions, 1),
        holds_up_to: None,
    }
}

/// Queues each of the requests and jobs queues needs so that none passes the target utilisation.
fn queues_per_kind(rate: f64, queue_limit: f64, utilisation: f64) -> u64 {
    let busiest_kind = rate * JOB_MESSAGES.max(REQUEST_MESSAGES);
    (busiest_kind / (queue_limit * utilisation)).ceil().max(1.0) as u64
}

fn nodes(cores: f64, assumptions: &Assumptions, at_least: u64) -> u64 {
    ((cores / assumptions.broker_node_cores).ceil() as u64).max(at_least)
}

/// Quorum queues with `replicas` copies, the requests and jobs queues split into K; with `streams`,
/// the result events go to streams instead (replies stay on the requesters' own classic queues).
fn replicated(
    costs: &Costs,
    measured: &Measured,
    assumptions: &Assumptions,
    rate: f64,
    streams: bool,
) -> Layout {
    let u = assumptions.utilisation;
    let per_message = costs.broker_ms_per_message();
    let quorum_ms = per_message * assumptions.replicas / assumptions.quorum_factor;
    let work_messages = JOB_MESSAGES + REQUEST_MESSAGES;
    let (event_ms, name) = if streams {
        (
            per_message * assumptions.stream_factor * assumptions.replicas,
            "quorum requests and jobs, events on streams, replies classic",
        )
    } else {
        (quorum_ms, "quorum queues (all kinds), replies classic")
    };
    let ms_per_job = work_messages * quorum_ms
        + costs.event_messages * event_ms
        + costs.reply_messages * per_message;
    let cores = rate * ms_per_job / 1000.0 / u;
    let queue_limit = measured.raw_broker_messages_per_second * assumptions.quorum_factor;
    Layout {
        name,
        messages_per_second: rate * costs.messages,
        queue_limit,
        queues_per_kind: queues_per_kind(rate, queue_limit, u),
        cores,
        nodes: nodes(cores, assumptions, assumptions.replicas as u64),
        holds_up_to: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scale::measured::tests::sample_measured;

    #[test]
    fn one_classic_node_stops_at_its_queue_or_its_cores() {
        let measured = sample_measured();
        let assumptions = Assumptions::default();
        let costs = Costs::new(&measured, &assumptions);
        let one = &layouts(&costs, &measured, &assumptions, 10_000.0)[0];
        // 16 cores / 1 CPU-ms = 16,000 jobs/s; one queue 10,000 msg/s = 10,000 jobs/s; at 0.6: 6,000.
        assert!((one.holds_up_to.unwrap() - 6_000.0).abs() < 1e-6);
        assert_eq!(one.messages_per_second, 50_000.0);
    }

    #[test]
    fn quorum_queues_are_sharded_and_streams_cost_less() {
        let measured = sample_measured();
        let assumptions = Assumptions::default();
        let costs = Costs::new(&measured, &assumptions);
        let all = layouts(&costs, &measured, &assumptions, 100_000.0);
        let (sharded, quorum, streams) = (&all[1], &all[2], &all[3]);
        // Sharding alone: 10,000 x 0.6 = 6,000 msg/s a queue, 17 queues; 1 CPU-ms: 167 cores, 11 nodes.
        assert_eq!(sharded.queues_per_kind, 17);
        assert_eq!(sharded.nodes, 11);
        // One quorum queue: 10,000 x 0.5 = 5,000 msg/s, 3,000 at 0.6: 100,000 / 3,000 -> 34 queues.
        assert_eq!(quorum.queues_per_kind, 34);
        // 0.2 CPU-ms per message; quorum 0.2 x 3 / 0.5 = 1.2 ms for 4 messages, reply 0.2: 5 ms a job.
        let expected = 100_000.0 * 5.0 / 1000.0 / 0.6;
        assert!((quorum.cores - expected).abs() < 1e-6, "{quorum:?}");
        assert_eq!(quorum.nodes, (expected / 16.0).ceil() as u64);
        assert!(streams.cores < quorum.cores);
        assert!(streams.nodes >= 3);
    }
}
