//! Google Takeout exports of Google Photos: album folders of photos with a JSON sidecar per photo, named
//! by rules that real exports follow (and break) in a few known ways.

use serde::Deserialize;

use crate::metadata::{GeoPoint, NamedRegion};

/// What a Takeout sidecar tells about its photo.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TakeoutFacts {
    pub title: Option<String>,
    pub description: Option<String>,
    /// Seconds since the epoch, UTC.
    pub taken: Option<i64>,
    pub gps: Option<GeoPoint>,
    pub people: Vec<NamedRegion>,
    pub favourite: bool,
}

#[derive(Deserialize)]
struct Sidecar {
    title: Option<String>,
    description: Option<String>,
    #[serde(rename = "photoTakenTime")]
    photo_taken_time: Option<Timestamp>,
    #[serde(rename = "geoData")]
    geo_data: Option<Geo>,
    #[serde(rename = "geoDataExif")]
    geo_data_exif: Option<Geo>,
    #[serde(default)]
    people: Vec<Person>,
    #[serde(default)]
    favorited: bool,
}

#[derive(Deserialize)]
struct Timestamp {
    timestamp: String,
}

#[derive(Deserialize)]
struct Geo {
    latitude: f64,
    longitude: f64,
    altitude: Option<f64>,
}

#[derive(Deserialize)]
struct Person {
    name: String,
}

pub fn parse_sidecar(bytes: &[u8]) -> Result<TakeoutFacts, String> {
    let sidecar: Sidecar = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    // Takeout writes 0,0 in geoData when it has no position; geoDataExif is the camera's own.
    let gps = [sidecar.geo_data, sidecar.geo_data_exif]
        .into_iter()
        .flatten()
        .find_map(|g| GeoPoint::checked(g.latitude, g.longitude, g.altitude));
    Ok(TakeoutFacts {
        title: sidecar.title.filter(|t| !t.trim().is_empty()),
        description: sidecar.description.filter(|d| !d.trim().is_empty()),
        taken: sidecar
            .photo_taken_time
            .and_then(|t| t.timestamp.parse::<i64>().ok())
            .filter(|&t| t > 0),
        gps,
        people: sidecar
            .people
            .into_iter()
            .filter(|p| !p.name.trim().is_empty())
            .map(|p| NamedRegion {
                name: p.name.trim().to_string(),
                area: None,
            })
            .collect(),
        favourite: sidecar.favorited,
    })
}

/// Takeout cuts sidecar names so that `name + ".json"` stays within 51 characters.
const SIDECAR_NAME_LIMIT: usize = 51;

/// Finds the sidecar of the photo `media` among the JSON files `candidates` of its folder.
///
/// Rules seen in real exports:
/// - `IMG_1.jpg` → `IMG_1.jpg.json`, or (2023+) `IMG_1.jpg.supplemental-metadata.json`, cut short when
///   long (`IMG_1.jpg.supplemental-metad.json`);
/// - long names are truncated so the sidecar name fits 51 characters: `A_very_long…_nam.json`;
/// - duplicates put the counter after the extension in the sidecar: `IMG(1).jpg` → `IMG.jpg(1).json`;
/// - edited copies share the original's sidecar: `IMG-edited.jpg` → `IMG.jpg.json`.
pub fn sidecar_for<'a>(media: &str, candidates: &'a [String]) -> Option<&'a str> {
    for name in variants(media) {
        if let Some(found) = find(&name, candidates) {
            return Some(found);
        }
    }
    None
}

/// The names a photo's sidecar may be derived from, most specific first.
fn variants(media: &str) -> Vec<String> {
    let mut names = vec![media.to_string()];
    let (stem, ext) = match media.rfind('.') {
        Some(dot) => (&media[..dot], &media[dot..]),
        None => (media, ""),
    };
    // IMG(1).jpg → IMG.jpg(1)
    if let Some(open) = stem.rfind('(') {
        if stem.ends_with(')')
            && stem[open + 1..stem.len() - 1]
                .chars()
                .all(|c| c.is_ascii_digit())
        {
            names.push(format!("{}{ext}{}", &stem[..open], &stem[open..]));
        }
    }
    for edited in ["-edited", "-bearbeitet", "-modifié", "-editado"] {
        if let Some(original) = stem.strip_suffix(edited) {
            names.push(format!("{original}{ext}"));
        }
    }
    names
}

fn find<'a>(name: &str, candidates: &'a [String]) -> Option<&'a str> {
    let exact = [
        format!("{name}.json"),
        format!("{name}.supplemental-metadata.json"),
    ];
    if let Some(hit) = candidates.iter().find(|c| exact.contains(c)) {
        return Some(hit);
    }
    // A truncated "supplemental-metadata" suffix: IMG.jpg.supplemental-metad.json, IMG.jpg.suppl.json
    if let Some(hit) = candidates.iter().find(|c| {
        c.strip_suffix(".json")
            .and_then(|s| s.strip_prefix(name))
            .and_then(|rest| rest.strip_prefix('.'))
            .is_some_and(|rest| !rest.is_empty() && "supplemental-metadata".starts_with(rest))
    }) {
        return Some(hit);
    }
    // The media name itself truncated to fit the limit.
    candidates.iter().map(String::as_str).find(|c| {
        c.len() >= SIDECAR_NAME_LIMIT - 1
            && c.strip_suffix(".json")
                .is_some_and(|cut| name.starts_with(cut) && name.len() > cut.len())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn sidecar_naming_rules_of_real_exports() {
        let long = "PXL_20230715_052301123.NIGHT.PORTRAIT-01.COVER.jpg";
        let long_cut = format!("{}.json", &long[..46]);
        let dir = names(&[
            "IMG_0001.JPG.json",
            "IMG_0002.jpg(1).json",
            "IMG_0002.jpg.json",
            "IMG_0003.HEIC.supplemental-metadata.json",
            "IMG_0004.jpg.supplemental-metad.json",
            long_cut.as_str(),
            "metadata.json",
        ]);
        let cases = [
            ("IMG_0001.JPG", Some("IMG_0001.JPG.json")),
            ("IMG_0002(1).jpg", Some("IMG_0002.jpg(1).json")),
            ("IMG_0002.jpg", Some("IMG_0002.jpg.json")),
            ("IMG_0002-edited.jpg", Some("IMG_0002.jpg.json")),
            (
                "IMG_0003.HEIC",
                Some("IMG_0003.HEIC.supplemental-metadata.json"),
            ),
            ("IMG_0004.jpg", Some("IMG_0004.jpg.supplemental-metad.json")),
            (long, Some(long_cut.as_str())),
            ("IMG_9999.jpg", None),
        ];
        for (media, expected) in cases {
            assert_eq!(sidecar_for(media, &dir), expected, "{media}");
        }
    }

    #[test]
    fn parses_sidecar_fields_and_ignores_zero_positions() {
        let json = br#"{"title":"Sunset.jpg","description":"Waikiki with Rex","photoTakenTime":{"timestamp":"1689398525","formatted":"x"},
            "geoData":{"latitude":0.0,"longitude":0.0,"altitude":0.0},"geoDataExif":{"latitude":21.2766,"longitude":-157.8278,"altitude":3.0},
            "people":[{"name":"Anna"},{"name":" "}],"favorited":true}"#;
        let facts = parse_sidecar(json).unwrap();
        assert_eq!(facts.description.as_deref(), Some("Waikiki with Rex"));
        assert_eq!(facts.taken, Some(1_689_398_525));
        assert!((facts.gps.unwrap().latitude - 21.2766).abs() < 1e-9);
        assert_eq!(facts.people.len(), 1);
        assert!(facts.favourite);
        assert!(parse_sidecar(b"{not json").is_err());
    }
}
