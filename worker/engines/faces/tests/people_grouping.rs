//! People grouping measured on labelled face sets (`tests/people_sets`): pairwise
//! precision and recall, the same people whatever order and batches the faces come in,
//! and user edits (names, "me", merges, splits) surviving later additions.

mod people_sets;

use std::collections::{BTreeMap, BTreeSet};

use people_sets::{FaceSet, Feed};
use reverie_faces::people::{FaceQuality, FaceRecord, People};
use reverie_faces::FaceBox;

/// The goal of issue #20: pure and complete people.
const GOAL_PRECISION: f64 = 0.97;
const GOAL_RECALL: f64 = 0.90;

/// Sets made of deliberately degraded photos (faces shrunk to 48 px, blurred), where the
/// hard identities (KPhotoAlbum's "Jesper", 15 years apart) fall apart: precision must
/// still meet the goal, recall only stay near it (measured 0.85 to 0.90, docs/faces.md).
const DEGRADED_RECALL_FLOOR: f64 = 0.80;

fn is_degraded(set: &FaceSet) -> bool {
    ["small", "blur"].iter().any(|d| set.name.ends_with(d))
}

#[test]
fn every_face_set_meets_the_goal() {
    let sets = people_sets::all_sets();
    let names: Vec<&str> = sets.iter().map(|s| s.name.as_str()).collect();
    for wanted in [
        "fixture",
        "fixture-real",
        "extra",
        "fixture-small",
        "fixture-blur",
    ] {
        assert!(names.contains(&wanted), "set {wanted} missing: {names:?}");
    }
    for set in &sets {
        let (_, assigned) = people_sets::group(set, Feed::AllAtOnce);
        let s = people_sets::scores(set, &assigned);
        eprintln!(
            "{}: {} faces, {} identities, {} people, P {:.3} R {:.3}",
            set.name,
            set.faces.len(),
            s.identities,
            s.people,
            s.precision,
            s.recall
        );
        assert!(
            s.precision >= GOAL_PRECISION,
            "{}: pairwise precision {:.3} < {GOAL_PRECISION} ({} wrong pairs)",
            set.name,
            s.precision,
            s.false_pairs
        );
        let floor = if is_degraded(set) {
            DEGRADED_RECALL_FLOOR
        } else {
            GOAL_RECALL
        };
        assert!(
            s.recall >= floor,
            "{}: pairwise recall {:.3} < {floor} ({} missed pairs)",
            set.name,
            s.recall,
            s.missed_pairs
        );
    }
}

#[test]
fn any_order_and_any_batches_give_the_same_people() {
    for set in people_sets::all_sets() {
        let (_, reference) = people_sets::group(&set, Feed::AllAtOnce);
        let expected = people_sets::partition(&reference);
        for feed in people_sets::standard_feeds()
            .into_iter()
            .chain([Feed::Batches(7, 1), Feed::Batches(8, 30)])
        {
            let (_, assigned) = people_sets::group(&set, feed);
            assert_eq!(
                people_sets::partition(&assigned),
                expected,
                "{}: {feed:?} grouped differently",
                set.name
            );
        }
    }
}

/// The person holding most of the given faces.
fn person_of(people: &People, faces: &[&FaceRecord]) -> u64 {
    let mut count: BTreeMap<u64, usize> = BTreeMap::new();
    for p in &people.people {
        for f in &p.faces {
            if faces.iter().any(|g| g.photo == f.photo && g.bbox == f.bbox) {
                *count.entry(p.id).or_default() += 1;
            }
        }
    }
    count
        .into_iter()
        .max_by_key(|(id, n)| (*n, std::cmp::Reverse(*id)))
        .map(|(id, _)| id)
        .expect("a person holds these faces")
}

fn holder(people: &People, face: &FaceRecord) -> Option<u64> {
    people
        .people
        .iter()
        .find(|p| {
            p.faces
                .iter()
                .any(|f| f.photo == face.photo && f.bbox == face.bbox)
        })
        .map(|p| p.id)
}

/// The fixture in two halves (alternate faces): the first half grouped and edited, the
/// second added later.
/// Faces with their identity.
type Labelled = Vec<(String, FaceRecord)>;

fn halves() -> (Labelled, Labelled) {
    let set = people_sets::fixture_set();
    let all: Labelled = set
        .faces
        .iter()
        .map(|f| (f.identity.clone(), f.record()))
        .collect();
    let (first, second): (Vec<_>, Vec<_>) =
        all.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
    (
        first.into_iter().map(|(_, f)| f).collect(),
        second.into_iter().map(|(_, f)| f).collect(),
    )
}

fn of<'a>(faces: &'a [(String, FaceRecord)], identity: &str) -> Vec<&'a FaceRecord> {
    faces
        .iter()
        .filter(|(i, _)| i == identity)
        .map(|(_, f)| f)
        .collect()
}

#[test]
fn names_me_merges_and_splits_survive_later_additions() {
    let (first, second) = halves();
    let mut people = People::new();
    people.add_faces(first.iter().map(|(_, f)| f.clone()).collect());

    let salley = person_of(&people, &of(&first, "John_Salley"));
    let savage = person_of(&people, &of(&first, "John_Savage"));
    let schneider = person_of(&people, &of(&first, "John_Schneider"));
    let obama = person_of(&people, &of(&first, "Barack_Obama"));
    people.name(salley, "Salley").expect("name");
    people.name(savage, "me").expect("me");
    // The user says two different people are one: theirs to decide.
    people.merge(schneider, obama).expect("merge");
    // ... and that two of Salley's faces are someone else.
    let split_off: Vec<FaceRecord> = people
        .person(salley)
        .expect("salley")
        .faces
        .iter()
        .take(2)
        .cloned()
        .collect();
    let kept: Vec<FaceRecord> = people.person(salley).expect("salley").faces[2..].to_vec();
    let split_keys: Vec<(String, FaceBox)> = split_off
        .iter()
        .map(|f| (f.photo.clone(), f.bbox))
        .collect();
    let split_id = people.split(salley, &split_keys).expect("split");
    let merged: Vec<FaceRecord> = people.person(schneider).expect("merged").faces.clone();

    // Saved and loaded in between, as the worker does.
    let json = serde_json::to_string(&people).expect("save");
    let mut people: People = serde_json::from_str(&json).expect("load");
    people.add_faces(second.iter().map(|(_, f)| f.clone()).collect());

    assert_eq!(
        people.resolve("Salley"),
        Ok(salley),
        "the name stays with its id"
    );
    assert_eq!(people.resolve("me"), Ok(savage), "me stays with its id");
    assert!(people.person(salley).is_some(), "Salley still exists");
    for f in &kept {
        assert_eq!(
            holder(&people, f),
            Some(salley),
            "kept face {} left Salley",
            f.photo
        );
    }
    // Salley's new faces join Salley or the faces split off him (they are Salley's
    // too, the user just said otherwise; which side wins is the grouping's call), nobody
    // else.
    let new_salley: Vec<Option<u64>> = of(&second, "John_Salley")
        .iter()
        .map(|f| holder(&people, f))
        .collect();
    eprintln!("Salley {salley}, split off {split_id}: new faces in {new_salley:?}");
    assert!(
        new_salley
            .iter()
            .all(|h| *h == Some(salley) || *h == Some(split_id)),
        "{new_salley:?}"
    );
    for f in &split_off {
        let h = holder(&people, f);
        assert!(
            h.is_some(),
            "split-off face {} is still in a person",
            f.photo
        );
        assert_ne!(
            h,
            Some(salley),
            "split-off face {} went back to Salley",
            f.photo
        );
    }
    assert_eq!(
        holder(&people, &split_off[0]),
        Some(split_id),
        "the split-off person keeps its id"
    );
    for f in &merged {
        assert_eq!(
            holder(&people, f),
            Some(schneider),
            "merged face {} left the merge",
            f.photo
        );
    }
    assert!(people.person(obama).is_none(), "the merged-away id is gone");

    // Control: without the edits the split-off faces are Salley's and Obama is his own.
    let mut control = People::new();
    control.add_faces(first.iter().map(|(_, f)| f.clone()).collect());
    control.add_faces(second.iter().map(|(_, f)| f.clone()).collect());
    let salley_control = holder(&control, &kept[0]);
    assert!(split_off
        .iter()
        .all(|f| holder(&control, f) == salley_control));
    assert_ne!(
        holder(&control, &merged[0]),
        holder(&control, merged.last().expect("face"))
    );
}

fn face(photo: &str, x: f32) -> FaceRecord {
    let mut descriptor = vec![0.0; 128];
    descriptor[0] = x;
    FaceRecord {
        photo: photo.to_string(),
        bbox: FaceBox {
            left: 0,
            top: 0,
            right: 99,
            bottom: 99,
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
fn two_named_people_are_never_merged() {
    // a and b are 0.55 apart: two lone faces need 0.5, so two people; c between them
    // would pull all three together.
    let group = |names: bool| {
        let mut people = People::new();
        let ids = people.add_faces(vec![face("a", 0.0), face("b", 0.55)]);
        let (a, b) = (ids[0].expect("a"), ids[1].expect("b"));
        assert_ne!(a, b);
        if names {
            people.name(a, "Ann").expect("name");
            people.name(b, "Bea").expect("name");
        }
        people.add_faces(vec![face("c", 0.27)]);
        (people, a, b)
    };
    let (unnamed, ..) = group(false);
    assert_eq!(unnamed.people.len(), 1, "without names c joins a and b");
    let (named, a, b) = group(true);
    assert_eq!(named.resolve("Ann"), Ok(a));
    assert_eq!(named.resolve("Bea"), Ok(b));
    assert_eq!(named.person(a).map(|p| p.faces.len()), Some(2));
}

#[test]
fn a_named_person_keeps_id_and_name_when_bigger_unnamed_faces_join() {
    let mut people = People::new();
    let ids = people.add_faces(vec![face("a", 0.0)]);
    let ann = ids[0].expect("person");
    people.name(ann, "Ann").expect("name");
    // Five faces of the same person that arrive later, and found a group of their own
    // in between.
    let later: Vec<FaceRecord> = (0..5)
        .map(|k| face(&format!("l{k}"), 0.02 * k as f32))
        .collect();
    let ids = people.add_faces(later);
    assert!(ids.iter().all(|id| *id == Some(ann)), "{ids:?}");
    assert_eq!(people.people.len(), 1);
    assert_eq!(people.resolve("ann"), Ok(ann));
}

#[test]
fn existing_people_files_still_load() {
    // A people.json written before user edits were kept (no "edits" field).
    let old = r#"{"people":[{"id":4,"name":"Ann","faces":[{"photo":"p1","box":{"left":0,"top":0,"right":99,"bottom":99},
        "descriptor":[0.0,0.1],"quality":{"sharpness":200.0,"frontalness":1.0,"size":100.0}}],"representative":0}],
        "pending":[],"self_person":4,"next_id":5}"#;
    let people: People = serde_json::from_str(old).expect("old file loads");
    assert_eq!(people.resolve("Ann"), Ok(4));
    assert_eq!(people.resolve("me"), Ok(4));
    assert!(people.edits.is_empty());
    let json = serde_json::to_string(&people).expect("save");
    assert!(!json.contains("edits"), "no edits, no new field: {json}");
    let back: People = serde_json::from_str(&json).expect("reload");
    assert_eq!(back, people);
}

#[test]
fn edits_round_trip_through_json() {
    let mut people = People::new();
    let ids = people.add_faces(vec![face("a", 0.0), face("b", 0.1), face("c", 3.0)]);
    let (ab, c) = (ids[0].expect("ab"), ids[2].expect("c"));
    assert_eq!(ids[1], Some(ab));
    people.merge(ab, c).expect("merge");
    let bbox = face("b", 0.1).bbox;
    people.split(ab, &[("b".into(), bbox)]).expect("split");
    assert_eq!(people.edits.together.len(), 1);
    assert_eq!(people.edits.apart.len(), 1);
    let json = serde_json::to_string(&people).expect("save");
    let back: People = serde_json::from_str(&json).expect("load");
    assert_eq!(back, people);
    // The merge keeps a and c together, the split keeps b away from them.
    let mut later = back;
    later.add_faces(vec![face("d", 0.05)]);
    let holder_of = |p: &str| {
        later
            .people
            .iter()
            .find(|x| x.faces.iter().any(|f| f.photo == p))
            .map(|x| x.id)
    };
    assert_eq!(holder_of("a"), holder_of("c"));
    assert_ne!(holder_of("a"), holder_of("b"));
    let groups: BTreeSet<Option<u64>> = ["a", "b", "d"].iter().map(|p| holder_of(p)).collect();
    assert!(groups.iter().all(Option::is_some));
}
