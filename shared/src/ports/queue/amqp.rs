//! RabbitMQ through lapin: durable priority queues, publisher confirms, manual acks, prefetch, and a
//! direct dead-letter exchange with one `.dead` queue per queue.
//!
//! One connection carries a confirm-mode channel for publishing and one channel per consumer, so closing
//! a consumer's channel is what hands its unacknowledged messages back to the broker.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use lapin::message::Delivery as AmqpDelivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::Confirmation;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::Mutex;

use super::{
    dead_queue_name, Consumer, Delivery, JobQueue, Message, MessageProps, QueueError, QueueSpec,
    Settle, DEAD_DETAIL_HEADER, DEAD_LETTER_EXCHANGE, DEAD_REASON_HEADER, ORIGIN_QUEUE_HEADER,
};

/// Millisecond publication time; AMQP's own timestamp property only has seconds.
const PUBLISHED_MS_HEADER: &str = "x-reverie-published-ms";
/// AMQP delivery mode 2: the broker writes the message to disk.
const PERSISTENT: u8 = 2;

struct Link {
    connection: Connection,
    publisher: Channel,
    /// Confirm-mode channels for replies (see [`JobQueue::publish_reply`]), each carrying one publish at
    /// a time: lapin hands a returned (unroutable) message to the next confirm it resolves, so a return
    /// is only unambiguous on a channel with a single publish outstanding. Made on first use.
    repliers: Vec<Mutex<Option<Channel>>>,
}

/// Reply channels per connection: replies to different requesters are published side by side.
const REPLY_CHANNELS: usize = 4;

struct Inner {
    uri: String,
    address: String,
    link: Mutex<Option<Arc<Link>>>,
    /// Counts the connections made: a claim holder compares it to know its connection (and with it
    /// its claims) is still the one it claimed on.
    connections: std::sync::atomic::AtomicU64,
}

#[derive(Clone)]
pub struct AmqpQueue {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AmqpQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpQueue")
            .field("address", &self.inner.address)
            .finish()
    }
}

/// Keeps credentials out of logs: `amqp://user:pass@host` becomes `amqp://***@host`.
fn redact(uri: &str) -> String {
    match (uri.find("://"), uri.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &uri[..scheme + 3], &uri[at..])
        }
        _ => uri.to_string(),
    }
}

/// `%xx` escapes of a URI's user part decoded (a user name with `@` or `:` in it).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl AmqpQueue {
    /// Closes the broker connection as a crash or a network partition would, without releasing
    /// anything: the broker drops this connection's claims and hands its unacknowledged deliveries to
    /// other consumers. The next call reconnects. Fault tests use it.
    pub async fn drop_connection(&self) {
        let link = self.inner.link.lock().await.take();
        if let Some(link) = link {
            let _ = link
                .connection
                .close(320, ShortString::from("connection dropped (fault test)"))
                .await;
        }
    }

    /// Connects once; callers wrap this in `retry::with_backoff` to wait for a broker that is starting.
    pub async fn connect(uri: &str) -> Result<AmqpQueue, QueueError> {
        let queue = AmqpQueue {
            inner: Arc::new(Inner {
                uri: uri.to_string(),
                address: redact(uri),
                link: Mutex::new(None),
                connections: std::sync::atomic::AtomicU64::new(0),
            }),
        };
        queue.link().await?;
        Ok(queue)
    }

    fn unreachable(&self, error: impl std::fmt::Display) -> QueueError {
        QueueError::Unreachable {
            backend: "amqp",
            address: self.inner.address.clone(),
            detail: error.to_string(),
        }
    }

    fn failed(&self, operation: &'static str, queue: &str, error: lapin::Error) -> QueueError {
        let detail = error.to_string();
        if detail.contains("NOT_FOUND") {
            return QueueError::NoSuchQueue {
                queue: queue.to_string(),
            };
        }
        QueueError::Backend {
            backend: "amqp",
            operation,
            queue: queue.to_string(),
            detail,
        }
    }

    /// A new channel on the live connection (consumers and one-off declares each get their own).
    async fn fresh_channel(&self) -> Result<Channel, QueueError> {
        let link = self.link().await?;
        link.connection
            .create_channel()
            .await
            .map_err(|e| self.unreachable(e))
    }

    /// Declares `name` on a channel of its own, closed afterwards: a refused declare (a missing queue
    /// asked passively, a claim held elsewhere) closes the channel it came on, and must not take the
    /// publishing channel with it. The outer error is the broker being unreachable, the inner one its
    /// answer.
    async fn declare_aside(
        &self,
        name: &str,
        options: QueueDeclareOptions,
    ) -> Result<lapin::Result<lapin::Queue>, QueueError> {
        let channel = self.fresh_channel().await?;
        let declared = channel
            .queue_declare(ShortString::from(name), options, FieldTable::default())
            .await;
        let _ = channel
            .close(200, ShortString::from("declared aside"))
            .await;
        Ok(declared)
    }

    /// The live connection, reconnecting when the previous one was lost (a broker restart).
    async fn link(&self) -> Result<Arc<Link>, QueueError> {
        let mut slot = self.inner.link.lock().await;
        if let Some(link) = slot.as_ref() {
            if link.connection.status().connected() && link.publisher.status().connected() {
                return Ok(link.clone());
            }
            tracing::warn!(address = %self.inner.address, "AMQP connection lost; reconnecting");
            // Only the publishing channel may be gone (the broker closes a channel on a refused
            // publish): the old connection would keep its consumers and claims alive beside the new
            // one, so it is closed, and they go with it.
            if link.connection.status().connected() {
                let _ = link
                    .connection
                    .close(200, ShortString::from("replaced"))
                    .await;
            }
        }
        let connection = Connection::connect(&self.inner.uri, ConnectionProperties::default())
            .await
            .map_err(|e| self.unreachable(e))?;
        let publisher = connection
            .create_channel()
            .await
            .map_err(|e| self.unreachable(e))?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| self.unreachable(e))?;
        publisher
            .exchange_declare(
                ShortString::from(DEAD_LETTER_EXCHANGE),
                ExchangeKind::Direct,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| self.unreachable(e))?;
        let link = Arc::new(Link {
            connection,
            publisher,
            repliers: (0..REPLY_CHANNELS).map(|_| Mutex::new(None)).collect(),
        });
        *slot = Some(link.clone());
        self.inner
            .connections
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(link)
    }

    async fn declare_durable(
        &self,
        channel: &Channel,
        name: &str,
        arguments: FieldTable,
    ) -> Result<(), QueueError> {
        channel
            .queue_declare(
                ShortString::from(name),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                arguments,
            )
            .await
            .map_err(|e| self.failed("declare", name, e))?;
        Ok(())
    }

    async fn publish_confirmed(
        &self,
        exchange: &str,
        routing_key: &str,
        message: &Message,
    ) -> Result<(), QueueError> {
        let link = self.link().await?;
        let confirm = link
            .publisher
            .basic_publish(
                ShortString::from(exchange),
                ShortString::from(routing_key),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &message.body,
                to_properties(&message.props),
            )
            .await
            .map_err(|e| self.failed("publish", routing_key, e))?
            .await
            .map_err(|e| self.failed("publish", routing_key, e))?;
        match confirm {
            Confirmation::Ack(None) => Ok(()),
            // A returned message was not routed to any queue: it would be lost, so it is not "published".
            // Through the default exchange that means the queue does not exist: a final answer (retrying
            // cannot create the queue), as the in-process queue gives it. lapin pairs a return with the
            // next confirm it resolves, which on this shared channel may be another publish's: so the
            // queue is asked (passively) before the answer is taken as final.
            Confirmation::Ack(Some(_)) if exchange.is_empty() => {
                let passive = QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                };
                match self.declare_aside(routing_key, passive).await? {
                    Err(_) => Err(QueueError::NoSuchQueue {
                        queue: routing_key.to_string(),
                    }),
                    Ok(_) => Err(QueueError::NotConfirmed {
                        queue: routing_key.to_string(),
                    }),
                }
            }
            Confirmation::Ack(Some(_)) | Confirmation::Nack(_) => Err(QueueError::NotConfirmed {
                queue: routing_key.to_string(),
            }),
            Confirmation::NotRequested => Err(QueueError::Backend {
                backend: "amqp",
                operation: "publish",
                queue: routing_key.to_string(),
                detail: "publisher confirms are not enabled on the channel".to_string(),
            }),
        }
    }
}

fn to_properties(props: &MessageProps) -> BasicProperties {
    let mut headers = FieldTable::default();
    for (key, value) in &props.headers {
        headers.insert(
            ShortString::from(key.as_str()),
            AMQPValue::LongString(LongString::from(value.as_str())),
        );
    }
    let published_ms = props.timestamp_ms.unwrap_or_else(now_ms);
    headers.insert(
        ShortString::from(PUBLISHED_MS_HEADER),
        AMQPValue::LongLongInt(published_ms as i64),
    );
    let mut properties = BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_priority(props.priority)
        .with_timestamp(published_ms / 1000)
        .with_headers(headers);
    if let Some(id) = &props.message_id {
        properties = properties.with_message_id(ShortString::from(id.as_str()));
    }
    if let Some(id) = &props.correlation_id {
        properties = properties.with_correlation_id(ShortString::from(id.as_str()));
    }
    if let Some(reply_to) = &props.reply_to {
        properties = properties.with_reply_to(ShortString::from(reply_to.as_str()));
    }
    if let Some(content_type) = &props.content_type {
        properties = properties.with_content_type(ShortString::from(content_type.as_str()));
    }
    if let Some(user) = &props.user_id {
        properties = properties.with_user_id(ShortString::from(user.as_str()));
    }
    properties
}

fn value_text(value: &AMQPValue) -> String {
    match value {
        AMQPValue::LongString(text) => String::from_utf8_lossy(text.as_bytes()).into_owned(),
        AMQPValue::ShortString(text) => text.as_str().to_string(),
        AMQPValue::Boolean(b) => b.to_string(),
        AMQPValue::ShortShortInt(n) => n.to_string(),
        AMQPValue::ShortShortUInt(n) => n.to_string(),
        AMQPValue::ShortInt(n) => n.to_string(),
        AMQPValue::ShortUInt(n) => n.to_string(),
        AMQPValue::LongInt(n) => n.to_string(),
        AMQPValue::LongUInt(n) => n.to_string(),
        AMQPValue::LongLongInt(n) => n.to_string(),
        other => format!("{other:?}"),
    }
}

fn from_properties(properties: &BasicProperties) -> MessageProps {
    let mut headers = BTreeMap::new();
    let mut published_ms = None;
    if let Some(table) = properties.headers() {
        for (key, value) in table.inner() {
            if key.as_str() == PUBLISHED_MS_HEADER {
                published_ms = value_text(value).parse().ok();
            } else {
                headers.insert(key.as_str().to_string(), value_text(value));
            }
        }
    }
    let text = |value: &Option<ShortString>| value.as_ref().map(|v| v.as_str().to_string());
    MessageProps {
        message_id: text(properties.message_id()),
        correlation_id: text(properties.correlation_id()),
        reply_to: text(properties.reply_to()),
        content_type: text(properties.content_type()),
        user_id: text(properties.user_id()),
        priority: properties.priority().unwrap_or(0),
        timestamp_ms: published_ms.or_else(|| properties.timestamp().map(|s| s * 1000)),
        headers,
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

struct AmqpSettle {
    queue: AmqpQueue,
    name: String,
    delivery: AmqpDelivery,
    message: Message,
}

#[async_trait]
impl Settle for AmqpSettle {
    fn backend(&self) -> &'static str {
        "amqp"
    }

    async fn ack(self: Box<Self>) -> Result<(), QueueError> {
        self.delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .map(|_| ())
            .map_err(|e| self.queue.failed("ack", &self.name, e))
    }

    async fn requeue(self: Box<Self>) -> Result<(), QueueError> {
        self.delivery
            .acker
            .nack(BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            })
            .await
            .map(|_| ())
            .map_err(|e| self.queue.failed("nack", &self.name, e))
    }

    async fn dead_letter(self: Box<Self>, reason: &str, detail: &str) -> Result<(), QueueError> {
        // Published to the dead-letter exchange ourselves (not rejected) so the reason travels in a header;
        // acked only after the broker confirmed the dead letter, so the message exists somewhere at all times.
        let dead = self
            .message
            .clone()
            .with_header(DEAD_REASON_HEADER, reason)
            .with_header(DEAD_DETAIL_HEADER, detail)
            .with_header(ORIGIN_QUEUE_HEADER, self.name.clone());
        self.queue
            .publish_confirmed(DEAD_LETTER_EXCHANGE, &self.name, &dead)
            .await?;
        self.ack().await
    }
}

struct AmqpConsumer {
    queue: AmqpQueue,
    name: String,
    channel: Channel,
    stream: lapin::Consumer,
}

#[async_trait]
impl Consumer for AmqpConsumer {
    async fn next(&mut self) -> Result<Delivery, QueueError> {
        match self.stream.next().await {
            Some(Ok(delivery)) => {
                let message = Message {
                    body: delivery.data.clone(),
                    props: from_properties(&delivery.properties),
                };
                let redelivered = delivery.redelivered;
                let settle = AmqpSettle {
                    queue: self.queue.clone(),
                    name: self.name.clone(),
                    delivery,
                    message: message.clone(),
                };
                Ok(Delivery::new(
                    self.name.clone(),
                    message,
                    redelivered,
                    Box::new(settle),
                ))
            }
            Some(Err(error)) => Err(self.queue.unreachable(error)),
            None => Err(QueueError::ConsumerClosed {
                queue: self.name.clone(),
            }),
        }
    }
}

impl Drop for AmqpConsumer {
    fn drop(&mut self) {
        // Closing the channel is what makes the broker redeliver this consumer's unacked messages.
        let channel = self.channel.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = channel
                    .close(200, ShortString::from("consumer dropped"))
                    .await;
            });
        }
    }
}

#[async_trait]
impl JobQueue for AmqpQueue {
    /// The user of the connection URI (`amqp://user:pass@host`); RabbitMQ's default `guest` when it
    /// names none.
    fn broker_user(&self) -> Option<String> {
        let after_scheme = self
            .inner
            .uri
            .split_once("://")
            .map_or("", |(_, rest)| rest);
        let user = match after_scheme.rsplit_once('@') {
            Some((credentials, _)) => credentials.split(':').next().unwrap_or_default(),
            None => "",
        };
        let user = if user.is_empty() { "guest" } else { user };
        Some(percent_decode(user))
    }

    fn backend(&self) -> &'static str {
        "amqp"
    }

    async fn declare(&self, spec: &QueueSpec) -> Result<(), QueueError> {
        let link = self.link().await?;
        let dead = dead_queue_name(&spec.name);
        self.declare_durable(&link.publisher, &dead, FieldTable::default())
            .await?;
        link.publisher
            .queue_bind(
                ShortString::from(dead.as_str()),
                ShortString::from(DEAD_LETTER_EXCHANGE),
                ShortString::from(spec.name.as_str()),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| self.failed("declare", &dead, e))?;
        let mut arguments = FieldTable::default();
        arguments.insert(
            ShortString::from("x-dead-letter-exchange"),
            AMQPValue::LongString(LongString::from(DEAD_LETTER_EXCHANGE)),
        );
        arguments.insert(
            ShortString::from("x-dead-letter-routing-key"),
            AMQPValue::LongString(LongString::from(spec.name.as_str())),
        );
        if spec.max_priority > 0 {
            arguments.insert(
                ShortString::from("x-max-priority"),
                AMQPValue::LongInt(i32::from(spec.max_priority)),
            );
        }
        self.declare_durable(&link.publisher, &spec.name, arguments)
            .await
    }

    async fn publish(&self, queue: &str, message: Message) -> Result<(), QueueError> {
        self.publish_confirmed("", queue, &message).await
    }

    /// One attempt on a reply channel of its own (never the channel jobs and events go through), one
    /// publish outstanding per channel, so a return names this message: a missing queue is
    /// `NoSuchQueue` at once.
    async fn publish_reply(&self, queue: &str, message: Message) -> Result<(), QueueError> {
        let link = self.link().await?;
        let index = {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            queue.hash(&mut hasher);
            (hasher.finish() % REPLY_CHANNELS as u64) as usize
        };
        let mut slot = link.repliers[index].lock().await;
        let channel = match slot.as_ref().filter(|c| c.status().connected()) {
            Some(channel) => channel.clone(),
            None => {
                let channel = link
                    .connection
                    .create_channel()
                    .await
                    .map_err(|e| self.unreachable(e))?;
                channel
                    .confirm_select(ConfirmSelectOptions::default())
                    .await
                    .map_err(|e| self.unreachable(e))?;
                *slot = Some(channel.clone());
                channel
            }
        };
        let confirm = channel
            .basic_publish(
                ShortString::from(""),
                ShortString::from(queue),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &message.body,
                to_properties(&message.props),
            )
            .await
            // A reply whose publish or confirm fails lost its channel or connection (a missing queue
            // comes back as a return, below): that is an outage to wait out, so the lane retries it.
            .map_err(|e| self.unreachable(e))?
            .await
            .map_err(|e| self.unreachable(e))?;
        match confirm {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(_)) => Err(QueueError::NoSuchQueue {
                queue: queue.to_string(),
            }),
            Confirmation::Nack(_) => Err(QueueError::NotConfirmed {
                queue: queue.to_string(),
            }),
            Confirmation::NotRequested => Err(QueueError::Backend {
                backend: "amqp",
                operation: "publish",
                queue: queue.to_string(),
                detail: "publisher confirms are not enabled on the channel".to_string(),
            }),
        }
    }

    async fn consume(&self, queue: &str, prefetch: u16) -> Result<Box<dyn Consumer>, QueueError> {
        let channel = self.fresh_channel().await?;
        channel
            .basic_qos(prefetch.max(1), BasicQosOptions::default())
            .await
            .map_err(|e| self.failed("consume", queue, e))?;
        let stream = channel
            .basic_consume(
                ShortString::from(queue),
                ShortString::from(""),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| self.failed("consume", queue, e))?;
        Ok(Box::new(AmqpConsumer {
            queue: self.clone(),
            name: queue.to_string(),
            channel,
            stream,
        }))
    }

    async fn depth(&self, queue: &str) -> Result<u64, QueueError> {
        let options = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let declared = self.declare_aside(queue, options).await?;
        Ok(u64::from(
            declared
                .map_err(|e| self.failed("depth", queue, e))?
                .message_count(),
        ))
    }

    async fn delete(&self, queue: &str) -> Result<(), QueueError> {
        let link = self.link().await?;
        for name in [queue.to_string(), dead_queue_name(queue)] {
            link.publisher
                .queue_delete(
                    ShortString::from(name.as_str()),
                    QueueDeleteOptions::default(),
                )
                .await
                .map_err(|e| self.failed("delete", &name, e))?;
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), QueueError> {
        self.link().await.map(|_| ())
    }

    fn connection_epoch(&self) -> u64 {
        self.inner
            .connections
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A claim is an exclusive, auto-deleted queue named `name`: RabbitMQ lets only the declaring
    /// connection use it and deletes it when that connection closes (a crash included), and refuses
    /// every other connection with RESOURCE_LOCKED.
    async fn claim(&self, name: &str) -> Result<bool, QueueError> {
        let options = QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..QueueDeclareOptions::default()
        };
        match self.declare_aside(name, options).await? {
            Ok(_) => Ok(true),
            Err(error) if is_resource_locked(&error) => Ok(false),
            Err(error) => Err(self.failed("claim", name, error)),
        }
    }

    async fn release_claim(&self, name: &str) -> Result<(), QueueError> {
        // Only the holder deletes: a delete of a queue another connection holds is refused with
        // RESOURCE_LOCKED, which would close the publishing channel it was sent on.
        if !self.claim(name).await? {
            return Ok(());
        }
        let link = self.link().await?;
        link.publisher
            .queue_delete(ShortString::from(name), QueueDeleteOptions::default())
            .await
            .map_err(|e| self.failed("release_claim", name, e))?;
        Ok(())
    }
}

fn is_resource_locked(error: &lapin::Error) -> bool {
    use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
    matches!(
        error.kind(),
        lapin::ErrorKind::ProtocolError(amqp)
            if matches!(amqp.kind(), AMQPErrorKind::Soft(AMQPSoftError::RESOURCELOCKED))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_redacted() {
        assert_eq!(
            redact("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://***@127.0.0.1:5672/%2f"
        );
    }

    #[test]
    fn properties_round_trip() {
        let props = MessageProps {
            message_id: Some("m1".into()),
            correlation_id: Some("c1".into()),
            reply_to: Some("replies".into()),
            content_type: Some("application/json".into()),
            user_id: None,
            priority: 7,
            timestamp_ms: Some(1_700_000_000_123),
            headers: BTreeMap::from([("x-tenant".to_string(), "alice".to_string())]),
        };
        assert_eq!(from_properties(&to_properties(&props)), props);
    }
}
