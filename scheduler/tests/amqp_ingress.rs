//! AMQP ingress end to end with real RabbitMQ, Redis and S3: replies on reply_to with the correlation
//! id, idempotency on message_id, bad input answered through the same path, events relayed.

mod common;

use common::*;
use reverie_scheduler::records::JobState;
use reverie_scheduler::replies::ReplyBody;
use reverie_scheduler::SchedulerOptions;
use reverie_shared::jobs::{JobSpec, ReferenceRole};
use reverie_shared::ports::queue::MessageProps;

#[tokio::test]
async fn amqp_request_is_planned_published_and_answered_to_the_end() {
    let farm = Farm::start(SchedulerOptions::default()).await;
    let (tenant, token) = farm.tenant(&unique("anna"), true).await;
    seed_library(&farm, &tenant, &test_library()).await;
    let (reply_to, mut replies) = farm.reply_queue_for(&tenant).await;
    let body = serde_json::to_vec(&request_for(
        &tenant,
        "me at sunset in Lisbon",
        2,
        "interactive",
    ))
    .unwrap();
    let request_id = unique("req");
    farm.publish_request(&body, Some(&request_id), Some(&token), &reply_to)
        .await;

    let (reply, correlation) = next_reply(&mut replies).await;
    assert!(correlation.is_some(), "replies carry the correlation id");
    assert_eq!(reply.request_id.as_deref(), Some(request_id.as_str()));
    let ReplyBody::Accepted {
        jobs,
        duplicate,
        plan,
    } = &reply.body
    else {
        panic!("accepted expected: {reply:?}")
    };
    assert_eq!(jobs.len(), 2);
    assert!(!duplicate);
    assert!(
        plan.iter().any(|line| line.contains("person:Anna")),
        "{plan:?}"
    );
    // The place and the light resolved against the library and picked the Lisbon sunset photo.
    assert!(
        plan.iter().any(|line| line.contains("background")
            && line.contains("Lisbon")
            && line.contains("sunset")),
        "{plan:?}"
    );

    let mut worker = farm
        .backends
        .queue
        .consume(&farm.queues().generate, 4)
        .await
        .unwrap();
    let mut seeds = Vec::new();
    for _ in 0..2 {
        let (job, delivery) = take_job(&mut worker).await;
        let JobSpec::Generate(spec) = &job.spec else {
            panic!("generate job")
        };
        assert_eq!(spec.tenant, tenant);
        let subject = spec
            .references
            .iter()
            .find(|r| r.role == ReferenceRole::Subject)
            .expect("a subject");
        assert_eq!(
            subject.photo,
            anna_face_photo(),
            "the sharp, frontal, large face is chosen"
        );
        assert!(
            spec.references
                .iter()
                .any(|r| r.role == ReferenceRole::Background),
            "Lisbon at sunset"
        );
        seeds.push((spec.index, spec.render.seed));
        complete_job(&farm, &job, delivery).await;
    }
    seeds.sort();
    assert_ne!(seeds[0].1, seeds[1].1, "variants get distinct seeds");
    let done = reply_of_kind(&mut replies, "done").await;
    let ReplyBody::Done { results } = &done.body else {
        unreachable!()
    };
    assert_eq!(results.len(), 2);
    assert!(results
        .iter()
        .all(|r| r.state == JobState::Succeeded && r.outputs.len() == 2));

    // Refine over AMQP: refine_of names the parent; the seed and the subject are kept.
    let mut refine = request_for(&tenant, "at night", 1, "interactive");
    refine["refine_of"] = serde_json::Value::String(request_id.clone());
    farm.publish_request(
        &serde_json::to_vec(&refine).unwrap(),
        Some(&unique("child")),
        Some(&token),
        &reply_to,
    )
    .await;
    let accepted = reply_of_kind(&mut replies, "accepted").await;
    assert!(matches!(accepted.body, ReplyBody::Accepted { .. }));
    let (child, delivery) = take_job(&mut worker).await;
    let JobSpec::Generate(child_spec) = &child.spec else {
        panic!("generate job")
    };
    assert_eq!(child_spec.render.seed, seeds[0].1, "the parent's seed");
    assert!(child_spec
        .references
        .iter()
        .any(|r| r.role == ReferenceRole::Subject && r.photo == anna_face_photo()));
    assert!(
        child_spec.render.prompt.contains("night"),
        "{}",
        child_spec.render.prompt
    );
    delivery.ack().await.unwrap();

    let record = farm
        .core
        .record(&tenant, &request_id.parse().unwrap())
        .await
        .unwrap()
        .expect("record");
    assert_eq!(record.state(), JobState::Succeeded);
    assert!(record
        .jobs
        .iter()
        .all(|j| j.started_at.is_some() && j.finished_at.is_some()));
    farm.cleanup().await;
}

#[tokio::test]
async fn a_requester_that_asks_for_final_replies_gets_no_acknowledgement_but_its_result() {
    let farm = Farm::start(SchedulerOptions::default()).await;
    let (tenant, token) = farm.tenant(&unique("final"), true).await;
    seed_library(&farm, &tenant, &test_library()).await;
    let (reply_to, mut replies) = farm.reply_queue_for(&tenant).await;
    let body = serde_json::to_vec(&request_for(
        &tenant,
        "a watercolour of Rex",
        1,
        "interactive",
    ))
    .unwrap();
    let request_id = unique("req");
    let props = MessageProps {
        message_id: Some(request_id.clone()),
        correlation_id: Some(unique("corr")),
        reply_to: Some(reply_to.clone()),
        headers: [
            ("x-reverie-token".to_string(), token.clone()),
            (
                reverie_scheduler::ingress::REPLIES_HEADER.to_string(),
                "final".to_string(),
            ),
        ]
        .into(),
        ..MessageProps::default()
    };
    farm.publish_request_with(&body, props.clone()).await;
    let mut worker = farm
        .backends
        .queue
        .consume(&farm.queues().generate, 4)
        .await
        .unwrap();
    let (job, delivery) = take_job(&mut worker).await;
    complete_job(&farm, &job, delivery).await;
    let (first, _) = next_reply(&mut replies).await;
    assert_eq!(
        first.kind(),
        "done",
        "the first reply is the result: {first:?}"
    );
    assert_eq!(first.request_id.as_deref(), Some(request_id.as_str()));

    // A rejection is final: it still comes.
    let mut bad = request_for(&tenant, "a watercolour of Rex", 1, "interactive");
    bad["n"] = serde_json::json!(0);
    let bad_props = MessageProps {
        message_id: Some(unique("bad")),
        ..props
    };
    farm.publish_request_with(&serde_json::to_vec(&bad).unwrap(), bad_props)
        .await;
    let (rejected, _) = next_reply(&mut replies).await;
    assert_eq!(rejected.kind(), "rejected", "{rejected:?}");
    farm.cleanup().await;
}

#[tokio::test]
async fn the_same_message_id_twice_makes_one_set_of_jobs() {
    let farm = Farm::start(SchedulerOptions::default()).await;
    let (tenant, token) = farm.tenant(&unique("idem"), true).await;
    seed_library(&farm, &tenant, &test_library()).await;
    let (reply_to, mut replies) = farm.reply_queue_for(&tenant).await;
    let body = serde_json::to_vec(&request_for(
        &tenant,
        "a watercolour of Rex",
        3,
        "interactive",
    ))
    .unwrap();
    let request_id = unique("req");
    farm.publish_request(&body, Some(&request_id), Some(&token), &reply_to)
        .await;
    farm.publish_request(&body, Some(&request_id), Some(&token), &reply_to)
        .await;
    let (first, _) = next_reply(&mut replies).await;
    let (second, _) = next_reply(&mut replies).await;
    assert!(
        matches!(
            first.body,
            ReplyBody::Accepted {
                duplicate: false,
                ..
            }
        ),
        "{first:?}"
    );
    assert!(
        matches!(
            second.body,
            ReplyBody::Accepted {
                duplicate: true,
                ..
            }
        ),
        "{second:?}"
    );
    let depth = farm
        .backends
        .queue
        .depth(&farm.queues().generate)
        .await
        .unwrap();
    assert_eq!(depth, 3, "one job per variant, not two sets");
    farm.cleanup().await;
}

#[tokio::test]
async fn bad_requests_are_rejected_on_the_reply_path_and_the_consumer_survives() {
    let farm = Farm::start(SchedulerOptions::default()).await;
    let (tenant, token) = farm.tenant(&unique("bad"), true).await;
    seed_library(&farm, &tenant, &test_library()).await;
    let expired = farm
        .core
        .tenants()
        .issue_token(&tenant, Some(std::time::Duration::from_millis(1)), None)
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let (reply_to, mut replies) = farm.reply_queue_for(&tenant).await;
    let huge = "a ".repeat(50_000);
    let control = "me\u{7} at night";
    let valid = request_for(&tenant, "me", 1, "interactive");
    let with = |field: &str, value: serde_json::Value| {
        let mut body = valid.clone();
        if value.is_null() {
            body.as_object_mut().unwrap().remove(field);
        } else {
            body[field] = value;
        }
        serde_json::to_vec(&body).unwrap()
    };
    let good = serde_json::to_vec(&valid).unwrap();
    let cases: Vec<(Vec<u8>, Option<String>, &str, &str)> = vec![
        (
            b"{not json".to_vec(),
            Some(token.clone()),
            "malformed JSON",
            "malformed_json",
        ),
        (
            with("schema_version", 99.into()),
            Some(token.clone()),
            "unknown schema version",
            "unsupported_schema_version",
        ),
        (
            with("prompt", serde_json::Value::Null),
            Some(token.clone()),
            "missing prompt",
            "missing_field",
        ),
        (
            with("prompt", huge.clone().into()),
            Some(token.clone()),
            "100 KB prompt",
            "invalid_field",
        ),
        (
            with("prompt", control.into()),
            Some(token.clone()),
            "control characters",
            "invalid_field",
        ),
        (
            with("n", 10_000.into()),
            Some(token.clone()),
            "n of 10000",
            "invalid_field",
        ),
        (
            good.clone(),
            Some("nobody-here:abc".into()),
            "unknown tenant (answered as a wrong secret: no tenant enumeration)",
            "invalid_token",
        ),
        (
            good.clone(),
            Some(expired),
            "expired token",
            "token_expired",
        ),
        (
            good.clone(),
            Some(format!("{tenant}:wrong-secret")),
            "wrong secret",
            "invalid_token",
        ),
        (good.clone(), None, "no credentials", "unauthenticated"),
        (
            with("prompt", "Rox at the beach".into()),
            Some(token.clone()),
            "unresolved name",
            "unresolved_reference",
        ),
    ];
    for (body, credentials, what, code) in &cases {
        farm.publish_request(
            body,
            Some(&unique("bad")),
            credentials.as_deref(),
            &reply_to,
        )
        .await;
        let (reply, _) = next_reply(&mut replies).await;
        let ReplyBody::Rejected { reasons } = &reply.body else {
            panic!("{what}: rejected expected, got {reply:?}")
        };
        assert!(
            reasons.iter().any(|r| r.code == *code),
            "{what}: expected {code}, got {reasons:?}"
        );
        assert!(
            reasons.iter().all(|r| !r.message.is_empty()),
            "{what}: {reasons:?}"
        );
    }
    // The unresolved name comes with the closest known one.
    farm.publish_request(
        &with("prompt", "Rox at the beach".into()),
        None,
        Some(&token),
        &reply_to,
    )
    .await;
    let (reply, _) = next_reply(&mut replies).await;
    let ReplyBody::Rejected { reasons } = &reply.body else {
        panic!("{reply:?}")
    };
    assert!(
        reasons
            .iter()
            .any(|r| r.suggestions.iter().any(|s| s == "Rex") || r.message.contains("Rex")),
        "{reasons:?}"
    );
    let (reply, _) = {
        farm.publish_request(
            &serde_json::to_vec(&request_for(&tenant, "Rex", 1, "interactive")).unwrap(),
            None,
            Some(&token),
            &reply_to,
        )
        .await;
        next_reply(&mut replies).await
    };
    assert!(
        matches!(reply.body, ReplyBody::Accepted { .. }),
        "still serving: {reply:?}"
    );
    farm.cleanup().await;
}

/// issue #20 (5.1): requests whose reply queue does not exist cost one publish each, not a minute of
/// confirmed-publish retries holding an intake slot: a burst of them (more than the consumer handles at
/// once) does not hold up another tenant's request.
#[tokio::test]
async fn a_burst_of_requests_to_a_missing_reply_queue_does_not_hold_up_another_tenant() {
    let farm = Farm::start_on(local_backends().await, SchedulerOptions::default()).await;
    let (noisy, noisy_token) = farm.tenant(&unique("noisy"), true).await;
    let (quiet, quiet_token) = farm.tenant(&unique("quiet"), true).await;
    seed_library(&farm, &noisy, &test_library()).await;
    seed_library(&farm, &quiet, &test_library()).await;
    let missing_before = metric_value("reverie_replies_undelivered_total", "no_such_queue");
    // A reply queue of the noisy tenant's own that was never declared (or has gone away).
    let gone = farm.reply_queue_name(&noisy, "gone");
    let burst = 80;
    let body = serde_json::to_vec(&request_for(&noisy, "Rex", 1, "interactive")).unwrap();
    let mut ids = Vec::new();
    for _ in 0..burst {
        let id = unique("burst");
        farm.publish_request(&body, Some(&id), Some(&noisy_token), &gone)
            .await;
        ids.push(id);
    }
    let (reply_to, mut replies) = farm.reply_queue_for(&quiet).await;
    let quiet_id = unique("quiet");
    farm.publish_request(
        &serde_json::to_vec(&request_for(&quiet, "Rex", 1, "interactive")).unwrap(),
        Some(&quiet_id),
        Some(&quiet_token),
        &reply_to,
    )
    .await;
    // next_reply waits at most 20 s; each undeliverable reply used to hold its slot for over a minute.
    let (reply, _) = next_reply(&mut replies).await;
    assert_eq!(reply.request_id.as_deref(), Some(quiet_id.as_str()));
    assert!(
        matches!(reply.body, ReplyBody::Accepted { .. }),
        "{reply:?}"
    );
    // Every request of the burst was still processed (accepted, its answer undeliverable).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    for id in &ids {
        loop {
            let record = farm
                .core
                .record(&noisy, &id.parse().unwrap())
                .await
                .unwrap();
            if record.is_some() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "request {id} of the burst was never processed"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    // Each undeliverable reply is counted (one attempt each, not retried).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while metric_value("reverie_replies_undelivered_total", "no_such_queue") - missing_before
        < burst as f64
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "undeliverable replies are counted: {}",
            metric_value("reverie_replies_undelivered_total", "no_such_queue") - missing_before
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    farm.cleanup().await;
}

/// issue #20 (5.1): a reply_to naming one of the farm's own queues (here the generation jobs queue) is
/// refused: nothing is published there, the refusal is counted, and the request is still processed.
#[tokio::test]
async fn a_reply_to_naming_the_jobs_queue_is_refused_and_nothing_is_published_there() {
    let farm = Farm::start_on(local_backends().await, SchedulerOptions::default()).await;
    let (tenant, token) = farm.tenant(&unique("sneaky"), true).await;
    seed_library(&farm, &tenant, &test_library()).await;
    let refused_before = metric_value("reverie_replies_undelivered_total", "farm_queue");
    let jobs_queue = farm.queues().generate.clone();
    let events_queue = farm.queues().events.clone();
    let body = serde_json::to_vec(&request_for(&tenant, "Rex", 1, "interactive")).unwrap();
    let into_jobs = unique("into-jobs");
    farm.publish_request(&body, Some(&into_jobs), Some(&token), &jobs_queue)
        .await;
    let into_events = unique("into-events");
    farm.publish_request(&body, Some(&into_events), Some(&token), &events_queue)
        .await;
    // Both requests are processed (each planned one job)...
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    for id in [&into_jobs, &into_events] {
        while farm
            .core
            .record(&tenant, &id.parse().unwrap())
            .await
            .unwrap()
            .is_none()
        {
            assert!(tokio::time::Instant::now() < deadline, "{id} processed");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    // ...and a later request on a proper reply queue is answered, so the two before it were answered too
    // (or refused) by now.
    let (reply_to, mut replies) = farm.reply_queue_for(&tenant).await;
    farm.publish_request(&body, Some(&unique("proper")), Some(&token), &reply_to)
        .await;
    let (reply, _) = next_reply(&mut replies).await;
    assert!(
        matches!(reply.body, ReplyBody::Accepted { .. }),
        "{reply:?}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    // The jobs queue holds exactly the three jobs, each a job (no JSON reply among them).
    let mut worker = farm.backends.queue.consume(&jobs_queue, 10).await.unwrap();
    let mut seen = 0;
    while let Ok(Ok(delivery)) =
        tokio::time::timeout(std::time::Duration::from_secs(2), worker.next()).await
    {
        assert!(
            reverie_shared::envelope::decode_job(delivery.body()).is_ok(),
            "a non-job message was published into the jobs queue: {}",
            String::from_utf8_lossy(delivery.body())
        );
        seen += 1;
        delivery.ack().await.unwrap();
    }
    assert_eq!(seen, 3, "one job per request and nothing else");
    // Nothing was published into the events queue either (the scheduler would have dead-lettered it).
    let dead_events = farm
        .backends
        .queue
        .depth(&reverie_shared::ports::queue::dead_queue_name(
            &events_queue,
        ))
        .await
        .unwrap();
    assert_eq!(dead_events, 0, "no reply landed in the events queue");
    assert!(
        metric_value("reverie_replies_undelivered_total", "farm_queue") - refused_before >= 2.0,
        "refused reply_to values are counted"
    );
    farm.cleanup().await;
}
