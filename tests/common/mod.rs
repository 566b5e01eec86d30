//! A farm of real processes for end-to-end tests: the `reverie` binary as scheduler, worker and
//! client against the real RabbitMQ, Redis and S3 of the test services, sharing a data directory.
#![allow(dead_code)] // each test binary uses a different part of it

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use reverie_shared::testing;

/// Everything one farm of processes shares: services, prefixes, ports, a data directory.
pub struct ProcessFarm {
    pub data: tempfile::TempDir,
    pub env: Vec<(String, String)>,
    pub api: String,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl ProcessFarm {
    /// A farm on `bucket` whose queues and cache keys start with `prefix`.
    pub fn new(bucket: &str, prefix: &str) -> ProcessFarm {
        let scheduler_addr = format!("127.0.0.1:{}", free_port());
        let s3 = testing::s3_config(bucket);
        let env = vec![
            ("REVERIE_AMQP_URL", testing::amqp_url()),
            ("REVERIE_REDIS_URL", testing::redis_url()),
            ("REVERIE_S3_BUCKET", bucket.to_string()),
            ("REVERIE_S3_ENDPOINT", testing::s3_endpoint()),
            ("REVERIE_S3_ACCESS_KEY", s3.access_key.unwrap()),
            ("REVERIE_S3_SECRET_KEY", s3.secret_key.unwrap()),
            ("REVERIE_QUEUES_PREFIX", prefix.to_string()),
            ("REVERIE_CACHE_PREFIX", prefix.to_string()),
            ("REVERIE_SCHEDULER_HTTP_ADDR", scheduler_addr.clone()),
            (
                "REVERIE_WORKER_HTTP_ADDR",
                format!("127.0.0.1:{}", free_port()),
            ),
            // One job at a time, so that a kill lands while most of the album is still to do.
            ("REVERIE_WORKER_BATCH_MAX", "1".to_string()),
            ("REVERIE_WORKER_HEARTBEAT_S", "1".to_string()),
        ];
        ProcessFarm {
            data: tempfile::tempdir().unwrap(),
            env: env.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            api: format!("http://{scheduler_addr}"),
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_reverie"));
        command
            .arg("--data-dir")
            .arg(self.data.path())
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", "warn");
        command
    }

    /// Runs a command to completion and returns its standard output.
    pub fn run(&self, args: &[&str]) -> String {
        let output = self.command(args).output().unwrap();
        assert!(
            output.status.success(),
            "reverie {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// Creates `tenant` with library consent and imports a library of one album; returns the tenant's
    /// token and the library folder (kept alive while the test runs).
    pub fn tenant_with_album(&self, tenant: &str, album: &str) -> (String, tempfile::TempDir) {
        let token = self.run(&["tenant", "create", tenant]).trim().to_string();
        self.run(&["consent", "grant", "--tenant", tenant, "library"]);
        let library = one_album_library(album);
        self.run(&[
            "library",
            "import",
            "--tenant",
            tenant,
            &library.path().display().to_string(),
        ]);
        (token, library)
    }

    pub fn spawn(&self, args: &[&str], log: &str) -> Child {
        let log = std::fs::File::create(self.data.path().join(log)).unwrap();
        self.command(args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.data.path().join(name)).unwrap_or_default()
    }

    pub fn wait_until_ready(&self, child: &mut Child, log: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = format!("{}/readyz", self.api);
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("scheduler exited with {status}:\n{}", self.log(log));
            }
            if http_ok(&url) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("scheduler not ready in 60 s:\n{}", self.log(log));
    }
}

/// A plain HTTP GET on loopback, answered 200?
pub fn http_ok(url: &str) -> bool {
    use std::io::{Read, Write};
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let Ok(mut stream) = std::net::TcpStream::connect(host) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

pub fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Every photo of the test library's folder in one album, so that a run has enough jobs to interrupt.
pub fn one_album_library(album: &str) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let album_dir = root.path().join(album);
    std::fs::create_dir_all(&album_dir).unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/library/folder");
    for folder in std::fs::read_dir(source).unwrap() {
        let folder: PathBuf = folder.unwrap().path();
        for photo in std::fs::read_dir(&folder).unwrap() {
            let photo = photo.unwrap().path();
            if matches!(
                photo.extension().and_then(|e| e.to_str()),
                Some("jpg" | "png")
            ) {
                std::fs::copy(&photo, album_dir.join(photo.file_name().unwrap())).unwrap();
            }
        }
    }
    root
}
