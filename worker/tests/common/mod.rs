//! Real services for the cross-crate tests (started by scripts/test), and helpers that give each test its
//! own queues, cache prefix and bucket so runs never collide.

#![allow(dead_code, unused_imports)]

use std::sync::Arc;

use reverie_shared::envelope;
use reverie_shared::ids::{JobId, RequestId, TenantId};
use reverie_shared::jobs::{
    GenerateJob, Job, JobSpec, OutputTarget, Priority, RenderSpec, RendererKind,
};
use reverie_shared::ports::cache::MeteredCache;
use reverie_shared::ports::queue::MeteredQueue;
use reverie_shared::ports::queue::{Message, MessageProps};
use reverie_shared::ports::store::{MeteredStore, S3Store};
use reverie_shared::queues::QueueNames;
use reverie_shared::Backends;
use reverie_worker::{run_worker, WorkerContext};
use tokio::sync::watch;

pub use reverie_shared::testing::unique;

/// The real services, with names private to one test.
pub struct RealFarm {
    pub backends: Backends,
    pub queues: QueueNames,
    pub cache_prefix: String,
    pub s3: S3Store,
}

impl RealFarm {
    pub async fn start() -> RealFarm {
        let queue = reverie_shared::testing::amqp().await;
        let cache = reverie_shared::testing::redis().await;
        let s3 = reverie_shared::testing::s3_store("reverie-it").await;
        let queues = QueueNames::new(&unique("reverie-it"));
        let backends = Backends {
            queue: Arc::new(MeteredQueue::new(queue)),
            cache: Arc::new(MeteredCache::new(cache)),
            store: Arc::new(MeteredStore::new(s3.clone())),
        };
        for spec in queues.specs() {
            backends.queue.declare(&spec).await.unwrap();
        }
        RealFarm {
            backends,
            cache_prefix: unique("reverie-it"),
            queues,
            s3,
        }
    }

    /// Deletes the test's queues, cache keys and bucket.
    pub async fn stop(self) {
        for spec in self.queues.specs() {
            let _ = self.backends.queue.delete(&spec.name).await;
        }
        let _ = self.backends.cache.delete_prefix(&self.cache_prefix).await;
        let _ = self.s3.remove_bucket().await;
    }
}

/// A one-step painterly job of `tenant-a`: the `index`-th of `request`, `width`×8 pixels.
pub fn painterly_job(request: &str, index: u32, prompt: &str, width: u32, seed: u64) -> Job {
    let request = RequestId::new(request).unwrap();
    Job {
        spec: JobSpec::Generate(GenerateJob {
            job: JobId::for_request(&request, index),
            request,
            tenant: TenantId::new("tenant-a").unwrap(),
            index,
            render: RenderSpec {
                renderer: RendererKind::Painterly,
                prompt: prompt.to_string(),
                negative_prompt: String::new(),
                style: "impressionist".into(),
                model: None,
                width,
                height: 8,
                steps: 1,
                guidance: 0.0,
                scheduler: None,
                seed,
                strength: 1.0,
                palette_transfer: false,
                identity_strength: 0.0,
                best_of: 1,
                adapters: Default::default(),
            },
            references: Vec::new(),
            output: OutputTarget::default(),
            batch_run: None,
        }),
        attempt: 1,
        priority: Priority::Interactive,
        accepted_ms: 0,
    }
}

/// Publishes `job` on the generate queue as the scheduler does (message id, priority).
pub async fn publish_job(backends: &Backends, queues: &QueueNames, job: &Job) {
    let props = MessageProps {
        message_id: Some(job.spec.id().to_string()),
        priority: job.priority.amqp(),
        ..MessageProps::default()
    };
    let body = envelope::encode_job(job).unwrap();
    backends
        .queue
        .publish(&queues.generate, Message::new(body).with_props(props))
        .await
        .unwrap();
}

/// Runs a worker until the returned sender says stop.
pub fn start_worker(ctx: Arc<WorkerContext>) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let (stop, shutdown) = watch::channel(false);
    let handle = tokio::spawn(async move {
        run_worker(ctx, shutdown).await.expect("worker ran");
    });
    (stop, handle)
}
