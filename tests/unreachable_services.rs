//! An unreachable RabbitMQ, Redis or S3 gives one clear line per try naming the service and its address,
//! and the process keeps retrying with backoff instead of panicking or exiting.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

fn waits_for(service: &str, args: &[&str]) {
    let data = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_reverie"))
        .arg("--data-dir")
        .arg(data.path())
        .args([
            "--set",
            "worker.http_addr=127.0.0.1:0",
            "--set",
            "retry.initial_ms=100",
            "--set",
            "retry.max_ms=400",
        ])
        .args(args)
        .arg("worker")
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let still_running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        still_running,
        "{service}: the worker gave up instead of retrying:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{service}: panic:\n{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(service) && l.contains("127.0.0.1:9"))
        .collect();
    assert!(
        lines.len() >= 2,
        "{service}: expected a line per retry naming it and its address:\n{stderr}"
    );
}

#[test]
fn unreachable_rabbitmq_is_retried_with_a_clear_line() {
    waits_for(
        "RabbitMQ",
        &["--amqp-url", "amqp://guest:guest@127.0.0.1:9/%2f"],
    );
}

#[test]
fn unreachable_redis_is_retried_with_a_clear_line() {
    waits_for("Redis", &["--redis-url", "redis://127.0.0.1:9"]);
}

#[test]
fn unreachable_s3_is_retried_with_a_clear_line() {
    waits_for(
        "S3",
        &[
            "--s3-bucket",
            "reverie-nowhere",
            "--s3-endpoint",
            "http://127.0.0.1:9",
        ],
    );
}
