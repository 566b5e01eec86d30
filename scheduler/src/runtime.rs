//! The scheduler's long-running loops: the requests consumer (AMQP ingress), the events consumer, the
//! fairness feeder and the metrics sampler. Each stops when `shutdown` turns true.

use std::sync::Arc;
use std::time::Duration;

use reverie_shared::consume::decode_or_dead_letter;
use reverie_shared::envelope;
use reverie_shared::ports::queue::{Consumer, Delivery, QueueError};
use reverie_shared::retry::{with_backoff, Backoff};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::ingress::{self, Ingress};
use crate::records::ReplyRoute;
use crate::service::Core;

/// How long a message that failed for an infrastructure reason waits before it goes back to the queue.
const REQUEUE_PAUSE: Duration = Duration::from_millis(500);

/// A consumer of `queue`; with `claim`, only while this scheduler holds it.
async fn connect(
    core: &Core,
    queue: &str,
    claim: Option<&str>,
    prefetch: u16,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<Box<dyn Consumer>> {
    let backoff = Backoff {
        initial: Duration::from_millis(200),
        max: Duration::from_secs(5),
        max_attempts: 0,
    };
    let queue_port = core.backends().queue.clone();
    let claim = claim.map(str::to_string);
    let attempt = with_backoff(queue, backoff, QueueError::is_transient, || {
        let (queue_port, claim) = (queue_port.clone(), claim.clone());
        let on_its_connection = core.on_its_connection();
        async move {
            if !on_its_connection {
                return Err(QueueError::Backend {
                    backend: queue_port.backend(),
                    operation: "consume",
                    queue: queue.to_string(),
                    detail: "the connection this shard was claimed on is gone".to_string(),
                });
            }
            // Only the holder of the shard's claim consumes its queues. After a lost connection the
            // claim may have gone to another scheduler: then this one must not consume again (its
            // claim check stops the shard within a second).
            let Some(claim) = claim else {
                return queue_port.consume(queue, prefetch).await;
            };
            if !queue_port.claim(&claim).await? {
                return Err(QueueError::Backend {
                    backend: queue_port.backend(),
                    operation: "consume",
                    queue: queue.to_string(),
                    detail: format!("{claim} is held by another scheduler"),
                });
            }
            queue_port.consume(queue, prefetch).await
        }
    });
    tokio::select! {
        consumer = attempt => match consumer {
            Ok(consumer) => Some(consumer),
            Err(error) => {
                tracing::error!(%error, queue, "cannot consume");
                None
            }
        },
        _ = shutdown.changed() => None,
    }
}

/// Deliveries handled at once per consumer (and the consumer's prefetch). Requests of different ids and
/// events of different requests are independent (each request's record has its own lock), so they are
/// handled side by side; the bound keeps memory and store connections in check.
const IN_FLIGHT: usize = 64;

/// How long shutdown waits for deliveries being handled; what is not done by then is redelivered.
const DRAIN: Duration = Duration::from_secs(10);

/// Runs `handle` on every delivery of `queue` until shutdown, up to [`IN_FLIGHT`] at once, reconnecting
/// when the consumer is lost. Each delivery is acked (or requeued) by its handler, so a handler still
/// running when the consumer is lost only fails its ack and the broker redelivers the message.
pub(crate) async fn consume_loop<F, Fut>(
    core: Core,
    queue: String,
    claim: Option<String>,
    mut shutdown: watch::Receiver<bool>,
    handle: F,
) where
    F: Fn(Core, Delivery) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut running = JoinSet::new();
    // Kept until the handlers are drained: dropping a consumer closes its channel, and the acks of
    // deliveries still being handled would fail and hand them to another consumer to do again.
    let mut current: Option<Box<dyn Consumer>> = None;
    'connect: while !*shutdown.borrow() {
        let prefetch = u16::try_from(IN_FLIGHT).unwrap_or(u16::MAX);
        current = None;
        let Some(connected) =
            connect(&core, &queue, claim.as_deref(), prefetch, &mut shutdown).await
        else {
            if *shutdown.borrow() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let consumer = current.insert(connected);
        loop {
            while running.try_join_next().is_some() {}
            let permit = tokio::select! {
                permit = permits.clone().acquire_owned() => permit,
                _ = shutdown.changed() => break 'connect,
            };
            let Ok(permit) = permit else {
                break 'connect;
            };
            let delivery = tokio::select! {
                delivery = consumer.next() => delivery,
                _ = shutdown.changed() => break 'connect,
            };
            match delivery {
                Ok(delivery) => {
                    let work = handle(core.clone(), delivery);
                    running.spawn(async move {
                        work.await;
                        drop(permit);
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, queue, "consumer lost; reconnecting");
                    break;
                }
            }
        }
    }
    let drained = tokio::time::timeout(DRAIN, async {
        while running.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            queue,
            "deliveries still being handled at shutdown; they will be redelivered"
        );
    }
    // Deliveries prefetched but not taken go back to the queue with the consumer.
    drop(current);
}

/// AMQP ingress: JSON requests from other services; every outcome is answered on `reply_to`. Reads
/// the core's shard's requests queue (with one shard: the farm's shared requests queue).
pub async fn run_requests(
    core: Core,
    intake: ingress::IntakeContext,
    shutdown: watch::Receiver<bool>,
) {
    let queue = core.shard().requests.clone();
    let claim = Some(core.shard().claim.clone());
    // A shard's own requests queue is where schedulers forward to (docs/api.md: only schedulers may
    // write to it); the shared queue is where clients write.
    let forwarded_here = core.shard().count > 1;
    consume_loop(core, queue, claim, shutdown, move |core, delivery| {
        let intake = intake.clone();
        async move { handle_request(&core, &intake, delivery, forwarded_here).await }
    })
    .await;
}

/// Accepts one AMQP request on `core` and answers it on its `reply_to`; the delivery is acked once
/// answered, requeued when a backend failed. `forwarded_here`: it came from a shard's requests queue,
/// where a forwarding scheduler may have named the sender's broker user.
pub(crate) async fn handle_request(
    core: &Core,
    intake: &ingress::IntakeContext,
    delivery: Delivery,
    forwarded_here: bool,
) {
    let props = delivery.props().clone();
    let final_only = ingress::asks_final_only(
        props
            .headers
            .get(ingress::REPLIES_HEADER)
            .map(String::as_str),
    );
    let route = props.reply_to.clone().map(|reply_to| ReplyRoute {
        reply_to,
        correlation_id: props.correlation_id.clone(),
        final_only,
    });
    let credentials = ingress::Credentials {
        token: props.headers.get(ingress::TOKEN_HEADER).cloned(),
        broker_user: if forwarded_here {
            ingress::broker_user_of(&props, core.backends().queue.broker_user())
        } else {
            props.user_id.clone()
        },
    };
    let outcome = ingress::submit(
        core,
        intake,
        Ingress::Amqp,
        &credentials,
        props.message_id.as_deref(),
        delivery.body(),
        route.clone(),
        None,
    )
    .await;
    match outcome {
        Ok(ingress::Answer { reply, route }) => {
            if let Some(route) = &route {
                core.send_amqp_reply(route, &reply);
            } else {
                tracing::info!(
                    kind = reply.kind(),
                    "request without reply_to answered into the void"
                );
            }
            if let Err(error) = delivery.ack().await {
                tracing::warn!(%error, "could not ack a request");
            }
        }
        Err(error) => {
            // Not the request's fault (a backend is away): it goes back to the queue and is retried;
            // the request id makes the retry idempotent.
            tracing::warn!(%error, "request not processed; requeued");
            tokio::time::sleep(REQUEUE_PAUSE).await;
            if let Err(error) = delivery.requeue().await {
                tracing::warn!(%error, "could not requeue a request");
            }
        }
    }
}

/// Worker events: job records follow them and requesters hear about them. A message may carry a render
/// batch's results: they are applied side by side (each request's record is changed under its own lock),
/// and the message is acked once all are applied. If one fails the whole message is requeued; the
/// events already applied are duplicates on redelivery, which change nothing.
pub async fn run_events(core: Core, shutdown: watch::Receiver<bool>) {
    let queue = core.shard().events.clone();
    let claim = Some(core.shard().claim.clone());
    consume_loop(core, queue, claim, shutdown, |core, delivery| async move {
        let decoded = match decode_or_dead_letter(delivery, envelope::decode_events).await {
            Ok(Some(decoded)) => decoded,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%error, "could not dead-letter an undecodable event");
                return;
            }
        };
        let (events, delivery) = decoded;
        let applied =
            futures::future::join_all(events.into_iter().map(|event| core.handle_event(event)))
                .await;
        settle_events_delivery(delivery, applied.into_iter().find_map(Result::err)).await;
    })
    .await;
}

/// Acks an events message whose events were all applied; otherwise dead-letters it (the store refused
/// for good) or requeues it after a pause (the events already applied are duplicates on redelivery,
/// which change nothing).
pub(crate) async fn settle_events_delivery(
    delivery: Delivery,
    failed: Option<crate::error::SchedulerError>,
) {
    match failed {
        None => {
            if let Err(error) = delivery.ack().await {
                tracing::warn!(%error, "could not ack an event");
            }
        }
        Some(error) if error.is_permanent() => {
            // Requeued it would fail the same way every REQUEUE_PAUSE, forever: kept in the dead
            // letters with the reason instead, to be replayed once the store is fixed.
            tracing::error!(%error, "event refused for good by the store; dead-lettered");
            if let Err(error) = delivery
                .dead_letter("store_refused", &error.to_string())
                .await
            {
                tracing::warn!(%error, "could not dead-letter an event");
            }
        }
        Some(error) => {
            tracing::warn!(%error, "event not applied; requeued");
            tokio::time::sleep(REQUEUE_PAUSE).await;
            let _ = delivery.requeue().await;
        }
    }
}

/// Publishes held batch jobs as their tenants get room on the broker.
pub async fn run_feeder(core: Core, mut shutdown: watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        match core.feed_one().await {
            Ok(true) => continue,
            Ok(false) => {
                tokio::select! {
                    _ = core.feeder_woken() => {}
                    // A safety net: a wake-up lost to a race costs at most this long.
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => return,
                }
            }
            Err(error) => {
                tracing::warn!(%error, "could not publish a batch job; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    }
}

/// Samples queue depths and live workers.
pub async fn run_metrics(core: Core, mut shutdown: watch::Receiver<bool>) {
    let period = core.options().metrics_interval;
    loop {
        core.sample_metrics().await;
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = shutdown.changed() => return,
        }
    }
}
