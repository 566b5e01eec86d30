//! Job-queue port: durable queues with priorities, publisher confirms, manual acknowledgement, prefetch,
//! and a dead-letter queue per queue that keeps the reason a message was given up on.
//!
//! Adapters: [`AmqpQueue`] (RabbitMQ through lapin) and [`MemoryQueue`] (in-process, journalled to the
//! data directory so unacknowledged messages survive a restart). Both pass `tests/queue_contract.rs`.
//!
//! Delivery semantics shared by both: a message is removed only by [`Delivery::ack`] or
//! [`Delivery::dead_letter`]; a delivery dropped without a decision, or held by a consumer that goes away,
//! returns to its queue and is delivered again with `redelivered` set.

mod amqp;
mod memory;
mod metered;

pub use amqp::AmqpQueue;
pub use memory::MemoryQueue;
pub use metered::MeteredQueue;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::metrics::{self, CallTimer};

pub type SharedQueue = Arc<dyn JobQueue>;

/// The exchange dead letters are published to; each queue `q` has its dead queue `q.dead`.
pub const DEAD_LETTER_EXCHANGE: &str = "reverie.dlx";
/// Header naming why a message was dead-lettered.
pub const DEAD_REASON_HEADER: &str = "x-reverie-dead-reason";
/// Header with a human-readable detail of the reason.
pub const DEAD_DETAIL_HEADER: &str = "x-reverie-dead-detail";
/// Header naming the queue a dead letter came from.
pub const ORIGIN_QUEUE_HEADER: &str = "x-reverie-origin-queue";

/// The dead-letter queue of `queue`.
pub fn dead_queue_name(queue: &str) -> String {
    format!("{queue}.dead")
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("{backend} at {address} is unreachable: {detail}")]
    Unreachable {
        backend: &'static str,
        address: String,
        detail: String,
    },
    #[error("{backend} {operation} on queue {queue:?} failed: {detail}")]
    Backend {
        backend: &'static str,
        operation: &'static str,
        queue: String,
        detail: String,
    },
    #[error("the broker refused (nacked) a message published to {queue:?}")]
    NotConfirmed { queue: String },
    #[error("queue {queue:?} does not exist")]
    NoSuchQueue { queue: String },
    #[error("the consumer of {queue:?} was closed")]
    ConsumerClosed { queue: String },
    #[error("queue journal {path}: {detail}")]
    Journal { path: String, detail: String },
}

impl QueueError {
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            QueueError::Unreachable { .. }
                | QueueError::Backend { .. }
                | QueueError::NotConfirmed { .. }
                | QueueError::ConsumerClosed { .. }
        )
    }
}

/// How a queue is declared. Declaring is idempotent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSpec {
    pub name: String,
    /// Highest message priority honoured (0 = no priorities). Higher is delivered first.
    pub max_priority: u8,
}

impl QueueSpec {
    pub fn new(name: impl Into<String>) -> QueueSpec {
        QueueSpec {
            name: name.into(),
            max_priority: 0,
        }
    }

    pub fn with_priorities(mut self, max_priority: u8) -> QueueSpec {
        self.max_priority = max_priority;
        self
    }
}

/// AMQP-style message properties; the in-process queue keeps the same ones.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MessageProps {
    pub message_id: Option<String>,
    pub correlation_id: Option<String>,
    pub reply_to: Option<String>,
    pub content_type: Option<String>,
    /// The authenticated broker user that published the message (RabbitMQ validates it).
    pub user_id: Option<String>,
    pub priority: u8,
    /// Milliseconds since the Unix epoch when the message was published.
    pub timestamp_ms: Option<u64>,
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Message {
    pub body: Vec<u8>,
    pub props: MessageProps,
}

impl Message {
    pub fn new(body: impl Into<Vec<u8>>) -> Message {
        Message {
            body: body.into(),
            props: MessageProps::default(),
        }
    }

    pub fn with_props(mut self, props: MessageProps) -> Message {
        self.props = props;
        self
    }

    pub fn with_priority(mut self, priority: u8) -> Message {
        self.props.priority = priority;
        self
    }

    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<String>) -> Message {
        self.props.headers.insert(key.into(), value.into());
        self
    }
}

/// What a consumer decides about a delivery; adapters carry it out.
#[async_trait]
pub trait Settle: Send + Sync {
    /// The adapter's name, for metric labels.
    fn backend(&self) -> &'static str;
    async fn ack(self: Box<Self>) -> Result<(), QueueError>;
    async fn requeue(self: Box<Self>) -> Result<(), QueueError>;
    /// Publishes the message to the dead-letter queue with the reason headers (confirmed), then acks it.
    async fn dead_letter(self: Box<Self>, reason: &str, detail: &str) -> Result<(), QueueError>;
}

/// One message handed to a consumer.
pub struct Delivery {
    pub queue: String,
    pub message: Message,
    /// The broker delivered this message before and it was not acknowledged.
    pub redelivered: bool,
    settle: Option<Box<dyn Settle>>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("queue", &self.queue)
            .field("message_id", &self.message.props.message_id)
            .field("redelivered", &self.redelivered)
            .finish()
    }
}

impl Delivery {
    pub fn new(
        queue: String,
        message: Message,
        redelivered: bool,
        settle: Box<dyn Settle>,
    ) -> Delivery {
        Delivery {
            queue,
            message,
            redelivered,
            settle: Some(settle),
        }
    }

    pub fn body(&self) -> &[u8] {
        &self.message.body
    }

    pub fn props(&self) -> &MessageProps {
        &self.message.props
    }

    pub async fn ack(mut self) -> Result<(), QueueError> {
        let Some(settle) = self.settle.take() else {
            return Ok(());
        };
        let (backend, timer) = (settle.backend(), CallTimer::start());
        let result = settle.ack().await;
        metered::record_queue_call(backend, "ack", timer, &result);
        result
    }

    pub async fn requeue(mut self) -> Result<(), QueueError> {
        let Some(settle) = self.settle.take() else {
            return Ok(());
        };
        let (backend, timer) = (settle.backend(), CallTimer::start());
        let result = settle.requeue().await;
        metered::record_queue_call(backend, "nack", timer, &result);
        result
    }

    pub async fn dead_letter(mut self, reason: &str, detail: &str) -> Result<(), QueueError> {
        tracing::warn!(
            queue = %self.queue,
            message_id = ?self.message.props.message_id,
            reason,
            detail,
            "dead-lettering message"
        );
        let Some(settle) = self.settle.take() else {
            return Ok(());
        };
        let (backend, timer) = (settle.backend(), CallTimer::start());
        let result = settle.dead_letter(reason, detail).await;
        metered::record_queue_call(backend, "dead_letter", timer, &result);
        if result.is_ok() {
            metrics::global()
                .dead_letters
                .with_label_values(&[self.queue.as_str(), reason])
                .inc();
        }
        result
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        // Undecided deliveries go back to the queue, so a panicking handler never loses a message.
        if let Some(settle) = self.settle.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    if let Err(error) = settle.requeue().await {
                        tracing::warn!(%error, "could not requeue a dropped delivery");
                    }
                });
            }
        }
    }
}

/// A stream of deliveries from one queue. Dropping it hands its unacknowledged messages back.
#[async_trait]
pub trait Consumer: Send {
    /// Waits for the next delivery. Errors when the connection or consumer is gone.
    async fn next(&mut self) -> Result<Delivery, QueueError>;
}

#[async_trait]
pub trait JobQueue: Send + Sync + std::fmt::Debug {
    /// `amqp` or `memory`, for logs and metric labels.
    fn backend(&self) -> &'static str;

    /// Declares a durable queue and its dead-letter queue.
    async fn declare(&self, spec: &QueueSpec) -> Result<(), QueueError>;

    /// Publishes persistently and returns once the broker has confirmed the message.
    async fn publish(&self, queue: &str, message: Message) -> Result<(), QueueError>;

    /// Publishes a reply to a queue someone else named (a requester's `reply_to`): one attempt,
    /// confirmed, persistent; a queue that does not exist is [`QueueError::NoSuchQueue`] at once, and a
    /// reply never disturbs the publishing of jobs and events (RabbitMQ: a channel of its own).
    async fn publish_reply(&self, queue: &str, message: Message) -> Result<(), QueueError> {
        self.publish(queue, message).await
    }

    /// Starts a consumer holding at most `prefetch` unacknowledged deliveries.
    async fn consume(&self, queue: &str, prefetch: u16) -> Result<Box<dyn Consumer>, QueueError>;

    /// Messages ready for delivery (not counting unacknowledged ones).
    async fn depth(&self, queue: &str) -> Result<u64, QueueError>;

    /// Deletes a queue and its dead-letter queue (tests and teardown).
    async fn delete(&self, queue: &str) -> Result<(), QueueError>;

    /// Checks the broker answers (readiness probes).
    async fn ping(&self) -> Result<(), QueueError>;

    /// Claims the exclusive role `name` for as long as this handle's broker connection lives (the one
    /// active scheduler of a farm): `true` when this handle holds it, now or already; `false` while
    /// another connection holds it. A lost connection loses the claim, so a holder asks again to know
    /// it still holds it.
    async fn claim(&self, name: &str) -> Result<bool, QueueError>;

    /// Gives up a claim this handle holds (a graceful stop), so a waiting claimant takes over at once.
    async fn release_claim(&self, name: &str) -> Result<(), QueueError>;

    /// Which connection this handle is on: it changes whenever the handle reconnects. Claims live as
    /// long as one connection, so a claim taken on an earlier connection is gone (or may be another's).
    /// The in-process queue never loses its connection: always 0.
    fn connection_epoch(&self) -> u64 {
        0
    }

    /// The user this handle publishes as, which the broker checks a message's `user_id` against
    /// (RabbitMQ); `None` where nothing checks it (the in-process queue).
    fn broker_user(&self) -> Option<String> {
        None
    }
}
