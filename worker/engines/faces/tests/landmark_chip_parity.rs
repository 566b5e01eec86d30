//! Shape predictor and face-chip parity against dlib's references, from dlib's
//! detection rectangles.

mod common;

use reverie_faces::chip::{chip_details, extract_chip};
use reverie_faces::geometry::Rect;
use reverie_faces::models::{ModelStore, SHAPE_MODEL};
use reverie_faces::shape_predictor::{GrayPlane, ShapePredictor};

fn rect_of(v: &serde_json::Value) -> Rect {
    Rect {
        left: v["left"].as_i64().expect("left"),
        top: v["top"].as_i64().expect("top"),
        right: v["right"].as_i64().expect("right"),
        bottom: v["bottom"].as_i64().expect("bottom"),
    }
}

#[test]
fn landmarks_and_chips_match_dlib_for_every_fixture_face() {
    let store = ModelStore::new(common::models_dir());
    let sp = ShapePredictor::from_bytes(&store.load(SHAPE_MODEL.name).expect("load sp5"))
        .expect("parse sp5");
    let (mut faces, mut exact_landmarks, mut exact_chips) = (0, 0, 0);
    let mut worst_mad = 0f64;
    for id in common::reference_ids() {
        let reference = common::reference(&id);
        let img = common::load_rgb(reference["image"].as_str().expect("image"));
        let gray = GrayPlane::from_rgb(&img);
        for face in reference["faces"].as_array().expect("faces") {
            faces += 1;
            let landmarks = sp.predict(&gray, &rect_of(&face["rect"]));
            let want: Vec<(i64, i64)> = face["landmarks5"]
                .as_array()
                .expect("landmarks")
                .iter()
                .map(|p| (p[0].as_i64().expect("x"), p[1].as_i64().expect("y")))
                .collect();
            for (g, w) in landmarks.iter().zip(&want) {
                assert!(
                    (g.0 - w.0).abs() <= 1 && (g.1 - w.1).abs() <= 1,
                    "{id}: landmark {g:?} vs dlib {w:?}"
                );
            }
            exact_landmarks += usize::from(landmarks == want);
            // Chips are compared from dlib's landmarks so the two checks stay independent.
            let details = chip_details(&want, 150, 0.25);
            let chip = extract_chip(&img, &details);
            let wanted_chip = common::load_rgb(face["chip_file"].as_str().expect("chip"));
            let total: u64 = chip
                .as_raw()
                .iter()
                .zip(wanted_chip.as_raw())
                .map(|(a, b)| u64::from(a.abs_diff(*b)))
                .sum();
            let mad = total as f64 / chip.as_raw().len() as f64;
            worst_mad = worst_mad.max(mad);
            exact_chips += usize::from(total == 0);
            assert!(mad <= 2.0, "{id}: chip mean abs difference {mad}");
        }
    }
    eprintln!("{faces} faces: {exact_landmarks} landmark sets exact, {exact_chips} chips bit-exact, worst chip MAD {worst_mad}");
    assert_eq!(faces, 108);
}
