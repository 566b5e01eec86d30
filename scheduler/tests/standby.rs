//! One active scheduler per farm: a second scheduler on the same queues, with its own broker
//! connection, waits as a standby (not ready, its API refusing with 503) and, when the active one stops,
//! takes over and finishes what the first one accepted. Real RabbitMQ, Redis and S3.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use reverie_scheduler::client::ApiClient;
use reverie_scheduler::records::JobState;
use reverie_scheduler::{Scheduler, SchedulerOptions};
use reverie_shared::backends::Backends;
use reverie_shared::ports::queue::{AmqpQueue, SharedQueue};
use tokio::sync::watch;

fn free_address() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// Status code and body of a GET; `None` while nothing listens yet.
async fn try_get(address: SocketAddr, path: &str, token: &str) -> Option<(u16, String)> {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let request = hyper::Request::get(format!("http://{address}{path}"))
        .header("authorization", format!("Bearer {token}"))
        .body(http_body_util::Empty::new())
        .unwrap();
    let response = client.request(request).await.ok()?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&bytes).into_owned()))
}

async fn get(address: SocketAddr, path: &str, token: &str) -> (u16, String) {
    try_get(address, path, token)
        .await
        .unwrap_or_else(|| panic!("nothing answers at {address}{path}"))
}

/// Waits until GET `path` answers `status`.
async fn until_status(address: SocketAddr, path: &str, token: &str, status: u16) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let answer = try_get(address, path, token).await;
        if let Some((got, body)) = &answer {
            if *got == status {
                return body.clone();
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} still answers {answer:?}, not {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_standby_waits_unready_and_takes_over_what_the_active_one_accepted() {
    let active = Farm::start(SchedulerOptions::default()).await;
    let (tenant, token) = active.tenant(&unique("standby"), true).await;
    seed_library(&active, &tenant, &test_library()).await;

    // The standby shares the store and cache but has a broker connection of its own, as a second pod.
    let queue: SharedQueue = Arc::new(AmqpQueue::connect(&amqp_url()).await.unwrap());
    let standby_backends = Backends {
        queue,
        ..active.backends.clone()
    };
    let standby_address = free_address();
    let standby = Scheduler::new(
        standby_backends.clone(),
        SchedulerOptions {
            http_addr: standby_address,
            ..active.options.clone()
        },
    );
    let (stop_standby, shutdown) = watch::channel(false);
    let (bound_tx, mut bound_rx) = tokio::sync::oneshot::channel();
    let standby_task = tokio::spawn(standby.run(shutdown, Some(bound_tx)));

    let body = until_status(standby_address, "/readyz", "", 503).await;
    assert!(body.contains("standby"), "{body}");
    assert_eq!(get(standby_address, "/healthz", "").await.0, 200);
    let (status, body) = get(standby_address, "/v1/generations/anything", &token).await;
    assert_eq!(status, 503, "the standby's API refuses: {body}");
    assert!(body.contains("standby"), "{body}");
    assert!(
        bound_rx.try_recv().is_err(),
        "a standby does not report itself started"
    );

    // The active scheduler accepts a request and publishes its job, then stops before it finishes.
    let key = unique("handover");
    ApiClient::new(&active.base_url(), &token)
        .submit(&request_for(&tenant, "Rex", 1, "interactive"), Some(&key))
        .await
        .unwrap();
    let queues = active.queues().clone();
    active.stop().await;

    // The standby takes over: it reports itself started, becomes ready and follows the request.
    let address = tokio::time::timeout(Duration::from_secs(20), bound_rx)
        .await
        .expect("the standby takes over within 20 s")
        .expect("the standby started");
    assert_eq!(address, standby_address);
    until_status(standby_address, "/readyz", "", 200).await;
    let mut worker = standby_backends
        .queue
        .consume(&queues.generate, 1)
        .await
        .unwrap();
    let (job, delivery) = take_job(&mut worker).await;
    assert_eq!(job.spec.id().to_string(), format!("{key}.0"));
    complete_job_on(&standby_backends, &queues, &job, delivery).await;
    let status = ApiClient::new(&format!("http://{standby_address}"), &token)
        .wait(&key, Duration::from_millis(50), Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(status.state, JobState::Succeeded);

    let _ = stop_standby.send(true);
    let stopped = tokio::time::timeout(Duration::from_secs(10), standby_task)
        .await
        .expect("the standby stops")
        .unwrap();
    assert!(stopped.is_ok(), "{stopped:?}");
    drop(worker);
    for spec in queues.specs() {
        let _ = standby_backends.queue.delete(&spec.name).await;
    }
}
