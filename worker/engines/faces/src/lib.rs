//! dlib's face pipeline on candle: model files, MMOD CNN detector, 5-point shape
//! predictor, face chips and the ResNet face descriptor.

pub mod dlib_format;
pub mod dnn;
pub mod error;
pub mod layers;
pub mod models;
pub mod native;
pub mod resnet;
pub mod segmentation;

pub use error::{FaceError, IdentityError, Result};
pub mod analyzer;
pub mod chip;
pub mod detector;
pub mod geometry;
pub mod pyramid;
pub mod shape_predictor;

pub use analyzer::{Face, FaceAnalyzer, FaceBox, FaceModels};
pub mod identity;
pub mod people;
