//! An album-to-art run through the real binary and real services, interrupted hard and resumed:
//! `reverie batch` is started, the worker and the scheduler are killed with SIGKILL while jobs are in
//! flight, the client is killed too; then everything is started again and the same `reverie batch`
//! command is re-run. The output album must hold exactly one image and one provenance file per album
//! photo (no duplicates, no gaps), plus its manifest and contact sheet.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use reverie_shared::ports::store::{ObjectStore, S3Store};
use reverie_shared::testing;

/// Everything one farm of processes shares: services, prefixes, ports, a data directory.
struct ProcessFarm {
    data: tempfile::TempDir,
    env: Vec<(String, String)>,
    api: String,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl ProcessFarm {
    fn new(bucket: &str, prefix: &str) -> ProcessFarm {
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

    fn command(&self, args: &[&str]) -> Command {
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
    fn run(&self, args: &[&str]) -> String {
        let output = self.command(args).output().unwrap();
        assert!(
            output.status.success(),
            "reverie {args:?} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// Creates `tenant` with library consent and imports a library of one album; returns the tenant's
    /// token and the library folder (kept alive while the test runs).
    fn tenant_with_album(&self, tenant: &str, album: &str) -> (String, tempfile::TempDir) {
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

    fn spawn(&self, args: &[&str], log: &str) -> Child {
        let log = std::fs::File::create(self.data.path().join(log)).unwrap();
        self.command(args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.data.path().join(name)).unwrap_or_default()
    }

    fn wait_until_ready(&self, child: &mut Child, log: &str) {
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
fn http_ok(url: &str) -> bool {
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

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Every photo of the test library's folder in one album, so that a run has enough jobs to interrupt.
fn one_album_library(album: &str) -> tempfile::TempDir {
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

/// The album's photos as the library manifest lists them (photo ids).
fn album_photos(show: &serde_json::Value, album: &str) -> usize {
    show["albums"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == album)
        .unwrap_or_else(|| panic!("album {album} in {show:#}"))["photos"]
        .as_u64()
        .unwrap() as usize
}

async fn output_keys(store: &S3Store, prefix: &str) -> Vec<String> {
    let mut keys: Vec<String> = store
        .list(prefix)
        .await
        .unwrap()
        .into_iter()
        .map(|meta| meta.key)
        .collect();
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interrupted_album_run_resumes_with_no_duplicates_and_no_gaps() {
    let store = testing::s3_store("album-resume").await;
    let prefix = testing::unique("resume");
    let farm = ProcessFarm::new(&store.config().bucket, &prefix);
    let tenant = prefix.clone();

    let album = "Best of";
    let (token, _library) = farm.tenant_with_album(&tenant, album);
    let show: serde_json::Value =
        serde_json::from_str(&farm.run(&["library", "show", "--tenant", &tenant, "--json"]))
            .unwrap();
    let expected = album_photos(&show, album);
    assert!(expected >= 8, "the test album has several photos: {show:#}");

    let mut scheduler = farm.spawn(&["scheduler"], "scheduler-1.log");
    farm.wait_until_ready(&mut scheduler, "scheduler-1.log");
    let mut worker = farm.spawn(&["worker"], "worker-1.log");
    let batch_args = [
        "batch",
        "--api",
        &farm.api,
        "--token",
        &token,
        "--tenant",
        &tenant,
        "--album",
        album,
        "--style",
        "oil",
        "--to",
        "Best of in oil",
    ];
    let mut client = farm.spawn(&batch_args, "batch-1.log");

    // Interrupt as soon as the first image is durable: worker, scheduler and client all die hard.
    let destination = format!("tenants/{tenant}/albums/best-of-in-oil/");
    let deadline = Instant::now() + Duration::from_secs(300);
    let done_before_kill = loop {
        let done = output_keys(&store, &destination)
            .await
            .iter()
            .filter(|k| k.ends_with(".json") && !k.ends_with("manifest.json"))
            .count();
        if done >= 1 {
            break done;
        }
        if let Some(status) = client.try_wait().unwrap() {
            assert!(
                status.success(),
                "reverie batch failed:\n{}",
                farm.log("batch-1.log")
            );
        }
        assert!(
            Instant::now() < deadline,
            "no output within 300 s\nworker:\n{}\nscheduler:\n{}\nbatch:\n{}",
            farm.log("worker-1.log"),
            farm.log("scheduler-1.log"),
            farm.log("batch-1.log")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    kill(&mut worker);
    kill(&mut scheduler);
    kill(&mut client);
    assert!(
        done_before_kill < expected,
        "the kill must land mid-run ({done_before_kill} of {expected} done)"
    );

    // Start again and re-run the same command: it attaches to the same run and waits for the rest.
    let mut scheduler = farm.spawn(&["scheduler"], "scheduler-2.log");
    farm.wait_until_ready(&mut scheduler, "scheduler-2.log");
    let mut worker = farm.spawn(&["worker"], "worker-2.log");
    let resumed = farm.command(&batch_args).output().unwrap();
    let resumed_log = String::from_utf8_lossy(&resumed.stderr).to_string();
    kill(&mut worker);
    kill(&mut scheduler);
    assert!(
        resumed.status.success(),
        "the resumed run failed:\n{resumed_log}\nworker:\n{}\nscheduler:\n{}",
        farm.log("worker-2.log"),
        farm.log("scheduler-2.log")
    );

    // Exactly one image and one provenance file per album photo, whatever was redone.
    let mut keys = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        keys = output_keys(&store, &destination).await;
        if keys.iter().any(|k| k.ends_with("contact-sheet.png")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stems = |ext: &str| -> BTreeSet<String> {
        keys.iter()
            .filter_map(|k| k.strip_prefix(&destination))
            .filter_map(|k| k.strip_suffix(ext))
            .filter(|s| *s != "manifest" && *s != "contact-sheet")
            .map(str::to_string)
            .collect()
    };
    let (images, provenance) = (stems(".png"), stems(".json"));
    assert_eq!(
        images.len(),
        expected,
        "one image per album photo: {keys:#?}"
    );
    assert_eq!(images, provenance, "each image has its provenance");
    assert_eq!(
        keys.len(),
        2 * expected + 2,
        "nothing but images, provenance, manifest and contact sheet: {keys:#?}"
    );
    let manifest: serde_json::Value = serde_json::from_slice(
        &store
            .get(&format!("{destination}manifest.json"))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["done"], expected, "{manifest:#}");
    assert_eq!(manifest["failed"], 0, "{manifest:#}");
    let listed: BTreeSet<String> = manifest["photos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["photo"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, images, "the manifest lists exactly the images");

    store.delete_prefix("").await.unwrap();
    let _ = store.remove_bucket().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn album_art_goes_to_a_registered_bucket_of_the_tenant_and_nowhere_else() {
    let store = testing::s3_store("album-dest").await;
    let theirs = testing::s3_store("tenant-own").await;
    let prefix = testing::unique("dest");
    let farm = ProcessFarm::new(&store.config().bucket, &prefix);
    let tenant = prefix.clone();
    let album = "Best of";
    let (token, _library) = farm.tenant_with_album(&tenant, album);
    let own_bucket = theirs.config().bucket.clone();
    let registered = farm.run(&[
        "tenant",
        "add-destination",
        &tenant,
        &format!("s3://{own_bucket}/art/"),
    ]);
    assert_eq!(registered.trim(), format!("s3://{own_bucket}/art"));

    let mut scheduler = farm.spawn(&["scheduler"], "scheduler.log");
    farm.wait_until_ready(&mut scheduler, "scheduler.log");
    let mut worker = farm.spawn(&["worker"], "worker.log");
    let batch = |to: &str| {
        farm.command(&[
            "batch", "--api", &farm.api, "--token", &token, "--tenant", &tenant, "--album", album,
            "--style", "pencil", "--limit", "2", "--to", to,
        ])
        .output()
        .unwrap()
    };
    // A bucket nobody registered for this tenant is refused, naming the field and the reason.
    let refused = batch("s3://someone-else/art");
    let refused_text = String::from_utf8_lossy(&refused.stdout).to_string()
        + &String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{refused_text}");
    assert!(
        refused_text.contains("destination_not_allowed")
            && refused_text.contains("album_to_art.to"),
        "{refused_text}"
    );

    let to = format!("s3://{own_bucket}/art/best-of");
    let delivered = batch(&to);
    kill(&mut worker);
    kill(&mut scheduler);
    assert!(
        delivered.status.success(),
        "{}\nworker:\n{}",
        String::from_utf8_lossy(&delivered.stderr),
        farm.log("worker.log")
    );
    let keys = output_keys(&theirs, "art/best-of/").await;
    assert_eq!(
        keys.iter().filter(|k| k.ends_with(".png")).count(),
        3,
        "two images and the contact sheet in the tenant's bucket: {keys:#?}"
    );
    assert!(keys.contains(&"art/best-of/manifest.json".to_string()));
    let in_farm_store = output_keys(&store, &format!("tenants/{tenant}/albums/")).await;
    assert!(in_farm_store.is_empty(), "{in_farm_store:#?}");

    for bucket in [&store, &theirs] {
        bucket.delete_prefix("").await.unwrap();
        let _ = bucket.remove_bucket().await;
    }
}
