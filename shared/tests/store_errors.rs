//! issue #20 (5.2): the store port says which errors are worth a retry. A refusal that no retry can
//! change (403 AccessDenied, a missing bucket, unknown or bad credentials) is not transient; a timeout,
//! a 5xx or throttling is.

use reverie_shared::ports::store::StoreError;

fn s3(detail: &str) -> StoreError {
    StoreError::Backend {
        backend: "s3",
        operation: "put",
        key: "tenants/t/results/r/0.png".into(),
        detail: detail.into(),
    }
}

#[test]
fn refusals_are_not_transient() {
    for detail in [
        "service error: unhandled error (AccessDenied): Error { code: \"AccessDenied\", message: \"Access Denied\" }",
        "service error: NoSuchBucket: The specified bucket does not exist",
        "service error: InvalidAccessKeyId: The AWS Access Key Id you provided does not exist",
        "service error: SignatureDoesNotMatch: The request signature we calculated does not match",
    ] {
        assert!(!s3(detail).is_transient(), "{detail}");
    }
}

#[test]
fn outages_and_throttling_are_transient() {
    for detail in [
        "service error: InternalError: We encountered an internal error (status 500)",
        "service error: ServiceUnavailable (status 503)",
        "service error: SlowDown: Please reduce your request rate",
        "response error: connection reset by peer",
    ] {
        assert!(s3(detail).is_transient(), "{detail}");
    }
    let away = StoreError::Unreachable {
        backend: "s3",
        address: "http://127.0.0.1:1".into(),
        detail: "timed out".into(),
    };
    assert!(away.is_transient());
}

#[test]
fn a_local_store_that_may_not_write_is_not_transient() {
    for kind in [
        std::io::ErrorKind::PermissionDenied,
        std::io::ErrorKind::ReadOnlyFilesystem,
    ] {
        let error = StoreError::Io {
            path: "/data/tenants/t/results/r/0.png".into(),
            source: std::io::Error::from(kind),
        };
        assert!(!error.is_transient(), "{kind:?}");
    }
}

/// The same against a real S3-compatible server (scripts/test's s3s-fs): a wrong secret is a refusal
/// the adapter classifies where it happens. (s3s-fs writes into a bucket it was never asked to create,
/// so the missing-bucket case is covered by `refusals_are_not_transient` with AWS's error text.)
#[tokio::test]
async fn a_real_s3_servers_refusals_are_permanent() {
    use reverie_shared::ports::store::{ObjectStore, S3Store};
    use reverie_shared::testing::s3_config;
    let real = reverie_shared::testing::s3_store("store-errors").await;
    let mut config = s3_config(&real.config().bucket);
    config.secret_key = Some("not-the-secret".into());
    let forged = S3Store::connect(config).await;
    let error = forged
        .put("tenants/t/results/r/0.png", bytes::Bytes::from_static(b"x"))
        .await
        .expect_err("a wrong secret is refused");
    assert!(error.is_permanent(), "{error}");
    assert!(!error.is_transient(), "{error}");
    let _ = real.remove_bucket().await;
}
