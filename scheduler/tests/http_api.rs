//! The HTTP API end to end: submit with an idempotency key, status, cancel, refine, server-sent
//! events, provenance, OpenAPI and the operations endpoints.

mod common;

use std::time::Duration;

use common::*;
use hyper::StatusCode;
use reverie_scheduler::client::ApiClient;
use reverie_scheduler::records::JobState;
use reverie_scheduler::replies::ReplyBody;
use reverie_scheduler::SchedulerOptions;
use reverie_shared::jobs::{JobSpec, ReferenceRole};

#[tokio::test]
async fn submit_status_cancel_and_refine_over_http() {
    let farm = Farm::start(SchedulerOptions::default()).await;
    let (tenant, token) = farm.tenant(&unique("http"), true).await;
    seed_library(&farm, &tenant, &test_library()).await;
    let client = ApiClient::new(&farm.base_url(), &token);
    let key = unique("req");
    let body = request_for(&tenant, "me at sunset in Lisbon", 1, "interactive");
    let first = client.submit(&body, Some(&key)).await.unwrap();
    assert_eq!(first.status, StatusCode::ACCEPTED, "{:?}", first.body);
    let again = client.submit(&body, Some(&key)).await.unwrap();
    assert_eq!(again.status, StatusCode::OK);
    assert!(matches!(
        again.body.body,
        ReplyBody::Accepted {
            duplicate: true,
            ..
        }
    ));

    let mut worker = farm
        .backends
        .queue
        .consume(&farm.queues().generate, 4)
        .await
        .unwrap();
    let (job, delivery) = take_job(&mut worker).await;
    let JobSpec::Generate(parent_spec) = job.spec.clone() else {
        panic!()
    };
    let outputs = complete_job(&farm, &job, delivery).await;
    let status = client
        .wait(&key, Duration::from_millis(50), Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(status.state, JobState::Succeeded);
    assert_eq!(status.jobs[0].outputs, outputs);

    // Provenance: the output is listed under the photo it was made from.
    let used = parent_spec
        .references
        .iter()
        .find(|r| r.role == ReferenceRole::Subject)
        .unwrap()
        .photo
        .clone();
    let listed = reqwest_like_get(&farm, &format!("/v1/photos/{used}/outputs"), &token).await;
    assert!(listed.contains(&key), "{listed}");

    // Refine: "at night" changes only the light; the subject and the seed are kept.
    let refine_key = unique("refine");
    let refined = client
        .refine(
            &key,
            &request_for(&tenant, "at night", 1, "interactive"),
            Some(&refine_key),
        )
        .await
        .unwrap();
    assert_eq!(refined.status, StatusCode::ACCEPTED, "{:?}", refined.body);
    let (child, delivery) = take_job(&mut worker).await;
    let JobSpec::Generate(child_spec) = &child.spec else {
        panic!()
    };
    assert_eq!(
        child_spec.render.seed, parent_spec.render.seed,
        "the parent's seed"
    );
    assert!(child_spec
        .references
        .iter()
        .any(|r| r.role == ReferenceRole::Subject && r.photo == used));
    delivery.ack().await.unwrap();
    let status = client.status(&refine_key).await.unwrap().unwrap();
    assert_eq!(status.parent.as_deref(), Some(key.as_str()));

    // Cancel: a queued job is cancelled, and its late outputs are deleted, not delivered.
    let cancel_key = unique("cancel");
    client
        .submit(
            &request_for(&tenant, "Rex on the beach", 1, "interactive"),
            Some(&cancel_key),
        )
        .await
        .unwrap();
    let cancelled = client.cancel(&cancel_key).await.unwrap().unwrap();
    assert_eq!(cancelled.state, JobState::Cancelled);
    let (late, delivery) = take_job(&mut worker).await;
    let late_outputs = complete_job(&farm, &late, delivery).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    for key in &late_outputs {
        assert!(
            farm.backends.store.head(key).await.unwrap().is_none(),
            "{key} should be deleted"
        );
    }
    assert_eq!(
        client.status(&cancel_key).await.unwrap().unwrap().state,
        JobState::Cancelled
    );
    let missing = client.status("no-such-request").await.unwrap().unwrap_err();
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    farm.cleanup().await;
}

/// A bearer GET returning the body as text.
async fn reqwest_like_get(farm: &Farm, path: &str, token: &str) -> String {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let request = hyper::Request::get(format!("{}{path}", farm.base_url()))
        .header("authorization", format!("Bearer {token}"))
        .body(http_body_util::Empty::new())
        .unwrap();
    let response = client.request(request).await.unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[tokio::test]
async fn events_stream_ends_with_done_and_ops_endpoints_answer() {
    let farm = Farm::start(SchedulerOptions::default()).await;
    let (tenant, token) = farm.tenant(&unique("sse"), true).await;
    seed_library(&farm, &tenant, &test_library()).await;
    let client = ApiClient::new(&farm.base_url(), &token);
    let key = unique("req");
    client
        .submit(&request_for(&tenant, "Rex", 1, "interactive"), Some(&key))
        .await
        .unwrap();
    let base = farm.base_url();
    let sse_token = token.clone();
    let sse_key = key.clone();
    let events = tokio::spawn(async move {
        let farm_url = base;
        use http_body_util::BodyExt;
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Empty<bytes::Bytes>>();
        let request = hyper::Request::get(format!("{farm_url}/v1/generations/{sse_key}/events"))
            .header("authorization", format!("Bearer {sse_token}"))
            .body(http_body_util::Empty::new())
            .unwrap();
        let response = client.request(request).await.unwrap();
        // The stream ends after the final event, so collecting the body terminates.
        String::from_utf8_lossy(&response.into_body().collect().await.unwrap().to_bytes())
            .into_owned()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut worker = farm
        .backends
        .queue
        .consume(&farm.queues().generate, 4)
        .await
        .unwrap();
    let (job, delivery) = take_job(&mut worker).await;
    // A denoising step with a preview, as the diffusion renderer reports it.
    publish_event(
        &farm,
        &reverie_shared::jobs::JobEvent::Progress {
            job: job.spec.id().clone(),
            tenant: tenant.clone(),
            step: 3,
            total: 20,
            preview_png: Some(b"\x89PNG preview".to_vec()),
        },
    )
    .await;
    complete_job(&farm, &job, delivery).await;
    let text = tokio::time::timeout(Duration::from_secs(20), events)
        .await
        .unwrap()
        .unwrap();
    assert!(text.contains("event: progress"), "{text}");
    assert!(text.contains("event: done"), "{text}");
    assert!(
        text.contains("\"step\":3") && text.contains("\"total\":20"),
        "{text}"
    );
    assert!(
        text.contains("\"preview_png_base64\":\"iVBORyBwcmV2aWV3\""),
        "{text}"
    );

    // A heartbeat makes a live worker; /metrics shows it and the request counters.
    farm.backends
        .cache
        .set(
            &reverie_shared::keys::worker_heartbeat_key(&unique("w")),
            bytes::Bytes::from_static(b"{}"),
            Some(Duration::from_secs(5)),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let metrics = reqwest_like_get(&farm, "/metrics", "").await;
    assert!(
        metrics.contains("reverie_requests_total{ingress=\"http\",outcome=\"accepted\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("reverie_jobs_published_total"));
    let alive = metrics
        .lines()
        .find(|l| l.starts_with("reverie_workers_alive"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap();
    assert!(alive >= 1.0);
    assert!(metrics.contains("reverie_queue_depth"));
    assert_eq!(reqwest_like_get(&farm, "/readyz", "").await, "ready");
    let openapi: serde_json::Value =
        serde_json::from_str(&reqwest_like_get(&farm, "/openapi.json", "").await).unwrap();
    assert!(openapi["paths"]["/v1/generations"]["post"].is_object());
    assert!(openapi["paths"]["/v1/generations/{id}/refine"]["post"].is_object());
    let unauthorised =
        reqwest_like_get(&farm, &format!("/v1/generations/{key}"), "wrong:token").await;
    assert!(
        unauthorised.contains("invalid_token") || unauthorised.contains("unknown_tenant"),
        "{unauthorised}"
    );
    farm.cleanup().await;
}
