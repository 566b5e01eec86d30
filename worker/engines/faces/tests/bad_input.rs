//! Awkward inputs: no crash, sensible output.

mod common;

use std::sync::OnceLock;

use image::{DynamicImage, GenericImage, Rgb, RgbImage};
use reverie_faces::analyzer::decode_image;
use reverie_faces::{FaceAnalyzer, FaceModels};

fn analyzer() -> &'static FaceAnalyzer {
    static ANALYZER: OnceLock<FaceAnalyzer> = OnceLock::new();
    ANALYZER.get_or_init(|| {
        FaceAnalyzer::new(FaceModels::load(&common::models_dir()).expect("load models"))
    })
}

fn astronaut() -> RgbImage {
    common::load_rgb("images/skimage_astronaut.png")
}

fn faces_in(img: RgbImage) -> usize {
    analyzer().analyze_batch(&[img]).expect("analyze")[0].len()
}

#[test]
fn no_face_gives_no_faces() {
    assert_eq!(faces_in(common::load_rgb("images/dlib_dogs.png")), 0);
    assert_eq!(
        faces_in(RgbImage::from_pixel(64, 64, Rgb([128, 128, 128]))),
        0
    );
}

#[test]
fn empty_and_extreme_aspect_ratios_do_not_crash() {
    assert_eq!(faces_in(RgbImage::new(0, 0)), 0);
    assert_eq!(faces_in(RgbImage::new(1, 1)), 0);
    assert_eq!(faces_in(RgbImage::new(3000, 2)), 0);
    assert_eq!(faces_in(RgbImage::new(2, 3000)), 0);
    // A very wide strip that contains a face still finds it.
    let face = astronaut();
    let mut strip = RgbImage::from_pixel(3000, face.height(), Rgb([0, 0, 0]));
    strip.copy_from(&face, 1500, 0).expect("paste");
    assert_eq!(faces_in(strip), 1);
}

#[test]
fn tiny_twenty_pixel_face_is_handled() {
    // The astronaut's face is ~100 px wide; a 1/5 scale makes it ~20 px, below
    // dlib's ~40 px minimum with one upsampling: no crash, and no false face.
    let small =
        image::imageops::resize(&astronaut(), 60, 60, image::imageops::FilterType::Triangle);
    assert_eq!(faces_in(small), 0);
}

#[test]
fn face_cut_by_the_border_is_clipped_sensibly() {
    // Keep the right 60 % of the face only (face spans x 104..202).
    let img = astronaut();
    let cut = image::imageops::crop_imm(&img, 150, 0, img.width() - 150, img.height()).to_image();
    let faces = analyzer().analyze_batch(&[cut]).expect("analyze");
    for face in &faces[0] {
        assert_eq!(face.descriptor.len(), 128);
        assert!(face.bbox.right > 0 && face.bbox.bottom > 0);
    }
}

#[test]
fn grayscale_and_sixteen_bit_inputs_match_the_rgb8_result() {
    let rgb = astronaut();
    let reference = analyzer()
        .analyze_batch(std::slice::from_ref(&rgb))
        .expect("rgb")[0]
        .clone();
    assert_eq!(reference.len(), 1);
    let sixteen = DynamicImage::ImageRgb8(rgb.clone()).to_rgb16();
    let from16 = analyzer()
        .analyze_dynamic_batch(&[DynamicImage::ImageRgb16(sixteen)])
        .expect("16-bit");
    assert_eq!(from16[0][0].bbox, reference[0].bbox);
    let gray = DynamicImage::ImageRgb8(rgb).to_luma8();
    let from_gray = analyzer()
        .analyze_dynamic_batch(&[DynamicImage::ImageLuma8(gray)])
        .expect("gray");
    assert_eq!(from_gray[0].len(), 1);
}

#[test]
fn many_faces_are_all_found() {
    // 50 copies of the astronaut's head in a 10x5 grid.
    let img = astronaut();
    let head = image::imageops::crop_imm(&img, 74, 46, 160, 160).to_image();
    let mut grid = RgbImage::from_pixel(1600, 800, Rgb([255, 255, 255]));
    for i in 0..50u32 {
        grid.copy_from(&head, (i % 10) * 160, (i / 10) * 160)
            .expect("paste");
    }
    let found = faces_in(grid);
    assert!((45..=50).contains(&found), "found {found} of 50 faces");
}

#[test]
fn huge_image_is_processed_with_bounded_working_size() {
    // 8000x8000: detection runs on a copy capped at MAX_DETECTION_SIDE, so memory
    // stays bounded; the scaled-up face must still be found in original pixels.
    let face = image::imageops::resize(
        &astronaut(),
        2000,
        2000,
        image::imageops::FilterType::Triangle,
    );
    let mut big = RgbImage::from_pixel(8000, 8000, Rgb([90, 90, 90]));
    big.copy_from(&face, 3000, 3000).expect("paste");
    let faces = analyzer().analyze_batch(&[big]).expect("analyze");
    assert_eq!(faces[0].len(), 1);
    let b = faces[0][0].bbox;
    assert!(
        b.left > 3000 && b.right < 5000 && b.right - b.left > 400,
        "box {b:?}"
    );
}

#[test]
fn undecodable_bytes_give_a_clear_error() {
    let err = decode_image(b"not an image", "photo.jpg").expect_err("must fail");
    assert!(err.to_string().contains("photo.jpg"), "{err}");
}

#[test]
fn cmyk_jpeg_decodes_and_finds_the_same_face_as_rgb() {
    // Written by Pillow (`img.convert('CMYK').save(...)`, Adobe inverted CMYK): the decoder converts it
    // to RGB, and the face matches the one in the RGB original.
    let path = common::fixture_dir().join("images/cmyk_obama.jpg");
    let bytes = std::fs::read(&path).expect("cmyk fixture");
    let cmyk = decode_image(&bytes, "cmyk_obama.jpg").expect("CMYK JPEG decodes");
    let from_cmyk = analyzer()
        .analyze_dynamic_batch(&[cmyk])
        .expect("analyze cmyk");
    let rgb = analyzer()
        .analyze_batch(&[common::load_rgb("images/frpy_obama.png")])
        .expect("analyze rgb");
    assert_eq!(from_cmyk[0].len(), 1, "one face in the CMYK photo");
    let (a, b) = (from_cmyk[0][0].bbox, rgb[0][0].bbox);
    assert!(
        (a.left - b.left).abs() <= 4 && (a.top - b.top).abs() <= 4,
        "{a:?} vs {b:?}"
    );
    let distance: f32 = from_cmyk[0][0]
        .descriptor
        .iter()
        .zip(&rgb[0][0].descriptor)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f32>()
        .sqrt();
    assert!(
        distance < 0.3,
        "same person: descriptor distance {distance}"
    );
}

#[test]
fn sixteen_bit_png_file_decodes_like_its_eight_bit_source() {
    let rgb = astronaut();
    let mut png = Vec::new();
    DynamicImage::ImageRgb16(DynamicImage::ImageRgb8(rgb.clone()).to_rgb16())
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .expect("encode 16-bit png");
    let decoded = decode_image(&png, "sixteen.png").expect("16-bit PNG decodes");
    assert!(matches!(decoded, DynamicImage::ImageRgb16(_)));
    let faces = analyzer()
        .analyze_dynamic_batch(&[decoded])
        .expect("analyze");
    let reference = analyzer().analyze_batch(&[rgb]).expect("rgb");
    assert_eq!(faces[0][0].bbox, reference[0][0].bbox);
}
