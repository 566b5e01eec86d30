//! Prompts resolved against a library that was really imported (the sample library fixture).

use std::path::PathBuf;

use reverie_library::{import, load_manifest, ImportOptions, ImportSource};
use reverie_scheduler::library::candidates;
use reverie_scheduler::library_manifest::library_of;
use reverie_scheduler::prompt::{parse_prompt, resolve};
use reverie_shared::ids::TenantId;
use reverie_shared::ports::store::LocalStore;

#[tokio::test]
async fn prompts_find_people_places_light_and_scenes_in_an_imported_library() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let tenant = TenantId::new("alice").unwrap();
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/library/folder");
    import(
        &store,
        &tenant,
        ImportSource::Folder(folder),
        &ImportOptions::default(),
    )
    .await
    .unwrap();
    let library = library_of(&load_manifest(&store, &tenant).await.unwrap());
    let photo_name = |id: &reverie_shared::ids::PhotoId| {
        library
            .photos
            .iter()
            .position(|p| &p.photo == id)
            .map(|i| i.to_string())
            .unwrap_or_default()
    };

    // Light + place: the Waikiki sunset photo is the background.
    let parsed = parse_prompt("a picnic at sunset in Honolulu, watercolour");
    let resolution = resolve(&parsed, &library.catalog);
    assert!(
        resolution.unresolved.is_empty(),
        "{:?}",
        resolution.unresolved
    );
    let offered = candidates(&library, &resolution);
    let best = offered
        .backgrounds
        .iter()
        .max_by(|a, b| a.score.total_cmp(&b.score))
        .expect("a background");
    let sunset = library
        .photos
        .iter()
        .find(|p| p.light.iter().any(|l| l == "sunset"))
        .unwrap();
    assert_eq!(photo_name(&best.reference.photo), photo_name(&sunset.photo));

    // A person named in an XMP sidecar, at Home (Aarhus, seen on many days).
    let resolution = resolve(
        &parse_prompt("Jesper at home in the garden"),
        &library.catalog,
    );
    assert!(
        resolution.unresolved.is_empty(),
        "{:?}",
        resolution.unresolved
    );
    assert_eq!(resolution.people[0].name, "Jesper");
    assert!(candidates(&library, &resolution)
        .subjects
        .iter()
        .any(|c| c.reference.face_box.is_some()));

    // A misspelt name is reported with the closest one, never dropped.
    let resolution = resolve(&parse_prompt("Jespr in Paris at night"), &library.catalog);
    assert!(
        resolution
            .unresolved
            .iter()
            .any(|u| u.suggestions.iter().any(|s| s == "Jesper")),
        "{:?}",
        resolution.unresolved
    );
}

/// The demo's "Jesper at home in the garden": the photos of home show Jesper himself, so the old plan
/// took his own portrait as the setting and the picture showed him twice. A setting photo that shows a
/// person of the picture is never its background; without another, the plan says so and the people
/// stand on a neutral canvas.
#[tokio::test]
async fn a_subjects_own_photo_is_never_the_setting() {
    use reverie_scheduler::plan::{make_plan, PlanInput, PlannerSettings};
    use reverie_shared::ids::RequestId;
    use reverie_shared::jobs::ReferenceRole;

    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let tenant = TenantId::new("demo").unwrap();
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/library/folder");
    import(
        &store,
        &tenant,
        ImportSource::Folder(folder),
        &ImportOptions::default(),
    )
    .await
    .unwrap();
    let library = library_of(&load_manifest(&store, &tenant).await.unwrap());
    let parsed = parse_prompt("Jesper at home in the garden, oil painting");
    let resolution = resolve(&parsed, &library.catalog);
    let jesper = resolution.people[0].id.clone();
    let shows_jesper = |photo: &reverie_shared::ids::PhotoId| {
        library
            .photos
            .iter()
            .any(|p| &p.photo == photo && p.faces.iter().any(|f| f.person == jesper))
    };
    let offered = candidates(&library, &resolution);
    // The situation of the bug: the best-fitting setting photo is one of Jesper himself.
    let best_setting = offered
        .backgrounds
        .iter()
        .max_by(|a, b| a.score.total_cmp(&b.score))
        .expect("home photos fit the setting");
    assert!(shows_jesper(&best_setting.reference.photo));

    for settings in [
        PlannerSettings::default(),
        PlannerSettings {
            diffusion_model: Some("sd-tiny".into()),
            ..PlannerSettings::default()
        },
    ] {
        let input = PlanInput {
            variants: 1,
            subjects: offered.subjects.clone(),
            backgrounds: offered.backgrounds.clone(),
            ..PlanInput::default()
        };
        let plan = make_plan(&input, &RequestId::new("jesper-garden").unwrap(), &settings);
        let subject = plan
            .references
            .iter()
            .find(|r| r.role == ReferenceRole::Subject)
            .expect("Jesper is the subject");
        assert!(shows_jesper(&subject.photo));
        let background = plan
            .references
            .iter()
            .find(|r| r.role == ReferenceRole::Background);
        match background {
            Some(background) => assert!(
                !shows_jesper(&background.photo),
                "the setting shows Jesper: {:?}",
                plan.explanation
            ),
            None => assert!(
                plan.explanation
                    .iter()
                    .any(|line| line.starts_with("warning: no photo of the setting")),
                "{:?}",
                plan.explanation
            ),
        }
    }
}

/// The pets the worker's grouping wrote (`tenants/{t}/pets/pets.json`), as the scheduler reads them:
/// "my dog" finds the only dog even unnamed, says so when there are two, "Rex" finds Rex, and each
/// pet's photos offer it as a subject.
#[tokio::test]
async fn analysed_pets_resolve_by_kind_and_name_and_ambiguity_is_said() {
    use reverie_scheduler::library_manifest::{add_pets, PetsFile};

    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let tenant = TenantId::new("petra").unwrap();
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/library/folder");
    import(
        &store,
        &tenant,
        ImportSource::Folder(folder),
        &ImportOptions::default(),
    )
    .await
    .unwrap();
    let manifest = load_manifest(&store, &tenant).await.unwrap();
    let photo = |i: usize| manifest.photos[i].meta.id.to_string();
    let pets_file = |json: serde_json::Value| -> PetsFile { serde_json::from_value(json).unwrap() };

    // One unnamed dog: "my dog" is that dog, on the photo it was seen in.
    let mut library = library_of(&manifest);
    add_pets(
        &mut library,
        &pets_file(serde_json::json!({"pets": [
            {"id": 4, "name": null, "species": "dog", "sightings": [{"photo": photo(0)}]},
            {"id": 5, "name": "Mia", "species": "cat", "sightings": [{"photo": photo(1)}]}
        ]})),
    );
    let resolution = resolve(
        &parse_prompt("me and my dog at sunset, watercolour"),
        &library.catalog,
    );
    assert_eq!(resolution.pets.len(), 1, "{resolution:#?}");
    assert_eq!(resolution.pets[0].id, "pet-4");
    let with_dog = library
        .photos
        .iter()
        .find(|p| p.pets.contains(&"pet-4".to_string()))
        .unwrap();
    assert_eq!(with_dog.photo.to_string(), photo(0));
    let resolution = resolve(&parse_prompt("Mia in the garden"), &library.catalog);
    assert_eq!(
        resolution.pets.first().map(|p| p.id.as_str()),
        Some("pet-5"),
        "{resolution:#?}"
    );

    // Two dogs, one named: "my dog" is ambiguous and the reply lists both; "Rex" is Rex.
    let mut library = library_of(&manifest);
    add_pets(
        &mut library,
        &pets_file(serde_json::json!({"pets": [
            {"id": 1, "name": "Rex", "species": "dog", "sightings": [{"photo": photo(0)}]},
            {"id": 2, "name": null, "species": "dog", "sightings": [{"photo": photo(1)}]}
        ]})),
    );
    let resolution = resolve(&parse_prompt("my dog on the beach"), &library.catalog);
    let ambiguous = resolution
        .unresolved
        .iter()
        .find(|u| u.text.contains("dog"))
        .unwrap_or_else(|| panic!("ambiguous: {resolution:#?}"));
    assert!(
        ambiguous.message.contains("Rex") && ambiguous.message.contains("dog 2"),
        "{}",
        ambiguous.message
    );
    let resolution = resolve(&parse_prompt("Rex on the beach"), &library.catalog);
    assert_eq!(
        resolution.pets.first().map(|p| p.id.as_str()),
        Some("pet-1"),
        "{resolution:#?}"
    );
}
