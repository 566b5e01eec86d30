//! The public face pipeline: load models once, analyse batches of photos.

use std::path::Path;

use candle_core::Device;
use image::{DynamicImage, RgbImage};
use serde::{Deserialize, Serialize};

use crate::chip::{chip_details, extract_chip};
use crate::detector::FaceDetector;
use crate::error::{FaceError, Result};
use crate::geometry::Rect;
use crate::models::{ModelStore, DESCRIPTOR_MODEL, DETECTOR_MODEL, SHAPE_MODEL};
use crate::resnet::{DescriptorNet, CHIP_SIZE, DESCRIPTOR_LEN};
use crate::shape_predictor::{GrayPlane, ShapePredictor};

/// Chip padding used for descriptors (dlib's default and the references').
pub const CHIP_PADDING: f64 = 0.25;

/// Faces per descriptor forward pass; bounds memory of one batch.
const DESCRIPTOR_BATCH: usize = 32;

/// Box in original-image pixels; right/bottom are inclusive like dlib's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaceBox {
    pub left: i64,
    pub top: i64,
    pub right: i64,
    pub bottom: i64,
}

impl From<Rect> for FaceBox {
    fn from(r: Rect) -> Self {
        FaceBox {
            left: r.left,
            top: r.top,
            right: r.right,
            bottom: r.bottom,
        }
    }
}

impl From<FaceBox> for Rect {
    fn from(b: FaceBox) -> Self {
        Rect {
            left: b.left,
            top: b.top,
            right: b.right,
            bottom: b.bottom,
        }
    }
}

/// One detected face, in the JSON shape of `reverie faces detect --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Face {
    #[serde(rename = "box")]
    pub bbox: FaceBox,
    pub confidence: f32,
    /// The 5 landmarks `[x, y]` in the model's order (see FORMAT.md 7.2).
    pub landmarks: Vec<[i64; 2]>,
    pub descriptor: Vec<f32>,
    /// The aligned 150x150 chip the descriptor was computed from (not serialised).
    #[serde(skip)]
    pub chip: Option<RgbImage>,
}

/// The three loaded networks.
#[derive(Debug, Clone)]
pub struct FaceModels {
    pub detector: FaceDetector,
    pub shape_predictor: ShapePredictor,
    pub descriptor: DescriptorNet,
    /// SHA-256 of the descriptor model, for cache keys.
    pub descriptor_model_sha256: &'static str,
}

impl FaceModels {
    /// Loads and hash-checks the models from `models_dir` on the CPU.
    pub fn load(models_dir: &Path) -> Result<Self> {
        Self::load_on(models_dir, &Device::Cpu)
    }

    pub fn load_on(models_dir: &Path, device: &Device) -> Result<Self> {
        let store = ModelStore::new(models_dir);
        Ok(Self {
            detector: FaceDetector::from_bytes(&store.load(DETECTOR_MODEL.name)?, device)?,
            shape_predictor: ShapePredictor::from_bytes(&store.load(SHAPE_MODEL.name)?)?,
            descriptor: DescriptorNet::from_bytes(&store.load(DESCRIPTOR_MODEL.name)?, device)?,
            descriptor_model_sha256: DESCRIPTOR_MODEL.sha256,
        })
    }
}

/// Runs detection, landmarks, chips and descriptors.
#[derive(Debug, Clone)]
pub struct FaceAnalyzer {
    models: FaceModels,
}

/// dlib's detector wants 8-bit RGB: gray is replicated, 16-bit is scaled down,
/// alpha is dropped.
pub fn to_rgb8(img: &DynamicImage) -> RgbImage {
    img.to_rgb8()
}

/// Decodes image bytes (any format the `image` crate reads: 8/16-bit, gray, RGB,
/// RGBA; CMYK JPEGs are converted by the JPEG decoder) with an error that names the
/// source on failure.
pub fn decode_image(bytes: &[u8], source: &str) -> Result<DynamicImage> {
    image::load_from_memory(bytes)
        .map_err(|e| FaceError::Image(format!("cannot decode {source}: {e}")))
}

impl FaceAnalyzer {
    pub fn new(models: FaceModels) -> Self {
        Self { models }
    }

    pub fn models(&self) -> &FaceModels {
        &self.models
    }

    /// Analyses decoded images (callers apply EXIF orientation first).
    pub fn analyze_dynamic_batch(&self, images: &[DynamicImage]) -> Result<Vec<Vec<Face>>> {
        let rgb: Vec<RgbImage> = images.iter().map(to_rgb8).collect();
        self.analyze_batch(&rgb)
    }

    /// Faces of every image. Detection batches photos of similar pyramid size into
    /// shared network passes ([`FaceDetector::detect_batch`]); descriptors run in
    /// batches across all photos' faces.
    pub fn analyze_batch(&self, images: &[RgbImage]) -> Result<Vec<Vec<Face>>> {
        let refs: Vec<&RgbImage> = images.iter().collect();
        let detections = self.models.detector.detect_batch(&refs)?;
        let mut per_image: Vec<Vec<Face>> = Vec::with_capacity(images.len());
        for (img, dets) in images.iter().zip(detections) {
            let gray = GrayPlane::from_rgb(img);
            let faces = dets
                .into_iter()
                .map(|d| {
                    let landmarks = self.models.shape_predictor.predict(&gray, &d.rect);
                    let chip =
                        extract_chip(img, &chip_details(&landmarks, CHIP_SIZE, CHIP_PADDING));
                    Face {
                        bbox: d.rect.into(),
                        confidence: d.confidence,
                        landmarks: landmarks.iter().map(|&(x, y)| [x, y]).collect(),
                        descriptor: Vec::new(),
                        chip: Some(chip),
                    }
                })
                .collect();
            per_image.push(faces);
        }
        self.fill_descriptors(&mut per_image)?;
        Ok(per_image)
    }

    /// Descriptors for all faces of all images, `DESCRIPTOR_BATCH` chips per pass.
    fn fill_descriptors(&self, per_image: &mut [Vec<Face>]) -> Result<()> {
        let mut faces: Vec<&mut Face> = per_image.iter_mut().flatten().collect();
        for group in faces.chunks_mut(DESCRIPTOR_BATCH) {
            let chips: Vec<&RgbImage> = group.iter().filter_map(|f| f.chip.as_ref()).collect();
            let descriptors = self.models.descriptor.descriptors(&chips)?;
            for (face, d) in group.iter_mut().zip(descriptors) {
                face.descriptor = d.to_vec();
            }
        }
        debug_assert!(per_image
            .iter()
            .flatten()
            .all(|f| f.descriptor.len() == DESCRIPTOR_LEN));
        Ok(())
    }
}
