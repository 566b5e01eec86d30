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

/// Takeout cuts sidecar names so that `name + ".json"` stays within 51 characters (the name before
/// `.json` is at most 46 characters; a duplicate's counter `(1)` is kept after the cut).
const SIDECAR_NAME_LIMIT: usize = 51;

/// The suffixes Google Photos gives edited copies, by interface language.
const EDITED_SUFFIXES: &[&str] = &["-edited", "-bearbeitet", "-modifié", "-editado"];

/// Finds the sidecar of the photo `media` among the JSON files `candidates` of its folder.
///
/// Rules seen in real exports:
/// - `IMG_1.jpg` → `IMG_1.jpg.json`, or (2023+) `IMG_1.jpg.supplemental-metadata.json`, cut short when
///   long (`IMG_1.jpg.supplemental-metad.json`);
/// - long names are truncated so the sidecar name fits 51 characters: `A_very_long…_nam.json`;
/// - duplicates put the counter after the extension in the sidecar, after any cut:
///   `IMG(1).jpg` → `IMG.jpg(1).json`, `IMG.jpg.supplemental-metadata(1).json`, `A_very_long…_n(1).json`;
/// - edited copies share the original's sidecar: `IMG-edited.jpg` → `IMG.jpg.json`.
pub fn sidecar_for<'a>(media: &str, candidates: &'a [String]) -> Option<&'a str> {
    for (name, counter) in variants(media) {
        if let Some(found) = find(&name, &counter, candidates) {
            return Some(found);
        }
    }
    None
}

/// Splits `IMG(12).jpg` into (`IMG`, `(12)`, `.jpg`); the counter is empty when there is none.
fn split_counter(media: &str) -> (&str, &str, &str) {
    let (stem, ext) = match media.rfind('.') {
        Some(dot) if dot > 0 => (&media[..dot], &media[dot..]),
        _ => (media, ""),
    };
    if let Some(open) = stem.rfind('(') {
        let digits = &stem[open + 1..stem.len().saturating_sub(1)];
        if open > 0
            && stem.ends_with(')')
            && !digits.is_empty()
            && digits.chars().all(|c| c.is_ascii_digit())
        {
            return (&stem[..open], &stem[open..], ext);
        }
    }
    (stem, "", ext)
}

/// The name of the original that Google Photos' edited copy `media` was made from, in the same folder:
/// `IMG-edited.jpg` → `IMG.jpg`, `IMG-edited(1).jpg` → `IMG(1).jpg`; `None` for a photo that is no edit.
pub fn edited_original(media: &str) -> Option<String> {
    let (stem, counter, ext) = split_counter(media);
    EDITED_SUFFIXES.iter().find_map(|suffix| {
        stem.strip_suffix(suffix)
            .filter(|original| !original.is_empty())
            .map(|original| format!("{original}{counter}{ext}"))
    })
}

/// The (photo name, counter) pairs a photo's sidecar may be named after, most specific first.
fn variants(media: &str) -> Vec<(String, String)> {
    // A photo really called `IMG(1).jpg` has `IMG(1).jpg.json`: tried before the duplicate rule.
    let mut names = vec![(media.to_string(), String::new())];
    let (stem, counter, ext) = split_counter(media);
    if !counter.is_empty() {
        names.push((format!("{stem}{ext}"), counter.to_string()));
    }
    if let Some(original) = edited_original(media) {
        names.extend(variants(&original));
    }
    names
}

/// The sidecar of the photo `name` (its counter moved out as `counter`) among `candidates`: an exact
/// name first, then a cut `supplemental-metadata`, then the name itself cut to the length limit.
fn find<'a>(name: &str, counter: &str, candidates: &'a [String]) -> Option<&'a str> {
    // What is left of each candidate once `.json` and the counter are taken off its end.
    let bases = candidates.iter().filter_map(|c| {
        let base = c.strip_suffix(".json")?.strip_suffix(counter)?;
        Some((c.as_str(), base))
    });
    let exact = [name.to_string(), format!("{name}.supplemental-metadata")];
    if let Some((hit, _)) = bases
        .clone()
        .find(|(_, base)| exact.iter().any(|e| e == base))
    {
        return Some(hit);
    }
    // A cut "supplemental-metadata" suffix: IMG.jpg.supplemental-metad.json, IMG.jpg.suppl.json
    if let Some((hit, _)) = bases.clone().find(|(_, base)| {
        base.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('.'))
            .is_some_and(|rest| !rest.is_empty() && "supplemental-metadata".starts_with(rest))
    }) {
        return Some(hit);
    }
    // The photo's name itself cut to fit the limit. Only names cut at (or one short of, since some
    // exports count the counter's dot) the limit count, so that `IMG.json` never claims `IMG_1.jpg`.
    bases
        .filter(|(hit, base)| {
            hit.len() + 1 >= SIDECAR_NAME_LIMIT
                && !base.is_empty()
                && name.starts_with(base)
                && name.len() > base.len()
        })
        .map(|(hit, _)| hit)
        .next()
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
    fn duplicate_counters_follow_any_cut_of_the_sidecar_name() {
        let long = "PXL_20230715_052301123.NIGHT.PORTRAIT-01.COVER(1).jpg";
        let long_cut = format!(
            "{}(1).json",
            &"PXL_20230715_052301123.NIGHT.PORTRAIT-01.COVER.jpg"[..46]
        );
        let dir = names(&[
            "IMG_0005.jpg.supplemental-metadata(1).json",
            "IMG_0006.jpg.supplemental-me(2).json",
            "IMG_0007.jpg.json",
            long_cut.as_str(),
            "IMG.json",
        ]);
        let cases = [
            (
                "IMG_0005(1).jpg",
                Some("IMG_0005.jpg.supplemental-metadata(1).json"),
            ),
            (
                "IMG_0006(2).jpg",
                Some("IMG_0006.jpg.supplemental-me(2).json"),
            ),
            // The copy's own sidecar is missing: the original's is not borrowed.
            ("IMG_0007(1).jpg", None),
            ("IMG_0007-edited.jpg", Some("IMG_0007.jpg.json")),
            (long, Some(long_cut.as_str())),
            ("IMG_0.jpg", None),
        ];
        for (media, expected) in cases {
            assert_eq!(sidecar_for(media, &dir), expected, "{media}");
        }
        assert_eq!(
            edited_original("IMG_1-edited.jpg").as_deref(),
            Some("IMG_1.jpg")
        );
        assert_eq!(
            edited_original("IMG_1-edited(1).jpg").as_deref(),
            Some("IMG_1(1).jpg")
        );
        assert_eq!(edited_original("IMG_1.jpg"), None);
        assert_eq!(edited_original("-edited.jpg"), None);
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
