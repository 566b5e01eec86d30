//! Importing the sample library (tests/fixtures/library) into the embedded store and a real S3 server:
//! metadata, places, light, Takeout quirks, the damaged corpus, re-imports and interrupted imports.

use std::collections::BTreeMap;
use std::path::PathBuf;

use reverie_library::{
    import, load_manifest, read_samples, ImportOptions, ImportSource, LibraryManifest, PhotoEntry,
};
use reverie_shared::ids::TenantId;
use reverie_shared::keys;
use reverie_shared::ports::store::{LocalStore, ObjectStore, S3Store};

fn fixture(part: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/library")
        .join(part)
}

fn by_name(manifest: &LibraryManifest) -> BTreeMap<String, &PhotoEntry> {
    manifest
        .photos
        .iter()
        .map(|p| (p.meta.original.rsplit('/').next().unwrap().to_string(), p))
        .collect()
}

async fn s3_store() -> S3Store {
    reverie_shared::testing::s3_store("reverie-lib").await
}

async fn folder_library_contract(store: &dyn ObjectStore) {
    let tenant = TenantId::new("alice").unwrap();
    let options = ImportOptions {
        shard_max_photos: 4,
        ..ImportOptions::default()
    };
    let report = import(
        store,
        &tenant,
        ImportSource::Folder(fixture("folder")),
        &options,
    )
    .await
    .unwrap();
    assert_eq!(report.imported, 11, "{report:?}");
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    assert_eq!(report.shards_written, 3, "11 photos in shards of 4");

    let manifest = load_manifest(store, &tenant).await.unwrap();
    let photos = by_name(&manifest);
    let light = |name: &str| photos[name].meta.light.clone();
    assert!(
        light("waikiki_sunset.jpg").contains(&"sunset".to_string()),
        "{:?}",
        light("waikiki_sunset.jpg")
    );
    assert!(light("waikiki_sunset.jpg").contains(&"golden_hour".to_string()));
    assert_eq!(light("noon_swim.jpg"), ["daylight"]);
    assert_eq!(light("night_market.jpg"), ["night"]);
    assert_eq!(light("bar_at_night.jpg"), ["night"]);
    assert!(
        light("rim_sunrise.jpg").contains(&"sunrise".to_string()),
        "{:?}",
        light("rim_sunrise.jpg")
    );
    assert!(
        light("chelsea.png").is_empty(),
        "no time or place, no light"
    );

    let sunset = &photos["waikiki_sunset.jpg"].meta;
    let captured = sunset.captured.as_ref().unwrap();
    assert_eq!(captured.utc_offset_minutes, Some(-600));
    assert_eq!(captured.utc.as_deref(), Some("2023-07-15T05:10:00+00:00"));
    assert_eq!(sunset.place.as_ref().unwrap().country, "US");
    assert_eq!(sunset.camera.as_deref(), Some("Reverie Fixture Cam"));
    assert!(sunset.albums.contains("Hawaii 2023"));

    let sideways = &photos["sideways.jpg"].meta;
    assert_eq!(sideways.orientation, 6);
    let home = &photos["home_1.jpg"].meta;
    let (stored_w, stored_h) =
        image::image_dimensions(fixture("folder/Family/sideways.jpg")).unwrap();
    assert_eq!(
        (sideways.width, sideways.height),
        (stored_h, stored_w),
        "orientation 6 swaps the stored size"
    );
    assert_eq!(home.rating, Some(5));
    assert!(home.keywords.contains("garden"));
    assert_eq!(home.people[0].name, "Jesper");
    assert_eq!(home.description.as_deref(), Some("Jesper in the garden"));

    // Places: Aarhus on three days is Home; the others by their names.
    assert_eq!(manifest.places[0].name, "Home");
    assert!(
        manifest.places[0].label.ends_with("DK"),
        "{:?}",
        manifest.places[0]
    );
    assert_eq!(manifest.places[0].photos, 4);
    let labels: Vec<&str> = manifest.places.iter().map(|p| p.label.as_str()).collect();
    assert!(
        labels.iter().any(|l| l.contains("Hawaii, US")),
        "{labels:?}"
    );
    assert!(labels.iter().any(|l| l.ends_with("FR")), "{labels:?}");

    // Shards round-trip: every photo's bytes by range, and the whole shard streamed.
    for entry in &manifest.photos {
        let bytes = store
            .get_range(
                &keys::shard(&tenant, &entry.shard),
                entry.offset..entry.offset + entry.length,
            )
            .await
            .unwrap();
        assert_eq!(
            reverie_shared::ids::PhotoId::of_bytes(&bytes),
            entry.meta.id
        );
    }
    let first = &manifest.shards[0];
    let tar = store.get(&keys::shard(&tenant, &first.id)).await.unwrap();
    let mut streamed = Vec::new();
    read_samples(&tar[..], |sample| {
        assert_eq!(
            reverie_shared::ids::PhotoId::of_bytes(&sample.image),
            sample.photo
        );
        streamed.push(sample.meta.original);
        Ok(())
    })
    .unwrap();
    assert_eq!(streamed.len(), first.photos);

    // Re-importing adds nothing.
    let again = import(
        store,
        &tenant,
        ImportSource::Folder(fixture("folder")),
        &options,
    )
    .await
    .unwrap();
    assert_eq!(
        (again.imported, again.already_present, again.shards_written),
        (0, 11, 0)
    );
    assert_eq!(
        load_manifest(store, &tenant).await.unwrap().photos.len(),
        11
    );

    // An import killed after its shards but before its manifest finishes on re-run without duplicates.
    store
        .delete(&keys::library_manifest(&tenant))
        .await
        .unwrap();
    let rerun = import(
        store,
        &tenant,
        ImportSource::Folder(fixture("folder")),
        &options,
    )
    .await
    .unwrap();
    assert_eq!(rerun.imported, 11);
    let shards = store.list(&keys::shards_prefix(&tenant)).await.unwrap();
    assert_eq!(
        shards.len(),
        3,
        "the same shards were rewritten, not duplicated"
    );
}

#[tokio::test]
async fn folder_library_into_the_local_store() {
    let dir = tempfile::tempdir().unwrap();
    folder_library_contract(&LocalStore::open(dir.path()).unwrap()).await;
}

#[tokio::test]
async fn folder_library_into_s3() {
    let store = s3_store().await;
    folder_library_contract(&store).await;
    store.remove_bucket().await.unwrap();
}

#[tokio::test]
async fn takeout_export_with_its_naming_quirks() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let tenant = TenantId::new("bob").unwrap();
    let report = import(
        &store,
        &tenant,
        ImportSource::Folder(fixture("takeout")),
        &ImportOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(report.imported, 7, "{report:?}");
    let manifest = load_manifest(&store, &tenant).await.unwrap();
    let photos = by_name(&manifest);
    let rome = &photos["IMG_0001.jpg"].meta;
    assert_eq!(rome.description.as_deref(), Some("Rome, by the Colosseum"));
    assert_eq!(rome.people[0].name, "Lionel");
    assert!(rome.albums.contains("Italy 2023"));
    // EXIF local 18:30 and the sidecar's UTC instant 16:30 give +02:00.
    assert_eq!(
        rome.captured.as_ref().unwrap().utc_offset_minutes,
        Some(120)
    );
    assert_eq!(rome.place.as_ref().unwrap().country, "IT");
    let long = &photos["PXL_20230503_101112345.NIGHT.PORTRAIT-01.COVER.jpg"].meta;
    assert_eq!(
        long.people[0].name, "Eileen",
        "the truncated sidecar was found"
    );
    assert!(photos["IMG_0002.jpg"].meta.favourite);
    let copy = &photos["IMG_0002(1).jpg"].meta;
    assert!(
        (copy.gps.unwrap().longitude - 12.3388).abs() < 1e-3,
        "(1) copies have their own sidecar"
    );
    let edited = &photos["IMG_0002-edited.jpg"].meta;
    assert_eq!(
        edited.people[0].name, "Grace",
        "edited copies share the original's sidecar"
    );
    assert_eq!(
        photos["IMG_0003.jpg"].meta.place.as_ref().unwrap().country,
        "IT",
        "supplemental-metadata sidecar"
    );
    assert!(
        photos["IMG_0004.jpg"].meta.albums.is_empty(),
        "year folders are not albums"
    );
}

#[tokio::test]
async fn objects_under_an_s3_prefix_are_a_source() {
    let store = s3_store().await;
    let source_dir = fixture("folder");
    for (relative, path) in [
        ("Paris/bar_at_night.jpg", "Paris/bar_at_night.jpg"),
        ("Pets/chelsea.png", "Pets/chelsea.png"),
    ] {
        let bytes = std::fs::read(source_dir.join(path)).unwrap();
        store
            .put(&format!("incoming/{relative}"), bytes.into())
            .await
            .unwrap();
    }
    let tenant = TenantId::new("carol").unwrap();
    let source = ImportSource::Objects {
        store: &store,
        prefix: "incoming".into(),
    };
    let report = import(&store, &tenant, source, &ImportOptions::default())
        .await
        .unwrap();
    assert_eq!(report.imported, 2);
    let manifest = load_manifest(&store, &tenant).await.unwrap();
    assert!(manifest.albums().contains_key("Paris"));
    store.remove_bucket().await.unwrap();
}

#[tokio::test]
async fn the_damaged_corpus_is_reported_file_by_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let tenant = TenantId::new("dave").unwrap();
    let options = ImportOptions {
        max_pixels: 50_000_000,
        ..ImportOptions::default()
    };
    let report = import(
        &store,
        &tenant,
        ImportSource::Folder(fixture("damaged")),
        &options,
    )
    .await
    .unwrap();
    let reason = |file: &str| -> String {
        report
            .skipped
            .iter()
            .chain(&report.notes)
            .filter(|s| s.file.ends_with(file))
            .map(|s| {
                serde_json::to_value(&s.reason).unwrap()["kind"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    let expected = [
        ("01_truncated.jpg", "corrupt"),
        ("02_text_with_jpg_extension.jpg", "not_an_image"),
        ("03_empty.png", "empty"),
        ("04_decompression_bomb.png", "too_large"),
        ("05_random_bytes.webp", "not_an_image"),
        ("06_corrupt_stream.png", "corrupt"),
        // A HEIF header with nothing behind it: unsupported without a decoder, corrupt with one.
        (
            "07_iphone.heic",
            if cfg!(feature = "heic") {
                "corrupt"
            } else {
                "unsupported"
            },
        ),
        ("08_bad_sidecar.jpg", "bad_sidecar"),
        ("09_impossible_exif.jpg", "impossible_metadata"),
        ("10_impossible_gps.jpg", "impossible_metadata"),
        ("12_duplicate_copy.jpg", "duplicate"),
        ("13_link_outside.jpg", "unsafe_path"),
        ("14_broken_frame.gif", "corrupt"),
        ("15_garbage.tiff", "corrupt"),
    ];
    for (file, kind) in expected {
        assert!(
            reason(file).split(',').any(|k| k == kind),
            "{file}: expected {kind}, got {:?}",
            reason(file)
        );
    }
    // Damaged metadata does not cost the photo: 08, 09, 10 and 11 are in the library.
    assert_eq!(report.imported, 4, "{:#?}", report);
    let manifest = load_manifest(&store, &tenant).await.unwrap();
    let gps_photo = manifest
        .photos
        .iter()
        .find(|p| p.meta.original.ends_with("10_impossible_gps.jpg"))
        .unwrap();
    assert!(gps_photo.meta.gps.is_none() && gps_photo.meta.captured.is_none());
}

/// Every photo's metadata, by content id, as JSON (so whole records compare).
fn metadata_by_id(manifest: &LibraryManifest) -> BTreeMap<String, serde_json::Value> {
    manifest
        .photos
        .iter()
        .map(|p| {
            (
                p.meta.id.to_string(),
                serde_json::to_value(&p.meta).unwrap(),
            )
        })
        .collect()
}

/// The Takeout export as one zip gives the same photos with the same metadata as the unpacked folder.
async fn takeout_zip_matches_its_folder(store: &dyn ObjectStore) {
    let from_folder = TenantId::new("unpacked").unwrap();
    let from_zip = TenantId::new("zipped").unwrap();
    let options = ImportOptions::default();
    let folder_report = import(
        store,
        &from_folder,
        ImportSource::Folder(fixture("takeout")),
        &options,
    )
    .await
    .unwrap();
    let zip_report = import(
        store,
        &from_zip,
        ImportSource::Zip(fixture("takeout.zip")),
        &options,
    )
    .await
    .unwrap();
    assert_eq!(zip_report.imported, 7, "{zip_report:?}");
    assert!(zip_report.skipped.is_empty(), "{:?}", zip_report.skipped);
    assert_eq!(zip_report.notes.len(), folder_report.notes.len());

    let folder = load_manifest(store, &from_folder).await.unwrap();
    let zipped = load_manifest(store, &from_zip).await.unwrap();
    assert_eq!(metadata_by_id(&zipped), metadata_by_id(&folder));
    // The sidecar rules ran on the zip's names: truncated, "(1)" and "-edited" all found theirs.
    let photos = by_name(&zipped);
    assert_eq!(
        photos["PXL_20230503_101112345.NIGHT.PORTRAIT-01.COVER.jpg"]
            .meta
            .people[0]
            .name,
        "Eileen"
    );
    assert!((photos["IMG_0002(1).jpg"].meta.gps.unwrap().longitude - 12.3388).abs() < 1e-3);
    assert_eq!(photos["IMG_0002-edited.jpg"].meta.people[0].name, "Grace");
    assert!(photos["IMG_0001.jpg"].meta.albums.contains("Italy 2023"));

    // Every photo's bytes in the zip tenant's shards are the original file's.
    for entry in &zipped.photos {
        let bytes = store
            .get_range(
                &keys::shard(&from_zip, &entry.shard),
                entry.offset..entry.offset + entry.length,
            )
            .await
            .unwrap();
        let original = std::fs::read(fixture("takeout").join(&entry.meta.original)).unwrap();
        assert_eq!(&bytes[..], &original[..], "{}", entry.meta.original);
    }
}

#[tokio::test]
async fn takeout_zip_into_the_local_store() {
    let dir = tempfile::tempdir().unwrap();
    takeout_zip_matches_its_folder(&LocalStore::open(dir.path()).unwrap()).await;
}

#[tokio::test]
async fn takeout_zip_into_s3() {
    let store = s3_store().await;
    takeout_zip_matches_its_folder(&store).await;
    store.remove_bucket().await.unwrap();
}

#[tokio::test]
async fn malicious_zip_entries_are_refused_by_name_and_the_rest_imports() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let tenant = TenantId::new("mallory").unwrap();
    let options = ImportOptions {
        max_pixels: 50_000_000,
        max_file_bytes: 1024 * 1024,
        ..ImportOptions::default()
    };
    let report = import(
        &store,
        &tenant,
        ImportSource::Zip(fixture("malicious.zip")),
        &options,
    )
    .await
    .unwrap();
    let refused: BTreeMap<&str, String> = report
        .skipped
        .iter()
        .map(|s| (s.file.as_str(), s.reason.to_string()))
        .collect();
    let expected = [
        ("../../escaped.jpg", "unsafe path: path traversal (..)"),
        (
            "Takeout/../../../tmp/escaped_too.jpg",
            "unsafe path: path traversal (..)",
        ),
        ("/etc/absolute.jpg", "unsafe path: absolute path"),
        (
            "Takeout/Google Photos/Trip/link_to_passwd.jpg",
            "unsafe path: symbolic link in archive",
        ),
    ];
    for (file, reason) in expected {
        assert_eq!(
            refused.get(file).map(String::as_str),
            Some(reason),
            "{refused:#?}"
        );
    }
    let kinds = report.count_by_reason();
    assert_eq!(kinds.get("unsafe_path"), Some(&4), "{kinds:?}");
    assert_eq!(
        kinds.get("too_large"),
        Some(&1),
        "the pixel limit applies inside zips"
    );
    assert!(refused["Takeout/Google Photos/Trip/bomb.png"].contains("100000x100000"));
    assert_eq!(kinds.get("file_too_large"), Some(&1), "{kinds:?}");
    assert!(refused["Takeout/Google Photos/Trip/zeros.jpg"].contains("8388608 bytes"));
    assert_eq!(report.skipped.len(), 6, "{:#?}", report.skipped);

    assert_eq!(report.imported, 1);
    let manifest = load_manifest(&store, &tenant).await.unwrap();
    assert_eq!(
        manifest.photos[0].meta.original,
        "Takeout/Google Photos/Trip/good.jpg"
    );
    assert!(manifest.photos[0].meta.albums.contains("Trip"));
}

#[tokio::test]
async fn a_file_that_is_not_a_zip_fails_the_import_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let tenant = TenantId::new("erin").unwrap();
    let error = import(
        &store,
        &tenant,
        ImportSource::Zip(fixture("damaged/05_random_bytes.webp")),
        &ImportOptions::default(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("05_random_bytes.webp") && error.contains("not a readable zip archive"),
        "{error}"
    );
}

async fn import_heic_fixture() -> (reverie_library::ImportReport, LibraryManifest) {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let tenant = TenantId::new("iris").unwrap();
    let report = import(
        &store,
        &tenant,
        ImportSource::Folder(fixture("heic")),
        &ImportOptions::default(),
    )
    .await
    .unwrap();
    let manifest = load_manifest(&store, &tenant).await.unwrap();
    (report, manifest)
}

/// Without the `heic` feature a real iPhone-style HEIC is reported, by name, as unsupported.
#[cfg(not(feature = "heic"))]
#[tokio::test]
async fn heic_without_a_decoder_is_reported_unsupported_never_dropped() {
    let (report, manifest) = import_heic_fixture().await;
    assert_eq!(report.imported, 0);
    assert!(manifest.photos.is_empty());
    assert_eq!(report.skipped.len(), 1, "{:?}", report.skipped);
    assert_eq!(report.skipped[0].file, "bar_at_night.heic");
    assert_eq!(report.count_by_reason().get("unsupported"), Some(&1));
    assert!(report.skipped[0].reason.to_string().contains("heic"));
}

/// With the `heic` feature the HEIC (encoded by libheif from folder/Paris/bar_at_night.jpg) imports
/// with its EXIF and the same picture as the JPEG it was made from.
#[cfg(feature = "heic")]
#[tokio::test]
async fn heic_decodes_with_its_exif_and_the_same_picture_as_its_jpeg() {
    let (report, manifest) = import_heic_fixture().await;
    assert_eq!(report.imported, 1, "{report:?}");
    let heic = &manifest.photos[0].meta;
    assert_eq!(heic.format, "heic");
    let jpeg_bytes = std::fs::read(fixture("folder/Paris/bar_at_night.jpg")).unwrap();
    let jpeg = image::load_from_memory(&jpeg_bytes).unwrap();
    assert_eq!((heic.width, heic.height), (jpeg.width(), jpeg.height()));
    let captured = heic.captured.as_ref().unwrap();
    assert_eq!(captured.local, "2022-10-01T22:30:00");
    assert_eq!(captured.utc_offset_minutes, Some(120));
    assert_eq!(heic.place.as_ref().unwrap().country, "FR");

    let heic_bytes = std::fs::read(fixture("heic/bar_at_night.heic")).unwrap();
    let decoded = reverie_library::decode(&heic_bytes, 1_000_000, 1)
        .unwrap()
        .to_rgb8();
    let reference = jpeg.to_rgb8();
    let mean_abs: f64 = decoded
        .as_raw()
        .iter()
        .zip(reference.as_raw())
        .map(|(a, b)| (f64::from(*a) - f64::from(*b)).abs())
        .sum::<f64>()
        / reference.as_raw().len() as f64;
    assert!(
        mean_abs < 8.0,
        "HEIC differs from its JPEG by {mean_abs:.1} per channel"
    );
    // The pixel limit applies before decoding, as for every format.
    assert!(matches!(
        reverie_library::decode(&heic_bytes, 10_000, 1),
        Err(reverie_library::Damage::TooLarge { .. })
    ));
}
