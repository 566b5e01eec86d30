//! Person segmentation: MediaPipe Selfie Segmentation (Apache-2.0) on candle.
//!
//! * [`fetch`]: `npm pack @mediapipe/selfie_segmentation@0.1.1675465747`, the
//!   `.tflite` checked against its pinned hash and converted to safetensors.
//! * [`tflite`]: a bounds-checked reader of the `.tflite` FlatBuffer.
//! * [`convert`]: graph check and weight extraction.
//! * [`net`]: the network, layer by layer.
//! * [`preprocess`]: MediaPipe's CPU pre- and post-processing.
//!
//! ```no_run
//! # fn main() -> reverie_faces::Result<()> {
//! use reverie_faces::segmentation::PersonSegmenter;
//! let segmenter = PersonSegmenter::load("models".as_ref(), &candle_core::Device::Cpu)?;
//! let photo = image::open("photo.jpg").unwrap().to_rgb8();
//! let mask = segmenter.mask(&photo)?; // person = 255, same size as the photo
//! # Ok(()) }
//! ```

pub mod convert;
pub mod fetch;
pub mod net;
pub mod preprocess;
pub mod tflite;

use std::path::Path;

use candle_core::{Device, Tensor};
use image::{GrayImage, RgbImage};

pub use fetch::{fetch_segmentation_model, fetch_segmentation_models, NPM_PACKAGE, NPM_VERSION};
pub use net::SelfieNet;
pub use preprocess::{warp_to_input, ProbabilityMap};

use crate::error::{FaceError, Result, TensorContext};

/// The two models of the package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SegmentationVariant {
    /// `selfie_segmentation.tflite`: 256x256 input, the general-purpose model.
    General,
    /// `selfie_segmentation_landscape.tflite`: 256 wide, 144 high.
    Landscape,
}

impl SegmentationVariant {
    pub const ALL: [SegmentationVariant; 2] =
        [SegmentationVariant::General, SegmentationVariant::Landscape];

    /// (height, width) of the model input.
    pub fn input_size(self) -> (usize, usize) {
        match self {
            Self::General => (256, 256),
            Self::Landscape => (144, 256),
        }
    }

    pub fn tflite_name(self) -> &'static str {
        match self {
            Self::General => "selfie_segmentation.tflite",
            Self::Landscape => "selfie_segmentation_landscape.tflite",
        }
    }

    /// SHA-256 of the `.tflite` in the pinned npm package.
    pub fn tflite_sha256(self) -> &'static str {
        match self {
            Self::General => "8d13b7fae74af625c641226813616a2117bd6bca19eb3b75574621fc08557f27",
            Self::Landscape => "4aafe6223bb8dac6fac8ca8ed56852870a33051ef3f6238822d282a109962894",
        }
    }

    /// Name of the converted file in the models directory.
    pub fn safetensors_name(self) -> &'static str {
        match self {
            Self::General => "selfie_segmentation.safetensors",
            Self::Landscape => "selfie_segmentation_landscape.safetensors",
        }
    }

    /// SHA-256 of the converted file (the conversion is deterministic).
    pub fn safetensors_sha256(self) -> &'static str {
        match self {
            Self::General => "88cb81862c023b150e7bb2f02cfccf2251c24fabac5e6b5f1c089dd3a44bd514",
            Self::Landscape => "0efe909315faa1244a745d90db17b27d2a88ea89c38ea55b2bb61ac9c8214276",
        }
    }
}

/// Images per network call in the batched paths (bounds activation memory:
/// about 20 MB per 256x256 image).
pub const MAX_BATCH: usize = 16;

/// Person segmentation with MediaPipe Selfie Segmentation.
#[derive(Debug, Clone)]
pub struct PersonSegmenter {
    net: SelfieNet,
    variant: SegmentationVariant,
    device: Device,
}

impl PersonSegmenter {
    /// Loads the general (256x256) model from `models_dir`, checking its hash.
    pub fn load(models_dir: &Path, device: &Device) -> Result<Self> {
        Self::load_variant(models_dir, SegmentationVariant::General, device)
    }

    pub fn load_variant(
        models_dir: &Path,
        variant: SegmentationVariant,
        device: &Device,
    ) -> Result<Self> {
        let bytes = fetch::read_verified(models_dir, variant)?;
        let net = SelfieNet::from_safetensors(&bytes, device, variant.safetensors_name())?;
        Ok(Self {
            net,
            variant,
            device: device.clone(),
        })
    }

    pub fn variant(&self) -> SegmentationVariant {
        self.variant
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// (width, height) of the model input.
    pub fn input_size(&self) -> (u32, u32) {
        let (h, w) = self.variant.input_size();
        (w as u32, h as u32)
    }

    /// MediaPipe's pre-processing of `image` to the model input (u8; the network
    /// sees `value / 255`).
    pub fn preprocess(&self, image: &RgbImage) -> Result<RgbImage> {
        if image.width() == 0 || image.height() == 0 {
            return Err(FaceError::Image("empty image".to_string()));
        }
        let (w, h) = self.input_size();
        Ok(warp_to_input(image, w, h))
    }

    /// The raw network: `[batch, 3, H, W]` in [0, 1] to `[batch, H, W]`.
    pub fn forward(&self, input: &Tensor) -> Result<Tensor> {
        self.net.forward(input)
    }

    /// The network alone on already pre-processed, model-size inputs.
    pub fn probabilities_of_inputs(&self, inputs: &[RgbImage]) -> Result<Vec<ProbabilityMap>> {
        let (w, h) = self.input_size();
        let mut maps = Vec::with_capacity(inputs.len());
        for chunk in inputs.chunks(MAX_BATCH) {
            let mut planes = Vec::with_capacity(chunk.len() * 3 * (w * h) as usize);
            for input in chunk {
                if input.dimensions() != (w, h) {
                    return Err(FaceError::Image(format!(
                        "model input must be {w}x{h}, got {}x{}",
                        input.width(),
                        input.height()
                    )));
                }
                planes.extend(preprocess::input_planes(input));
            }
            let x = Tensor::from_vec(
                planes,
                (chunk.len(), 3, h as usize, w as usize),
                &self.device,
            )
            .ctx("segmentation input")?;
            let y = self.net.forward(&x)?;
            let y = y
                .flatten_from(1)
                .and_then(|y| y.to_vec2::<f32>())
                .ctx("probabilities")?;
            maps.extend(y.into_iter().map(|data| ProbabilityMap {
                width: w,
                height: h,
                data,
            }));
        }
        Ok(maps)
    }

    /// Person probabilities at model resolution (pre-processing + network).
    pub fn probabilities(&self, image: &RgbImage) -> Result<ProbabilityMap> {
        let mut maps = self.probabilities_batch(std::slice::from_ref(image))?;
        maps.pop()
            .ok_or_else(|| FaceError::Image("no output".to_string()))
    }

    /// [`Self::probabilities`] for several images, batched through the network.
    pub fn probabilities_batch(&self, images: &[RgbImage]) -> Result<Vec<ProbabilityMap>> {
        let inputs = images
            .iter()
            .map(|i| self.preprocess(i))
            .collect::<Result<Vec<_>>>()?;
        self.probabilities_of_inputs(&inputs)
    }

    /// Person probabilities resized (bilinearly) to the image size.
    pub fn probabilities_full(&self, image: &RgbImage) -> Result<ProbabilityMap> {
        Ok(self
            .probabilities(image)?
            .resize(image.width(), image.height()))
    }

    /// The person mask at the image's size: 0..255, person = 255.
    pub fn mask(&self, image: &RgbImage) -> Result<GrayImage> {
        Ok(self.probabilities_full(image)?.to_mask())
    }

    /// [`Self::mask`] for several images, batched through the network.
    pub fn masks(&self, images: &[RgbImage]) -> Result<Vec<GrayImage>> {
        let maps = self.probabilities_batch(images)?;
        Ok(maps
            .iter()
            .zip(images)
            .map(|(map, image)| map.resize(image.width(), image.height()).to_mask())
            .collect())
    }
}
