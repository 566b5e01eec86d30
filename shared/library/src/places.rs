//! Places: GPS positions reverse-geocoded offline (GeoNames cities table embedded by the
//! `reverse_geocoder` crate; GeoNames data is CC-BY 4.0), and each tenant's recurring places.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use reverse_geocoder::ReverseGeocoder;
use serde::{Deserialize, Serialize};

use crate::metadata::{GeoPoint, Place};

/// A photo farther than this from the nearest known city gets no city (open sea, wilderness).
const MAX_CITY_DISTANCE_KM: f64 = 80.0;

fn geocoder() -> &'static ReverseGeocoder {
    static GEOCODER: OnceLock<ReverseGeocoder> = OnceLock::new();
    GEOCODER.get_or_init(ReverseGeocoder::new)
}

/// Great-circle distance in kilometres.
pub fn distance_km(a: &GeoPoint, b: &GeoPoint) -> f64 {
    let (la1, la2) = (a.latitude.to_radians(), b.latitude.to_radians());
    let dla = la2 - la1;
    let dlo = (b.longitude - a.longitude).to_radians();
    let h = (dla / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlo / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().asin()
}

pub fn reverse_geocode(point: &GeoPoint) -> Option<Place> {
    let found = geocoder().search((point.latitude, point.longitude));
    let record = found.record;
    let nearest = GeoPoint {
        latitude: record.lat,
        longitude: record.lon,
        altitude: None,
    };
    if distance_km(point, &nearest) > MAX_CITY_DISTANCE_KM {
        return None;
    }
    Some(Place {
        city: record.name.clone(),
        region: record.admin1.clone(),
        country: record.cc.clone(),
    })
}

/// A place that recurs in a tenant's library.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecurringPlace {
    pub id: String,
    /// "Home" for the place with the most photos on the most distinct days, else the city label.
    pub name: String,
    pub label: String,
    pub latitude: f64,
    pub longitude: f64,
    pub photos: usize,
    pub first: Option<String>,
    pub last: Option<String>,
}

/// One photo's contribution to the grouping.
pub struct Sighting<'a> {
    pub place: &'a Place,
    pub point: &'a GeoPoint,
    pub date: Option<&'a str>,
}

/// Groups photos by their reverse-geocoded city (a place = a city, region and country). The place seen
/// on the most distinct days is named "Home" when it has at least three days: a home recurs over time,
/// a holiday does not.
pub fn recurring_places(sightings: &[Sighting<'_>]) -> Vec<RecurringPlace> {
    let mut groups: BTreeMap<String, (Vec<&GeoPoint>, Vec<&str>)> = BTreeMap::new();
    for s in sightings {
        let entry = groups.entry(s.place.label()).or_default();
        entry.0.push(s.point);
        if let Some(date) = s.date {
            entry.1.push(date);
        }
    }
    let mut places: Vec<(RecurringPlace, usize)> = groups
        .into_iter()
        .map(|(label, (points, mut dates))| {
            dates.sort_unstable();
            let days = {
                let mut d: Vec<&str> = dates.iter().map(|t| &t[..t.len().min(10)]).collect();
                d.dedup();
                d.len()
            };
            let n = points.len() as f64;
            let place = RecurringPlace {
                id: format!("place-{}", slug(&label)),
                name: label.clone(),
                latitude: points.iter().map(|p| p.latitude).sum::<f64>() / n,
                longitude: points.iter().map(|p| p.longitude).sum::<f64>() / n,
                photos: points.len(),
                first: dates.first().map(|d| d.to_string()),
                last: dates.last().map(|d| d.to_string()),
                label,
            };
            (place, days)
        })
        .collect();
    places.sort_by(|a, b| {
        b.1.cmp(&a.1)
            .then(b.0.photos.cmp(&a.0.photos))
            .then(a.0.label.cmp(&b.0.label))
    });
    if let Some((home, days)) = places.first_mut() {
        if *days >= 3 {
            home.name = "Home".to_string();
        }
    }
    places.into_iter().map(|(place, _)| place).collect()
}

fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geocodes_known_cities_offline() {
        let honolulu = reverse_geocode(&GeoPoint {
            latitude: 21.3069,
            longitude: -157.8583,
            altitude: None,
        })
        .unwrap();
        assert_eq!(honolulu.country, "US");
        assert_eq!(honolulu.region, "Hawaii");
        let paris = reverse_geocode(&GeoPoint {
            latitude: 48.8584,
            longitude: 2.2945,
            altitude: None,
        })
        .unwrap();
        assert_eq!(paris.country, "FR");
        let mid_pacific = GeoPoint {
            latitude: 0.5,
            longitude: -140.0,
            altitude: None,
        };
        assert!(reverse_geocode(&mid_pacific).is_none());
    }

    #[test]
    fn the_place_of_many_days_is_home() {
        let home = Place {
            city: "Lyon".into(),
            region: "Auvergne-Rhone-Alpes".into(),
            country: "FR".into(),
        };
        let trip = Place {
            city: "Honolulu".into(),
            region: "Hawaii".into(),
            country: "US".into(),
        };
        let p = GeoPoint {
            latitude: 45.76,
            longitude: 4.83,
            altitude: None,
        };
        let q = GeoPoint {
            latitude: 21.30,
            longitude: -157.85,
            altitude: None,
        };
        let dates = [
            "2023-01-02T10:00:00",
            "2023-03-04T10:00:00",
            "2023-05-06T10:00:00",
        ];
        let mut sightings: Vec<Sighting> = dates
            .iter()
            .map(|d| Sighting {
                place: &home,
                point: &p,
                date: Some(d),
            })
            .collect();
        for d in [
            "2023-07-01T10:00:00",
            "2023-07-01T11:00:00",
            "2023-07-01T12:00:00",
            "2023-07-02T09:00:00",
        ] {
            sightings.push(Sighting {
                place: &trip,
                point: &q,
                date: Some(d),
            });
        }
        let places = recurring_places(&sightings);
        assert_eq!(places[0].name, "Home");
        assert_eq!(places[0].photos, 3);
        assert_eq!(places[1].name, "Honolulu, Hawaii, US");
        assert_eq!(places[1].first.as_deref(), Some("2023-07-01T10:00:00"));
        assert_eq!(places[1].last.as_deref(), Some("2023-07-02T09:00:00"));
    }
}
