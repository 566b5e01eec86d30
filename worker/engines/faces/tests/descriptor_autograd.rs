//! The descriptor and the chip extraction on candle's autograd path: the same numbers as the
//! native path, and gradients that agree with central finite differences.

mod common;

use std::sync::OnceLock;

use candle_core::{DType, Tensor, Var};
use common::test_device;
use image::RgbImage;
use reverie_faces::chip::{chip_details, extract_chip, extract_chip_tensor, ChipDetails};
use reverie_faces::models::{ModelStore, DESCRIPTOR_MODEL};
use reverie_faces::resnet::DescriptorNet;

fn net() -> &'static DescriptorNet {
    static NET: OnceLock<DescriptorNet> = OnceLock::new();
    NET.get_or_init(|| {
        let bytes = ModelStore::new(common::models_dir())
            .load(DESCRIPTOR_MODEL.name)
            .expect("load resnet");
        DescriptorNet::from_bytes(&bytes, &test_device()).expect("parse resnet")
    })
}

/// A fixture face: its photo's id, the photo, dlib's landmarks and dlib's chip.
type FixtureFace = (String, RgbImage, Vec<(i64, i64)>, RgbImage);

/// Every fixture face.
fn fixture_faces() -> Vec<FixtureFace> {
    let mut faces = Vec::new();
    for id in common::reference_ids() {
        let reference = common::reference(&id);
        let image_file = reference["image"].as_str().expect("image");
        let image = common::load_rgb(image_file);
        for face in reference["faces"].as_array().expect("faces") {
            let landmarks = face["landmarks5"]
                .as_array()
                .expect("landmarks")
                .iter()
                .map(|p| (p[0].as_i64().expect("x"), p[1].as_i64().expect("y")))
                .collect();
            let chip = common::load_rgb(face["chip_file"].as_str().expect("chip"));
            faces.push((id.clone(), image.clone(), landmarks, chip));
        }
    }
    faces
}

/// `(1, 3, H, W)` pixel values (0..255) in `dtype`.
fn image_tensor(image: &RgbImage, dtype: DType) -> Tensor {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let mut planes = vec![0f32; 3 * w * h];
    for (i, p) in image.pixels().enumerate() {
        for c in 0..3 {
            planes[c * w * h + i] = f32::from(p[c]);
        }
    }
    Tensor::from_vec(planes, (1, 3, h, w), &test_device())
        .and_then(|t| t.to_dtype(dtype))
        .expect("image tensor")
}

fn max_abs_difference(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_dtype(DType::F64).unwrap() - b.to_dtype(DType::F64).unwrap())
        .and_then(|d| d.abs())
        .and_then(|d| d.max_all())
        .and_then(|d| d.to_scalar::<f64>())
        .expect("difference")
}

#[test]
fn differentiable_forward_equals_the_native_forward_on_every_fixture_chip() {
    let chips: Vec<RgbImage> = fixture_faces().into_iter().map(|f| f.3).collect();
    assert!(chips.len() >= 100, "fixture chips: {}", chips.len());
    let mut worst = 0f64;
    for group in chips.chunks(16) {
        let refs: Vec<&RgbImage> = group.iter().collect();
        let input = net().chips_to_tensor(&refs).expect("input");
        let native = net().forward(&input).expect("native forward");
        let pixels = Tensor::cat(
            &group
                .iter()
                .map(|c| image_tensor(c, DType::F32))
                .collect::<Vec<_>>(),
            0,
        )
        .expect("batch");
        let normalized = net().normalize_chip_tensor(&pixels).expect("normalise");
        assert!(max_abs_difference(&normalized, &input) < 1e-6);
        let differentiable = net()
            .forward_differentiable(&normalized)
            .expect("autograd forward");
        worst = worst.max(max_abs_difference(&native, &differentiable));
    }
    eprintln!("worst descriptor element difference, native vs autograd: {worst:e}");
    assert!(worst < 1e-4, "autograd forward differs by {worst}");
}

#[test]
fn differentiable_chip_resamples_like_dlib() {
    let mut worst_mean = 0f64;
    for (id, image, landmarks, _) in fixture_faces() {
        let details = chip_details(&landmarks, 150, 0.25);
        let native = extract_chip(&image, &details);
        let tensor =
            extract_chip_tensor(&image_tensor(&image, DType::F32), &details).expect("chip tensor");
        let values: Vec<f32> = tensor
            .squeeze(0)
            .and_then(|t| t.permute((1, 2, 0)))
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1())
            .expect("values");
        // dlib truncates to 8 bits after each pyramid level and after sampling; the tensor path
        // keeps fractions, so it sits up to about one grey level per truncation above.
        let total: f64 = values
            .iter()
            .zip(native.as_raw())
            .map(|(v, &n)| (f64::from(*v) - f64::from(n)).abs())
            .sum();
        let mean = total / values.len() as f64;
        worst_mean = worst_mean.max(mean);
        assert!(mean < 1.5, "{id}: chip mean abs difference {mean}");
    }
    eprintln!("worst chip mean abs difference, dlib vs autograd: {worst_mean}");
}

/// A deterministic stream of indices (no rand dependency needed for a test).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// `||descriptor(chip(image)) - target||^2` in f64 for a batch of images.
fn losses(
    net: &DescriptorNet,
    images: &Tensor,
    details: Option<&ChipDetails>,
    target: &Tensor,
) -> Vec<f64> {
    let chips = match details {
        Some(details) => {
            let rows = images.dim(0).unwrap();
            let chips: Vec<Tensor> = (0..rows)
                .map(|r| extract_chip_tensor(&images.narrow(0, r, 1).unwrap(), details).unwrap())
                .collect();
            Tensor::cat(&chips, 0).unwrap()
        }
        None => images.clone(),
    };
    let descriptors = net
        .forward_differentiable(&net.normalize_chip_tensor(&chips).unwrap())
        .unwrap();
    descriptors
        .broadcast_sub(target)
        .and_then(|d| d.sqr())
        .and_then(|d| d.sum(1))
        .and_then(|d| d.to_vec1::<f64>())
        .unwrap()
}

/// Compares the autograd gradient of the loss w.r.t. `pixels` with central differences at
/// `coordinates` (flat indices), perturbing by `step` pixel units, in batches.
fn check_gradient(
    net: &DescriptorNet,
    pixels: &Tensor,
    details: Option<&ChipDetails>,
    target: &Tensor,
    coordinates: &[usize],
) {
    let var = Var::from_tensor(pixels).expect("var");
    let chip = match details {
        Some(details) => extract_chip_tensor(var.as_tensor(), details).expect("chip"),
        None => var.as_tensor().clone(),
    };
    let loss = net
        .forward_differentiable(&net.normalize_chip_tensor(&chip).unwrap())
        .unwrap()
        .broadcast_sub(target)
        .and_then(|d| d.sqr())
        .and_then(|d| d.sum_all())
        .unwrap();
    let gradient: Vec<f64> = loss
        .backward()
        .unwrap()
        .get(var.as_tensor())
        .expect("gradient")
        .flatten_all()
        .and_then(|g| g.to_vec1())
        .unwrap();
    let base: Vec<f64> = pixels.flatten_all().and_then(|t| t.to_vec1()).unwrap();
    let dims = pixels.dims().to_vec();
    let step = 1e-3;
    let (mut checked, mut largest_error, mut largest_gradient) = (0, 0f64, 0f64);
    for group in coordinates.chunks(8) {
        let mut batch = Vec::with_capacity(2 * group.len());
        for &c in group {
            for sign in [1.0, -1.0] {
                let mut values = base.clone();
                values[c] += sign * step;
                batch.push(Tensor::from_vec(values, dims.clone(), &test_device()).unwrap());
            }
        }
        let batch = Tensor::cat(&batch, 0).unwrap();
        let values = losses(net, &batch, details, target);
        for (k, &c) in group.iter().enumerate() {
            let numeric = (values[2 * k] - values[2 * k + 1]) / (2.0 * step);
            let analytic = gradient[c];
            let error = (numeric - analytic).abs();
            assert!(
                error <= 1e-7 + 1e-3 * numeric.abs().max(analytic.abs()),
                "coordinate {c}: autograd {analytic:e}, central difference {numeric:e}"
            );
            largest_error = largest_error.max(error);
            largest_gradient = largest_gradient.max(analytic.abs());
            checked += 1;
        }
    }
    assert!(largest_gradient > 0.0, "all checked gradients are zero");
    eprintln!("{checked} coordinates: largest gradient {largest_gradient:e}, largest error {largest_error:e}");
}

#[test]
fn descriptor_gradient_matches_central_differences() {
    let faces = fixture_faces();
    let net = net().with_dtype(DType::F64).expect("f64 net");
    let chip = image_tensor(&faces[0].3, DType::F64);
    let other = image_tensor(&faces[faces.len() - 1].3, DType::F64);
    let target = net
        .forward_differentiable(&net.normalize_chip_tensor(&other).unwrap())
        .unwrap();
    let mut lcg = Lcg(7);
    let count = chip.elem_count();
    let coordinates: Vec<usize> = (0..200).map(|_| lcg.below(count)).collect();
    check_gradient(&net, &chip, None, &target, &coordinates);
}

#[test]
fn chip_extraction_gradient_matches_central_differences() {
    let faces = fixture_faces();
    let (_, image, landmarks, _) = &faces[0];
    let details = chip_details(landmarks, 150, 0.25);
    let net = net().with_dtype(DType::F64).expect("f64 net");
    let pixels = image_tensor(image, DType::F64);
    let target = net
        .forward_differentiable(
            &net.normalize_chip_tensor(&image_tensor(&faces[faces.len() - 1].3, DType::F64))
                .unwrap(),
        )
        .unwrap();
    // Coordinates inside the chip's footprint, where the gradient can be non-zero.
    let (h, w) = (image.height() as usize, image.width() as usize);
    let rect = details.rect;
    let (left, top) = (rect.left.max(0.0) as usize, rect.top.max(0.0) as usize);
    let (right, bottom) = (
        (rect.right as usize).min(w - 1),
        (rect.bottom as usize).min(h - 1),
    );
    let mut lcg = Lcg(11);
    let coordinates: Vec<usize> = (0..100)
        .map(|_| {
            let c = lcg.below(3);
            let y = top + lcg.below(bottom - top);
            let x = left + lcg.below(right - left);
            c * h * w + y * w + x
        })
        .collect();
    check_gradient(&net, &pixels, Some(&details), &target, &coordinates);
}
