//! Where the sun was: NOAA's solar-position algorithm (the equations of NOAA's Solar Calculator, after
//! Meeus, "Astronomical Algorithms"), and the light tags that follow from the sun's elevation. This is how
//! "at sunset" finds the right photos without a vision model.

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SunPosition {
    /// Degrees above the horizon, corrected for atmospheric refraction (negative: below).
    pub elevation: f64,
    /// Degrees clockwise from north.
    pub azimuth: f64,
    /// Whether the sun is still rising (before local solar noon).
    pub morning: bool,
}

fn julian_day(when: DateTime<Utc>) -> f64 {
    // Days since the Unix epoch plus the epoch's Julian day number.
    when.timestamp() as f64 / 86_400.0
        + f64::from(when.timestamp_subsec_nanos()) / 86_400e9
        + 2_440_587.5
}

fn sin_d(x: f64) -> f64 {
    x.to_radians().sin()
}

fn cos_d(x: f64) -> f64 {
    x.to_radians().cos()
}

/// The sun's position seen from `latitude`, `longitude` (degrees, east positive) at `when`.
pub fn sun_position(when: DateTime<Utc>, latitude: f64, longitude: f64) -> SunPosition {
    let jc = (julian_day(when) - 2_451_545.0) / 36_525.0;
    let mean_longitude = (280.46646 + jc * (36_000.769_83 + jc * 0.000_303_2)).rem_euclid(360.0);
    let mean_anomaly = 357.52911 + jc * (35_999.050_29 - 0.000_153_7 * jc);
    let eccentricity = 0.016_708_634 - jc * (0.000_042_037 + 0.000_000_126_7 * jc);
    let centre = sin_d(mean_anomaly) * (1.914_602 - jc * (0.004_817 + 0.000_014 * jc))
        + sin_d(2.0 * mean_anomaly) * (0.019_993 - 0.000_101 * jc)
        + sin_d(3.0 * mean_anomaly) * 0.000_289;
    let true_longitude = mean_longitude + centre;
    let omega = 125.04 - 1934.136 * jc;
    let apparent_longitude = true_longitude - 0.005_69 - 0.004_78 * sin_d(omega);
    let mean_obliquity =
        23.0 + (26.0 + (21.448 - jc * (46.815 + jc * (0.000_59 - jc * 0.001_813))) / 60.0) / 60.0;
    let obliquity = mean_obliquity + 0.002_56 * cos_d(omega);
    let declination = (sin_d(obliquity) * sin_d(apparent_longitude))
        .asin()
        .to_degrees();
    let y = (obliquity / 2.0).to_radians().tan().powi(2);
    let equation_of_time = 4.0
        * (y * sin_d(2.0 * mean_longitude) - 2.0 * eccentricity * sin_d(mean_anomaly)
            + 4.0 * eccentricity * y * sin_d(mean_anomaly) * cos_d(2.0 * mean_longitude)
            - 0.5 * y * y * sin_d(4.0 * mean_longitude)
            - 1.25 * eccentricity * eccentricity * sin_d(2.0 * mean_anomaly))
        .to_degrees();
    let minutes = f64::from(when.hour() * 60 + when.minute()) + f64::from(when.second()) / 60.0;
    let true_solar_time = (minutes + equation_of_time + 4.0 * longitude).rem_euclid(1440.0);
    let hour_angle = if true_solar_time / 4.0 < 0.0 {
        true_solar_time / 4.0 + 180.0
    } else {
        true_solar_time / 4.0 - 180.0
    };
    let cos_zenith = (sin_d(latitude) * sin_d(declination)
        + cos_d(latitude) * cos_d(declination) * cos_d(hour_angle))
    .clamp(-1.0, 1.0);
    let zenith = cos_zenith.acos().to_degrees();
    let geometric_elevation = 90.0 - zenith;
    let denominator = cos_d(latitude) * sin_d(zenith);
    let azimuth = if denominator.abs() < 1e-12 {
        if latitude > declination {
            180.0
        } else {
            0.0
        }
    } else {
        let cos_azimuth =
            ((sin_d(latitude) * cos_zenith - sin_d(declination)) / denominator).clamp(-1.0, 1.0);
        let angle = cos_azimuth.acos().to_degrees();
        if hour_angle > 0.0 {
            (angle + 180.0).rem_euclid(360.0)
        } else {
            (540.0 - angle).rem_euclid(360.0)
        }
    };
    SunPosition {
        elevation: geometric_elevation + refraction(geometric_elevation),
        azimuth,
        morning: hour_angle < 0.0,
    }
}

/// NOAA's approximation of atmospheric refraction, in degrees.
fn refraction(elevation: f64) -> f64 {
    if elevation > 85.0 {
        return 0.0;
    }
    let te = elevation.to_radians().tan();
    let arc_seconds = if elevation > 5.0 {
        58.1 / te - 0.07 / te.powi(3) + 0.000_086 / te.powi(5)
    } else if elevation > -0.575 {
        1735.0
            + elevation * (-518.2 + elevation * (103.4 + elevation * (-12.79 + elevation * 0.711)))
    } else {
        -20.772 / te
    };
    arc_seconds / 3600.0
}

/// Light tags from the sun's elevation (degrees, refraction-corrected). A photo can carry several:
/// a sun 2° up in the evening is both `sunset` and `golden_hour`.
///
/// | tag | elevation |
/// |---|---|
/// | `daylight` | ≥ 6° |
/// | `golden_hour` | −4° to 6° |
/// | `sunrise` / `sunset` | −1° to 3°, before / after solar noon |
/// | `blue_hour` | −6° to −4° |
/// | `night` | < −6° (below civil twilight) |
pub fn light_tags(sun: &SunPosition) -> Vec<String> {
    let e = sun.elevation;
    let mut tags = Vec::new();
    if e >= 6.0 {
        tags.push("daylight");
    }
    if (-4.0..6.0).contains(&e) {
        tags.push("golden_hour");
    }
    if (-1.0..3.0).contains(&e) {
        tags.push(if sun.morning { "sunrise" } else { "sunset" });
    }
    if (-6.0..-4.0).contains(&e) {
        tags.push("blue_hour");
    }
    if e < -6.0 {
        tags.push("night");
    }
    tags.into_iter().map(str::to_string).collect()
}

/// The day of year, for tests and summaries.
pub fn day_of_year(when: DateTime<Utc>) -> u32 {
    when.ordinal()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    // Greenwich (Royal Observatory), midsummer 2024: published sunrise 04:43 BST (03:43 UTC) and
    // sunset 21:21 BST (20:21 UTC). At sunrise and sunset the refracted upper limb touches the
    // horizon, i.e. the centre's apparent elevation is about -0.27° (the sun's semi-diameter).
    #[test]
    fn greenwich_midsummer_sunrise_and_sunset() {
        let (lat, lon) = (51.4769, -0.0005);
        let rise = sun_position(at(2024, 6, 21, 3, 43), lat, lon);
        let set = sun_position(at(2024, 6, 21, 20, 21), lat, lon);
        for (name, sun) in [("sunrise", rise), ("sunset", set)] {
            assert!(
                (sun.elevation + 0.27).abs() < 0.35,
                "{name}: elevation {}",
                sun.elevation
            );
        }
        assert!(rise.morning && !set.morning);
        // The midsummer sun rises in the north-east and sets in the north-west.
        assert!(
            (40.0..60.0).contains(&rise.azimuth),
            "rise azimuth {}",
            rise.azimuth
        );
        assert!(
            (300.0..320.0).contains(&set.azimuth),
            "set azimuth {}",
            set.azimuth
        );
        assert_eq!(light_tags(&rise), ["golden_hour", "sunrise"]);
        assert_eq!(light_tags(&set), ["golden_hour", "sunset"]);
    }

    // Solar noon elevation = 90° − |latitude − declination|; at the June solstice the declination is
    // +23.44°, so Greenwich's noon sun stands at 62.0° (published: 62.0°).
    #[test]
    fn greenwich_midsummer_noon() {
        let noon = sun_position(at(2024, 6, 21, 12, 2), 51.4769, -0.0005);
        assert!((noon.elevation - 62.0).abs() < 0.2, "{}", noon.elevation);
        assert!((noon.azimuth - 180.0).abs() < 2.0, "{}", noon.azimuth);
        assert_eq!(light_tags(&noon), ["daylight"]);
    }

    #[test]
    fn equinox_noon_at_the_equator_is_overhead_and_midnight_is_night() {
        let noon = sun_position(at(2024, 3, 20, 12, 7), 0.0, 0.0);
        assert!(noon.elevation > 88.5, "{}", noon.elevation);
        let midnight = sun_position(at(2024, 3, 20, 0, 7), 0.0, 0.0);
        assert!(midnight.elevation < -80.0);
        assert_eq!(light_tags(&midnight), ["night"]);
    }

    #[test]
    fn honolulu_evening_blue_hour() {
        // Honolulu, 2024-01-15: published sunset 18:09 HST (04:09 UTC next day); 25 minutes later the sun
        // is about 5° down: blue hour.
        let sun = sun_position(at(2024, 1, 16, 4, 34), 21.3069, -157.8583);
        assert!((-6.0..-4.0).contains(&sun.elevation), "{}", sun.elevation);
        assert_eq!(light_tags(&sun), ["blue_hour"]);
    }
}
