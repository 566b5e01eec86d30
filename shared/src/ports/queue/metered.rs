//! Counts and times every queue call, whatever the adapter, including each delivery's settlement.

use async_trait::async_trait;

use super::{Consumer, Delivery, JobQueue, Message, QueueError, QueueSpec};
use crate::metrics::{self, CallTimer};

#[derive(Debug)]
pub struct MeteredQueue<Q> {
    inner: Q,
}

impl<Q: JobQueue> MeteredQueue<Q> {
    pub fn new(inner: Q) -> MeteredQueue<Q> {
        MeteredQueue { inner }
    }
}

/// Records one queue operation.
pub fn record_queue_call<T>(
    backend: &'static str,
    op: &'static str,
    timer: CallTimer,
    result: &Result<T, QueueError>,
) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(error) => {
            tracing::warn!(backend, op, %error, "queue call failed");
            "error"
        }
    };
    let m = metrics::global();
    m.queue_operations
        .with_label_values(&[backend, op, outcome])
        .inc();
    m.queue_seconds
        .with_label_values(&[backend, op])
        .observe(timer.elapsed_seconds());
}

struct MeteredConsumer {
    backend: &'static str,
    inner: Box<dyn Consumer>,
}

#[async_trait]
impl Consumer for MeteredConsumer {
    async fn next(&mut self) -> Result<Delivery, QueueError> {
        let result = self.inner.next().await;
        // Waiting for a message is idle time, not latency: only the count is meaningful here.
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics::global()
            .queue_operations
            .with_label_values(&[self.backend, "consume", outcome])
            .inc();
        result
    }
}

#[async_trait]
impl<Q: JobQueue> JobQueue for MeteredQueue<Q> {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn declare(&self, spec: &QueueSpec) -> Result<(), QueueError> {
        let timer = CallTimer::start();
        let result = self.inner.declare(spec).await;
        record_queue_call(self.backend(), "declare", timer, &result);
        result
    }

    async fn publish(&self, queue: &str, message: Message) -> Result<(), QueueError> {
        let timer = CallTimer::start();
        let result = self.inner.publish(queue, message).await;
        record_queue_call(self.backend(), "publish", timer, &result);
        result
    }

    async fn publish_reply(&self, queue: &str, message: Message) -> Result<(), QueueError> {
        let timer = CallTimer::start();
        let result = self.inner.publish_reply(queue, message).await;
        // A requester's missing queue is its caller's one log line, not a queue failure as well.
        let counted = match &result {
            Err(QueueError::NoSuchQueue { .. }) => Ok(()),
            _ => result
                .as_ref()
                .map(|_| ())
                .map_err(|e| QueueError::Backend {
                    backend: "reply",
                    operation: "publish",
                    queue: queue.to_string(),
                    detail: e.to_string(),
                }),
        };
        record_queue_call(self.backend(), "publish_reply", timer, &counted);
        result
    }

    async fn consume(&self, queue: &str, prefetch: u16) -> Result<Box<dyn Consumer>, QueueError> {
        let timer = CallTimer::start();
        let result = self.inner.consume(queue, prefetch).await;
        record_queue_call(self.backend(), "subscribe", timer, &result);
        Ok(Box::new(MeteredConsumer {
            backend: self.backend(),
            inner: result?,
        }))
    }

    async fn depth(&self, queue: &str) -> Result<u64, QueueError> {
        let timer = CallTimer::start();
        let result = self.inner.depth(queue).await;
        record_queue_call(self.backend(), "depth", timer, &result);
        result
    }

    async fn delete(&self, queue: &str) -> Result<(), QueueError> {
        let timer = CallTimer::start();
        let result = self.inner.delete(queue).await;
        record_queue_call(self.backend(), "delete", timer, &result);
        result
    }

    async fn ping(&self) -> Result<(), QueueError> {
        let timer = CallTimer::start();
        let result = self.inner.ping().await;
        record_queue_call(self.backend(), "ping", timer, &result);
        result
    }

    async fn claim(&self, name: &str) -> Result<bool, QueueError> {
        let timer = CallTimer::start();
        let result = self.inner.claim(name).await;
        record_queue_call(self.backend(), "claim", timer, &result);
        result
    }

    fn connection_epoch(&self) -> u64 {
        self.inner.connection_epoch()
    }

    fn broker_user(&self) -> Option<String> {
        self.inner.broker_user()
    }

    async fn release_claim(&self, name: &str) -> Result<(), QueueError> {
        let timer = CallTimer::start();
        let result = self.inner.release_claim(name).await;
        record_queue_call(self.backend(), "release_claim", timer, &result);
        result
    }
}
