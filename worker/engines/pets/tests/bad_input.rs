//! Photos that are hard for a pet detector: no animal, many animals, a cat and a dog touching, a
//! tiny dog, extreme aspect ratios, degenerate images. Nothing panics, every box lies inside its
//! photo, and the documented behaviour (docs/pets.md, "Bad input") holds.
//!
//! Needs the converted detector in `REVERIE_MODELS_DIR` (scripts/test fetches it).

use std::path::PathBuf;

use candle_core::Device;
use image::RgbImage;
use reverie_pets::{pets_of, Detection, Kind, PetDetector};

fn detector() -> PetDetector {
    let dir = std::env::var_os("REVERIE_MODELS_DIR")
        .map(PathBuf::from)
        .expect("REVERIE_MODELS_DIR must name the directory `reverie models fetch` filled");
    PetDetector::load(&dir, &Device::Cpu).unwrap()
}

fn photo(name: &str) -> RgbImage {
    let path = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../tests/fixtures/pets/photos"
    ))
    .join(name);
    image::open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8()
}

fn check_boxes(name: &str, image: &RgbImage, found: &[Detection]) {
    for d in found {
        let b = d.bbox;
        assert!(
            d.score.is_finite() && (0.0..=1.0).contains(&d.score),
            "{name}: {d:?}"
        );
        assert!(b.left >= 0.0 && b.top >= 0.0, "{name}: {d:?}");
        assert!(
            b.right <= image.width() as f32 && b.bottom <= image.height() as f32,
            "{name}: {d:?}"
        );
        assert!(b.left <= b.right && b.top <= b.bottom, "{name}: {d:?}");
    }
}

#[test]
fn hard_photos_behave_as_documented_and_degenerate_images_do_not_panic() {
    let detector = detector();
    let names = [
        "person_astronaut_no_animal.jpg",
        "horses_herd_no_dog.jpg",
        "tiny_dog.png",
        "twenty_dogs.jpg",
        "cat_and_dog_touching.jpg",
        "strip_wide.jpg",
        "strip_tall.jpg",
    ];
    let images: Vec<RgbImage> = names.iter().map(|n| photo(n)).collect();
    let refs: Vec<&RgbImage> = images.iter().collect();
    // One batch of very different sizes and aspect ratios.
    let found = detector.detect_batch(&refs).unwrap();
    for ((name, image), found) in names.iter().zip(&images).zip(&found) {
        check_boxes(name, image, found);
    }
    let pets = |i: usize| pets_of(&found[i]);
    assert!(pets(0).is_empty(), "no animal: {:?}", found[0]);
    assert!(
        found[0].iter().any(|d| d.kind == Kind::Person),
        "the astronaut is a person"
    );
    assert!(pets(1).is_empty(), "horses are not pets: {:?}", found[1]);
    assert!(
        pets(2).is_empty(),
        "a 40-pixel dog is below what the detector sees: {:?}",
        found[2]
    );
    let many = pets(3);
    assert!(
        many.len() >= 4 && many.len() <= 20,
        "twenty dogs, some found: {many:?}"
    );
    let touching = pets(4);
    let dogs = touching.iter().filter(|d| d.kind == Kind::Dog).count();
    let cats = touching.iter().filter(|d| d.kind == Kind::Cat).count();
    assert!(
        dogs >= 1 && cats >= 1,
        "a cat and a dog touching are two animals: {touching:?}"
    );
    for d in &touching {
        for e in &touching {
            if d != e {
                assert!(
                    d.bbox.iou(&e.bbox) <= 0.6,
                    "one animal, one box: {touching:?}"
                );
            }
        }
    }

    let degenerate = [
        RgbImage::new(1, 1),
        RgbImage::new(1, 3000),
        RgbImage::new(3000, 1),
        RgbImage::from_pixel(640, 480, image::Rgb([255, 255, 255])),
        RgbImage::from_pixel(37, 23, image::Rgb([0, 0, 0])),
    ];
    for image in &degenerate {
        let found = detector.detect(image).unwrap();
        check_boxes("degenerate", image, &found);
        assert!(
            pets_of(&found).is_empty(),
            "{}x{}: {found:?}",
            image.width(),
            image.height()
        );
    }
}
