//! Replies and streams: where a request's replies go once they are made. AMQP replies leave through
//! lanes, so publishing never holds up intake or event handling; event-stream (SSE) subscribers get
//! each reply serialised once. Owns the map of event streams and the reply lanes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as SyncMutex, OnceLock};

use reverie_shared::ids::{RequestId, TenantId};
use reverie_shared::metrics;
use reverie_shared::ports::queue::{Message, MessageProps, QueueError, SharedQueue};
use tokio::sync::{broadcast, mpsc};

use crate::lock;
use crate::open_log::OpenKey;
use crate::records::ReplyRoute;
use crate::replies::{Reply, ReplyBody};

/// A reply as event streams send it: the reply and its JSON, made once and shared by every watcher.
#[derive(Debug)]
pub struct StreamedReply {
    pub reply: Reply,
    pub json: String,
}

impl StreamedReply {
    pub fn of(reply: &Reply) -> StreamedReply {
        StreamedReply {
            reply: reply.clone(),
            json: serde_json::to_string(reply).unwrap_or_default(),
        }
    }
}

/// Lanes of AMQP replies: a request's replies always take the same lane (so they arrive in order), and
/// each lane publishes one reply at a time. Publishing never holds up intake or event handling: a reply
/// is handed to its lane, and dropped (counted, `backlog`) when the lane is full.
const REPLY_LANES: usize = 8;
/// Replies a lane holds before it drops new ones.
const REPLY_LANE_DEPTH: usize = 512;

/// One reply for one AMQP reply queue.
struct OutgoingReply {
    queue: String,
    message: Message,
    kind: &'static str,
}

/// Routes replies to a request's AMQP `reply_to` and to its event-stream subscribers.
pub(crate) struct ReplyRouter {
    queue: SharedQueue,
    /// Event streams of requests someone subscribed to, until their final reply.
    streams: SyncMutex<HashMap<OpenKey, broadcast::Sender<Arc<StreamedReply>>>>,
    /// AMQP replies on their way out, drained by their own tasks (started with the first reply).
    lanes: OnceLock<Vec<mpsc::Sender<OutgoingReply>>>,
}

impl ReplyRouter {
    pub fn new(queue: SharedQueue) -> ReplyRouter {
        ReplyRouter {
            queue,
            streams: SyncMutex::new(HashMap::new()),
            lanes: OnceLock::new(),
        }
    }

    /// Subscribes to the replies of one request (server-sent events).
    pub fn subscribe(
        &self,
        tenant: &TenantId,
        request: &RequestId,
    ) -> broadcast::Receiver<Arc<StreamedReply>> {
        let mut streams = lock(&self.streams);
        streams
            .entry((tenant.clone(), request.clone()))
            .or_insert_with(|| broadcast::channel(64).0)
            .subscribe()
    }

    /// Event streams kept (requests someone subscribed to that have not finished).
    pub fn event_streams(&self) -> usize {
        lock(&self.streams).len()
    }

    /// Drops the event stream of a request when nobody listens to it any more.
    pub fn unsubscribe_idle(&self, tenant: &TenantId, request: &RequestId) {
        let key = (tenant.clone(), request.clone());
        let mut streams = lock(&self.streams);
        if streams.get(&key).is_some_and(|s| s.receiver_count() == 0) {
            streams.remove(&key);
        }
    }

    /// Ends every event stream (the shard moved to another scheduler): subscribers see the stream end
    /// and reconnect, reaching the new holder.
    pub fn close_all(&self) {
        lock(&self.streams).clear();
    }

    /// Drops the event streams of a forgotten tenant.
    pub fn forget(&self, tenant: &TenantId) {
        lock(&self.streams).retain(|(t, _), _| t != tenant);
    }

    /// Sends a reply to the request's AMQP reply_to (if any) and to its event-stream subscribers.
    pub fn relay(
        &self,
        tenant: &TenantId,
        request: &RequestId,
        route: Option<&ReplyRoute>,
        reply: &Reply,
    ) {
        let key = (tenant.clone(), request.clone());
        {
            let mut streams = lock(&self.streams);
            if let Some(sender) = streams.get(&key) {
                // Serialised once for every watcher (a preview makes a reply ~8 KB).
                let _ = sender.send(Arc::new(StreamedReply::of(reply)));
                if reply.is_final() {
                    streams.remove(&key);
                }
            }
        }
        if let Some(route) = route {
            self.send_amqp_reply(route, reply);
        }
    }

    /// Hands a reply to its AMQP reply lane (see [`REPLY_LANES`]); returns at once. The route was
    /// checked at intake (`crate::reply_to`). A requester that went away is logged and counted.
    pub fn send_amqp_reply(&self, route: &ReplyRoute, reply: &Reply) {
        if !reply.wanted_on(route) {
            return;
        }
        let body = match serde_json::to_vec(reply) {
            Ok(body) => body,
            Err(error) => {
                tracing::error!(%error, "could not encode a reply");
                return;
            }
        };
        let props = MessageProps {
            message_id: Some(reply_message_id(reply)),
            correlation_id: route.correlation_id.clone(),
            content_type: Some("application/json".to_string()),
            headers: [("x-reverie-reply-type".to_string(), reply.kind().to_string())].into(),
            ..MessageProps::default()
        };
        let message = Message::new(body).with_props(props);
        let lanes = self
            .lanes
            .get_or_init(|| spawn_reply_lanes(self.queue.clone()));
        // One lane per request, so its replies keep their order.
        let lane = lane_of(reply.request_id.as_deref().unwrap_or(&route.reply_to));
        let outgoing = OutgoingReply {
            queue: route.reply_to.clone(),
            message,
            kind: reply.kind(),
        };
        if let Err(error) = lanes[lane].try_send(outgoing) {
            metrics::global()
                .replies_undelivered
                .with_label_values(&["backlog"])
                .inc();
            tracing::warn!(reply_to = %route.reply_to, kind = reply.kind(), %error, "reply dropped: too many replies waiting to be published");
        }
    }
}

fn spawn_reply_lanes(queue: SharedQueue) -> Vec<mpsc::Sender<OutgoingReply>> {
    (0..REPLY_LANES)
        .map(|_| {
            let (sender, mut receiver) = mpsc::channel::<OutgoingReply>(REPLY_LANE_DEPTH);
            let queue = queue.clone();
            tokio::spawn(async move {
                while let Some(reply) = receiver.recv().await {
                    deliver_reply(&queue, reply).await;
                }
            });
            sender
        })
        .collect()
}

/// Publishes one reply. Only a lost broker connection is retried (a broker restart must not swallow a
/// final reply); a reply queue that does not exist, or a broker that refuses the message, costs one
/// attempt, one log line and one count.
async fn deliver_reply(queue: &SharedQueue, reply: OutgoingReply) {
    let backoff = reverie_shared::retry::Backoff {
        initial: std::time::Duration::from_millis(200),
        max: std::time::Duration::from_secs(5),
        max_attempts: 20,
    };
    let result = reverie_shared::retry::with_backoff(
        "reply queue",
        backoff,
        |error: &QueueError| matches!(error, QueueError::Unreachable { .. }),
        || queue.publish_reply(&reply.queue, reply.message.clone()),
    )
    .await;
    if let Err(error) = result {
        let reason = match error {
            QueueError::NoSuchQueue { .. } => "no_such_queue",
            QueueError::NotConfirmed { .. } => "not_confirmed",
            QueueError::Unreachable { .. } => "unreachable",
            _ => "failed",
        };
        metrics::global()
            .replies_undelivered
            .with_label_values(&[reason])
            .inc();
        tracing::warn!(%error, reply_to = %reply.queue, kind = reply.kind, reason, "reply not delivered");
    }
}

fn lane_of(key: &str) -> usize {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut hasher);
    (hasher.finish() % REPLY_LANES as u64) as usize
}

/// The message id of a reply. Acknowledgements and final replies have one per request and kind, so a
/// reply sent again (its publish retried across a broker restart, or the final reply of a request
/// re-sent) carries the id of the first and a requester can drop the copy; progress replies are unique.
fn reply_message_id(reply: &Reply) -> String {
    let duplicate = matches!(
        reply.body,
        ReplyBody::Accepted {
            duplicate: true,
            ..
        }
    );
    match (&reply.request_id, reply.kind()) {
        (Some(request), kind) if kind != "progress" => {
            format!(
                "{request}.{kind}{}",
                if duplicate { ".duplicate" } else { "" }
            )
        }
        _ => uuid::Uuid::new_v4().simple().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reverie_shared::ports::queue::{JobQueue, MemoryQueue, QueueSpec};

    fn ids() -> (TenantId, RequestId) {
        (TenantId::new("t1").unwrap(), RequestId::new("r1").unwrap())
    }

    #[tokio::test]
    async fn subscribers_get_replies_until_the_final_one_and_the_stream_goes_with_it() {
        let router = ReplyRouter::new(Arc::new(MemoryQueue::ephemeral()));
        let (tenant, request) = ids();
        let mut receiver = router.subscribe(&tenant, &request);
        assert_eq!(router.event_streams(), 1);
        let progress = Reply::new(
            Some(request.to_string()),
            ReplyBody::Progress {
                job: "r1.0".into(),
                state: crate::records::JobState::Running,
                step: None,
                total: None,
                preview_png_base64: None,
            },
        );
        router.relay(&tenant, &request, None, &progress);
        let got = receiver.recv().await.unwrap();
        assert_eq!(got.reply.kind(), "progress");
        assert_eq!(got.json, serde_json::to_string(&progress).unwrap());
        let done = Reply::new(
            Some(request.to_string()),
            ReplyBody::Done {
                results: Vec::new(),
            },
        );
        router.relay(&tenant, &request, None, &done);
        assert_eq!(receiver.recv().await.unwrap().reply.kind(), "done");
        assert_eq!(router.event_streams(), 0, "a final reply ends the stream");
    }

    #[tokio::test]
    async fn amqp_replies_go_to_the_reply_queue_with_a_stable_message_id() {
        let queue = MemoryQueue::ephemeral();
        queue.declare(&QueueSpec::new("replies-r1")).await.unwrap();
        let router = ReplyRouter::new(Arc::new(queue.clone()));
        let (tenant, request) = ids();
        let route = ReplyRoute {
            reply_to: "replies-r1".into(),
            correlation_id: Some("c1".into()),
            final_only: false,
        };
        let done = Reply::new(
            Some(request.to_string()),
            ReplyBody::Done {
                results: Vec::new(),
            },
        );
        router.relay(&tenant, &request, Some(&route), &done);
        let mut consumer = queue.consume("replies-r1", 1).await.unwrap();
        let delivery = tokio::time::timeout(std::time::Duration::from_secs(5), consumer.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(delivery.props().message_id.as_deref(), Some("r1.done"));
        assert_eq!(delivery.props().correlation_id.as_deref(), Some("c1"));
    }
}
