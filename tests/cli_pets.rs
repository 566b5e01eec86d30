//! Pets found in a real import on the embedded default, through the commands and JSON users and
//! other services see: `reverie library import` then `reverie pets list --json`; two dogs are two
//! pets, a sidecar keyword names one, and the user's names, splits and merges survive a re-import.
//!
//! Needs the pet detector in `REVERIE_MODELS_DIR` (scripts/test fetches it).

use std::path::{Path, PathBuf};
use std::process::Command;

use image::imageops;
use serde_json::Value;

fn reverie(data: &Path, args: &[&str]) -> String {
    let models = std::env::var("REVERIE_MODELS_DIR")
        .expect("REVERIE_MODELS_DIR is not set: run scripts/test (it fetches the pet detector)");
    let output = Command::new(env!("CARGO_BIN_EXE_reverie"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("RUST_LOG")
        .env("REVERIE_MODELS_DIR", models)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "reverie {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pets/photos")
        .join(name)
}

/// A second photo of the same animal: the photo mirrored and re-cropped, saved as a new JPEG.
fn another_shot(from: &str, to: &Path) {
    let photo = image::open(fixture(from)).unwrap().to_rgb8();
    let (w, h) = photo.dimensions();
    let mirrored = imageops::flip_horizontal(&photo);
    let cropped = imageops::crop_imm(&mirrored, w / 16, h / 20, w - w / 8, h - h / 10).to_image();
    cropped.save(to).unwrap();
}

fn pets(data: &Path) -> Vec<Value> {
    let listed: Value = serde_json::from_str(&reverie(
        data,
        &["pets", "list", "--tenant", "kim", "--json"],
    ))
    .unwrap();
    listed
        .as_array()
        .unwrap_or_else(|| panic!("a bare list once analysed: {listed:#}"))
        .clone()
}

fn named<'a>(pets: &'a [Value], name: &str) -> &'a Value {
    pets.iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no pet {name}: {pets:#?}"))
}

#[test]
fn two_dogs_are_two_pets_named_by_sidecar_and_user_and_edits_survive_a_reimport() {
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    let photos = tempfile::tempdir().unwrap();
    let p = photos.path();
    for name in [
        "dog_donna_indoor.jpg",
        "dog_german_shepherd.jpg",
        "cat_chelsea.png",
        "person_astronaut_no_animal.jpg",
    ] {
        std::fs::copy(fixture(name), p.join(name)).unwrap();
    }
    another_shot("dog_donna_indoor.jpg", &p.join("donna_again.jpg"));
    another_shot("dog_german_shepherd.jpg", &p.join("shepherd_again.jpg"));
    // Lightroom's hierarchical keyword names the shepherd in one photo.
    std::fs::write(
        p.join("dog_german_shepherd.xmp"),
        r#"<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
 <rdf:Description xmlns:lr="http://ns.adobe.com/lightroom/1.0/">
  <lr:hierarchicalSubject><rdf:Bag><rdf:li>Pets|Rex</rdf:li></rdf:Bag></lr:hierarchicalSubject>
 </rdf:Description></rdf:RDF></x:xmpmeta>"#,
    )
    .unwrap();
    reverie(d, &["tenant", "create", "kim"]);
    reverie(d, &["consent", "grant", "--tenant", "kim", "library"]);
    let import = reverie(
        d,
        &[
            "library",
            "import",
            "--tenant",
            "kim",
            &p.display().to_string(),
        ],
    );
    assert!(import.contains("pets"), "{import}");

    let found = pets(d);
    let dogs: Vec<&Value> = found.iter().filter(|p| p["species"] == "dog").collect();
    let cats: Vec<&Value> = found.iter().filter(|p| p["species"] == "cat").collect();
    assert_eq!(dogs.len(), 2, "two dogs: {found:#?}");
    assert_eq!(cats.len(), 1, "one cat: {found:#?}");
    let rex = named(&found, "Rex");
    let mut rex_photos: Vec<&str> = rex["photos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["photo"].as_str().unwrap())
        .collect();
    rex_photos.sort();
    assert_eq!(
        rex_photos,
        ["dog_german_shepherd.jpg", "shepherd_again.jpg"],
        "{rex:#}"
    );
    let other = dogs
        .iter()
        .find(|d| d["name"].is_null())
        .expect("the unnamed dog");
    let mut other_photos: Vec<&str> = other["photos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["photo"].as_str().unwrap())
        .collect();
    other_photos.sort();
    assert_eq!(other_photos, ["dog_donna_indoor.jpg", "donna_again.jpg"]);
    for pet in &found {
        for sighting in pet["photos"].as_array().unwrap() {
            let b = &sighting["box"];
            assert!(
                b["left"].as_i64().unwrap() < b["right"].as_i64().unwrap(),
                "{sighting}"
            );
            assert!(
                b["top"].as_i64().unwrap() < b["bottom"].as_i64().unwrap(),
                "{sighting}"
            );
            assert_ne!(sighting["photo"], "person_astronaut_no_animal.jpg");
        }
    }

    // The user names the other dog; splits one photo off Rex, then merges it back.
    let donna_id = other["id"].to_string();
    reverie(d, &["pets", "name", "--tenant", "kim", &donna_id, "Donna"]);
    let rex_id = rex["id"].to_string();
    let split_off = rex["photos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["photo"] == "shepherd_again.jpg")
        .unwrap();
    let b = &split_off["box"];
    let key = format!(
        "{}:{},{},{},{}",
        split_off["photo_id"].as_str().unwrap(),
        b["left"],
        b["top"],
        b["right"],
        b["bottom"]
    );
    let said = reverie(
        d,
        &["pets", "split", "--tenant", "kim", "Rex", "--photo", &key],
    );
    let new_id = said
        .trim()
        .strip_prefix("new pet ")
        .expect("the new pet's id")
        .to_string();
    let after_split = pets(d);
    assert_eq!(
        named(&after_split, "Rex")["photos"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        after_split.iter().filter(|p| p["species"] == "dog").count(),
        3
    );
    reverie(d, &["pets", "merge", "--tenant", "kim", &rex_id, &new_id]);
    // A merge across species is refused, naming both.
    let cat_id = cats[0]["id"].to_string();
    let refused = Command::new(env!("CARGO_BIN_EXE_reverie"))
        .arg("--data-dir")
        .arg(d)
        .args(["pets", "merge", "--tenant", "kim", &rex_id, &cat_id])
        .env(
            "REVERIE_MODELS_DIR",
            std::env::var("REVERIE_MODELS_DIR").unwrap(),
        )
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("dog and a cat"));

    // A re-import groups again from the analyses: the names and the merge stay.
    reverie(
        d,
        &[
            "library",
            "import",
            "--tenant",
            "kim",
            &p.display().to_string(),
        ],
    );
    let again = pets(d);
    assert_eq!(
        named(&again, "Rex")["photos"].as_array().unwrap().len(),
        2,
        "{again:#?}"
    );
    assert_eq!(
        named(&again, "Donna")["photos"].as_array().unwrap().len(),
        2,
        "{again:#?}"
    );
    let shown: Value =
        serde_json::from_str(&reverie(d, &["pets", "show", "--tenant", "kim", "donna"])).unwrap();
    assert_eq!(shown["species"], "dog");
}
