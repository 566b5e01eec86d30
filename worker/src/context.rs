//! What every part of a worker shares: its identity, the ports, settings, renderers and caches.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use reverie_shared::config::{RetrySettings, WorkerSettings};
use reverie_shared::envelope;
use reverie_shared::jobs::{Job, JobEvent, RendererKind};
use reverie_shared::ports::queue::{Consumer, Message, MessageProps, QueueError};
use reverie_shared::queues::QueueNames;
use reverie_shared::retry::{with_backoff, Backoff};
use reverie_shared::Backends;
use tokio::sync::watch;

use crate::inputs::PhotoCache;
use crate::render::{RenderError, Renderer};

/// The renderers this worker can run, by kind.
#[derive(Clone, Default)]
pub struct Renderers {
    by_kind: HashMap<RendererKind, Arc<dyn Renderer>>,
}

impl Renderers {
    pub fn with(mut self, renderer: Arc<dyn Renderer>) -> Renderers {
        self.by_kind.insert(renderer.kind(), renderer);
        self
    }

    pub fn get(&self, kind: RendererKind) -> Result<Arc<dyn Renderer>, RenderError> {
        self.by_kind.get(&kind).cloned().ok_or_else(|| {
            RenderError::ModelUnavailable(format!(
                "this worker has no {} renderer configured",
                kind.label()
            ))
        })
    }

    pub fn kinds(&self) -> Vec<RendererKind> {
        self.by_kind.keys().copied().collect()
    }
}

pub struct WorkerContext {
    pub worker_id: String,
    pub backends: Backends,
    pub queues: QueueNames,
    pub settings: WorkerSettings,
    pub retry: RetrySettings,
    pub cache_prefix: String,
    pub renderers: Renderers,
    pub photo_cache: Option<Arc<PhotoCache>>,
    /// Analyses shards from the analysis queue; `None` for workers that only render.
    pub analyser: Option<Arc<crate::analysis::Analyser>>,
    /// Where each held job's events go (the shard of the scheduler that follows it).
    pub event_routes: crate::event_routes::EventRoutes,
}

impl WorkerContext {
    /// Starts a consumer, retrying with backoff while the broker is away, until shutdown.
    pub async fn consume(
        &self,
        queue: &str,
        prefetch: u16,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Box<dyn Consumer>, QueueError> {
        let backoff = Backoff {
            max_attempts: 0,
            ..Backoff::from(&self.retry)
        };
        let connect = with_backoff("job queue", backoff, QueueError::is_transient, || {
            self.backends.queue.consume(queue, prefetch)
        });
        tokio::select! {
            consumer = connect => consumer,
            _ = shutdown.changed() => Err(QueueError::ConsumerClosed { queue: queue.to_string() }),
        }
    }

    /// Counts deliveries of one attempt of a job (a redelivery means a worker died holding it).
    pub async fn delivery_count(&self, job: &Job) -> u64 {
        let key = format!(
            "{}:deliveries:{}:{}",
            self.cache_prefix,
            job.spec.id(),
            job.attempt
        );
        // A cache outage must not turn every redelivery into poison: count it as the first.
        self.backends
            .cache
            .increment(&key, 1, Some(Duration::from_secs(24 * 3600)))
            .await
            .map(|n| n.max(0) as u64)
            .unwrap_or(1)
    }

    /// Whether the scheduler cancelled this job (the job summary it keeps in the cache says so). A cache
    /// outage renders the job: the scheduler discards outputs of cancelled jobs anyway.
    pub async fn is_cancelled(&self, job: &reverie_shared::jobs::GenerateJob) -> bool {
        let key = reverie_shared::keys::job_cache_key(&job.tenant, job.job.as_str());
        match self.backends.cache.get(&key).await {
            Ok(Some(summary)) => serde_json::from_slice::<serde_json::Value>(&summary)
                .map(|value| value["state"] == "cancelled")
                .unwrap_or(false),
            _ => false,
        }
    }

    /// Publishes a job event with a broker confirm; returns whether it was confirmed.
    pub async fn publish_event(&self, event: &JobEvent) -> bool {
        self.publish_events(std::slice::from_ref(event)).await
    }

    /// Publishes several events (a render batch's results) as one message with one broker confirm;
    /// returns whether it was confirmed. The scheduler applies them in order.
    pub async fn publish_events(&self, events: &[JobEvent]) -> bool {
        self.publish_events_in(events, false).await
    }

    /// [`Self::publish_events`] in the current layout (`current`: envelope version 4, with the
    /// identity check) or the version-1 layout every scheduler reads.
    pub async fn publish_events_in(&self, events: &[JobEvent], current: bool) -> bool {
        // A render batch may hold jobs of tenants that different schedulers follow: one message per
        // events queue, in the batch's order within each.
        let mut by_queue: Vec<(String, Vec<JobEvent>)> = Vec::new();
        for event in events {
            let queue = self.event_routes.queue_for(event.job(), &self.queues);
            match by_queue.iter_mut().find(|(q, _)| *q == queue) {
                Some((_, list)) => list.push(event.clone()),
                None => by_queue.push((queue, vec![event.clone()])),
            }
        }
        let sent = futures::future::join_all(
            by_queue
                .iter()
                .map(|(queue, list)| self.publish_events_to(queue, list, current)),
        )
        .await;
        let confirmed = sent.iter().all(|ok| *ok);
        if confirmed {
            for event in events.iter().filter(|e| e.is_final()) {
                self.event_routes.forget(event.job());
            }
        }
        confirmed
    }

    async fn publish_events_to(&self, queue: &str, events: &[JobEvent], current: bool) -> bool {
        let Some(first) = events.first() else {
            return true;
        };
        let encoded = if current {
            envelope::encode_events_current(events)
        } else {
            envelope::encode_events(events)
        };
        let body = match encoded {
            Ok(body) => body,
            Err(error) => {
                tracing::error!(%error, "could not encode job events");
                return false;
            }
        };
        // The first event names the message; a batch says how many more it carries.
        let mut message_id = format!("{}:{}", first.job(), event_name(first));
        if events.len() > 1 {
            message_id.push_str(&format!("+{}", events.len() - 1));
        }
        let props = MessageProps {
            message_id: Some(message_id),
            ..MessageProps::default()
        };
        let backoff = Backoff {
            max_attempts: 5,
            ..Backoff::from(&self.retry)
        };
        let result = with_backoff("event queue", backoff, QueueError::is_transient, || {
            self.backends
                .queue
                .publish(queue, Message::new(body.clone()).with_props(props.clone()))
        })
        .await;
        match result {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!(job = %first.job(), events = events.len(), queue, %error, "could not publish job events");
                false
            }
        }
    }

    /// Tells the scheduler a job failed for good; returns whether the broker confirmed the event. A
    /// caller settles the job (dead letter, ack) only when it did: otherwise the request never finishes.
    pub async fn report_final_failure(&self, job: &Job, reason: &str) -> bool {
        self.publish_event(&JobEvent::Failed {
            job: job.spec.id().clone(),
            tenant: job.spec.tenant().clone(),
            reason: reason.to_string(),
            retryable: false,
            attempt: job.attempt,
        })
        .await
    }
}

fn event_name(event: &JobEvent) -> String {
    match event {
        JobEvent::Started { attempt, .. } => format!("started:{attempt}"),
        JobEvent::Progress { step, .. } => format!("progress:{step}"),
        JobEvent::Succeeded { .. } => "succeeded".to_string(),
        JobEvent::Failed { attempt, .. } => format!("failed:{attempt}"),
    }
}
