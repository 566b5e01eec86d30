//! Tenant isolation, consent, forgetting, quotas, fairness between tenants and recovery after a
//! restart, with real RabbitMQ, Redis and S3.

mod common;

use std::time::Duration;

use common::*;
use hyper::StatusCode;
use reverie_scheduler::client::ApiClient;
use reverie_scheduler::records::JobState;
use reverie_scheduler::replies::ReplyBody;
use reverie_scheduler::SchedulerOptions;
use reverie_shared::jobs::{JobSpec, Priority};
use reverie_shared::keys;

fn codes(reply: &reverie_scheduler::replies::Reply) -> Vec<String> {
    match &reply.body {
        ReplyBody::Rejected { reasons } => reasons.iter().map(|r| r.code.clone()).collect(),
        other => panic!("rejected expected, got {other:?}"),
    }
}

#[tokio::test]
async fn a_tenant_cannot_reach_another_tenants_photos_people_or_results() {
    let farm = Farm::start(SchedulerOptions::default()).await;
    let (alice, alice_token) = farm.tenant(&unique("alice"), true).await;
    let (bob, bob_token) = farm.tenant(&unique("bob"), true).await;
    seed_library(&farm, &alice, &test_library()).await;
    let alice_client = ApiClient::new(&farm.base_url(), &alice_token);
    let bob_client = ApiClient::new(&farm.base_url(), &bob_token);
    let key = unique("req");
    alice_client
        .submit(
            &request_for(&alice, "me at sunset in Lisbon", 1, "interactive"),
            Some(&key),
        )
        .await
        .unwrap();

    // HTTP: Bob can neither read, cancel nor refine Alice's request, nor use Alice's people.
    assert_eq!(
        bob_client.status(&key).await.unwrap().unwrap_err().status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        bob_client.cancel(&key).await.unwrap().unwrap_err().status,
        StatusCode::NOT_FOUND
    );
    let refine = bob_client
        .refine(&key, &request_for(&bob, "at night", 1, "interactive"), None)
        .await
        .unwrap();
    assert_eq!(refine.status, StatusCode::NOT_FOUND, "{:?}", refine.body);
    let anna = bob_client
        .submit(&request_for(&bob, "Anna in Lisbon", 1, "interactive"), None)
        .await
        .unwrap();
    assert!(
        codes(&anna.body).contains(&"unresolved_reference".to_string()),
        "{:?}",
        anna.body
    );
    // Naming Alice as the tenant with Bob's token is refused outright.
    let mut claim = request_for(&bob, "Rex", 1, "interactive");
    claim["tenant"] = serde_json::Value::String(alice.to_string());
    let claimed = bob_client.submit(&claim, None).await.unwrap();
    assert_eq!(codes(&claimed.body), vec!["tenant_mismatch".to_string()]);
    assert_eq!(
        alice_client.status(&key).await.unwrap().unwrap().state,
        JobState::Queued
    );

    // AMQP: the same attempts through the requests queue.
    let (reply_to, mut replies) = farm.reply_queue_for(&bob).await;
    let body = serde_json::to_vec(&claim).unwrap();
    farm.publish_request(&body, None, Some(&bob_token), &reply_to)
        .await;
    assert_eq!(
        codes(&next_reply(&mut replies).await.0),
        vec!["tenant_mismatch".to_string()]
    );
    let body = serde_json::to_vec(&request_for(&bob, "Anna at sunset", 1, "interactive")).unwrap();
    farm.publish_request(&body, None, Some(&bob_token), &reply_to)
        .await;
    assert!(codes(&next_reply(&mut replies).await.0).contains(&"unresolved_reference".to_string()));
    let mut refine = request_for(&bob, "at night", 1, "interactive");
    refine["refine_of"] = serde_json::Value::String(key.clone());
    farm.publish_request(
        &serde_json::to_vec(&refine).unwrap(),
        None,
        Some(&bob_token),
        &reply_to,
    )
    .await;
    assert_eq!(
        codes(&next_reply(&mut replies).await.0),
        vec!["not_found".to_string()],
        "another tenant's result"
    );
    // No credentials at all.
    farm.publish_request(&body, None, None, &reply_to).await;
    assert_eq!(
        codes(&next_reply(&mut replies).await.0),
        vec!["unauthenticated".to_string()]
    );
    // The broker-validated user_id binds a request to the tenant that user is bound to, and no other.
    let user = amqp_user();
    let as_bob = request_for(&bob, "Rex", 1, "interactive");
    let as_bob = serde_json::to_vec(&as_bob).unwrap();
    farm.publish_request_as(&as_bob, None, None, Some(&user), &reply_to)
        .await;
    assert_eq!(
        codes(&next_reply(&mut replies).await.0),
        vec!["unbound_user".to_string()]
    );
    farm.core
        .tenants()
        .bind_amqp_user(&bob, &user)
        .await
        .unwrap();
    seed_library(&farm, &bob, &test_library()).await;
    farm.publish_request_as(&as_bob, None, None, Some(&user), &reply_to)
        .await;
    let (reply, _) = next_reply(&mut replies).await;
    assert!(
        matches!(reply.body, ReplyBody::Accepted { .. }),
        "{reply:?}"
    );
    let as_alice = request_for(&alice, "Rex", 1, "interactive");
    // A request that is not Bob's is not answered on Bob's reply queue (docs/api.md, "Reply queues"):
    // its rejection goes only to a queue of the tenant it claims.
    let (alice_reply_to, mut alice_replies) = farm.reply_queue_for(&alice).await;
    farm.publish_request_as(
        &serde_json::to_vec(&as_alice).unwrap(),
        None,
        None,
        Some(&user),
        &alice_reply_to,
    )
    .await;
    assert_eq!(
        codes(&next_reply(&mut alice_replies).await.0),
        vec!["unbound_user".to_string()]
    );
    farm.cleanup().await;
}

#[tokio::test]
async fn consent_is_required_and_revoking_it_cancels_queued_work() {
    let options = SchedulerOptions {
        batch_in_flight_per_tenant: 1,
        ..SchedulerOptions::default()
    };
    let farm = Farm::start(options).await;
    let (tenant, token) = farm.tenant(&unique("consent"), false).await;
    seed_library(&farm, &tenant, &test_library()).await;
    let client = ApiClient::new(&farm.base_url(), &token);
    let refused = client
        .submit(&request_for(&tenant, "Rex", 1, "interactive"), None)
        .await
        .unwrap();
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(codes(&refused.body), vec!["no_consent".to_string()]);

    // Rex's photo is in the album "Italy 2023": consent for that album is enough.
    let granted = client.consent_grant("album:Italy 2023").await.unwrap();
    assert_eq!(granted.granted, vec!["album:Italy 2023".to_string()]);
    let key = unique("batch");
    let accepted = client
        .submit(&request_for(&tenant, "Rex", 4, "batch"), Some(&key))
        .await
        .unwrap();
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{:?}", accepted.body);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = client.status(&key).await.unwrap().unwrap();
    assert_eq!(
        status.jobs.iter().filter(|j| j.published).count(),
        1,
        "one batch job on the broker at a time"
    );

    let revoked = client.consent_revoke("album:Italy 2023").await.unwrap();
    assert_eq!(revoked.jobs_cancelled, 4);
    assert_eq!(revoked.revoked, vec!["album:Italy 2023".to_string()]);
    assert!(client.consent_show().await.unwrap().granted.is_empty());
    let status = client.status(&key).await.unwrap().unwrap();
    assert_eq!(status.state, JobState::Cancelled);
    assert!(status
        .jobs
        .iter()
        .all(|j| j.error.as_deref().is_some_and(|e| e.contains("revoked"))));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        farm.backends
            .queue
            .depth(&farm.queues().generate)
            .await
            .unwrap(),
        1,
        "held jobs were never published"
    );
    // The worker that picks up the published one sees it cancelled in the cache record.
    let summary = farm
        .backends
        .cache
        .get(&keys::job_cache_key(&tenant, &format!("{key}.0")))
        .await
        .unwrap()
        .expect("job summary cached");
    assert!(String::from_utf8_lossy(&summary).contains("\"cancelled\""));
    farm.cleanup().await;
}

#[tokio::test]
async fn forget_leaves_nothing_in_s3_or_redis() {
    let farm = Farm::start(SchedulerOptions::default()).await;
    let (tenant, token) = farm.tenant(&unique("forget"), true).await;
    seed_library(&farm, &tenant, &test_library()).await;
    let client = ApiClient::new(&farm.base_url(), &token);
    let done_key = unique("done");
    client
        .submit(
            &request_for(&tenant, "me at sunset in Lisbon", 1, "interactive"),
            Some(&done_key),
        )
        .await
        .unwrap();
    let mut worker = farm
        .backends
        .queue
        .consume(&farm.queues().generate, 4)
        .await
        .unwrap();
    let (job, delivery) = take_job(&mut worker).await;
    complete_job(&farm, &job, delivery).await;
    client
        .wait(
            &done_key,
            Duration::from_millis(50),
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    client
        .submit(&request_for(&tenant, "Rex", 2, "batch"), None)
        .await
        .unwrap();
    let embedding = keys::embedding_cache_key(&tenant, "face", "m1", &anna_face_photo());
    farm.backends
        .cache
        .set(&embedding, bytes::Bytes::from_static(b"vec"), None)
        .await
        .unwrap();

    let report = client.forget().await.unwrap();
    assert!(report.store_objects_deleted >= 5, "{report:?}");
    assert!(report.cache_keys_deleted >= 2, "{report:?}");
    assert_eq!(report.jobs_cancelled, 2);
    assert!(farm
        .backends
        .store
        .list(&keys::tenant_prefix(&tenant))
        .await
        .unwrap()
        .is_empty());
    assert!(farm
        .backends
        .cache
        .keys(&keys::tenant_cache_prefix(&tenant))
        .await
        .unwrap()
        .is_empty());

    // A worker finishing a forgotten tenant's job afterwards leaves nothing behind either.
    let (late, delivery) = take_job(&mut worker).await;
    complete_job(&farm, &late, delivery).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(farm
        .backends
        .store
        .list(&keys::tenant_prefix(&tenant))
        .await
        .unwrap()
        .is_empty());
    assert!(farm
        .backends
        .cache
        .keys(&keys::tenant_cache_prefix(&tenant))
        .await
        .unwrap()
        .is_empty());
    let unknown = client
        .submit(&request_for(&tenant, "Rex", 1, "interactive"), None)
        .await
        .unwrap();
    // A forgotten tenant's token is answered like any wrong token (no tenant enumeration).
    assert_eq!(codes(&unknown.body), vec!["invalid_token".to_string()]);
    farm.cleanup().await;
}

#[tokio::test]
async fn quota_rejects_with_a_clear_reason() {
    let options = SchedulerOptions {
        tenant_queue_quota: 3,
        ..SchedulerOptions::default()
    };
    let farm = Farm::start(options).await;
    let (tenant, token) = farm.tenant(&unique("quota"), true).await;
    seed_library(&farm, &tenant, &test_library()).await;
    let client = ApiClient::new(&farm.base_url(), &token);
    let first = client
        .submit(&request_for(&tenant, "Rex", 2, "interactive"), None)
        .await
        .unwrap();
    assert_eq!(first.status, StatusCode::ACCEPTED);
    let second = client
        .submit(&request_for(&tenant, "Rex", 2, "interactive"), None)
        .await
        .unwrap();
    assert_eq!(second.status, StatusCode::TOO_MANY_REQUESTS);
    let ReplyBody::Rejected { reasons } = &second.body.body else {
        panic!()
    };
    assert_eq!(reasons[0].code, "quota_exceeded");
    assert!(
        reasons[0].message.contains("quota of 3"),
        "{}",
        reasons[0].message
    );
    let third = client
        .submit(&request_for(&tenant, "Rex", 1, "interactive"), None)
        .await
        .unwrap();
    assert_eq!(
        third.status,
        StatusCode::ACCEPTED,
        "exactly up to the quota"
    );
    farm.cleanup().await;
}

#[tokio::test]
async fn a_big_batch_does_not_starve_another_tenant() {
    let options = SchedulerOptions {
        batch_in_flight_per_tenant: 2,
        ..SchedulerOptions::default()
    };
    let farm = Farm::start(options).await;
    let (big, big_token) = farm.tenant(&unique("big"), true).await;
    let (small, small_token) = farm.tenant(&unique("small"), true).await;
    let (human, human_token) = farm.tenant(&unique("human"), true).await;
    for tenant in [&big, &small, &human] {
        seed_library(&farm, tenant, &test_library()).await;
    }
    let big_client = ApiClient::new(&farm.base_url(), &big_token);
    for _ in 0..10 {
        let answer = big_client
            .submit(&request_for(&big, "Rex", 4, "batch"), None)
            .await
            .unwrap();
        assert_eq!(answer.status, StatusCode::ACCEPTED);
    }
    ApiClient::new(&farm.base_url(), &small_token)
        .submit(&request_for(&small, "Rex", 1, "batch"), None)
        .await
        .unwrap();
    ApiClient::new(&farm.base_url(), &human_token)
        .submit(&request_for(&human, "Rex", 1, "interactive"), None)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        farm.backends
            .queue
            .depth(&farm.queues().generate)
            .await
            .unwrap()
            <= 5,
        "big keeps at most 2 on the broker"
    );
    let mut worker = farm
        .backends
        .queue
        .consume(&farm.queues().generate, 1)
        .await
        .unwrap();
    let mut order = Vec::new();
    for _ in 0..8 {
        let (job, delivery) = take_job(&mut worker).await;
        order.push((job.spec.tenant().clone(), job.priority));
        complete_job(&farm, &job, delivery).await;
    }
    assert_eq!(
        order[0],
        (human.clone(), Priority::Interactive),
        "interactive first: {order:?}"
    );
    let small_at = order
        .iter()
        .position(|(t, _)| t == &small)
        .expect("small served among the first 8");
    assert!(
        small_at <= 3,
        "small's batch job waited behind {small_at} jobs: {order:?}"
    );
    let JobSpec::Generate(_) = &take_job(&mut worker).await.0.spec else {
        panic!()
    };
    farm.cleanup().await;
}

#[tokio::test]
async fn a_restarted_scheduler_loses_nothing_it_accepted() {
    let options = SchedulerOptions {
        batch_in_flight_per_tenant: 1,
        ..SchedulerOptions::default()
    };
    let farm = Farm::start(options.clone()).await;
    let (tenant, token) = farm.tenant(&unique("restart"), true).await;
    seed_library(&farm, &tenant, &test_library()).await;
    let key = unique("batch");
    ApiClient::new(&farm.base_url(), &token)
        .submit(&request_for(&tenant, "Rex", 3, "batch"), Some(&key))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let prefix = farm.options.queue_prefix.clone();
    let backends = farm.stop().await;

    let restarted = Farm::start_on(
        backends,
        SchedulerOptions {
            queue_prefix: prefix,
            ..options
        },
    )
    .await;
    let mut worker = restarted
        .backends
        .queue
        .consume(&restarted.queues().generate, 1)
        .await
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (job, delivery) = take_job(&mut worker).await;
        seen.push(job.spec.id().to_string());
        complete_job(&restarted, &job, delivery).await;
    }
    seen.sort();
    assert_eq!(
        seen,
        (0..3).map(|i| format!("{key}.{i}")).collect::<Vec<_>>()
    );
    let client = ApiClient::new(&restarted.base_url(), &token);
    let status = client
        .wait(&key, Duration::from_millis(50), Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(status.state, JobState::Succeeded);
    restarted.cleanup().await;
}
