//! issue #20 (5.2, 5.3) with the embedded adapters: a store that refuses for good fails the job once
//! (dead-lettered with the reason) instead of re-rendering it forever; an outage is retried a bounded
//! number of times; and a final failure is settled only once its `Failed` event is confirmed.

mod common;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use image::RgbImage;
use reverie_shared::config::{RetrySettings, WorkerSettings};
use reverie_shared::envelope;
use reverie_shared::jobs::{Job, JobEvent, RendererKind};
use reverie_shared::ports::cache::MemoryCache;
use reverie_shared::ports::queue::{
    dead_queue_name, Consumer, JobQueue, MemoryQueue, Message, QueueError, QueueSpec, SharedQueue,
    DEAD_REASON_HEADER,
};
use reverie_shared::ports::store::{
    LocalStore, ObjectMeta, ObjectReader, ObjectStore, SharedStore, StoreError,
};
use reverie_shared::queues::QueueNames;
use reverie_shared::testing::unique;
use reverie_shared::Backends;
use reverie_worker::render::{Progress, RenderError, RenderRequest, RenderedImage, Renderer};
use reverie_worker::{Renderers, WorkerContext};

/// Renders a flat image; the prompt `invalid` is refused for good. Counts its render passes.
#[derive(Default)]
struct CountingRenderer {
    renders: AtomicU32,
}

impl Renderer for CountingRenderer {
    fn kind(&self) -> RendererKind {
        RendererKind::Painterly
    }

    fn render_batch(
        &self,
        requests: &[RenderRequest],
        _progress: Progress<'_>,
    ) -> Vec<Result<RenderedImage, RenderError>> {
        requests
            .iter()
            .map(|request| {
                self.renders.fetch_add(1, Ordering::SeqCst);
                if request.spec.prompt == "invalid" {
                    return Err(RenderError::Invalid("unknown style".into()));
                }
                Ok(RenderedImage {
                    image: RgbImage::from_pixel(8, 8, image::Rgb([9, 9, 9])),
                    model_hash: None,
                    details: BTreeMap::new(),
                    computed_image_prompt: None,
                })
            })
            .collect()
    }
}

/// How the store fails the writes of results.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// What S3 answers a bucket policy that denies writes: 403 AccessDenied.
    AccessDenied,
    /// The store is away (connection refused) for as long as the test runs.
    Unreachable,
}

/// The embedded store, with result writes failing the way `fault` says.
#[derive(Debug)]
struct FailingStore {
    inner: SharedStore,
    fault: Fault,
}

impl FailingStore {
    fn check(&self, key: &str) -> Result<(), StoreError> {
        if !key.contains("/results/") {
            return Ok(());
        }
        Err(match self.fault {
            // Exactly what the S3 adapter made of a 403 before errors were classified.
            Fault::AccessDenied => StoreError::Backend {
                backend: "s3",
                operation: "put",
                key: key.to_string(),
                detail: "service error: unhandled error (AccessDenied): Error { code: \"AccessDenied\", message: \"Access Denied\" } (status 403)".into(),
            },
            Fault::Unreachable => StoreError::Unreachable {
                backend: "s3",
                address: "http://127.0.0.1:1".into(),
                detail: "connection refused".into(),
            },
        })
    }
}

#[async_trait]
impl ObjectStore for FailingStore {
    fn backend(&self) -> &'static str {
        "test"
    }
    fn other_bucket(&self, bucket: &str) -> Result<SharedStore, StoreError> {
        self.inner.other_bucket(bucket)
    }
    async fn put(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
        self.check(key)?;
        self.inner.put(key, body).await
    }
    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<bool, StoreError> {
        self.check(key)?;
        self.inner.put_if_absent(key, body).await
    }
    async fn put_file(&self, key: &str, path: &Path) -> Result<(), StoreError> {
        self.check(key)?;
        self.inner.put_file(key, path).await
    }
    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        self.inner.get(key).await
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        self.inner.get_range(key, range).await
    }
    async fn reader(&self, key: &str) -> Result<ObjectReader, StoreError> {
        self.inner.reader(key).await
    }
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        self.inner.head(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
}

/// The embedded queue, whose publishes to `events` are not confirmed while `failing` is set.
#[derive(Debug)]
struct FlakyEvents {
    inner: MemoryQueue,
    events: String,
    failing: Arc<AtomicBool>,
}

#[async_trait]
impl JobQueue for FlakyEvents {
    fn backend(&self) -> &'static str {
        "memory"
    }
    async fn declare(&self, spec: &QueueSpec) -> Result<(), QueueError> {
        self.inner.declare(spec).await
    }
    async fn publish(&self, queue: &str, message: Message) -> Result<(), QueueError> {
        if queue == self.events && self.failing.load(Ordering::SeqCst) {
            return Err(QueueError::NotConfirmed {
                queue: queue.to_string(),
            });
        }
        self.inner.publish(queue, message).await
    }
    async fn consume(&self, queue: &str, prefetch: u16) -> Result<Box<dyn Consumer>, QueueError> {
        self.inner.consume(queue, prefetch).await
    }
    async fn depth(&self, queue: &str) -> Result<u64, QueueError> {
        self.inner.depth(queue).await
    }
    async fn delete(&self, queue: &str) -> Result<(), QueueError> {
        self.inner.delete(queue).await
    }
    async fn ping(&self) -> Result<(), QueueError> {
        self.inner.ping().await
    }
    async fn claim(&self, name: &str) -> Result<bool, QueueError> {
        self.inner.claim(name).await
    }
    async fn release_claim(&self, name: &str) -> Result<(), QueueError> {
        self.inner.release_claim(name).await
    }
}

struct Embedded {
    backends: Backends,
    queues: QueueNames,
    events_failing: Arc<AtomicBool>,
    renderer: Arc<CountingRenderer>,
}

async fn embedded(fault: Option<Fault>) -> Embedded {
    let queues = QueueNames::new(&unique("store-faults"));
    let events_failing = Arc::new(AtomicBool::new(false));
    let queue: SharedQueue = Arc::new(FlakyEvents {
        inner: MemoryQueue::ephemeral(),
        events: queues.events.clone(),
        failing: events_failing.clone(),
    });
    let root = std::env::temp_dir().join(unique("store-faults"));
    std::fs::create_dir_all(&root).unwrap();
    let local: SharedStore = Arc::new(LocalStore::open(root).unwrap());
    let store: SharedStore = match fault {
        Some(fault) => Arc::new(FailingStore {
            inner: local,
            fault,
        }),
        None => local,
    };
    let backends = Backends {
        queue,
        cache: Arc::new(MemoryCache::ephemeral(1 << 20)),
        store,
    };
    for spec in queues.specs() {
        backends.queue.declare(&spec).await.unwrap();
    }
    Embedded {
        backends,
        queues,
        events_failing,
        renderer: Arc::new(CountingRenderer::default()),
    }
}

fn settings() -> WorkerSettings {
    WorkerSettings {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        batch_max: 1,
        batch_wait_ms: 0,
        started_after_ms: 10_000,
        max_attempts: 3,
        max_deliveries: 3,
        drain_grace_s: 5,
        heartbeat_s: 1,
        preview_interval_ms: 0,
        ..WorkerSettings::default()
    }
}

fn context(farm: &Embedded, settings: WorkerSettings) -> Arc<WorkerContext> {
    Arc::new(WorkerContext {
        worker_id: unique("w"),
        backends: farm.backends.clone(),
        queues: farm.queues.clone(),
        settings,
        retry: RetrySettings {
            initial_ms: 20,
            max_ms: 100,
            max_attempts: 0,
        },
        cache_prefix: unique("store-faults"),
        renderers: Renderers::default().with(farm.renderer.clone()),
        photo_cache: None,
        analyser: None,
        event_routes: Default::default(),
    })
}

/// The next `Failed` event on the events queue within `wait`, or `None`.
fn job(request: &str, prompt: &str) -> Job {
    common::painterly_job(request, 0, prompt, 8, 7)
}

async fn publish(farm: &Embedded, job: &Job) {
    common::publish_job(&farm.backends, &farm.queues, job).await
}

use common::start_worker as start;

async fn next_failed(consumer: &mut Box<dyn Consumer>, wait: Duration) -> Option<JobEvent> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let delivery = match tokio::time::timeout(left, consumer.next()).await {
            Ok(Ok(delivery)) => delivery,
            _ => return None,
        };
        let events = envelope::decode_events(delivery.body()).unwrap();
        delivery.ack().await.unwrap();
        if let Some(failed) = events
            .into_iter()
            .find(|e| matches!(e, JobEvent::Failed { .. }))
        {
            return Some(failed);
        }
    }
}

/// The dead-letter reason of the next dead letter of the generation queue within `wait`.
async fn dead_reason(farm: &Embedded, wait: Duration) -> Option<String> {
    let mut dead = farm
        .backends
        .queue
        .consume(&dead_queue_name(&farm.queues.generate), 10)
        .await
        .unwrap();
    let letter = tokio::time::timeout(wait, dead.next()).await.ok()?.ok()?;
    let reason = letter.props().headers.get(DEAD_REASON_HEADER).cloned();
    letter.ack().await.unwrap();
    reason
}

/// A store that refuses the worker's writes (403 AccessDenied: a bucket policy, a revoked key) fails
/// the job at once: one `Failed` event naming the refusal, and a dead letter with reason
/// `store_refused`. It used to be taken for an outage and re-rendered and republished forever.
#[tokio::test]
async fn a_store_that_refuses_writes_fails_the_job_once_and_dead_letters_it() {
    let farm = embedded(Some(Fault::AccessDenied)).await;
    let mut events = farm
        .backends
        .queue
        .consume(&farm.queues.events, 50)
        .await
        .unwrap();
    publish(&farm, &job("denied", "a lighthouse")).await;
    let (stop, handle) = start(context(&farm, settings()));
    let failed = next_failed(&mut events, Duration::from_secs(10))
        .await
        .expect("a Failed event for a job whose outputs the store refuses");
    let JobEvent::Failed {
        reason, retryable, ..
    } = &failed
    else {
        unreachable!()
    };
    assert!(!retryable, "{failed:?}");
    assert!(reason.contains("AccessDenied"), "{reason}");
    assert_eq!(
        dead_reason(&farm, Duration::from_secs(5)).await.as_deref(),
        Some("store_refused")
    );
    assert_eq!(
        farm.renderer.renders.load(Ordering::SeqCst),
        1,
        "rendered once, not again and again"
    );
    stop.send(true).unwrap();
    handle.await.unwrap();
}

/// A final failure is settled only once its `Failed` event is confirmed: while the events queue does
/// not confirm, the job is not dead-lettered (it is requeued and tried again); once the queue confirms,
/// the event is published and then the job is dead-lettered.
#[tokio::test]
async fn a_final_failure_is_not_settled_until_its_failed_event_is_confirmed() {
    let farm = embedded(None).await;
    let mut events = farm
        .backends
        .queue
        .consume(&farm.queues.events, 50)
        .await
        .unwrap();
    farm.events_failing.store(true, Ordering::SeqCst);
    publish(&farm, &job("unheard", "invalid")).await;
    let (stop, handle) = start(context(&farm, settings()));
    // Long enough for several tries of the event and a redelivery or two.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        farm.renderer.renders.load(Ordering::SeqCst) >= 1,
        "the job was tried"
    );
    let dead = farm
        .backends
        .queue
        .depth(&dead_queue_name(&farm.queues.generate))
        .await
        .unwrap();
    assert_eq!(
        dead, 0,
        "the job was dead-lettered although its Failed event was never confirmed"
    );
    farm.events_failing.store(false, Ordering::SeqCst);
    let failed = next_failed(&mut events, Duration::from_secs(15))
        .await
        .expect("the Failed event once the events queue confirms");
    assert!(matches!(
        failed,
        JobEvent::Failed {
            retryable: false,
            ..
        }
    ));
    let reason = dead_reason(&farm, Duration::from_secs(10))
        .await
        .expect("dead-lettered after its event was confirmed");
    assert!(["invalid", "poison"].contains(&reason.as_str()), "{reason}");
    stop.send(true).unwrap();
    handle.await.unwrap();
}

/// An outage of the store delays a job but not forever: after `worker.max_outage_retries` republishes
/// (the attempt does not advance for an outage) it is reported and dead-lettered `retries_exhausted`.
#[tokio::test]
async fn an_outage_is_waited_out_a_bounded_number_of_times() {
    let farm = embedded(Some(Fault::Unreachable)).await;
    let mut events = farm
        .backends
        .queue
        .consume(&farm.queues.events, 50)
        .await
        .unwrap();
    publish(&farm, &job("outage", "a lighthouse")).await;
    let settings = WorkerSettings {
        max_outage_retries: 3,
        ..settings()
    };
    let (stop, handle) = start(context(&farm, settings));
    let failed = next_failed(&mut events, Duration::from_secs(20))
        .await
        .expect("a Failed event once the outage retries are spent");
    let JobEvent::Failed { reason, .. } = &failed else {
        unreachable!()
    };
    assert!(reason.contains("3 retries"), "{reason}");
    assert_eq!(
        dead_reason(&farm, Duration::from_secs(5)).await.as_deref(),
        Some("retries_exhausted")
    );
    // The first try and three retries.
    assert_eq!(farm.renderer.renders.load(Ordering::SeqCst), 4);
    stop.send(true).unwrap();
    handle.await.unwrap();
}
