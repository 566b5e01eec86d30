//! issue #20 (5, review of the ingress surface): what a caller learns from errors, what unknown ids
//! cost, and requests accepted while their tenant is forgotten or its consent revoked. RabbitMQ and
//! Redis, with the embedded store (wrapped where a test needs it to misbehave).

mod common;

use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use common::*;
use reverie_scheduler::client::{ApiAnswer, ApiClient};
use reverie_scheduler::records::JobState;
use reverie_scheduler::replies::{Reply, ReplyBody};
use reverie_scheduler::SchedulerOptions;
use reverie_shared::backends::Backends;
use reverie_shared::ports::store::{
    ObjectMeta, ObjectReader, ObjectStore, SharedStore, StoreError,
};
use tokio::sync::Notify;

/// Status and body of a GET with a bearer token.
async fn get(farm: &Farm, path: &str, token: &str) -> (u16, String) {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let request = hyper::Request::get(format!("{}{path}", farm.base_url()))
        .header("authorization", format!("Bearer {token}"))
        .body(http_body_util::Empty::new())
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// The embedded store with two faults a test can switch on: reads of request records fail with an
/// I/O error naming a server path, and the first write of a request record waits until released.
#[derive(Debug)]
struct Troubled {
    inner: SharedStore,
    failing_reads: AtomicBool,
    park_records: AtomicBool,
    parked: Notify,
    release: Notify,
}

impl Troubled {
    fn new(inner: SharedStore) -> Arc<Troubled> {
        Arc::new(Troubled {
            inner,
            failing_reads: AtomicBool::new(false),
            park_records: AtomicBool::new(false),
            parked: Notify::new(),
            release: Notify::new(),
        })
    }

    fn read_fault(&self, key: &str) -> Result<(), StoreError> {
        if self.failing_reads.load(Ordering::SeqCst) && key.contains("/requests/") {
            return Err(StoreError::Io {
                path: format!("/srv/reverie-secret-data/{key}"),
                source: std::io::Error::other("input/output error on /dev/nvme0n1p3"),
            });
        }
        Ok(())
    }
}

#[async_trait]
impl ObjectStore for Troubled {
    fn backend(&self) -> &'static str {
        "local"
    }
    fn other_bucket(&self, bucket: &str) -> Result<SharedStore, StoreError> {
        self.inner.other_bucket(bucket)
    }
    async fn put(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
        self.inner.put(key, body).await
    }
    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<bool, StoreError> {
        if key.contains("/requests/") && self.park_records.swap(false, Ordering::SeqCst) {
            self.parked.notify_one();
            self.release.notified().await;
        }
        self.inner.put_if_absent(key, body).await
    }
    async fn put_file(&self, key: &str, path: &Path) -> Result<(), StoreError> {
        self.inner.put_file(key, path).await
    }
    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        self.read_fault(key)?;
        self.inner.get(key).await
    }
    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        self.inner.get_range(key, range).await
    }
    async fn reader(&self, key: &str) -> Result<ObjectReader, StoreError> {
        self.inner.reader(key).await
    }
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        self.read_fault(key)?;
        self.inner.head(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
}

async fn troubled_farm() -> (Farm, Arc<Troubled>) {
    let local = local_backends().await;
    let troubled = Troubled::new(local.store.clone());
    let backends = Backends {
        store: troubled.clone(),
        ..local
    };
    (
        Farm::start_on(backends, SchedulerOptions::default()).await,
        troubled,
    )
}

/// An unknown tenant and a known tenant with a wrong secret get the same answer (status, code and
/// message shape), over HTTP and from the authenticator AMQP uses: a caller cannot learn which
/// tenants exist.
#[tokio::test]
async fn an_unknown_tenant_and_a_wrong_secret_look_the_same() {
    let (farm, _) = troubled_farm().await;
    let (tenant, _) = farm.tenant(&unique("real"), true).await;
    let stranger = unique("nobody");
    let (known_status, known_body) = get(
        &farm,
        "/v1/generations/x1",
        &format!("{tenant}:wrong-secret"),
    )
    .await;
    let (unknown_status, unknown_body) = get(
        &farm,
        "/v1/generations/x1",
        &format!("{stranger}:wrong-secret"),
    )
    .await;
    assert_eq!(known_status, unknown_status);
    assert_eq!(
        known_body.replace(tenant.as_str(), "T"),
        unknown_body.replace(&stranger, "T"),
        "the answers differ only in the name the caller sent"
    );
    let known = farm
        .core
        .tenants()
        .authenticate(&format!("{tenant}:wrong-secret"))
        .await
        .unwrap_err();
    let unknown = farm
        .core
        .tenants()
        .authenticate(&format!("{stranger}:wrong-secret"))
        .await
        .unwrap_err();
    assert_eq!(known.code(), unknown.code());
    farm.cleanup().await;
}

/// A backend failure is answered `unavailable` without the backend's error text (store paths,
/// devices, addresses): that goes to the log, not to the tenant.
#[tokio::test]
async fn backend_errors_are_not_shown_to_tenants() {
    let (farm, troubled) = troubled_farm().await;
    let (_tenant, token) = farm.tenant(&unique("leak"), true).await;
    troubled.failing_reads.store(true, Ordering::SeqCst);
    let (status, body) = get(&farm, "/v1/generations/some-request", &token).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("unavailable"), "{body}");
    for secret in [
        "/srv/reverie-secret-data",
        "nvme0n1p3",
        "local store",
        "tenants/",
    ] {
        assert!(!body.contains(secret), "{secret:?} leaked: {body}");
    }
    farm.cleanup().await;
}

/// Asking for the events of a request that does not exist holds nothing: no event stream is kept for
/// an id nobody will ever publish to.
#[tokio::test]
async fn event_streams_of_unknown_requests_hold_nothing() {
    let (farm, _) = troubled_farm().await;
    let (_tenant, token) = farm.tenant(&unique("sse"), true).await;
    let before = farm.core.event_streams();
    for i in 0..20 {
        let (status, _) = get(&farm, &format!("/v1/generations/nope-{i}/events"), &token).await;
        assert_eq!(status, 404);
        let (status, _) = get(&farm, &format!("/v1/generations/nope-{i}"), &token).await;
        assert_eq!(status, 404);
    }
    assert_eq!(
        farm.core.event_streams(),
        before,
        "no stream kept for unknown ids"
    );
    farm.cleanup().await;
}

/// A farm whose record writes park, a tenant with a library, and one submission of theirs that has
/// passed authentication and consent and is parked at its first record write: the moment a forget or
/// a revocation races the acceptance.
struct Race {
    farm: Farm,
    troubled: Arc<Troubled>,
    tenant: reverie_shared::ids::TenantId,
    key: String,
    submit: tokio::task::JoinHandle<Result<ApiAnswer<Reply>, reverie_scheduler::SchedulerError>>,
}

impl Race {
    async fn parked_at_the_first_record_write(name: &str) -> Race {
        let (farm, troubled) = troubled_farm().await;
        let (tenant, token) = farm.tenant(&unique(name), true).await;
        seed_library(&farm, &tenant, &test_library()).await;
        let client = ApiClient::new(&farm.base_url(), &token);
        let key = unique("racing");
        troubled.park_records.store(true, Ordering::SeqCst);
        let submit = {
            let body = request_for(&tenant, "Rex", 1, "interactive");
            let key = key.clone();
            tokio::spawn(async move { client.submit(&body, Some(&key)).await })
        };
        tokio::time::timeout(Duration::from_secs(20), troubled.parked.notified())
            .await
            .expect("the request reached its first record write");
        Race {
            farm,
            troubled,
            tenant,
            key,
            submit,
        }
    }
}

/// A request whose acceptance is under way while its tenant is forgotten does not survive the forget:
/// afterwards there is no record, no open request and nothing of the tenant in the store.
#[tokio::test]
async fn a_request_accepted_while_its_tenant_is_forgotten_does_not_survive() {
    let Race {
        farm,
        troubled,
        tenant,
        key,
        submit,
    } = Race::parked_at_the_first_record_write("forget-race").await;
    let forget = {
        let core = farm.core.clone();
        let tenant = tenant.clone();
        tokio::spawn(async move { core.forget(&tenant).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    troubled.release.notify_one();
    let _answer = submit.await.unwrap();
    forget.await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let record = farm
        .core
        .record(&tenant, &key.parse().unwrap())
        .await
        .unwrap();
    assert!(
        record.is_none(),
        "the request outlived its tenant's forget: {:?}",
        record.map(|r| r.state())
    );
    assert_eq!(farm.core.unfinished_jobs(&tenant), 0);
    let left = farm
        .backends
        .store
        .list(&format!("tenants/{tenant}/"))
        .await
        .unwrap();
    assert!(left.is_empty(), "left behind: {left:?}");
    farm.cleanup().await;
}

/// A request whose acceptance is under way while the consent its photos need is revoked does not keep
/// jobs that use them: it is refused, or its jobs are cancelled like every other request's.
#[tokio::test]
async fn a_request_accepted_while_consent_is_revoked_keeps_no_jobs() {
    let Race {
        farm,
        troubled,
        tenant,
        key,
        submit,
    } = Race::parked_at_the_first_record_write("revoke-race").await;
    let revoke = {
        let core = farm.core.clone();
        let tenant = tenant.clone();
        tokio::spawn(async move { core.revoke_consent(&tenant, "library").await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    troubled.release.notify_one();
    let answer = submit.await.unwrap().unwrap();
    revoke.await.unwrap().unwrap();
    let record = farm
        .core
        .record(&tenant, &key.parse().unwrap())
        .await
        .unwrap();
    match record {
        None => assert!(
            matches!(answer.body.body, ReplyBody::Rejected { .. }),
            "{:?}",
            answer.body
        ),
        Some(record) => assert!(
            record.jobs.iter().all(|j| j.state == JobState::Cancelled),
            "jobs kept after consent was revoked: {:?}",
            record.jobs.iter().map(|j| j.state).collect::<Vec<_>>()
        ),
    }
    assert_eq!(farm.core.unfinished_jobs(&tenant), 0);
    farm.cleanup().await;
}
