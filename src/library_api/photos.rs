//! The library's photos: a summary, a filtered list, thumbnails and face crops. Thumbnails are made once
//! and kept in the store under the tenant's prefix, so forgetting the tenant deletes them too.

use std::io::Cursor;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use image::DynamicImage;
use reverie_library::{load_manifest, summarise, LibraryManifest, LibrarySummary, PhotoEntry};

use reverie_scheduler::api::{internal, ApiError};
use reverie_shared::ids::{PhotoId, TenantId};
use reverie_shared::keys;
use serde::{Deserialize, Serialize};

use super::{bad, LibraryApi};

/// Thumbnail sides served (a request is rounded up to one of them, so few variants are stored).
const THUMBNAIL_SIDES: [u32; 5] = [64, 128, 256, 512, 1024];
/// Most photos one page lists.
const MAX_PAGE: usize = 200;
/// Pixels a stored photo may have to be thumbnailed (the importer already refused larger ones).
const MAX_PIXELS: u64 = 200_000_000;

pub(super) async fn manifest(
    api: &LibraryApi,
    tenant: &TenantId,
) -> Result<LibraryManifest, ApiError> {
    load_manifest(api.store(), tenant).await.map_err(internal)
}

pub(super) async fn summary(
    State(api): State<LibraryApi>,
    headers: HeaderMap,
) -> Result<Json<LibrarySummary>, ApiError> {
    let tenant = api.tenant(&headers).await?;
    Ok(Json(summarise(&manifest(&api, &tenant).await?)))
}

#[derive(Debug, Deserialize)]
pub(super) struct PhotoQuery {
    album: Option<String>,
    place: Option<String>,
    light: Option<String>,
    offset: Option<usize>,
    limit: Option<usize>,
}

/// One photo as the app lists it.
#[derive(Debug, Serialize)]
struct PhotoView {
    id: String,
    name: String,
    captured: Option<String>,
    albums: Vec<String>,
    place: Option<String>,
    light: Vec<String>,
    width: u32,
    height: u32,
}

#[derive(Debug, Serialize)]
pub(super) struct PhotoPage {
    total: usize,
    photos: Vec<PhotoView>,
}

fn view(entry: &PhotoEntry) -> PhotoView {
    let meta = &entry.meta;
    PhotoView {
        id: meta.id.to_string(),
        name: meta.original.clone(),
        captured: meta.captured.as_ref().map(|c| c.local.clone()),
        albums: meta.albums.iter().cloned().collect(),
        place: meta.place.as_ref().map(|p| p.label()),
        light: meta.light.clone(),
        width: meta.width,
        height: meta.height,
    }
}

/// The photos matching every given filter, newest first (undated last), one page of them.
pub(super) async fn list(
    State(api): State<LibraryApi>,
    headers: HeaderMap,
    query: Result<Query<PhotoQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<PhotoPage>, ApiError> {
    let tenant = api.tenant(&headers).await?;
    let query = super::query(query)?;
    let manifest = manifest(&api, &tenant).await?;
    // A place filter names a recurring place of the summary ("Home", or its label) or a photo's own
    // place label.
    let at_place = |photo: &PhotoEntry, wanted: &str| {
        manifest
            .place_of(photo)
            .is_some_and(|p| p.name == wanted || p.label == wanted)
            || photo
                .meta
                .place
                .as_ref()
                .is_some_and(|p| p.label() == wanted)
    };
    let mut matching: Vec<&PhotoEntry> = manifest
        .photos
        .iter()
        .filter(|p| {
            let meta = &p.meta;
            query.album.as_ref().is_none_or(|a| meta.albums.contains(a))
                && query.place.as_ref().is_none_or(|place| at_place(p, place))
                && query.light.as_ref().is_none_or(|l| meta.light.contains(l))
        })
        .collect();
    matching.sort_by(|a, b| {
        let time = |p: &PhotoEntry| p.meta.captured.as_ref().map(|c| c.local.clone());
        time(b).cmp(&time(a))
    });
    let offset = query.offset.unwrap_or(0);
    let limit = query.limit.unwrap_or(60).clamp(1, MAX_PAGE);
    Ok(Json(PhotoPage {
        total: matching.len(),
        photos: matching
            .iter()
            .skip(offset)
            .take(limit)
            .map(|p| view(p))
            .collect(),
    }))
}

#[derive(Debug, Deserialize)]
pub(super) struct SizeQuery {
    size: Option<u32>,
    #[serde(rename = "box")]
    face_box: Option<String>,
}

fn side_of(requested: Option<u32>, default: u32) -> u32 {
    let wanted = requested.unwrap_or(default);
    THUMBNAIL_SIDES
        .into_iter()
        .find(|&side| side >= wanted)
        .unwrap_or(THUMBNAIL_SIDES[THUMBNAIL_SIDES.len() - 1])
}

fn photo_id(text: &str) -> Result<PhotoId, ApiError> {
    PhotoId::parse(text)
        .map_err(|e| bad(StatusCode::BAD_REQUEST, "invalid_photo_id", e.to_string()))
}

fn jpeg_response(bytes: Bytes) -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "private, max-age=3600"),
        ],
        bytes,
    )
        .into_response()
}

/// The tenant's photo, decoded upright; 404 when the tenant has no such photo.
async fn decoded(
    api: &LibraryApi,
    tenant: &TenantId,
    id: &PhotoId,
) -> Result<DynamicImage, ApiError> {
    let manifest = manifest(api, tenant).await?;
    let entry = manifest
        .photos
        .iter()
        .find(|p| &p.meta.id == id)
        .ok_or_else(|| {
            bad(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no photo {id} in this library"),
            )
        })?;
    let bytes = api
        .store()
        .get_range(
            &keys::shard(tenant, &entry.shard),
            entry.offset..entry.offset + entry.length,
        )
        .await
        .map_err(internal)?;
    let orientation = entry.meta.orientation;
    tokio::task::spawn_blocking(move || reverie_library::decode(&bytes, MAX_PIXELS, orientation))
        .await
        .map_err(internal)?
        .map_err(|e| {
            bad(
                StatusCode::UNPROCESSABLE_ENTITY,
                "undecodable",
                format!("photo {id} cannot be decoded: {e}"),
            )
        })
}

/// A stored JPEG made once by `make` from the decoded photo.
async fn cached_jpeg(
    api: &LibraryApi,
    tenant: &TenantId,
    id: &PhotoId,
    key: String,
    make: impl FnOnce(DynamicImage) -> DynamicImage + Send + 'static,
) -> Result<Response, ApiError> {
    match api.store().get(&key).await {
        Ok(bytes) => return Ok(jpeg_response(bytes)),
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(internal(e)),
    }
    let photo = decoded(api, tenant, id).await?;
    let jpeg = tokio::task::spawn_blocking(move || encode_jpeg(&make(photo)))
        .await
        .map_err(internal)?
        .map_err(internal)?;
    let bytes = Bytes::from(jpeg);
    let locks = api.locks(tenant);
    let _alive = locks.alive.read().await;
    if let Err(error) = api.store().put(&key, bytes.clone()).await {
        tracing::warn!(%error, key, "could not keep a thumbnail; it is made again next time");
    }
    Ok(jpeg_response(bytes))
}

fn encode_jpeg(image: &DynamicImage) -> Result<Vec<u8>, image::ImageError> {
    let mut out = Cursor::new(Vec::new());
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 82)
        .encode_image(&image.to_rgb8())?;
    Ok(out.into_inner())
}

/// What the thumbnail and face routes start with: the caller's tenant, the photo id and the query.
async fn photo_request(
    api: &LibraryApi,
    headers: &HeaderMap,
    id: &str,
    query: Result<Query<SizeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<(TenantId, PhotoId, SizeQuery), ApiError> {
    let tenant = api.tenant(headers).await?;
    let query = super::query(query)?;
    Ok((tenant, photo_id(id)?, query))
}

fn thumbnail_key(tenant: &TenantId, name: &str) -> String {
    format!("{}thumbnails/{name}.jpg", keys::tenant_prefix(tenant))
}

/// `GET /v1/photos/{id}/thumbnail?size=256`: upright, longest side `size`.
pub(super) async fn thumbnail(
    State(api): State<LibraryApi>,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: Result<Query<SizeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let (tenant, id, query) = photo_request(&api, &headers, &id, query).await?;
    let side = side_of(query.size, 256);
    let key = thumbnail_key(&tenant, &format!("{id}-{side}"));
    cached_jpeg(&api, &tenant, &id, key, move |photo| {
        photo.thumbnail(side, side)
    })
    .await
}

fn parse_box(text: &str) -> Option<[i64; 4]> {
    let values: Vec<i64> = text
        .split(',')
        .map(|v| v.trim().parse().ok())
        .collect::<Option<_>>()?;
    let [l, t, r, b] = values[..] else {
        return None;
    };
    (r > l && b > t).then_some([l, t, r, b])
}

/// The square around a face box with some margin, clamped to the picture (any box: wide arithmetic, so
/// absurd coordinates from a client cannot overflow).
fn face_square(face: [i64; 4], width: u32, height: u32) -> (u32, u32, u32) {
    let [l, t, r, b] = face.map(i128::from);
    let limit = i128::from(width.min(height)).max(1);
    let side = (((r - l).max(b - t) as f64 * 1.6).round() as i128).clamp(1, limit);
    let x = ((l + r) / 2 - side / 2).clamp(0, i128::from(width) - side);
    let y = ((t + b) / 2 - side / 2).clamp(0, i128::from(height) - side);
    (x as u32, y as u32, side as u32)
}

/// `GET /v1/photos/{id}/face?box=L,T,R,B&size=128`: a square crop around a face.
pub(super) async fn face(
    State(api): State<LibraryApi>,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: Result<Query<SizeQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let (tenant, id, query) = photo_request(&api, &headers, &id, query).await?;
    let face = query
        .face_box
        .as_deref()
        .and_then(parse_box)
        .ok_or_else(|| {
            bad(
                StatusCode::BAD_REQUEST,
                "invalid_field",
                "box must be LEFT,TOP,RIGHT,BOTTOM in pixels with RIGHT > LEFT and BOTTOM > TOP",
            )
        })?;
    let side = side_of(query.size, 128);
    let name = format!(
        "{id}-face-{}-{}-{}-{}-{side}",
        face[0], face[1], face[2], face[3]
    );
    cached_jpeg(
        &api,
        &tenant,
        &id,
        thumbnail_key(&tenant, &name),
        move |photo| {
            let (x, y, square) = face_square(face, photo.width(), photo.height());
            photo.crop_imm(x, y, square, square).thumbnail(side, side)
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbnail_sizes_round_up_to_a_few_stored_sides() {
        assert_eq!(side_of(None, 256), 256);
        assert_eq!(side_of(Some(1), 256), 64);
        assert_eq!(side_of(Some(300), 256), 512);
        assert_eq!(side_of(Some(100_000), 256), 1024);
    }

    #[test]
    fn face_squares_stay_inside_the_picture() {
        assert_eq!(face_square([10, 10, 60, 60], 100, 80), (0, 0, 80));
        let (x, y, side) = face_square([400, 300, 500, 420], 1000, 800);
        assert_eq!(side, 192);
        assert!(x + side <= 1000 && y + side <= 800);
        assert_eq!(parse_box("1,2,3"), None);
        assert_eq!(parse_box("5,5,4,9"), None);
        assert_eq!(parse_box("1, 2, 30, 40"), Some([1, 2, 30, 40]));
        let (x, y, side) = face_square([i64::MIN, i64::MIN, i64::MAX, i64::MAX], 300, 200);
        assert_eq!((x, y, side), (0, 0, 200));
    }
}
