//! One contract, two adapters: the in-memory LRU and a real Redis must behave the same.

mod common;

use std::time::Duration;

use bytes::Bytes;
use reverie_shared::ports::cache::{Cache, MemoryCache, RedisCache};

async fn contract(cache: &dyn Cache, prefix: &str) {
    let key = |k: &str| format!("{prefix}:{k}");

    assert!(cache.get(&key("missing")).await.unwrap().is_none());
    cache
        .set(&key("a"), Bytes::from_static(b"1"), None)
        .await
        .unwrap();
    assert_eq!(
        cache.get(&key("a")).await.unwrap(),
        Some(Bytes::from_static(b"1"))
    );
    assert_eq!(cache.ttl(&key("a")).await.unwrap(), None, "no TTL was set");

    // TTLs expire, and report what is left.
    cache
        .set(
            &key("short"),
            Bytes::from_static(b"x"),
            Some(Duration::from_millis(150)),
        )
        .await
        .unwrap();
    let left = cache.ttl(&key("short")).await.unwrap().expect("ttl set");
    assert!(
        left <= Duration::from_millis(150) && left > Duration::from_millis(50),
        "{left:?}"
    );
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(
        cache.get(&key("short")).await.unwrap().is_none(),
        "expired key still readable"
    );

    // Batches keep order and report misses in place.
    let entries = vec![
        (key("b1"), Bytes::from_static(b"one")),
        (key("b2"), Bytes::from_static(b"two")),
    ];
    cache
        .set_many(&entries, Some(Duration::from_secs(60)))
        .await
        .unwrap();
    let got = cache
        .get_many(&[key("b2"), key("nope"), key("b1")])
        .await
        .unwrap();
    assert_eq!(
        got,
        vec![
            Some(Bytes::from_static(b"two")),
            None,
            Some(Bytes::from_static(b"one"))
        ]
    );
    assert!(cache.ttl(&key("b1")).await.unwrap().is_some());
    assert!(cache.get_many(&[]).await.unwrap().is_empty());

    // Counters.
    assert_eq!(
        cache
            .increment(&key("n"), 1, Some(Duration::from_secs(60)))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        cache
            .increment(&key("n"), 2, Some(Duration::from_secs(60)))
            .await
            .unwrap(),
        3
    );

    // Prefix scans and deletions stay inside the prefix.
    let keys = cache.keys(&key("b")).await.unwrap();
    assert_eq!(keys, vec![key("b1"), key("b2")]);
    assert!(cache.delete(&key("a")).await.unwrap());
    assert!(!cache.delete(&key("a")).await.unwrap());
    assert_eq!(cache.delete_prefix(&format!("{prefix}:")).await.unwrap(), 3);
    assert!(cache.keys(&format!("{prefix}:")).await.unwrap().is_empty());

    // Binary values survive unchanged.
    let binary: Vec<u8> = (0..=255u8).collect();
    cache
        .set(&key("bin"), Bytes::from(binary.clone()), None)
        .await
        .unwrap();
    assert_eq!(
        cache.get(&key("bin")).await.unwrap().unwrap().to_vec(),
        binary
    );
    cache.delete_prefix(&format!("{prefix}:")).await.unwrap();
    cache.ping().await.unwrap();
}

#[tokio::test]
async fn memory_cache_meets_the_contract() {
    let cache = MemoryCache::ephemeral(1 << 20);
    contract(&cache, &common::unique("reverie-test")).await;
}

#[tokio::test]
async fn redis_cache_meets_the_contract() {
    let cache = RedisCache::connect(&common::redis_url())
        .await
        .unwrap_or_else(|e| panic!("Redis is not reachable (run scripts/test): {e}"));
    contract(&cache, &common::unique("reverie-test")).await;
}

#[tokio::test]
async fn memory_cache_evicts_least_recently_used_by_bytes() {
    let cache = MemoryCache::ephemeral(3 * (1000 + 40));
    for k in ["a", "b", "c"] {
        cache
            .set(k, Bytes::from(vec![0u8; 1000]), None)
            .await
            .unwrap();
    }
    assert!(cache.get("a").await.unwrap().is_some()); // touch a: b is now the oldest
    cache
        .set("d", Bytes::from(vec![0u8; 1000]), None)
        .await
        .unwrap();
    assert!(
        cache.get("b").await.unwrap().is_none(),
        "b should have been evicted"
    );
    assert!(cache.get("a").await.unwrap().is_some());
    assert!(cache.size_bytes() <= 3 * 1040);
}

#[tokio::test]
async fn memory_cache_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.bin");
    {
        let cache = MemoryCache::open(&path, 1 << 20).unwrap();
        cache
            .set("kept", Bytes::from_static(b"v"), None)
            .await
            .unwrap();
        cache
            .set(
                "gone",
                Bytes::from_static(b"v"),
                Some(Duration::from_millis(1)),
            )
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    let cache = MemoryCache::open(&path, 1 << 20).unwrap();
    assert_eq!(
        cache.get("kept").await.unwrap(),
        Some(Bytes::from_static(b"v"))
    );
    assert!(cache.get("gone").await.unwrap().is_none());
}

#[tokio::test]
async fn unreachable_redis_is_one_clear_error() {
    let error = RedisCache::connect("redis://127.0.0.1:9")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("redis") && error.contains("127.0.0.1:9"),
        "{error}"
    );
}
