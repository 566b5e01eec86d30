//! Clustering dlib's fixture descriptors into people: one person per identity,
//! never two identities in one person.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use reverie_faces::people::{FaceQuality, FaceRecord, People};
use reverie_faces::FaceBox;

fn fixture_faces() -> Vec<(String, FaceRecord)> {
    let mut out = Vec::new();
    for id in common::reference_ids() {
        let reference = common::reference(&id);
        for face in reference["faces"].as_array().expect("faces") {
            let Some(identity) = face["identity"].as_str() else {
                continue;
            };
            let r = &face["rect"];
            let bbox = FaceBox {
                left: r["left"].as_i64().expect("l"),
                top: r["top"].as_i64().expect("t"),
                right: r["right"].as_i64().expect("r"),
                bottom: r["bottom"].as_i64().expect("b"),
            };
            let landmarks: Vec<[i64; 2]> = face["landmarks5"]
                .as_array()
                .expect("lm")
                .iter()
                .map(|p| [p[0].as_i64().expect("x"), p[1].as_i64().expect("y")])
                .collect();
            let chip = common::load_rgb(face["chip_file"].as_str().expect("chip"));
            out.push((
                identity.to_string(),
                FaceRecord {
                    photo: id.clone(),
                    bbox,
                    descriptor: face["descriptor"]
                        .as_array()
                        .expect("d")
                        .iter()
                        .map(|v| v.as_f64().expect("f") as f32)
                        .collect(),
                    quality: FaceQuality::measure(&chip, &landmarks, &bbox),
                },
            ));
        }
    }
    out
}

#[test]
fn fixture_identities_cluster_into_people() {
    let faces = fixture_faces();
    let mut people = People::new();
    let identities: Vec<String> = faces.iter().map(|(i, _)| i.clone()).collect();
    let assigned = people.add_faces(faces.into_iter().map(|(_, f)| f).collect());
    let mut by_person: BTreeMap<u64, BTreeSet<&str>> = BTreeMap::new();
    let mut by_identity: BTreeMap<&str, BTreeSet<Option<u64>>> = BTreeMap::new();
    for (identity, person) in identities.iter().zip(&assigned) {
        if let Some(p) = person {
            by_person.entry(*p).or_default().insert(identity);
        }
        by_identity.entry(identity).or_default().insert(*person);
    }
    for (person, ids) in &by_person {
        assert_eq!(ids.len(), 1, "person {person} mixes identities {ids:?}");
    }
    for (identity, persons) in &by_identity {
        if identity.starts_with("stranger:") {
            continue;
        }
        let real: Vec<_> = persons.iter().flatten().collect();
        eprintln!("{identity}: persons {persons:?}");
        assert_eq!(real.len(), 1, "{identity} is spread over {persons:?}");
    }
}
