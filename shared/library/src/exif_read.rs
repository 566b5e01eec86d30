//! EXIF: capture time and its UTC offset, GPS, orientation, camera.

use std::io::Cursor;

use exif::{In, Reader, Tag, Value};

use crate::metadata::{CaptureTime, GeoPoint};

/// What EXIF told us; every field optional, and impossible values already dropped (with a note).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ExifFacts {
    pub captured: Option<CaptureTime>,
    pub gps: Option<GeoPoint>,
    pub orientation: Option<u8>,
    pub camera: Option<String>,
    /// Values that were present but impossible ("GPS latitude 123.4", "date 0000:00:00").
    pub rejected: Vec<String>,
}

fn ascii(exif: &exif::Exif, tag: Tag) -> Option<Vec<u8>> {
    match &exif.get_field(tag, In::PRIMARY)?.value {
        Value::Ascii(parts) => parts.first().cloned(),
        _ => None,
    }
}

fn text(exif: &exif::Exif, tag: Tag) -> Option<String> {
    let bytes = ascii(exif, tag)?;
    let text = String::from_utf8_lossy(&bytes)
        .trim_matches(char::from(0))
        .trim()
        .to_string();
    (!text.is_empty()).then_some(text)
}

fn dms(exif: &exif::Exif, tag: Tag) -> Option<f64> {
    match &exif.get_field(tag, In::PRIMARY)?.value {
        Value::Rational(parts) if parts.len() >= 3 && parts.iter().all(|r| r.denom != 0) => {
            Some(parts[0].to_f64() + parts[1].to_f64() / 60.0 + parts[2].to_f64() / 3600.0)
        }
        Value::Rational(parts) if parts.len() == 1 && parts[0].denom != 0 => {
            Some(parts[0].to_f64())
        }
        _ => None,
    }
}

/// Reads the EXIF of an image file's bytes; a file without EXIF gives empty facts.
pub fn read_exif(bytes: &[u8]) -> ExifFacts {
    let Ok(exif) = Reader::new().read_from_container(&mut Cursor::new(bytes)) else {
        return ExifFacts::default();
    };
    let mut facts = ExifFacts {
        orientation: exif
            .get_field(Tag::Orientation, In::PRIMARY)
            .and_then(|f| f.value.get_uint(0))
            .filter(|o| (1..=8).contains(o))
            .map(|o| o as u8),
        ..ExifFacts::default()
    };
    facts.camera = match (text(&exif, Tag::Make), text(&exif, Tag::Model)) {
        (Some(make), Some(model)) if model.starts_with(&make) => Some(model),
        (Some(make), Some(model)) => Some(format!("{make} {model}")),
        (make, model) => make.or(model),
    };
    if let Some(raw) = ascii(&exif, Tag::DateTimeOriginal).or_else(|| ascii(&exif, Tag::DateTime)) {
        match parse_capture(
            &raw,
            ascii(&exif, Tag::OffsetTimeOriginal).or_else(|| ascii(&exif, Tag::OffsetTime)),
        ) {
            Some(captured) => facts.captured = Some(captured),
            None => facts
                .rejected
                .push(format!("capture date {:?}", String::from_utf8_lossy(&raw))),
        }
    }
    if let (Some(lat), Some(lon)) = (dms(&exif, Tag::GPSLatitude), dms(&exif, Tag::GPSLongitude)) {
        let lat = if text(&exif, Tag::GPSLatitudeRef).as_deref() == Some("S") {
            -lat
        } else {
            lat
        };
        let lon = if text(&exif, Tag::GPSLongitudeRef).as_deref() == Some("W") {
            -lon
        } else {
            lon
        };
        let altitude = dms(&exif, Tag::GPSAltitude);
        match GeoPoint::checked(lat, lon, altitude) {
            Some(point) => facts.gps = Some(point),
            None => facts
                .rejected
                .push(format!("GPS position {lat:.5}, {lon:.5}")),
        }
    }
    facts
}

/// Years before the first photographs or far in the future are camera clock errors, not dates.
const PLAUSIBLE_YEARS: std::ops::RangeInclusive<u16> = 1826..=2100;

fn parse_capture(raw: &[u8], offset: Option<Vec<u8>>) -> Option<CaptureTime> {
    let mut when = exif::DateTime::from_ascii(raw).ok()?;
    if let Some(offset) = offset {
        let _ = when.parse_offset(&offset);
    }
    let date = chrono::NaiveDate::from_ymd_opt(
        i32::from(when.year),
        u32::from(when.month),
        u32::from(when.day),
    )?;
    if !PLAUSIBLE_YEARS.contains(&when.year) {
        return None;
    }
    let local = date.and_hms_opt(
        u32::from(when.hour),
        u32::from(when.minute),
        u32::from(when.second),
    )?;
    let utc = when.offset.map(|minutes| {
        (local - chrono::Duration::minutes(i64::from(minutes)))
            .and_utc()
            .to_rfc3339()
    });
    Some(CaptureTime {
        local: local.format("%Y-%m-%dT%H:%M:%S").to_string(),
        utc_offset_minutes: when.offset.map(i32::from),
        utc,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_times_with_offsets_and_impossible_dates() {
        let t = parse_capture(b"2023:07:14 19:42:05", Some(b"-10:00".to_vec())).unwrap();
        assert_eq!(t.local, "2023-07-14T19:42:05");
        assert_eq!(t.utc_offset_minutes, Some(-600));
        assert_eq!(t.utc.as_deref(), Some("2023-07-15T05:42:05+00:00"));
        assert!(parse_capture(b"2023:07:14 19:42:05", None)
            .unwrap()
            .utc
            .is_none());
        assert!(parse_capture(b"0000:00:00 00:00:00", None).is_none());
        assert!(parse_capture(b"2023:02:30 10:00:00", None).is_none());
        assert!(parse_capture(b"1200:01:01 10:00:00", None).is_none());
    }

    #[test]
    fn impossible_gps_is_rejected() {
        assert!(GeoPoint::checked(123.0, 10.0, None).is_none());
        assert!(GeoPoint::checked(0.0, 0.0, None).is_none());
        assert!(GeoPoint::checked(21.3, -157.8, Some(5.0)).is_some());
    }
}
