//! Describing a photo: decoded and measured (format, size, orientation, image statistics, EXIF), then
//! what it is (time, place, light, camera, people, albums) from its EXIF and sidecars, sidecars first.
//! The sidecars of byte-identical copies are merged before; an edit borrows what its original's EXIF
//! still has.

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use reverie_shared::ids::PhotoId;

use crate::decode::{decode, oriented_size, probe};
use crate::error::Damage;
use crate::exif_read::{read_exif, ExifFacts};
use crate::metadata::{CaptureTime, ImageStats, NamedRegion, PhotoMeta};
use crate::places::reverse_geocode;
use crate::stats::image_stats;
use crate::sun::{light_tags, sun_position};
use crate::takeout::TakeoutFacts;
use crate::xmp::XmpFacts;

/// What is known of a photo besides its own bytes.
pub(super) struct Known {
    /// The union of its copies' Takeout sidecars.
    pub(super) takeout: Option<TakeoutFacts>,
    /// The union of its copies' XMP sidecars.
    pub(super) xmp: Option<XmpFacts>,
    /// For an edited copy, its original's EXIF.
    pub(super) original_exif: Option<ExifFacts>,
}

/// "Photos from 2023" folders in Takeout are years, not albums.
pub(super) fn album_of(relative: &str) -> Option<String> {
    let (dir, _) = relative.rsplit_once('/')?;
    let name = dir.rsplit('/').next()?.trim();
    let is_year_folder = name
        .strip_prefix("Photos from ")
        .is_some_and(|y| y.len() == 4 && y.chars().all(|c| c.is_ascii_digit()));
    (!name.is_empty() && !is_year_folder).then(|| name.to_string())
}

/// What decoding a photo tells: its format, stored size, EXIF, orientation and image statistics.
pub(super) struct Inspected {
    format: &'static str,
    stored_width: u32,
    stored_height: u32,
    pub(super) exif: ExifFacts,
    orientation: u8,
    stats: ImageStats,
}

/// Decodes a photo and measures it: CPU work, run on a blocking thread.
pub(super) fn inspect(bytes: &[u8], max_pixels: u64) -> Result<Inspected, Damage> {
    let (format, stored_width, stored_height) = probe(bytes)?;
    let exif = read_exif(bytes);
    // HEIF carries its rotation in the container and decoding applies it; EXIF's would turn it twice.
    let orientation = if format == crate::decode::HEIC {
        1
    } else {
        exif.orientation.unwrap_or(1)
    };
    let image = decode(bytes, max_pixels, orientation)?;
    Ok(Inspected {
        format,
        stored_width,
        stored_height,
        exif,
        orientation,
        stats: image_stats(&image),
    })
}

/// A photo's metadata from what decoding told and what its sidecars (and, for an edit, its
/// original) know. The EXIF values that were impossible (`exif.rejected`) are the caller's to note.
pub(super) fn describe(
    relative: &str,
    inspected: Inspected,
    id: PhotoId,
    albums: BTreeSet<String>,
    known: Known,
) -> PhotoMeta {
    let Known {
        takeout,
        xmp,
        original_exif,
    } = known;
    let original_exif = original_exif.as_ref();
    let Inspected {
        format,
        stored_width,
        stored_height,
        exif,
        orientation,
        stats,
    } = inspected;
    let (width, height) = oriented_size(stored_width, stored_height, orientation);
    let takeout = takeout.unwrap_or_default();
    let xmp = xmp.unwrap_or_default();
    // An edit's EXIF may have lost what its original's still has.
    let exif_captured = exif
        .captured
        .clone()
        .or_else(|| original_exif.and_then(|o| o.captured.clone()));
    let exif_gps = exif.gps.or_else(|| original_exif.and_then(|o| o.gps));
    let camera = exif
        .camera
        .clone()
        .or_else(|| original_exif.and_then(|o| o.camera.clone()));
    // Sidecars win over EXIF: Takeout's instant is the UTC time (EXIF keeps the local wall clock
    // and so gives the offset), and its position is the one the person corrected in Google Photos.
    let captured = capture_time(exif_captured, takeout.taken);
    let gps = takeout.gps.or(exif_gps);
    let sun = match (&captured, &gps) {
        (Some(CaptureTime { utc: Some(utc), .. }), Some(point)) => {
            DateTime::parse_from_rfc3339(utc)
                .ok()
                .map(|t| sun_position(t.with_timezone(&Utc), point.latitude, point.longitude))
        }
        _ => None,
    };
    let mut people = takeout.people;
    people.extend(xmp.people);
    let pets = xmp.pets;
    PhotoMeta {
        id,
        original: relative.to_string(),
        format: format.to_string(),
        width,
        height,
        orientation,
        captured,
        place: gps.as_ref().and_then(reverse_geocode),
        gps,
        camera,
        title: takeout.title,
        description: takeout.description.or(xmp.description),
        keywords: xmp.keywords.into_iter().collect::<BTreeSet<_>>(),
        rating: xmp.rating,
        favourite: takeout.favourite,
        albums,
        people,
        pets,
        light: sun.as_ref().map(light_tags).unwrap_or_default(),
        sun_elevation: sun.map(|s| s.elevation),
        stats,
    }
}

/// The union of the Takeout sidecars of byte-identical copies, given in order of precedence: the first
/// copy that knows a value gives it; people and favourites add up.
pub(super) fn merge_takeout(copies: impl Iterator<Item = TakeoutFacts>) -> Option<TakeoutFacts> {
    copies.reduce(|mut merged, next| {
        merged.title = merged.title.or(next.title);
        merged.description = merged.description.or(next.description);
        merged.taken = merged.taken.or(next.taken);
        merged.gps = merged.gps.or(next.gps);
        merged.favourite |= next.favourite;
        add_people(&mut merged.people, next.people);
        merged
    })
}

/// [`merge_takeout`] for XMP sidecars; keywords add up.
pub(super) fn merge_xmp(copies: impl Iterator<Item = XmpFacts>) -> Option<XmpFacts> {
    copies.reduce(|mut merged, next| {
        merged.description = merged.description.or(next.description);
        merged.rating = merged.rating.or(next.rating);
        for keyword in next.keywords {
            if !merged.keywords.contains(&keyword) {
                merged.keywords.push(keyword);
            }
        }
        add_people(&mut merged.people, next.people);
        add_people(&mut merged.pets, next.pets);
        merged
    })
}

/// Adds the people of a later copy that the earlier ones did not name.
fn add_people(people: &mut Vec<NamedRegion>, more: Vec<NamedRegion>) {
    for person in more {
        if !people.iter().any(|p| p.name == person.name) {
            people.push(person);
        }
    }
}

/// Combines EXIF's local time (with or without offset) and Takeout's UTC instant: together they give
/// the offset (rounded to a quarter hour, as time zones are).
fn capture_time(exif: Option<CaptureTime>, takeout_utc: Option<i64>) -> Option<CaptureTime> {
    let utc = takeout_utc.and_then(|t| Utc.timestamp_opt(t, 0).single());
    match (exif, utc) {
        (Some(local), _) if local.utc.is_some() => Some(local),
        (Some(local), Some(utc)) => {
            let naive = NaiveDateTime::parse_from_str(&local.local, "%Y-%m-%dT%H:%M:%S").ok()?;
            let minutes = (naive - utc.naive_utc()).num_minutes();
            let offset = ((minutes as f64 / 15.0).round() * 15.0) as i32;
            if offset.abs() > 14 * 60 {
                // Camera clock far off: trust Takeout's instant, keep the camera's local time.
                return Some(CaptureTime {
                    utc: Some(utc.to_rfc3339()),
                    ..local
                });
            }
            Some(CaptureTime {
                utc_offset_minutes: Some(offset),
                utc: Some(utc.to_rfc3339()),
                ..local
            })
        }
        (Some(local), None) => Some(local),
        (None, Some(utc)) => Some(CaptureTime {
            local: utc.format("%Y-%m-%dT%H:%M:%S").to_string(),
            utc_offset_minutes: Some(0),
            utc: Some(utc.to_rfc3339()),
        }),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn albums_come_from_folders_but_not_year_folders() {
        assert_eq!(
            album_of("Hawaii 2023/IMG_1.jpg").as_deref(),
            Some("Hawaii 2023")
        );
        assert_eq!(
            album_of("Takeout/Google Photos/Photos from 2023/IMG_1.jpg"),
            None
        );
        assert_eq!(album_of("IMG_1.jpg"), None);
    }

    #[test]
    fn exif_local_time_and_takeout_instant_give_the_offset() {
        let local = CaptureTime {
            local: "2023-07-14T19:42:05".into(),
            utc_offset_minutes: None,
            utc: None,
        };
        let combined = capture_time(Some(local), Some(1_689_399_725)).unwrap();
        assert_eq!(combined.utc_offset_minutes, Some(-600));
        let takeout_only = capture_time(None, Some(1_689_399_725)).unwrap();
        assert_eq!(takeout_only.utc_offset_minutes, Some(0));
    }
}
