//! Album-to-art runs through the real scheduler: one batch job per album photo, outputs keyed by photo in
//! the output album, a manifest and contact sheet at the end, resumable and idempotent.

mod common;

use common::{reply_of_kind, seed_library, take_job, test_library, unique, Farm};
use reverie_scheduler::replies::ReplyBody;
use reverie_scheduler::SchedulerOptions;
use reverie_shared::jobs::{JobSpec, Priority};

fn album_request(tenant: &str, album: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schema_version": 1,
        "tenant": tenant,
        "prompt": "",
        "n": 1,
        "priority": "batch",
        "kind": "album_to_art",
        "album_to_art": { "album": album, "style": "watercolour", "limit": 100, "to": "Italy in watercolour" },
    }))
    .unwrap()
}

#[tokio::test]
async fn an_album_becomes_art_once_with_a_manifest() {
    let farm = Farm::start(SchedulerOptions::default()).await;
    let name = unique("album");
    let (tenant, token) = farm.tenant(&name, true).await;
    let library = test_library();
    let album_photos: Vec<String> = library
        .photos
        .iter()
        .filter(|p| p.albums.iter().any(|a| a == "Italy 2023"))
        .map(|p| p.photo.to_string())
        .collect();
    assert!(
        album_photos.len() >= 2,
        "the test library has an album of several photos"
    );
    seed_library(&farm, &tenant, &library).await;
    let (reply_to, mut replies) = farm.reply_queue().await;
    let mut jobs = farm
        .backends
        .queue
        .consume(&farm.queues().generate, 50)
        .await
        .unwrap();

    let run_id = unique("run");
    farm.publish_request(
        &album_request(tenant.as_str(), "italy 2023"),
        Some(&run_id),
        Some(&token),
        &reply_to,
    )
    .await;
    let accepted = reply_of_kind(&mut replies, "accepted").await;
    let ReplyBody::Accepted { jobs: job_ids, .. } = accepted.body else {
        unreachable!()
    };
    assert_eq!(job_ids.len(), album_photos.len(), "one job per album photo");

    let mut painted = Vec::new();
    for _ in 0..album_photos.len() {
        let (job, delivery) = take_job(&mut jobs).await;
        let JobSpec::Generate(spec) = &job.spec else {
            panic!("generate job expected")
        };
        assert_eq!(job.priority, Priority::Batch, "album runs are batch work");
        assert_eq!(spec.render.style, "watercolour");
        assert_eq!(spec.references.len(), 1);
        let destination = spec.output.destination.clone().unwrap();
        assert!(
            destination.ends_with("/albums/italy-in-watercolour"),
            "{destination}"
        );
        assert_eq!(
            spec.output.name.as_deref(),
            Some(spec.references[0].photo.as_str())
        );
        painted.push(spec.references[0].photo.to_string());
        common::complete_job(&farm, &job, delivery).await;
    }
    painted.sort();
    let mut expected = album_photos.clone();
    expected.sort();
    assert_eq!(painted, expected, "every album photo, once");
    reply_of_kind(&mut replies, "done").await;

    let prefix = format!("tenants/{tenant}/albums/italy-in-watercolour/");
    let manifest_key = format!("{prefix}manifest.json");
    let mut manifest = None;
    for _ in 0..50 {
        if let Ok(bytes) = farm.backends.store.get(&manifest_key).await {
            manifest = Some(serde_json::from_slice::<serde_json::Value>(&bytes).unwrap());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let manifest = manifest.expect("the run ends with a manifest");
    assert_eq!(manifest["done"], album_photos.len());
    assert_eq!(
        manifest["photos"].as_array().unwrap().len(),
        album_photos.len()
    );

    // Resuming (the same run id again) makes no new jobs.
    farm.publish_request(
        &album_request(tenant.as_str(), "italy 2023"),
        Some(&run_id),
        Some(&token),
        &reply_to,
    )
    .await;
    let again = reply_of_kind(&mut replies, "accepted").await;
    assert!(matches!(
        again.body,
        ReplyBody::Accepted {
            duplicate: true,
            ..
        }
    ));
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(500), jobs.next())
            .await
            .is_err()
    );

    // An unknown album is refused with the closest names.
    farm.publish_request(
        &album_request(tenant.as_str(), "Itlay 2023"),
        None,
        Some(&token),
        &reply_to,
    )
    .await;
    let rejected = reply_of_kind(&mut replies, "rejected").await;
    let ReplyBody::Rejected { reasons } = rejected.body else {
        unreachable!()
    };
    assert_eq!(reasons[0].code, "unknown_album");
    assert!(
        reasons[0].suggestions.iter().any(|s| s == "Italy 2023"),
        "{reasons:?}"
    );

    let _ = farm.core.forget(&tenant).await;
    drop((replies, jobs));
    farm.cleanup().await;
}
