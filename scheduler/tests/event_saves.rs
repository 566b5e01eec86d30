//! A worker's event changes a request's record only once the change is saved: when the save fails the
//! event is requeued, and its redelivery must find the record as it was and apply the event in full
//! (durable result, provenance, final reply once, out of the open log). Real RabbitMQ, Redis and S3.

mod common;

use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use common::*;
use reverie_scheduler::records::{request_key, JobState, RequestRecord};
use reverie_scheduler::replies::ReplyBody;
use reverie_scheduler::SchedulerOptions;
use reverie_shared::backends::Backends;
use reverie_shared::envelope;
use reverie_shared::ids::RequestId;
use reverie_shared::jobs::{JobEvent, JobSpec};
use reverie_shared::ports::queue::Message;
use reverie_shared::ports::store::{
    ObjectMeta, ObjectReader, ObjectStore, SharedStore, StoreError,
};

/// A store whose writes of request records fail while `failing` is set (an S3 outage, narrowed to the
/// one write the test is about).
#[derive(Debug)]
struct RecordWritesFail {
    inner: SharedStore,
    failing: Arc<AtomicBool>,
}

impl RecordWritesFail {
    /// Fails a write of a request record while the test says so.
    fn refuse_record_writes(&self, key: &str) -> Result<(), StoreError> {
        if self.failing.load(Ordering::SeqCst) && key.contains("/requests/") {
            return Err(StoreError::Unreachable {
                backend: "test",
                address: "nowhere".into(),
                detail: "record writes are failing in this test".into(),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl ObjectStore for RecordWritesFail {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn other_bucket(&self, bucket: &str) -> Result<SharedStore, StoreError> {
        self.inner.other_bucket(bucket)
    }
    async fn put(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
        self.refuse_record_writes(key)?;
        self.inner.put(key, body).await
    }
    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<bool, StoreError> {
        self.refuse_record_writes(key)?;
        self.inner.put_if_absent(key, body).await
    }
    async fn put_file(&self, key: &str, path: &Path) -> Result<(), StoreError> {
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

async fn stored_record(farm: &Farm, key: &str) -> RequestRecord {
    let bytes = farm.backends.store.get(key).await.unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn a_result_whose_save_failed_applies_in_full_when_redelivered() {
    let real = backends().await;
    let failing = Arc::new(AtomicBool::new(false));
    let store: SharedStore = Arc::new(RecordWritesFail {
        inner: real.store.clone(),
        failing: failing.clone(),
    });
    let farm = Farm::start_on(
        Backends {
            store,
            ..real.clone()
        },
        SchedulerOptions::default(),
    )
    .await;
    let (tenant, token) = farm.tenant(&unique("saves"), true).await;
    seed_library(&farm, &tenant, &test_library()).await;
    let (reply_to, mut replies) = farm.reply_queue_for(&tenant).await;
    let body = serde_json::to_vec(&request_for(&tenant, "me in Lisbon", 1, "interactive")).unwrap();
    let request = unique("req");
    farm.publish_request(&body, Some(&request), Some(&token), &reply_to)
        .await;
    let accepted = reply_of_kind(&mut replies, "accepted").await;
    assert!(matches!(accepted.body, ReplyBody::Accepted { .. }));

    let mut worker = farm
        .backends
        .queue
        .consume(&farm.queues().generate, 1)
        .await
        .unwrap();
    let (job, delivery) = take_job(&mut worker).await;
    let JobSpec::Generate(spec) = &job.spec else {
        panic!("generate job expected")
    };
    let outputs = vec![format!(
        "tenants/{}/results/{}/0.png",
        spec.tenant, spec.request
    )];
    let succeeded = JobEvent::Succeeded {
        job: spec.job.clone(),
        tenant: spec.tenant.clone(),
        outputs: outputs.clone(),
        render_ms: 3,
        identity: None,
    };
    let request_id = RequestId::new(request.clone()).unwrap();
    let key = request_key(&tenant, &request_id);

    // The save fails: the event is not applied, not even in memory.
    failing.store(true, Ordering::SeqCst);
    let error = farm.core.handle_event(succeeded.clone()).await;
    assert!(error.is_err(), "a failed save fails the event");
    let followed = farm
        .core
        .record(&tenant, &request_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(followed.jobs[0].state, JobState::Queued, "{followed:?}");
    assert!(followed.jobs[0].outputs.is_empty());
    assert!(!followed.final_reply_sent);
    assert_eq!(farm.core.unfinished_jobs(&tenant), 1);

    // The redelivery applies it in full.
    failing.store(false, Ordering::SeqCst);
    farm.core.handle_event(succeeded.clone()).await.unwrap();
    let done = reply_of_kind(&mut replies, "done").await;
    assert_eq!(done.request_id.as_deref(), Some(request.as_str()));
    let stored = stored_record(&farm, &key).await;
    assert_eq!(stored.jobs[0].state, JobState::Succeeded);
    assert_eq!(stored.jobs[0].outputs, outputs);
    assert!(stored.final_reply_sent);
    assert!(
        !farm.core.records().open_log().is_open(&tenant, &request_id),
        "a finished request leaves the open log"
    );
    let photo = spec.references[0].photo.as_str();
    let provenance = farm
        .core
        .records()
        .outputs_of_photo(&tenant, photo)
        .await
        .unwrap();
    assert!(
        provenance.iter().any(|p| p.outputs == outputs),
        "{provenance:?}"
    );
    assert_eq!(farm.core.unfinished_jobs(&tenant), 0);

    // A third copy changes nothing and sends no second final reply.
    farm.core.handle_event(succeeded).await.unwrap();
    let again = tokio::time::timeout(std::time::Duration::from_millis(500), replies.next()).await;
    assert!(
        again.is_err(),
        "no reply after the final one: {:?}",
        again.map(|d| d.map(|d| String::from_utf8_lossy(d.body()).to_string()))
    );
    delivery.ack().await.unwrap();
    drop(worker);
    farm.cleanup().await;
}

/// A worker reports a render batch's results in one message (envelope version 2): each request they
/// belong to finishes, with its own final reply, and the message is acked once.
#[tokio::test]
async fn a_batch_of_results_in_one_message_finishes_each_request() {
    let farm = Farm::start_on(backends().await, SchedulerOptions::default()).await;
    let (tenant, token) = farm.tenant(&unique("batched"), true).await;
    seed_library(&farm, &tenant, &test_library()).await;
    let (reply_to, mut replies) = farm.reply_queue_for(&tenant).await;
    let body = serde_json::to_vec(&request_for(&tenant, "me in Lisbon", 1, "interactive")).unwrap();
    let requests = [unique("req-a"), unique("req-b")];
    for request in &requests {
        farm.publish_request(&body, Some(request), Some(&token), &reply_to)
            .await;
        reply_of_kind(&mut replies, "accepted").await;
    }
    let mut worker = farm
        .backends
        .queue
        .consume(&farm.queues().generate, 2)
        .await
        .unwrap();
    let mut events = Vec::new();
    let mut deliveries = Vec::new();
    for _ in &requests {
        let (job, delivery) = take_job(&mut worker).await;
        let JobSpec::Generate(spec) = &job.spec else {
            panic!("generate job expected")
        };
        events.push(JobEvent::Succeeded {
            job: spec.job.clone(),
            tenant: spec.tenant.clone(),
            outputs: vec![format!("tenants/{tenant}/results/{}/0.png", spec.request)],
            render_ms: 2,
            identity: None,
        });
        deliveries.push(delivery);
    }
    let message = envelope::encode_events(&events).unwrap();
    assert_eq!(message[0], envelope::EVENT_BATCH_VERSION);
    farm.backends
        .queue
        .publish(&farm.queues().events, Message::new(message))
        .await
        .unwrap();
    let mut done = Vec::new();
    for _ in &requests {
        let reply = reply_of_kind(&mut replies, "done").await;
        done.push(reply.request_id.unwrap());
    }
    done.sort();
    let mut expected = requests.to_vec();
    expected.sort();
    assert_eq!(done, expected);
    for request in &requests {
        let id = RequestId::new(request.clone()).unwrap();
        let stored = stored_record(&farm, &request_key(&tenant, &id)).await;
        assert_eq!(stored.jobs[0].state, JobState::Succeeded);
        assert!(!farm.core.records().open_log().is_open(&tenant, &id));
    }
    for delivery in deliveries {
        delivery.ack().await.unwrap();
    }
    drop(worker);
    farm.cleanup().await;
}
