//! The pet part of a shard's analysis: found in the same pass as the rest, stored with the shard's
//! analysis and cached per (detector, photo); a second analysis computes nothing (it only refills a
//! flushed cache), and a shard analysed before the detector was fetched computes only its pets.
//!
//! Needs the pet detector in `REVERIE_MODELS_DIR` (scripts/test fetches it).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reverie_library::{import, load_manifest, ImportOptions, ImportSource};
use reverie_pets::{PetDetector, Species};
use reverie_shared::ids::TenantId;
use reverie_shared::keys;
use reverie_shared::ports::cache::{Cache, MemoryCache};
use reverie_shared::ports::store::LocalStore;
use reverie_worker::analysis::{analyse_shard, Analyser, Outcome};

fn analyser(pets: bool) -> Analyser {
    let detector = || {
        let dir = std::env::var_os("REVERIE_MODELS_DIR")
            .map(PathBuf::from)
            .expect("REVERIE_MODELS_DIR must name the directory `reverie models fetch` filled");
        PetDetector::load(&dir, &candle_core::Device::Cpu)
            .map(Arc::new)
            .map_err(|e| e.to_string())
    };
    Analyser {
        faces: Err("faces are not needed here".to_string()),
        segmenter: None,
        pets: if pets {
            detector()
        } else {
            Err("not fetched yet".to_string())
        },
        cache_ttl: Duration::from_secs(600),
    }
}

#[tokio::test]
async fn pets_are_analysed_once_cached_and_added_to_an_older_analysis() {
    let dir = tempfile::tempdir().unwrap();
    let photos = dir.path().join("photos");
    std::fs::create_dir_all(&photos).unwrap();
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/pets/photos");
    for name in [
        "dog_german_shepherd.jpg",
        "cat_chelsea.png",
        "person_astronaut_no_animal.jpg",
    ] {
        std::fs::copy(fixtures.join(name), photos.join(name)).unwrap();
    }
    let store = LocalStore::open(dir.path().join("store")).unwrap();
    let cache = MemoryCache::open(&dir.path().join("cache.bin"), 64 << 20).unwrap();
    let tenant = TenantId::new("pat").unwrap();
    import(
        &store,
        &tenant,
        ImportSource::Folder(photos),
        &ImportOptions::default(),
    )
    .await
    .unwrap();
    let manifest = load_manifest(&store, &tenant).await.unwrap();
    let shard = &manifest.shards[0].id;

    // Before the detector was fetched: no pets, and the analysis says why.
    let (before, outcome) = analyse_shard(&analyser(false), &store, &cache, &tenant, shard)
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Computed);
    assert!(before.pet_model.is_none() && before.pets_skipped.is_some());
    assert!(before.photos.iter().all(|p| p.pets.is_empty()));

    // With the detector: the pets are added, the rest of the analysis is the stored one.
    let with_pets = analyser(true);
    let (after, outcome) = analyse_shard(&with_pets, &store, &cache, &tenant, shard)
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Computed);
    assert_eq!(
        after.pet_model.as_deref(),
        Some(reverie_pets::fetch::DETECTOR_SHA256)
    );
    let species: Vec<Vec<Species>> = after
        .photos
        .iter()
        .map(|p| p.pets.iter().map(|x| x.species).collect())
        .collect();
    let mut found: Vec<Species> = species.concat();
    found.sort();
    assert_eq!(found, [Species::Dog, Species::Cat], "{species:?}");
    for (old, new) in before.photos.iter().zip(&after.photos) {
        assert_eq!(
            (&old.palette, &old.fingerprint),
            (&new.palette, &new.fingerprint)
        );
    }
    let astronaut = after.photos.iter().find(|p| p.pets.is_empty()).unwrap();
    assert!(
        !astronaut.bodies.is_empty(),
        "the astronaut is a body, not a pet"
    );

    // A second analysis computes nothing; a flushed cache is refilled from the stored analysis.
    let (_, outcome) = analyse_shard(&with_pets, &store, &cache, &tenant, shard)
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Persisted { refilled: 0 });
    let dog_photo = after
        .photos
        .iter()
        .find(|p| !p.pets.is_empty() && p.pets[0].species == Species::Dog)
        .unwrap();
    let key = keys::embedding_cache_key(
        &tenant,
        "pet",
        reverie_pets::fetch::DETECTOR_SHA256,
        &dog_photo.photo,
    );
    assert!(cache.get_many(std::slice::from_ref(&key)).await.unwrap()[0].is_some());
    cache
        .delete_prefix(&format!("reverie:{tenant}:emb:"))
        .await
        .unwrap();
    let (_, outcome) = analyse_shard(&with_pets, &store, &cache, &tenant, shard)
        .await
        .unwrap();
    assert!(
        matches!(outcome, Outcome::Persisted { refilled } if refilled > 0),
        "{outcome:?}"
    );
    let cached = cache
        .get_many(&[key])
        .await
        .unwrap()
        .remove(0)
        .expect("refilled");
    let cached: serde_json::Value = serde_json::from_slice(&cached).unwrap();
    assert_eq!(cached[0]["species"], "dog");
}
