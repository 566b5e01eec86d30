//! One contract, two adapters: the local directory and a real S3-compatible server must behave the same.

mod common;

use bytes::Bytes;
use reverie_shared::ports::store::{LocalStore, ObjectStore, StoreError};
use tokio::io::AsyncReadExt;

async fn contract(store: &dyn ObjectStore, other_bucket: &str) {
    other_buckets_are_separate(store, other_bucket).await;
    put_get_head_and_overwrite(store).await;
    put_if_absent_claims_a_key_once(store).await;
    missing_objects(store).await;
    ranges(store).await;
    streaming_reader(store).await;
    listing_is_sorted_and_scoped(store).await;
    multipart_file_upload(store).await;
    deletes(store).await;
    rejects_escaping_keys(store).await;
}

async fn put_get_head_and_overwrite(store: &dyn ObjectStore) {
    store
        .put("a/one.txt", Bytes::from_static(b"first"))
        .await
        .unwrap();
    store
        .put("a/one.txt", Bytes::from_static(b"second"))
        .await
        .unwrap();
    assert_eq!(
        store.get("a/one.txt").await.unwrap(),
        Bytes::from_static(b"second")
    );
    let meta = store
        .head("a/one.txt")
        .await
        .unwrap()
        .expect("object exists");
    assert_eq!(meta.size, 6);
    store.put("a/empty", Bytes::new()).await.unwrap();
    assert_eq!(store.get("a/empty").await.unwrap().len(), 0);
}

/// A conditional put writes only the first time. (Concurrent claims of one key are not raced here:
/// s3s-fs checks and then writes, where AWS S3 decides atomically; the scheduler's per-request intake
/// lock already serialises claims of one request id.)
async fn put_if_absent_claims_a_key_once(store: &dyn ObjectStore) {
    let key = "claims/request.json";
    assert!(store
        .put_if_absent(key, Bytes::from_static(b"first"))
        .await
        .unwrap());
    assert!(!store
        .put_if_absent(key, Bytes::from_static(b"second"))
        .await
        .unwrap());
    assert_eq!(store.get(key).await.unwrap(), Bytes::from_static(b"first"));
}

/// A tenant's own output bucket: same adapter, same credentials, keys not shared with the main store.
async fn other_buckets_are_separate(store: &dyn ObjectStore, other_bucket: &str) {
    let other = store.other_bucket(other_bucket).unwrap();
    assert_eq!(other.backend(), store.backend());
    other
        .put("out/art.png", Bytes::from_static(b"png"))
        .await
        .unwrap();
    assert_eq!(
        other.get("out/art.png").await.unwrap(),
        Bytes::from_static(b"png")
    );
    assert!(store.head("out/art.png").await.unwrap().is_none());
    assert_eq!(other.list("out/").await.unwrap().len(), 1);
    other.delete_prefix("").await.unwrap();
    for bad in ["", "UPPER", "a/b", "..", "-dash"] {
        assert!(
            store.other_bucket(bad).is_err(),
            "bucket {bad:?} is refused"
        );
    }
}

async fn missing_objects(store: &dyn ObjectStore) {
    let error = store.get("nope/missing").await.unwrap_err();
    assert!(matches!(error, StoreError::NotFound { .. }), "{error}");
    assert!(store.head("nope/missing").await.unwrap().is_none());
    assert!(store.reader("nope/missing").await.is_err());
}

async fn ranges(store: &dyn ObjectStore) {
    let body: Vec<u8> = (0..=255u8).collect();
    store
        .put("r/bytes", Bytes::from(body.clone()))
        .await
        .unwrap();
    assert_eq!(
        store.get_range("r/bytes", 10..20).await.unwrap(),
        Bytes::from(body[10..20].to_vec())
    );
    // A range past the end is clipped, as HTTP range requests are.
    assert_eq!(
        store.get_range("r/bytes", 250..300).await.unwrap(),
        Bytes::from(body[250..].to_vec())
    );
    assert!(store.get_range("r/bytes", 5..5).await.unwrap().is_empty());
}

async fn streaming_reader(store: &dyn ObjectStore) {
    let body = vec![7u8; 300_000];
    store
        .put("s/large", Bytes::from(body.clone()))
        .await
        .unwrap();
    let mut reader = store.reader("s/large").await.unwrap();
    let mut chunk = vec![0u8; 4096];
    let mut total = Vec::new();
    loop {
        let n = reader.read(&mut chunk).await.unwrap();
        if n == 0 {
            break;
        }
        total.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(total, body);
}

async fn listing_is_sorted_and_scoped(store: &dyn ObjectStore) {
    for key in ["l/t1/b", "l/t1/a", "l/t1/sub/c", "l/t10/x", "l/t2/y"] {
        store.put(key, Bytes::from_static(b"x")).await.unwrap();
    }
    let keys: Vec<String> = store
        .list("l/t1/")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(keys, ["l/t1/a", "l/t1/b", "l/t1/sub/c"]);
    let keys: Vec<String> = store
        .list("l/t1")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(keys.len(), 4, "a bare prefix matches t1 and t10: {keys:?}");
    assert!(store.list("l/none/").await.unwrap().is_empty());
}

async fn multipart_file_upload(store: &dyn ObjectStore) {
    // 11 MiB: above the test threshold of 5 MiB, so S3 takes it as a three-part upload.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.bin");
    let body: Vec<u8> = (0..11 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &body).unwrap();
    store.put_file("m/big.bin", &path).await.unwrap();
    assert_eq!(
        store.head("m/big.bin").await.unwrap().unwrap().size,
        body.len() as u64
    );
    let tail = store
        .get_range("m/big.bin", 10 * 1024 * 1024..10 * 1024 * 1024 + 16)
        .await
        .unwrap();
    assert_eq!(
        tail.as_ref(),
        &body[10 * 1024 * 1024..10 * 1024 * 1024 + 16]
    );
}

async fn deletes(store: &dyn ObjectStore) {
    store.put("d/t/1", Bytes::from_static(b"1")).await.unwrap();
    store.put("d/t/2", Bytes::from_static(b"2")).await.unwrap();
    store.put("d/keep", Bytes::from_static(b"k")).await.unwrap();
    store.delete("d/t/1").await.unwrap();
    store.delete("d/t/1").await.unwrap();
    assert!(store.head("d/t/1").await.unwrap().is_none());
    assert_eq!(store.delete_prefix("d/t/").await.unwrap(), 1);
    assert!(store.list("d/t/").await.unwrap().is_empty());
    assert!(store.head("d/keep").await.unwrap().is_some());
}

async fn rejects_escaping_keys(store: &dyn ObjectStore) {
    for key in ["../etc/passwd", "/abs", "a//b", "a/./b", ""] {
        let error = store.put(key, Bytes::from_static(b"x")).await.unwrap_err();
        assert!(
            matches!(error, StoreError::InvalidKey { .. }),
            "{key:?}: {error}"
        );
    }
}

#[tokio::test]
async fn local_store_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path().join("store")).unwrap();
    contract(&store, "tenant-outputs").await;
}

#[tokio::test]
async fn s3_store_meets_the_contract() {
    let store = common::s3_store().await;
    let other = common::s3_store().await;
    contract(&store, &other.config().bucket).await;
    other.remove_bucket().await.unwrap();
    store.remove_bucket().await.unwrap();
}

#[tokio::test]
async fn local_store_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    LocalStore::open(dir.path())
        .unwrap()
        .put("k/v", Bytes::from_static(b"kept"))
        .await
        .unwrap();
    let reopened = LocalStore::open(dir.path()).unwrap();
    assert_eq!(
        reopened.get("k/v").await.unwrap(),
        Bytes::from_static(b"kept")
    );
}

#[tokio::test]
async fn unreachable_s3_is_one_clear_error() {
    let mut config = common::s3_config("nobody");
    config.endpoint = Some("http://127.0.0.1:9".into());
    let store = reverie_shared::ports::store::S3Store::connect(config).await;
    let error = store.get("x").await.unwrap_err();
    assert!(error.is_transient(), "{error}");
    let text = error.to_string();
    assert!(
        text.contains("s3") && text.contains("127.0.0.1:9"),
        "{text}"
    );
}
