//! What Reverie knows about one photo: everything import records, serialised next to the photo in its
//! shard and in the library manifest.

use std::collections::BTreeSet;

use reverie_shared::ids::PhotoId;
use serde::{Deserialize, Serialize};

/// When a photo was taken: the local wall-clock time and, when known, its offset from UTC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureTime {
    /// `YYYY-MM-DDTHH:MM:SS`, the camera's local time.
    pub local: String,
    /// Minutes east of UTC, when the camera or a sidecar said.
    pub utc_offset_minutes: Option<i32>,
    /// The instant in UTC (RFC 3339), when the offset is known (or the source gave UTC, as Takeout does).
    pub utc: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GeoPoint {
    pub latitude: f64,
    pub longitude: f64,
    pub altitude: Option<f64>,
}

impl GeoPoint {
    /// Rejects impossible coordinates, and the (0, 0) that many tools write for "unknown".
    pub fn checked(latitude: f64, longitude: f64, altitude: Option<f64>) -> Option<GeoPoint> {
        let valid = latitude.is_finite()
            && longitude.is_finite()
            && (-90.0..=90.0).contains(&latitude)
            && (-180.0..=180.0).contains(&longitude)
            && !(latitude == 0.0 && longitude == 0.0);
        valid.then_some(GeoPoint {
            latitude,
            longitude,
            altitude: altitude.filter(|a| a.is_finite()),
        })
    }
}

/// A region of the photo naming a person (from a Takeout or XMP sidecar), normalised to 0..1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedRegion {
    pub name: String,
    /// Left, top, width, height as fractions of the (oriented) image; `None` when only the name is known.
    pub area: Option<[f64; 4]>,
}

/// The reverse-geocoded place of a GPS position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Place {
    pub city: String,
    pub region: String,
    pub country: String,
}

impl Place {
    /// "Honolulu, Hawaii, US".
    pub fn label(&self) -> String {
        [&self.city, &self.region, &self.country]
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Cheap statistics computed at import, for ranking references later.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ImageStats {
    /// Mean sRGB colour.
    pub mean_rgb: [u8; 3],
    /// Mean luma, 0..1.
    pub brightness: f32,
    /// Variance of the Laplacian of a 256-px-wide grey copy: higher is sharper.
    pub sharpness: f32,
    /// Spread of saturation, 0..1: high for colourful pictures.
    pub colourfulness: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhotoMeta {
    pub id: PhotoId,
    /// The file name or relative path the photo was imported from (first seen).
    pub original: String,
    /// `jpeg`, `png`, `webp`, `gif`, `tiff`.
    pub format: String,
    /// Pixel size after orientation is applied.
    pub width: u32,
    pub height: u32,
    /// EXIF orientation (1–8) as stored; decoding applies it.
    pub orientation: u8,
    pub captured: Option<CaptureTime>,
    pub gps: Option<GeoPoint>,
    pub place: Option<Place>,
    pub camera: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    pub keywords: BTreeSet<String>,
    pub rating: Option<u8>,
    pub favourite: bool,
    pub albums: BTreeSet<String>,
    pub people: Vec<NamedRegion>,
    /// Pets the sidecars name (regions of type `Pet`, keywords under `Pets|`).
    #[serde(default)]
    pub pets: Vec<NamedRegion>,
    /// Light tags from the sun's position (see `sun`), when time and place are known.
    pub light: Vec<String>,
    pub sun_elevation: Option<f64>,
    pub stats: ImageStats,
}
