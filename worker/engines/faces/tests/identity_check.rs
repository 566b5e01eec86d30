//! The identity check with the real dlib models on the fixture photos: a photo checked against its
//! own person is verified, against another person weak, and a face-less picture is missing.

mod common;

use reverie_faces::identity::check::{
    check_identities, reference_at, reference_from_image, reference_from_image_with, SeveralFaces,
};
use reverie_faces::identity::{IdentityTarget, Verdict};
use reverie_faces::{FaceAnalyzer, FaceModels, IdentityError};

fn analyzer() -> FaceAnalyzer {
    FaceAnalyzer::new(FaceModels::load(&common::models_dir()).expect("face models"))
}

/// The reference's face box of a fixture image as a planned place (exclusive right/bottom).
fn place_of(id: &str) -> [f32; 4] {
    let rect = &common::reference(id)["faces"][0]["rect"];
    let v = |k: &str| rect[k].as_f64().expect("rect") as f32;
    [v("left"), v("top"), v("right") + 1.0, v("bottom") + 1.0]
}

#[test]
fn own_person_is_verified_another_is_weak_no_face_is_missing() {
    let analyzer = analyzer();
    let obama = common::load_rgb("images/frpy_obama.png");
    let obama_reference =
        reference_from_image(&analyzer, &common::load_rgb("images/frpy_obama2.png"))
            .expect("one face");
    let salley_reference = reference_from_image(
        &analyzer,
        &common::load_rgb("images/johns_John_Salley_000179_02159509.png"),
    )
    .expect("one face");
    let place = place_of("frpy_obama");

    let own = check_identities(
        &analyzer,
        &obama,
        &[IdentityTarget {
            place,
            reference: obama_reference,
        }],
    )
    .expect("check");
    eprintln!("own person: {own:?}");
    assert_eq!(own[0].verdict, Verdict::Verified);

    let other = check_identities(
        &analyzer,
        &obama,
        &[IdentityTarget {
            place,
            reference: salley_reference,
        }],
    )
    .expect("check");
    eprintln!("another person: {other:?}");
    assert_eq!(other[0].verdict, Verdict::Weak);
    assert!(other[0].distance.unwrap() > own[0].distance.unwrap());

    // Both people asked for in one picture that shows one of them: he is matched, the other is not
    // there (the one face cannot answer for two people).
    let both = check_identities(
        &analyzer,
        &obama,
        &[
            IdentityTarget {
                place,
                reference: salley_reference,
            },
            IdentityTarget {
                place,
                reference: obama_reference,
            },
        ],
    )
    .expect("check");
    assert_eq!(both[0].verdict, Verdict::Missing);
    assert_eq!(both[1].verdict, Verdict::Verified);

    let cat = common::load_rgb("images/skimage_chelsea_cat.png");
    let none = check_identities(
        &analyzer,
        &cat,
        &[IdentityTarget {
            place: [100.0, 50.0, 300.0, 250.0],
            reference: obama_reference,
        }],
    )
    .expect("check");
    assert_eq!(none[0].distance, None);
    assert_eq!(none[0].verdict, Verdict::Missing);
}

#[test]
fn identity_images_need_exactly_one_face() {
    let analyzer = analyzer();
    let cat = common::load_rgb("images/skimage_chelsea_cat.png");
    assert!(matches!(
        reference_from_image(&analyzer, &cat),
        Err(IdentityError::NoFace)
    ));
    let group = common::load_rgb("images/kpa_qt_logo.png");
    let error = reference_from_image(&analyzer, &group).unwrap_err();
    assert!(
        matches!(error, IdentityError::SeveralFaces { count: 3 }),
        "{error:?}"
    );
    assert!(error.to_string().contains("3 faces") && error.to_string().contains("crop"));
    reference_from_image_with(&analyzer, &group, SeveralFaces::Largest).expect("largest face");
}

#[test]
fn reference_at_a_library_face_box_is_that_face() {
    let analyzer = analyzer();
    let photo = common::load_rgb("images/kpa_jesper_2.png");
    let whole = reference_from_image(&analyzer, &photo).expect("one face");
    let place = place_of("kpa_jesper_2");
    let at = reference_at(
        &analyzer,
        &photo,
        [
            place[0] as u32,
            place[1] as u32,
            place[2] as u32,
            place[3] as u32,
        ],
    )
    .expect("analysis")
    .expect("the face at its box");
    let distance = reverie_faces::identity::descriptor_distance(&whole, &at);
    eprintln!("window vs whole photo: {distance}");
    assert!(distance < 0.3, "{distance}");
    // Nowhere near a face: nothing.
    assert!(reference_at(&analyzer, &photo, [0, 200, 40, 240])
        .expect("analysis")
        .is_none());
}
