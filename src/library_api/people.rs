//! A tenant's people: list them with their faces, name one (or mark "me"), merge two, split faces off.
//! Edits take the tenant's writer lock, so they never interleave with an import's analysis.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use reverie_faces::people::{People, PeopleError};
use reverie_faces::FaceBox;
use reverie_scheduler::api::{internal, ApiError};
use reverie_shared::ids::TenantId;
use reverie_worker::people::{load_people, people_view, save_people, PersonView};
use serde::{Deserialize, Serialize};

use super::photos::manifest;
use super::{bad, LibraryApi};

/// The longest name a person may be given.
const MAX_NAME_CHARS: usize = 100;

/// A person as the app shows them.
#[derive(Debug, Serialize)]
pub(super) struct PersonCard {
    id: u64,
    name: Option<String>,
    is_me: bool,
    face_count: usize,
    representative: Option<FaceRef>,
    faces: Vec<FaceRef>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct FaceRef {
    photo_id: String,
    #[serde(default)]
    photo: String,
    #[serde(rename = "box")]
    face_box: [i64; 4],
}

fn card(person: &PersonView) -> PersonCard {
    let face = |f: &reverie_worker::people::FaceView| FaceRef {
        photo_id: f.photo_id.clone(),
        photo: f.photo.clone(),
        face_box: [f.bbox.left, f.bbox.top, f.bbox.right, f.bbox.bottom],
    };
    PersonCard {
        id: person.id,
        name: person.name.clone(),
        is_me: person.is_me,
        face_count: person.faces.len(),
        representative: person.faces.get(person.representative).map(face),
        faces: person.faces.iter().map(face).collect(),
    }
}

async fn cards(api: &LibraryApi, tenant: &TenantId) -> Result<Vec<PersonCard>, ApiError> {
    let people = load_people(api.store(), tenant).await.map_err(internal)?;
    let manifest = manifest(api, tenant).await?;
    Ok(people_view(&people, &manifest).iter().map(card).collect())
}

/// `GET /v1/people`.
pub(super) async fn list(
    State(api): State<LibraryApi>,
    headers: HeaderMap,
) -> Result<Json<Vec<PersonCard>>, ApiError> {
    let tenant = api.tenant(&headers).await?;
    Ok(Json(cards(&api, &tenant).await?))
}

fn people_error(error: PeopleError) -> ApiError {
    let status = match error {
        PeopleError::UnknownPerson(_) => StatusCode::NOT_FOUND,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    bad(status, "invalid_person_edit", error.to_string())
}

/// Applies one edit under the tenant's writer lock and answers the people afterwards.
async fn edit<T>(
    api: &LibraryApi,
    tenant: &TenantId,
    change: impl FnOnce(&mut People) -> Result<T, PeopleError>,
) -> Result<(T, Vec<PersonCard>), ApiError> {
    let locks = api.locks(tenant);
    let _alive = locks.alive.read().await;
    let _edits = locks.edits.lock().await;
    let mut people = load_people(api.store(), tenant).await.map_err(internal)?;
    let outcome = change(&mut people).map_err(people_error)?;
    save_people(api.store(), tenant, &people)
        .await
        .map_err(internal)?;
    api.inner.library.invalidate(tenant);
    Ok((outcome, cards(api, tenant).await?))
}

fn parse_json<T: for<'de> Deserialize<'de>>(body: &[u8], shape: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        bad(
            StatusCode::UNPROCESSABLE_ENTITY,
            "malformed_json",
            format!("the body must be {shape}: {e}"),
        )
    })
}

/// What every person edit starts with: the caller's tenant, the person's id and the parsed body.
async fn person_request<T: for<'de> Deserialize<'de>>(
    api: &LibraryApi,
    headers: &HeaderMap,
    id: &str,
    body: &[u8],
    shape: &str,
) -> Result<(TenantId, u64, T), ApiError> {
    let tenant = api.tenant(headers).await?;
    let id = super::person_id(id)?;
    Ok((tenant, id, parse_json(body, shape)?))
}

fn find(cards: Vec<PersonCard>, id: u64) -> Result<PersonCard, ApiError> {
    cards.into_iter().find(|c| c.id == id).ok_or_else(|| {
        bad(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no person {id}"),
        )
    })
}

#[derive(Debug, Deserialize)]
struct NameBody {
    name: String,
}

/// A name must be short, printable text; it is shown as text, never as markup.
fn check_name(name: &str) -> Result<&str, ApiError> {
    let name = name.trim();
    let problem = if name.is_empty() {
        Some("is empty".to_string())
    } else if name.chars().count() > MAX_NAME_CHARS {
        Some(format!("is longer than {MAX_NAME_CHARS} characters"))
    } else if name.chars().any(char::is_control) {
        Some("contains control characters".to_string())
    } else {
        None
    };
    match problem {
        Some(problem) => Err(bad(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            format!("the name {problem}"),
        )),
        None => Ok(name),
    }
}

/// `PUT /v1/people/{id}/name` `{"name": "Anna"}`; "me" marks the tenant themself.
pub(super) async fn rename(
    State(api): State<LibraryApi>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<PersonCard>, ApiError> {
    let (tenant, id, body): (_, _, NameBody) =
        person_request(&api, &headers, &id, &body, r#"{"name": "..."}"#).await?;
    let name = check_name(&body.name)?.to_string();
    let ((), cards) = edit(&api, &tenant, |people| people.name(id, &name)).await?;
    Ok(Json(find(cards, id)?))
}

#[derive(Debug, Deserialize)]
struct MergeBody {
    from: u64,
}

/// `POST /v1/people/{id}/merge` `{"from": 5}`: person 5's faces join person `id`.
pub(super) async fn merge(
    State(api): State<LibraryApi>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<PersonCard>, ApiError> {
    let (tenant, id, body): (_, _, MergeBody) =
        person_request(&api, &headers, &id, &body, r#"{"from": PERSON_ID}"#).await?;
    let ((), cards) = edit(&api, &tenant, |people| people.merge(id, body.from)).await?;
    Ok(Json(find(cards, id)?))
}

#[derive(Debug, Deserialize)]
struct SplitBody {
    faces: Vec<FaceRef>,
}

#[derive(Debug, Serialize)]
pub(super) struct SplitAnswer {
    new: u64,
}

/// `POST /v1/people/{id}/split` `{"faces": [{"photo_id": "...", "box": [l, t, r, b]}]}`.
pub(super) async fn split(
    State(api): State<LibraryApi>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<SplitAnswer>, ApiError> {
    let shape = r#"{"faces": [{"photo_id": "...", "box": [l, t, r, b]}]}"#;
    let (tenant, id, body): (_, _, SplitBody) =
        person_request(&api, &headers, &id, &body, shape).await?;
    if body.faces.is_empty() {
        return Err(bad(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "name at least one face to split off",
        ));
    }
    let faces: Vec<(String, FaceBox)> = body
        .faces
        .iter()
        .map(|f| {
            let [left, top, right, bottom] = f.face_box;
            (
                f.photo_id.clone(),
                FaceBox {
                    left,
                    top,
                    right,
                    bottom,
                },
            )
        })
        .collect();
    let (new, _) = edit(&api, &tenant, |people| people.split(id, &faces)).await?;
    Ok(Json(SplitAnswer { new }))
}
