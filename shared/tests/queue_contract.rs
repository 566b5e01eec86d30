//! One contract, two adapters: the in-process queue and a real RabbitMQ must behave the same.

mod common;

use std::time::Duration;

use reverie_shared::consume::decode_or_dead_letter;
use reverie_shared::envelope;
use reverie_shared::ports::queue::{
    dead_queue_name, AmqpQueue, Consumer, Delivery, JobQueue, MemoryQueue, Message, MessageProps,
    QueueSpec, DEAD_REASON_HEADER, ORIGIN_QUEUE_HEADER,
};

const WAIT: Duration = Duration::from_secs(10);

async fn next(consumer: &mut Box<dyn Consumer>) -> Delivery {
    tokio::time::timeout(WAIT, consumer.next())
        .await
        .expect("a delivery within the timeout")
        .expect("consumer still open")
}

async fn nothing_within(consumer: &mut Box<dyn Consumer>, wait: Duration) {
    if let Ok(delivery) = tokio::time::timeout(wait, consumer.next()).await {
        panic!(
            "unexpected delivery {:?}",
            delivery.map(|d| d.message.body.clone())
        );
    }
}

async fn fresh_queue(queue: &dyn JobQueue, max_priority: u8) -> String {
    let name = common::unique("reverie-test.q");
    queue
        .declare(&QueueSpec::new(&name).with_priorities(max_priority))
        .await
        .unwrap();
    name
}

async fn contract(queue: &dyn JobQueue) {
    publishes_and_acks_in_order(queue).await;
    higher_priority_first(queue).await;
    prefetch_bounds_unacked(queue).await;
    redelivers_after_consumer_loss(queue).await;
    dropped_delivery_returns(queue).await;
    dead_letters_keep_the_reason(queue).await;
    malformed_messages_are_dead_lettered(queue).await;
    properties_round_trip(queue).await;
    a_missing_queue_is_a_final_answer(queue).await;
    unroutable_replies_do_not_fail_other_publishes(queue).await;
}

/// A publish to a queue that does not exist fails at once with `NoSuchQueue`, which is not transient:
/// no caller retries it (a requester's vanished reply queue costs one attempt, not a minute of them).
async fn a_missing_queue_is_a_final_answer(queue: &dyn JobQueue) {
    let name = common::unique("reverie-test.missing");
    let started = std::time::Instant::now();
    let error = queue
        .publish(&name, Message::new("into the void"))
        .await
        .expect_err("nothing routes to a missing queue");
    assert!(
        matches!(
            error,
            reverie_shared::ports::queue::QueueError::NoSuchQueue { .. }
        ),
        "{error:?}"
    );
    assert!(!error.is_transient(), "{error:?}");
    // Replies (publish_reply) answer the same, on their own path.
    let error = queue
        .publish_reply(&name, Message::new("a reply into the void"))
        .await
        .expect_err("nothing routes to a missing queue");
    assert!(
        matches!(
            error,
            reverie_shared::ports::queue::QueueError::NoSuchQueue { .. }
        ),
        "{error:?}"
    );
    // ...and a reply to a queue that exists is delivered.
    let present = fresh_queue(queue, 0).await;
    queue
        .publish_reply(&present, Message::new("a reply"))
        .await
        .unwrap();
    assert_eq!(queue.depth(&present).await.unwrap(), 1);
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Unroutable replies published side by side with other messages never make those others fail: a
/// broker's return belongs to the reply it was for.
async fn unroutable_replies_do_not_fail_other_publishes(queue: &dyn JobQueue) {
    let name = fresh_queue(queue, 0).await;
    let missing = common::unique("reverie-test.gone");
    let replies = (0..50).map(|i| queue.publish_reply(&missing, Message::new(format!("r{i}"))));
    let jobs = (0..50).map(|i| queue.publish(&name, Message::new(format!("j{i}"))));
    let (replies, jobs) = tokio::join!(
        futures::future::join_all(replies),
        futures::future::join_all(jobs)
    );
    assert!(replies.iter().all(|r| r.is_err()));
    for job in jobs {
        job.expect("a publish to an existing queue is confirmed");
    }
    assert_eq!(queue.depth(&name).await.unwrap(), 50);
}

async fn publishes_and_acks_in_order(queue: &dyn JobQueue) {
    let name = fresh_queue(queue, 0).await;
    for i in 0..3 {
        queue
            .publish(&name, Message::new(format!("m{i}")))
            .await
            .unwrap();
    }
    assert_eq!(queue.depth(&name).await.unwrap(), 3);
    let mut consumer = queue.consume(&name, 10).await.unwrap();
    for i in 0..3 {
        let delivery = next(&mut consumer).await;
        assert_eq!(delivery.body(), format!("m{i}").as_bytes());
        assert!(!delivery.redelivered);
        delivery.ack().await.unwrap();
    }
    drop(consumer);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        queue.depth(&name).await.unwrap(),
        0,
        "acked messages are gone"
    );
    queue.delete(&name).await.unwrap();
}

async fn higher_priority_first(queue: &dyn JobQueue) {
    let name = fresh_queue(queue, 9).await;
    queue
        .publish(&name, Message::new("batch").with_priority(2))
        .await
        .unwrap();
    queue
        .publish(&name, Message::new("interactive").with_priority(8))
        .await
        .unwrap();
    let mut consumer = queue.consume(&name, 1).await.unwrap();
    let first = next(&mut consumer).await;
    assert_eq!(first.body(), b"interactive");
    first.ack().await.unwrap();
    let second = next(&mut consumer).await;
    assert_eq!(second.body(), b"batch");
    second.ack().await.unwrap();
    drop(consumer);
    queue.delete(&name).await.unwrap();
}

async fn prefetch_bounds_unacked(queue: &dyn JobQueue) {
    let name = fresh_queue(queue, 0).await;
    for i in 0..3 {
        queue
            .publish(&name, Message::new(format!("p{i}")))
            .await
            .unwrap();
    }
    let mut consumer = queue.consume(&name, 2).await.unwrap();
    let a = next(&mut consumer).await;
    let b = next(&mut consumer).await;
    nothing_within(&mut consumer, Duration::from_millis(300)).await;
    a.ack().await.unwrap();
    let c = next(&mut consumer).await;
    assert_eq!(c.body(), b"p2");
    b.ack().await.unwrap();
    c.ack().await.unwrap();
    drop(consumer);
    queue.delete(&name).await.unwrap();
}

async fn redelivers_after_consumer_loss(queue: &dyn JobQueue) {
    let name = fresh_queue(queue, 0).await;
    queue.publish(&name, Message::new("unacked")).await.unwrap();
    let mut first = queue.consume(&name, 1).await.unwrap();
    let delivery = next(&mut first).await;
    assert!(!delivery.redelivered);
    // The consumer dies holding the message: forget the delivery (no ack, no nack), then drop it.
    std::mem::forget(delivery);
    drop(first);
    let mut second = queue.consume(&name, 1).await.unwrap();
    let again = next(&mut second).await;
    assert_eq!(again.body(), b"unacked");
    assert!(again.redelivered, "a redelivery is flagged");
    again.ack().await.unwrap();
    drop(second);
    queue.delete(&name).await.unwrap();
}

async fn dropped_delivery_returns(queue: &dyn JobQueue) {
    let name = fresh_queue(queue, 0).await;
    queue
        .publish(&name, Message::new("undecided"))
        .await
        .unwrap();
    let mut consumer = queue.consume(&name, 1).await.unwrap();
    drop(next(&mut consumer).await);
    let again = next(&mut consumer).await;
    assert_eq!(again.body(), b"undecided");
    assert!(again.redelivered);
    again.ack().await.unwrap();
    drop(consumer);
    queue.delete(&name).await.unwrap();
}

async fn dead_letters_keep_the_reason(queue: &dyn JobQueue) {
    let name = fresh_queue(queue, 0).await;
    let message = Message::new("doomed").with_header("x-tenant", "alice");
    queue.publish(&name, message).await.unwrap();
    let mut consumer = queue.consume(&name, 1).await.unwrap();
    next(&mut consumer)
        .await
        .dead_letter("retries_exhausted", "failed 3 times: model missing")
        .await
        .unwrap();
    nothing_within(&mut consumer, Duration::from_millis(200)).await;
    let mut dead = queue.consume(&dead_queue_name(&name), 1).await.unwrap();
    let letter = next(&mut dead).await;
    assert_eq!(letter.body(), b"doomed");
    assert_eq!(
        letter
            .props()
            .headers
            .get(DEAD_REASON_HEADER)
            .map(String::as_str),
        Some("retries_exhausted")
    );
    assert_eq!(letter.props().headers.get(ORIGIN_QUEUE_HEADER), Some(&name));
    assert_eq!(
        letter.props().headers.get("x-tenant").map(String::as_str),
        Some("alice")
    );
    letter.ack().await.unwrap();
    drop((consumer, dead));
    queue.delete(&name).await.unwrap();
}

async fn malformed_messages_are_dead_lettered(queue: &dyn JobQueue) {
    let name = fresh_queue(queue, 0).await;
    queue
        .publish(&name, Message::new(vec![1u8, 0xff, 0x13]))
        .await
        .unwrap();
    queue
        .publish(&name, Message::new(vec![42u8, 0, 0]))
        .await
        .unwrap();
    let mut consumer = queue.consume(&name, 2).await.unwrap();
    for _ in 0..2 {
        let delivery = next(&mut consumer).await;
        let decoded = decode_or_dead_letter(delivery, envelope::decode_job)
            .await
            .unwrap();
        assert!(decoded.is_none(), "garbage must not decode");
    }
    nothing_within(&mut consumer, Duration::from_millis(200)).await;
    let mut dead = queue.consume(&dead_queue_name(&name), 2).await.unwrap();
    let mut reasons = Vec::new();
    for _ in 0..2 {
        let letter = next(&mut dead).await;
        reasons.push(letter.props().headers[DEAD_REASON_HEADER].clone());
        letter.ack().await.unwrap();
    }
    reasons.sort();
    assert_eq!(reasons, ["malformed", "unknown_version"]);
    drop((consumer, dead));
    queue.delete(&name).await.unwrap();
}

async fn properties_round_trip(queue: &dyn JobQueue) {
    let name = fresh_queue(queue, 0).await;
    let props = MessageProps {
        message_id: Some("req-42".into()),
        correlation_id: Some("corr-7".into()),
        reply_to: Some("replies-x".into()),
        content_type: Some("application/json".into()),
        headers: [("x-reverie-token".to_string(), "t0k".to_string())].into(),
        ..MessageProps::default()
    };
    queue
        .publish(&name, Message::new("{}").with_props(props.clone()))
        .await
        .unwrap();
    let mut consumer = queue.consume(&name, 1).await.unwrap();
    let delivery = next(&mut consumer).await;
    let got = delivery.props().clone();
    assert_eq!(got.message_id, props.message_id);
    assert_eq!(got.correlation_id, props.correlation_id);
    assert_eq!(got.reply_to, props.reply_to);
    assert_eq!(got.content_type, props.content_type);
    assert_eq!(
        got.headers.get("x-reverie-token"),
        props.headers.get("x-reverie-token")
    );
    assert!(got.timestamp_ms.is_some(), "publication time is stamped");
    delivery.ack().await.unwrap();
    drop(consumer);
    queue.delete(&name).await.unwrap();
}

#[tokio::test]
async fn memory_queue_meets_the_contract() {
    contract(&MemoryQueue::ephemeral()).await;
}

#[tokio::test]
async fn journalled_memory_queue_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    contract(&MemoryQueue::open(dir.path()).unwrap()).await;
}

#[tokio::test]
async fn amqp_queue_meets_the_contract() {
    let queue = AmqpQueue::connect(&common::amqp_url())
        .await
        .unwrap_or_else(|e| panic!("RabbitMQ is not reachable (run scripts/test): {e}"));
    contract(&queue).await;
}

/// One holder per claim across connections; the holder asks again and still holds it; a release
/// hands it to the next claimant at once.
async fn claims_are_exclusive(first: &dyn JobQueue, second: &dyn JobQueue) {
    let name = common::unique("reverie-test.claim");
    assert!(first.claim(&name).await.unwrap(), "a free claim is taken");
    assert!(
        first.claim(&name).await.unwrap(),
        "the holder still holds it"
    );
    assert!(
        !second.claim(&name).await.unwrap(),
        "held by another connection"
    );
    second.release_claim(&name).await.unwrap();
    assert!(
        first.claim(&name).await.unwrap(),
        "a non-holder's release changes nothing"
    );
    first.release_claim(&name).await.unwrap();
    assert!(
        second.claim(&name).await.unwrap(),
        "released, so the next claimant takes it"
    );
    assert!(!first.claim(&name).await.unwrap());
    second.release_claim(&name).await.unwrap();
}

#[tokio::test]
async fn memory_queue_claims_are_exclusive_per_connection() {
    let queue = MemoryQueue::ephemeral();
    claims_are_exclusive(&queue, &queue.connect_again()).await;
}

#[tokio::test]
async fn amqp_claims_are_exclusive_per_connection() {
    let first = AmqpQueue::connect(&common::amqp_url()).await.unwrap();
    let second = AmqpQueue::connect(&common::amqp_url()).await.unwrap();
    claims_are_exclusive(&first, &second).await;
}

#[tokio::test]
async fn memory_queue_keeps_unacked_messages_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let queue = MemoryQueue::open(dir.path()).unwrap();
        queue.declare(&QueueSpec::new("jobs")).await.unwrap();
        queue.publish("jobs", Message::new("acked")).await.unwrap();
        queue
            .publish("jobs", Message::new("in flight"))
            .await
            .unwrap();
        let mut consumer = queue.consume("jobs", 2).await.unwrap();
        next(&mut consumer).await.ack().await.unwrap();
        std::mem::forget(next(&mut consumer).await);
        std::mem::forget(consumer);
    }
    let queue = MemoryQueue::open(dir.path()).unwrap();
    queue.declare(&QueueSpec::new("jobs")).await.unwrap();
    let mut consumer = queue.consume("jobs", 1).await.unwrap();
    let restored = next(&mut consumer).await;
    assert_eq!(restored.body(), b"in flight");
    restored.ack().await.unwrap();
    nothing_within(&mut consumer, Duration::from_millis(100)).await;
}

#[tokio::test]
async fn unreachable_rabbitmq_is_one_clear_error() {
    let error = AmqpQueue::connect("amqp://guest:guest@127.0.0.1:9/%2f")
        .await
        .unwrap_err();
    assert!(error.is_transient());
    let text = error.to_string();
    assert!(
        text.contains("amqp") && text.contains("127.0.0.1:9") && !text.contains("guest:guest"),
        "{text}"
    );
}
