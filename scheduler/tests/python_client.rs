//! The Python example client (docs/examples/submit_pika.py, pika) against a real scheduler: a non-Rust
//! service can submit over AMQP, get `accepted` and then `done` on its reply queue. Needs python3 with
//! pika (`python3 -m pip install pika`).

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use reverie_scheduler::SchedulerOptions;
use tokio::io::AsyncReadExt;

#[tokio::test]
async fn the_python_pika_example_submits_and_gets_replies() {
    let farm = Farm::start(SchedulerOptions::default()).await;
    let (tenant, token) = farm.tenant(&unique("py"), true).await;
    seed_library(&farm, &tenant, &test_library()).await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/examples/submit_pika.py"
    );
    let request_id = unique("py-req");
    let mut child = tokio::process::Command::new("python3")
        .arg(script)
        .env("REVERIE_AMQP_URL", amqp_url())
        .env("REVERIE_QUEUE_PREFIX", &farm.options.queue_prefix)
        .env("REVERIE_TENANT", tenant.as_str())
        .env("REVERIE_TOKEN", &token)
        .env("REVERIE_REQUEST_ID", &request_id)
        .env("REVERIE_WAIT_FINAL", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs (install python3 and `python3 -m pip install pika`)");

    // Play the worker for the one job the example's request makes.
    let mut worker = farm
        .backends
        .queue
        .consume(&farm.queues().generate, 1)
        .await
        .unwrap();
    let (job, delivery) = take_job(&mut worker).await;
    assert_eq!(job.spec.id().as_str(), format!("{request_id}.0"));
    complete_job(&farm, &job, delivery).await;

    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("the example finishes within 60 s")
        .unwrap();
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .await
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert!(status.success(), "example failed:\n{stdout}\n{stderr}");
    let kinds: Vec<String> = stdout
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        kinds.first().map(String::as_str),
        Some("accepted"),
        "{stdout}"
    );
    assert_eq!(kinds.last().map(String::as_str), Some("done"), "{stdout}");
    farm.cleanup().await;
}
