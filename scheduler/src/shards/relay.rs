//! The farm's shared queues on a sharded farm. Services publish requests to `{prefix}.requests`, and
//! workers of earlier versions (or jobs without [`EVENTS_HEADER`]) send events to `{prefix}.events`.
//! Every scheduler consumes both: a message of a tenant whose shard it holds is handled here, any
//! other is passed, confirmed, to that shard's own queue before it is acked, where the shard's owner
//! (now, or whoever takes the shard next) reads it. Nothing waits for an owner to be known.
//!
//! [`EVENTS_HEADER`]: reverie_shared::queues::EVENTS_HEADER

use std::collections::BTreeMap;

use reverie_shared::consume::decode_or_dead_letter;
use reverie_shared::envelope;
use reverie_shared::jobs::JobEvent;
use reverie_shared::metrics;
use reverie_shared::ports::queue::{Delivery, Message};
use reverie_shared::queues::shard_of;
use tokio::sync::watch;

use super::Shards;
use crate::ingress::{self, FORWARDED_USER_HEADER};
use crate::runtime;

/// Consumes `{prefix}.requests` until shutdown.
pub async fn run_requests(shards: Shards, shutdown: watch::Receiver<bool>) {
    let lobby = shards.lobby().clone();
    let queue = lobby.queues().requests.clone();
    runtime::consume_loop(lobby, queue, None, shutdown, move |_, delivery| {
        let shards = shards.clone();
        async move { relay_request(&shards, delivery).await }
    })
    .await;
}

async fn relay_request(shards: &Shards, delivery: Delivery) {
    let props = delivery.props();
    let credentials = ingress::Credentials {
        token: props.headers.get(ingress::TOKEN_HEADER).cloned(),
        broker_user: props.user_id.clone(),
    };
    let Some(tenant) = ingress::tenant_hint(&credentials, delivery.body()) else {
        // Names no tenant at all: refused wherever it is handled; answered here.
        return runtime::handle_request(shards.lobby(), shards.intake(), delivery, false).await;
    };
    let shard = shard_of(&tenant, shards.count());
    if let Some((held, _entered)) = shards.enter(shard).await {
        return runtime::handle_request(&held.core, shards.intake(), delivery, false).await;
    }
    let names = shards.names(shard);
    let mut message = Message::new(delivery.body().to_vec());
    message.props = props.clone();
    if let Some(user) = props.user_id.clone() {
        // The broker lets a publisher set user_id to its own user only: the sender's user travels in
        // a header that the shard's consumer trusts only on a message the schedulers' user sent.
        message.props.user_id = shards.backends().queue.broker_user();
        message
            .props
            .headers
            .insert(FORWARDED_USER_HEADER.to_string(), user);
    }
    forward_or_requeue(shards, &names.requests, message, delivery).await;
}

/// Publishes a request to `queue` (confirmed) and acks `delivery`; requeues it when the publish failed.
async fn forward_or_requeue(shards: &Shards, queue: &str, message: Message, delivery: Delivery) {
    let published = shards.backends().queue.publish(queue, message).await;
    let outcome = if published.is_ok() { "ok" } else { "failed" };
    metrics::global()
        .scheduler_forwarded
        .with_label_values(&["amqp", outcome])
        .inc();
    match published {
        Ok(()) => {
            if let Err(error) = delivery.ack().await {
                tracing::warn!(%error, queue, "forwarded, but could not ack the original; it may be forwarded twice (idempotent)");
            }
        }
        Err(error) => {
            tracing::warn!(%error, queue, "could not forward to the shard's queue; requeued");
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            let _ = delivery.requeue().await;
        }
    }
}

/// Consumes `{prefix}.events` until shutdown.
pub async fn run_events(shards: Shards, shutdown: watch::Receiver<bool>) {
    let lobby = shards.lobby().clone();
    let queue = lobby.queues().events.clone();
    runtime::consume_loop(lobby, queue, None, shutdown, move |_, delivery| {
        let shards = shards.clone();
        async move { relay_events(&shards, delivery).await }
    })
    .await;
}

async fn relay_events(shards: &Shards, delivery: Delivery) {
    let (events, delivery) = match decode_or_dead_letter(delivery, envelope::decode_events).await {
        Ok(Some(decoded)) => decoded,
        Ok(None) => return,
        Err(error) => {
            tracing::warn!(%error, "could not dead-letter an undecodable event");
            return;
        }
    };
    let mut by_shard: BTreeMap<u16, Vec<JobEvent>> = BTreeMap::new();
    for event in events {
        by_shard
            .entry(shard_of(event.tenant().as_str(), shards.count()))
            .or_default()
            .push(event);
    }
    let mut failed = None;
    for (shard, events) in by_shard {
        if let Some((held, _entered)) = shards.enter(shard).await {
            let applied =
                futures::future::join_all(events.into_iter().map(|e| held.core.handle_event(e)))
                    .await;
            failed = failed.or(applied.into_iter().find_map(Result::err));
            continue;
        }
        let queue = shards.names(shard).events;
        let sent = match envelope::encode_events_current(&events) {
            Ok(body) => shards
                .backends()
                .queue
                .publish(&queue, Message::new(body))
                .await
                .map_err(crate::error::SchedulerError::from),
            Err(error) => Err(error.into()),
        };
        let outcome = if sent.is_ok() { "ok" } else { "failed" };
        metrics::global()
            .scheduler_forwarded
            .with_label_values(&["events", outcome])
            .inc();
        failed = failed.or(sent.err());
    }
    // Events already applied or forwarded are duplicates on redelivery, which change nothing.
    runtime::settle_events_delivery(delivery, failed).await;
}
