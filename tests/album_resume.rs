//! An album-to-art run through the real binary and real services, interrupted hard and resumed:
//! `reverie batch` is started, the worker and the scheduler are killed with SIGKILL while jobs are in
//! flight, the client is killed too; then everything is started again and the same `reverie batch`
//! command is re-run. The output album must hold exactly one image and one provenance file per album
//! photo (no duplicates, no gaps), plus its manifest and contact sheet.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{kill, ProcessFarm};
use reverie_shared::ports::store::{ObjectStore, S3Store};
use reverie_shared::testing;

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
