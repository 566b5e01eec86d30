//! Naming, merging, splitting, self aliases and sidecar names on people.

use reverie_faces::people::{FaceQuality, FaceRecord, NamedRegion, People, PeopleError};
use reverie_faces::FaceBox;

fn face(photo: &str, x: f32, left: i64) -> FaceRecord {
    let mut descriptor = vec![0.0; 128];
    descriptor[0] = x;
    FaceRecord {
        photo: photo.to_string(),
        bbox: FaceBox {
            left,
            top: 10,
            right: left + 99,
            bottom: 109,
        },
        descriptor,
        quality: FaceQuality {
            sharpness: 200.0,
            frontalness: 1.0,
            size: 100.0,
        },
    }
}

#[test]
fn close_faces_form_one_person_and_far_faces_another() {
    let mut people = People::new();
    let ids = people.add_faces(vec![
        face("a", 0.0, 0),
        face("b", 0.1, 0),
        face("c", 2.0, 0),
    ]);
    assert_eq!(ids[0], ids[1]);
    assert_ne!(ids[0], ids[2]);
    // A later face joins the existing person without re-clustering.
    let later = people.add_faces(vec![face("d", 0.05, 0)]);
    assert_eq!(later[0], ids[0]);
}

#[test]
fn faces_of_one_photo_are_never_the_same_person() {
    let mut people = People::new();
    let ids = people.add_faces(vec![face("a", 0.0, 0), face("a", 0.01, 200)]);
    assert_ne!(ids[0], ids[1]);
}

#[test]
fn blurry_lone_face_stays_pending() {
    let mut people = People::new();
    let mut blurry = face("a", 0.0, 0);
    blurry.quality = FaceQuality {
        sharpness: 5.0,
        frontalness: 1.0,
        size: 20.0,
    };
    assert_eq!(people.add_faces(vec![blurry]), vec![None]);
    assert!(people.people.is_empty());
    assert_eq!(people.pending.len(), 1);
}

#[test]
fn name_merge_split_and_self_alias() {
    let mut people = People::new();
    let ids = people.add_faces(vec![face("a", 0.0, 0), face("b", 3.0, 0)]);
    let (p1, p2) = (ids[0].expect("person"), ids[1].expect("person"));
    people.name(p1, "Alice").expect("name");
    assert_eq!(people.resolve("alice"), Ok(p1));
    assert_eq!(people.resolve("me"), Err(PeopleError::NoSelf("me".into())));
    people.name(p2, "myself").expect("self");
    assert_eq!(people.resolve("I"), Ok(p2));
    people.merge(p1, p2).expect("merge");
    assert_eq!(people.people.len(), 1);
    assert_eq!(people.resolve("me"), Ok(p1));
    let bbox = people.people[0].faces[1].bbox;
    let new = people.split(p1, &[("b".to_string(), bbox)]).expect("split");
    assert_eq!(people.person(new).map(|p| p.faces.len()), Some(1));
    assert_eq!(
        people.person(p1).and_then(|p| p.name.clone()),
        Some("Alice".into())
    );
    assert!(matches!(
        people.merge(p1, 999),
        Err(PeopleError::UnknownPerson(999))
    ));
}

#[test]
fn sidecar_regions_name_overlapping_faces() {
    let mut people = People::new();
    let ids = people.add_faces(vec![face("a", 0.0, 0)]);
    let region = |name: &str, left| NamedRegion {
        photo: "a".into(),
        name: name.into(),
        bbox: FaceBox {
            left,
            top: 15,
            right: left + 95,
            bottom: 105,
        },
    };
    assert_eq!(
        people.apply_named_regions(&[region("Bob", 500)]),
        0,
        "no overlap, no name"
    );
    assert_eq!(people.apply_named_regions(&[region("Bob", 5)]), 1);
    assert_eq!(
        people.resolve("Bob"),
        ids[0].ok_or(PeopleError::UnknownName("Bob".into()))
    );
    let json = serde_json::to_string(&people).expect("serialise");
    let back: People = serde_json::from_str(&json).expect("deserialise");
    assert_eq!(back, people);
}
