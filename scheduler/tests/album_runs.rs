//! Album-to-art runs through the real scheduler: one batch job per album photo, outputs keyed by photo in
//! the output album, a manifest and contact sheet at the end, resumable and idempotent.

mod common;

use common::{reply_of_kind, seed_library, take_job, test_library, unique, Farm};
use reverie_scheduler::replies::ReplyBody;
use reverie_scheduler::SchedulerOptions;
use reverie_shared::jobs::{JobSpec, Priority};

fn album_request(tenant: &str, album: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schema_version": 1,
        "tenant": tenant,
        "prompt": "",
        "n": 1,
        "priority": "batch",
        "kind": "album_to_art",
        "album_to_art": { "album": album, "style": "watercolour", "limit": 100, "to": "Italy in watercolour" },
    }))
    .unwrap()
}

#[tokio::test]
async fn an_album_becomes_art_once_with_a_manifest() {
    let farm = Farm::start(SchedulerOptions::default()).await;
    let name = unique("album");
    let (tenant, token) = farm.tenant(&name, true).await;
    let library = test_library();
    let album_photos: Vec<String> = library
        .photos
        .iter()
        .filter(|p| p.albums.iter().any(|a| a == "Italy 2023"))
        .map(|p| p.photo.to_string())
        .collect();
    assert!(
        album_photos.len() >= 2,
        "the test library has an album of several photos"
    );
    seed_library(&farm, &tenant, &library).await;
    let (reply_to, mut replies) = farm.reply_queue_for(&tenant).await;
    let mut jobs = farm
        .backends
        .queue
        .consume(&farm.queues().generate, 50)
        .await
        .unwrap();

    let run_id = unique("run");
    farm.publish_request(
        &album_request(tenant.as_str(), "italy 2023"),
        Some(&run_id),
        Some(&token),
        &reply_to,
    )
    .await;
    let accepted = reply_of_kind(&mut replies, "accepted").await;
    let ReplyBody::Accepted { jobs: job_ids, .. } = accepted.body else {
        unreachable!()
    };
    assert_eq!(job_ids.len(), album_photos.len(), "one job per album photo");

    let mut painted = Vec::new();
    for _ in 0..album_photos.len() {
        let (job, delivery) = take_job(&mut jobs).await;
        let JobSpec::Generate(spec) = &job.spec else {
            panic!("generate job expected")
        };
        assert_eq!(job.priority, Priority::Batch, "album runs are batch work");
        assert_eq!(spec.render.style, "watercolour");
        assert_eq!(spec.references.len(), 1);
        let destination = spec.output.destination.clone().unwrap();
        assert!(
            destination.ends_with("/albums/italy-in-watercolour"),
            "{destination}"
        );
        assert_eq!(
            spec.output.name.as_deref(),
            Some(spec.references[0].photo.as_str())
        );
        painted.push(spec.references[0].photo.to_string());
        common::complete_job(&farm, &job, delivery).await;
    }
    painted.sort();
    let mut expected = album_photos.clone();
    expected.sort();
    assert_eq!(painted, expected, "every album photo, once");
    reply_of_kind(&mut replies, "done").await;

    let prefix = format!("tenants/{tenant}/albums/italy-in-watercolour/");
    let manifest_key = format!("{prefix}manifest.json");
    let mut manifest = None;
    for _ in 0..50 {
        if let Ok(bytes) = farm.backends.store.get(&manifest_key).await {
            manifest = Some(serde_json::from_slice::<serde_json::Value>(&bytes).unwrap());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let manifest = manifest.expect("the run ends with a manifest");
    assert_eq!(manifest["done"], album_photos.len());
    assert_eq!(
        manifest["photos"].as_array().unwrap().len(),
        album_photos.len()
    );

    // Resuming (the same run id again) makes no new jobs.
    farm.publish_request(
        &album_request(tenant.as_str(), "italy 2023"),
        Some(&run_id),
        Some(&token),
        &reply_to,
    )
    .await;
    let again = reply_of_kind(&mut replies, "accepted").await;
    assert!(matches!(
        again.body,
        ReplyBody::Accepted {
            duplicate: true,
            ..
        }
    ));
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(500), jobs.next())
            .await
            .is_err()
    );

    // An unknown album is refused with the closest names.
    farm.publish_request(
        &album_request(tenant.as_str(), "Itlay 2023"),
        None,
        Some(&token),
        &reply_to,
    )
    .await;
    let rejected = reply_of_kind(&mut replies, "rejected").await;
    let ReplyBody::Rejected { reasons } = rejected.body else {
        unreachable!()
    };
    assert_eq!(reasons[0].code, "unknown_album");
    assert!(
        reasons[0].suggestions.iter().any(|s| s == "Italy 2023"),
        "{reasons:?}"
    );

    let _ = farm.core.forget(&tenant).await;
    drop((replies, jobs));
    farm.cleanup().await;
}

/// A store that refuses the album's manifest and contact sheet (403 AccessDenied, as S3 answers a
/// bucket policy that denies the writes).
#[derive(Debug)]
struct AlbumWritesRefused {
    inner: reverie_shared::ports::store::SharedStore,
}

impl AlbumWritesRefused {
    fn check(&self, key: &str) -> Result<(), reverie_shared::ports::store::StoreError> {
        if key.contains("/albums/")
            && (key.ends_with("manifest.json") || key.ends_with("contact-sheet.png"))
        {
            return Err(reverie_shared::ports::store::StoreError::Backend {
                backend: "s3",
                operation: "put",
                key: key.to_string(),
                detail: "service error: unhandled error (AccessDenied): Access Denied (status 403)"
                    .into(),
            });
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl reverie_shared::ports::store::ObjectStore for AlbumWritesRefused {
    fn backend(&self) -> &'static str {
        "test"
    }
    fn other_bucket(
        &self,
        bucket: &str,
    ) -> Result<reverie_shared::ports::store::SharedStore, reverie_shared::ports::store::StoreError>
    {
        self.inner.other_bucket(bucket)
    }
    async fn put(
        &self,
        key: &str,
        body: bytes::Bytes,
    ) -> Result<(), reverie_shared::ports::store::StoreError> {
        self.check(key)?;
        self.inner.put(key, body).await
    }
    async fn put_if_absent(
        &self,
        key: &str,
        body: bytes::Bytes,
    ) -> Result<bool, reverie_shared::ports::store::StoreError> {
        self.check(key)?;
        self.inner.put_if_absent(key, body).await
    }
    async fn put_file(
        &self,
        key: &str,
        path: &std::path::Path,
    ) -> Result<(), reverie_shared::ports::store::StoreError> {
        self.check(key)?;
        self.inner.put_file(key, path).await
    }
    async fn get(
        &self,
        key: &str,
    ) -> Result<bytes::Bytes, reverie_shared::ports::store::StoreError> {
        self.inner.get(key).await
    }
    async fn get_range(
        &self,
        key: &str,
        range: std::ops::Range<u64>,
    ) -> Result<bytes::Bytes, reverie_shared::ports::store::StoreError> {
        self.inner.get_range(key, range).await
    }
    async fn reader(
        &self,
        key: &str,
    ) -> Result<reverie_shared::ports::store::ObjectReader, reverie_shared::ports::store::StoreError>
    {
        self.inner.reader(key).await
    }
    async fn head(
        &self,
        key: &str,
    ) -> Result<
        Option<reverie_shared::ports::store::ObjectMeta>,
        reverie_shared::ports::store::StoreError,
    > {
        self.inner.head(key).await
    }
    async fn list(
        &self,
        prefix: &str,
    ) -> Result<
        Vec<reverie_shared::ports::store::ObjectMeta>,
        reverie_shared::ports::store::StoreError,
    > {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<(), reverie_shared::ports::store::StoreError> {
        self.inner.delete(key).await
    }
}

/// issue #20 (5.2): a store that refuses the album's manifest for good does not keep the run's final
/// event in a requeue loop (every 500 ms, forever, with no final reply): the run finishes and is
/// answered `done`; the refusal is logged.
#[tokio::test]
async fn an_album_whose_manifest_the_store_refuses_still_finishes() {
    let local = common::local_backends().await;
    let backends = reverie_shared::backends::Backends {
        store: std::sync::Arc::new(AlbumWritesRefused {
            inner: local.store.clone(),
        }),
        ..local
    };
    let farm = Farm::start_on(backends, SchedulerOptions::default()).await;
    let (tenant, token) = farm.tenant(&unique("album-denied"), true).await;
    seed_library(&farm, &tenant, &test_library()).await;
    let (reply_to, mut replies) = farm.reply_queue_for(&tenant).await;
    let mut jobs = farm
        .backends
        .queue
        .consume(&farm.queues().generate, 50)
        .await
        .unwrap();
    farm.publish_request(
        &album_request(tenant.as_str(), "italy 2023"),
        Some(&unique("run")),
        Some(&token),
        &reply_to,
    )
    .await;
    let accepted = reply_of_kind(&mut replies, "accepted").await;
    let ReplyBody::Accepted { jobs: job_ids, .. } = accepted.body else {
        unreachable!()
    };
    for _ in 0..job_ids.len() {
        let (job, delivery) = take_job(&mut jobs).await;
        common::complete_job(&farm, &job, delivery).await;
    }
    let done = reply_of_kind(&mut replies, "done").await;
    assert!(matches!(done.body, ReplyBody::Done { .. }), "{done:?}");
    drop((replies, jobs));
    farm.cleanup().await;
}
