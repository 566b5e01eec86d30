//! Takeout exports hold the same photo twice (`IMG.jpg` and `IMG(1).jpg`, same bytes) and edited copies
//! (`IMG-edited.jpg`) next to their original; built here in a temporary folder, never tuned to a fixture.

use std::path::Path;

use reverie_library::{import, load_manifest, ImportOptions, ImportSource, LibraryManifest};
use reverie_shared::ids::TenantId;
use reverie_shared::ports::store::LocalStore;

/// A small JPEG whose bytes depend on `shade`, with no EXIF at all.
fn jpeg(shade: u8) -> Vec<u8> {
    let image = image::RgbImage::from_fn(48, 32, |x, y| {
        image::Rgb([shade, (x * 5) as u8, (y * 7) as u8])
    });
    let mut bytes = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut bytes, image::ImageFormat::Jpeg)
        .unwrap();
    bytes.into_inner()
}

/// A Takeout sidecar: 2023-07-14 23:30 UTC (night in Paris) at the Place de la République.
fn sidecar(title: &str, people: &[&str]) -> String {
    let people: Vec<String> = people
        .iter()
        .map(|p| format!(r#"{{"name":"{p}"}}"#))
        .collect();
    format!(
        r#"{{"title":"{title}","photoTakenTime":{{"timestamp":"1689377400"}},
            "geoData":{{"latitude":48.8675,"longitude":2.3637,"altitude":35.0}},
            "people":[{}],"favorited":true}}"#,
        people.join(",")
    )
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).unwrap();
}

async fn import_folder(root: &Path) -> (reverie_library::ImportReport, LibraryManifest) {
    let data = tempfile::tempdir().unwrap();
    let store = LocalStore::open(data.path()).unwrap();
    let tenant = TenantId::new("erin").unwrap();
    let report = import(
        &store,
        &tenant,
        ImportSource::Folder(root.to_path_buf()),
        &ImportOptions::default(),
    )
    .await
    .unwrap();
    let manifest = load_manifest(&store, &tenant).await.unwrap();
    (report, manifest)
}

fn assert_paris_at_night(manifest: &LibraryManifest, original: &str) {
    let photo = manifest
        .photos
        .iter()
        .find(|p| p.meta.original == original)
        .unwrap_or_else(|| panic!("{original} is not a photo: {:#?}", manifest.photos));
    let meta = &photo.meta;
    assert_eq!(
        meta.captured.as_ref().and_then(|c| c.utc.as_deref()),
        Some("2023-07-14T23:30:00+00:00"),
        "{original}"
    );
    assert!((meta.gps.unwrap().latitude - 48.8675).abs() < 1e-9);
    assert_eq!(
        meta.place.as_ref().unwrap().city,
        "Paris",
        "{:?}",
        meta.place
    );
    assert!(
        meta.light.contains(&"night".to_string()),
        "{:?}",
        meta.light
    );
    assert!(meta.favourite);
}

#[tokio::test]
async fn byte_identical_copies_keep_the_sidecar_of_either_whatever_the_walk_order() {
    let root = tempfile::tempdir().unwrap();
    let album = root.path().join("Takeout/Google Photos/Paris 2023");
    std::fs::create_dir_all(&album).unwrap();
    // `IMG_1(1).jpg` sorts (and is walked) before `IMG_1.jpg`: the copy without a sidecar comes first.
    write(&album, "IMG_1(1).jpg", &jpeg(10));
    write(&album, "IMG_1.jpg", &jpeg(10));
    write(
        &album,
        "IMG_1.jpg.json",
        sidecar("IMG_1.jpg", &["Ana"]).as_bytes(),
    );
    // The other way round: only the `(1)` copy has a sidecar, named as Takeout names it.
    write(&album, "IMG_2(1).jpg", &jpeg(20));
    write(&album, "IMG_2.jpg", &jpeg(20));
    write(
        &album,
        "IMG_2.jpg(1).json",
        sidecar("IMG_2(1).jpg", &["Bo"]).as_bytes(),
    );
    // Both copies have a sidecar, each knowing something else: the union is kept.
    let other = root.path().join("Takeout/Google Photos/Photos from 2023");
    std::fs::create_dir_all(&other).unwrap();
    write(&album, "IMG_3.jpg", &jpeg(30));
    write(
        &album,
        "IMG_3.jpg.json",
        br#"{"title":"IMG_3.jpg","people":[{"name":"Cy"}]}"#,
    );
    write(&other, "IMG_3.jpg", &jpeg(30));
    write(
        &other,
        "IMG_3.jpg.json",
        sidecar("IMG_3.jpg", &["Di"]).as_bytes(),
    );

    let (report, manifest) = import_folder(root.path()).await;
    assert_eq!(report.imported, 3, "{report:#?}");
    assert_eq!(manifest.photos.len(), 3);
    let paris = "Takeout/Google Photos/Paris 2023";
    let from_2023 = "Takeout/Google Photos/Photos from 2023";
    assert_paris_at_night(&manifest, &format!("{paris}/IMG_1.jpg"));
    assert_paris_at_night(&manifest, &format!("{paris}/IMG_2(1).jpg"));
    // Both IMG_3 copies have a sidecar: the first path in lexicographic order is the photo.
    assert_paris_at_night(&manifest, &format!("{paris}/IMG_3.jpg"));
    let img3 = manifest
        .photos
        .iter()
        .find(|p| p.meta.original.ends_with("IMG_3.jpg"))
        .unwrap();
    let names: Vec<_> = img3.meta.people.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["Cy", "Di"]);

    let merges: Vec<(String, Vec<String>)> = report
        .merged
        .iter()
        .map(|m| (m.photo.clone(), m.files.clone()))
        .collect();
    assert_eq!(
        merges,
        [
            (
                format!("{paris}/IMG_1.jpg"),
                vec![
                    format!("{paris}/IMG_1.jpg"),
                    format!("{paris}/IMG_1(1).jpg")
                ]
            ),
            (
                format!("{paris}/IMG_2(1).jpg"),
                vec![
                    format!("{paris}/IMG_2(1).jpg"),
                    format!("{paris}/IMG_2.jpg")
                ]
            ),
            (
                format!("{paris}/IMG_3.jpg"),
                vec![
                    format!("{paris}/IMG_3.jpg"),
                    format!("{from_2023}/IMG_3.jpg")
                ]
            ),
        ]
    );
    // The merged-away copies are still listed by name as duplicates of the photo they went into.
    let duplicates = report
        .skipped
        .iter()
        .filter(|s| matches!(s.reason, reverie_library::Damage::Duplicate(_)))
        .count();
    assert_eq!(duplicates, 3, "{:#?}", report.skipped);
}

#[tokio::test]
async fn an_edited_copy_is_its_own_photo_with_its_originals_metadata() {
    let root = tempfile::tempdir().unwrap();
    let album = root.path().join("Paris 2023");
    std::fs::create_dir_all(&album).unwrap();
    write(&album, "IMG_9-edited.jpg", &jpeg(200));
    write(&album, "IMG_9.jpg", &jpeg(90));
    write(
        &album,
        "IMG_9.jpg.json",
        sidecar("IMG_9.jpg", &["Ed"]).as_bytes(),
    );

    let (report, manifest) = import_folder(root.path()).await;
    assert_eq!(report.imported, 2, "{report:#?}");
    assert!(report.merged.is_empty());
    assert_paris_at_night(&manifest, "Paris 2023/IMG_9.jpg");
    assert_paris_at_night(&manifest, "Paris 2023/IMG_9-edited.jpg");
    assert_eq!(report.edits.len(), 1);
    assert_eq!(report.edits[0].edited, "Paris 2023/IMG_9-edited.jpg");
    assert_eq!(report.edits[0].original, "Paris 2023/IMG_9.jpg");
}
