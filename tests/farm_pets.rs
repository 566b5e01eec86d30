//! "me and my dog at sunset, watercolour" on the real farm (the binary as scheduler, worker and
//! client on RabbitMQ, Redis and S3): the import queues the analysis, a worker finds the face and the
//! dog in one pass over the shard and groups people and pets, the tenant marks themselves as "me", and
//! the prompt renders with the dog's photo in the output's provenance. The dog's analysis is cached in
//! Redis per (detector, photo).
//!
//! Needs the face models and the pet detector in `REVERIE_MODELS_DIR` (scripts/test fetches them).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{kill, ProcessFarm};
use reverie_shared::ports::cache::Cache;
use reverie_shared::ports::store::ObjectStore;
use reverie_shared::testing;

fn documents(stdout: &str) -> Vec<serde_json::Value> {
    serde_json::Deserializer::from_str(stdout)
        .into_iter::<serde_json::Value>()
        .map(|d| d.expect("JSON output"))
        .collect()
}

/// Polls `list` until the analysis is done (a bare JSON array), at most `within`.
fn listed_when_done(
    farm: &ProcessFarm,
    what: &str,
    tenant: &str,
    within: Duration,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + within;
    loop {
        let value: serde_json::Value =
            serde_json::from_str(&farm.run(&[what, "list", "--tenant", tenant, "--json"])).unwrap();
        if let Some(list) = value.as_array() {
            return list.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the farm never finished the analysis: {value:#}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn me_and_my_dog_renders_through_the_farm_with_the_dogs_photo_in_the_provenance() {
    assert!(
        std::env::var_os("REVERIE_MODELS_DIR").is_some(),
        "REVERIE_MODELS_DIR is not set: run scripts/test (it fetches the face models and the pet detector)"
    );
    let store = testing::s3_store("farm-pets").await;
    let prefix = testing::unique("pets");
    let farm = ProcessFarm::new(&store.config().bucket, &prefix);
    let tenant = prefix.clone();
    let token = farm.run(&["tenant", "create", &tenant]).trim().to_string();
    farm.run(&["consent", "grant", "--tenant", &tenant, "library"]);
    let photos = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    std::fs::copy(
        root.join("faces/images/frpy_obama.png"),
        photos.path().join("me.png"),
    )
    .unwrap();
    std::fs::copy(
        root.join("pets/photos/dog_german_shepherd.jpg"),
        photos.path().join("our_dog.jpg"),
    )
    .unwrap();

    // A sunset (its light comes from the photo's time and place) for the setting.
    std::fs::copy(
        root.join("library/folder/Hawaii 2023/waikiki_sunset.jpg"),
        photos.path().join("waikiki_sunset.jpg"),
    )
    .unwrap();

    let mut scheduler = farm.spawn(&["scheduler"], "scheduler.log");
    farm.wait_until_ready(&mut scheduler, "scheduler.log");
    let mut worker = farm.spawn(&["worker"], "worker.log");
    farm.run(&[
        "library",
        "import",
        "--tenant",
        &tenant,
        &photos.path().display().to_string(),
    ]);

    let pets = listed_when_done(&farm, "pets", &tenant, Duration::from_secs(180));
    assert_eq!(pets.len(), 1, "{pets:#?}");
    assert_eq!(pets[0]["species"], "dog");
    assert_eq!(pets[0]["photos"][0]["photo"], "our_dog.jpg");
    let dog_photo = pets[0]["photos"][0]["photo_id"]
        .as_str()
        .unwrap()
        .to_string();
    let people = listed_when_done(&farm, "people", &tenant, Duration::from_secs(30));
    assert_eq!(people.len(), 1, "{people:#?}");
    farm.run(&[
        "people",
        "name",
        "--tenant",
        &tenant,
        &people[0]["id"].to_string(),
        "me",
    ]);

    // The worker cached the dog's analysis per (detector, photo) for every worker.
    let cache = testing::redis().await;
    let cached = cache
        .keys(&format!(
            "reverie:{tenant}:emb:pet:{}:",
            reverie_pets::fetch::DETECTOR_SHA256
        ))
        .await
        .unwrap();
    assert!(cached.iter().any(|k| k.ends_with(&dog_photo)), "{cached:?}");
    let key = cached
        .iter()
        .find(|k| k.ends_with(&dog_photo))
        .unwrap()
        .clone();
    let entry = cache
        .get_many(&[key])
        .await
        .unwrap()
        .remove(0)
        .expect("the cached entry");
    let entry: serde_json::Value = serde_json::from_slice(&entry).unwrap();
    assert_eq!(entry[0]["species"], "dog", "{entry}");

    let stdout = farm.run(&[
        "submit",
        "--api",
        &farm.api,
        "--token",
        &token,
        "--tenant",
        &tenant,
        "--wait",
        "me and my dog at sunset, watercolour",
    ]);
    let answers = documents(&stdout);
    let last = answers.last().expect("the final status");
    assert_eq!(last["state"], "succeeded", "{stdout}");
    let request = answers[0]["request_id"].as_str().expect("a request id");
    let key = format!("tenants/{tenant}/results/{request}/0.json");
    let provenance: serde_json::Value = serde_json::from_slice(
        &store
            .get(&key)
            .await
            .unwrap_or_else(|e| panic!("{key}: {e}")),
    )
    .unwrap();
    let references: Vec<&str> = provenance["references"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(
        references.contains(&dog_photo.as_str()),
        "the dog's photo is used: {provenance:#}"
    );
    kill(&mut worker);
    kill(&mut scheduler);
}
