//! Real services for the contract tests. The test script (scripts/test) starts RabbitMQ, Redis and an
//! S3-compatible server and exports their addresses; run through `cargo test` alone, the defaults point
//! at the usual loopback ports. A service that cannot be reached fails the test with a line saying so.

#![allow(dead_code)]

use reverie_shared::ports::store::{S3Config, S3Store};

pub fn amqp_url() -> String {
    std::env::var("REVERIE_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

pub fn redis_url() -> String {
    std::env::var("REVERIE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub fn s3_endpoint() -> String {
    std::env::var("REVERIE_TEST_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:8014".into())
}

/// A name no other test run uses.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

pub fn s3_config(bucket: &str) -> S3Config {
    S3Config {
        endpoint: Some(s3_endpoint()),
        region: "us-east-1".into(),
        bucket: bucket.into(),
        prefix: String::new(),
        access_key: Some(
            std::env::var("REVERIE_TEST_S3_ACCESS_KEY").unwrap_or_else(|_| "reverie".into()),
        ),
        secret_key: Some(
            std::env::var("REVERIE_TEST_S3_SECRET_KEY").unwrap_or_else(|_| "reverie-secret".into()),
        ),
        path_style: true,
        multipart_threshold: 5 * 1024 * 1024,
    }
}

/// A fresh bucket on the S3 server; the caller removes it at the end.
pub async fn s3_store() -> S3Store {
    let store = S3Store::connect(s3_config(&unique("reverie-test"))).await;
    store.ensure_bucket().await.unwrap_or_else(|e| {
        panic!(
            "S3 server at {} is not reachable (run scripts/test): {e}",
            s3_endpoint()
        )
    });
    store
}
