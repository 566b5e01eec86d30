//! Read views for people and apps, on top of the generation API: a tenant's recent generations, its
//! output objects, how a prompt would resolve (while it is typed) and the styles the planner knows.
//! Like every `/v1` route they see only the calling tenant's data.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use reverie_shared::ids::{RequestId, TenantId};
use serde::{Deserialize, Serialize};

use crate::api::{authenticated_tenant, error, internal, ApiError, ApiState, GenerationStatus};
use crate::library::TenantLibrary;
use crate::prompt::{self, Resolution, STYLE_PHRASES};

/// Most generations one list answers.
pub const MAX_LISTED_GENERATIONS: usize = 100;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// How many, newest first (default 20, at most 100).
    pub limit: Option<usize>,
}

/// The tenant's recent generations, newest first.
#[utoipa::path(get, path = "/v1/generations", tag = "generations", params(ListQuery),
    responses((status = 200, body = [GenerationStatus])), security(("bearer" = [])))]
pub async fn list_generations(
    State(state): State<ApiState>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<GenerationStatus>>, ApiError> {
    let tenant = authenticated_tenant(&state.core, &headers).await?;
    let Query(query) = query.map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            None,
            "invalid_query",
            e.body_text(),
        )
    })?;
    let limit = query.limit.unwrap_or(20).clamp(1, MAX_LISTED_GENERATIONS);
    let prefix = format!("{}requests/", reverie_shared::keys::tenant_prefix(&tenant));
    let stored = state
        .core
        .backends()
        .store
        .list(&prefix)
        .await
        .map_err(internal)?;
    let mut generations = Vec::new();
    for object in stored {
        let Some(id) = object
            .key
            .strip_prefix(&prefix)
            .and_then(|name| name.strip_suffix(".json"))
            .and_then(|id| RequestId::new(id).ok())
        else {
            continue;
        };
        if let Some(record) = state.core.record(&tenant, &id).await.map_err(internal)? {
            generations.push(GenerationStatus::of(&record));
        }
    }
    generations.sort_by_key(|g| std::cmp::Reverse(g.created_at));
    generations.truncate(limit);
    Ok(Json(generations))
}

/// Where a tenant's outputs live: generation results and album runs written inside the farm's store.
fn output_prefixes(tenant: &TenantId) -> [String; 2] {
    let root = reverie_shared::keys::tenant_prefix(tenant);
    [format!("{root}results/"), format!("{root}albums/")]
}

/// Whether `key` names one of the tenant's own outputs (never a path that climbs out of it).
pub fn is_own_output(tenant: &TenantId, key: &str) -> bool {
    let clean = !key
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..");
    clean && output_prefixes(tenant).iter().any(|p| key.starts_with(p))
}

fn content_type(key: &str) -> &'static str {
    match key
        .rsplit('.')
        .next()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// One of the tenant's output objects (an image, its provenance JSON, a contact sheet).
#[utoipa::path(get, path = "/v1/outputs/{key}", tag = "provenance",
    params(("key" = String, Path, description = "The object key, under tenants/{tenant}/results/ or albums/")),
    responses((status = 200, description = "The object"), (status = 404, body = crate::replies::Reply)),
    security(("bearer" = [])))]
pub async fn get_output(
    State(state): State<ApiState>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tenant = authenticated_tenant(&state.core, &headers).await?;
    let missing = || {
        error(
            StatusCode::NOT_FOUND,
            None,
            "not_found",
            format!("no output {key:?} for this tenant"),
        )
    };
    if !is_own_output(&tenant, &key) {
        return Err(missing());
    }
    match state.core.backends().store.get(&key).await {
        Ok(bytes) => Ok((
            [
                (header::CONTENT_TYPE, content_type(&key)),
                (header::CACHE_CONTROL, "private, max-age=60"),
            ],
            bytes,
        )
            .into_response()),
        Err(e) if e.is_not_found() || !e.is_transient() => Err(missing()),
        Err(e) => Err(internal(e)),
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ResolveBody {
    pub prompt: String,
}

/// One reference of a prompt and what it resolved to.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ResolvedReference {
    /// `person`, `pet`, `place`, `light`, `scene` or `album`.
    pub kind: String,
    /// The prompt's words.
    pub text: String,
    /// What they resolved to (a name, a place, a light tag).
    pub resolved: String,
    /// The catalog id (`person:3`, a place id, ...), when there is one.
    pub id: Option<String>,
    /// How many of the tenant's photos match it.
    pub photo_count: usize,
    /// A few of them, best first.
    pub photos: Vec<String>,
    /// For a person: their largest face in the library, to show who "me" or "Anna" is.
    pub face: Option<FaceSample>,
}

/// One face in one photo.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FaceSample {
    pub photo: String,
    /// left, top, right, bottom in pixels.
    #[serde(rename = "box")]
    pub face_box: [u32; 4],
}

/// A person's largest face in the library.
fn largest_face(library: &TenantLibrary, person: &str) -> Option<FaceSample> {
    let area =
        |b: &[u32; 4]| u64::from(b[2].saturating_sub(b[0])) * u64::from(b[3].saturating_sub(b[1]));
    library
        .photos
        .iter()
        .flat_map(|p| {
            p.faces
                .iter()
                .filter(|f| f.person == person)
                .map(move |f| (p, f))
        })
        .max_by_key(|(_, f)| area(&f.face_box))
        .map(|(p, f)| FaceSample {
            photo: p.photo.to_string(),
            face_box: f.face_box,
        })
}

/// A reference that did not resolve, with "did you mean" answers.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UnresolvedReference {
    pub kind: String,
    pub text: String,
    pub message: String,
    pub suggestions: Vec<String>,
}

/// What `POST /v1/resolve` answers: the prompt's references against the tenant's library.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PromptResolution {
    pub references: Vec<ResolvedReference>,
    pub unresolved: Vec<UnresolvedReference>,
    /// Styles and artists the prompt asks for.
    pub styles: Vec<String>,
    pub artists: Vec<String>,
    /// Misspellings the parser read as vocabulary words: `[written, read as]`.
    pub corrections: Vec<[String; 2]>,
}

/// Photos shown per reference.
const SAMPLE_PHOTOS: usize = 3;

/// How a prompt resolves against the tenant's library, without submitting anything: for a prompt box
/// that shows "me → Anna", "Honolulu → 3 photos" and "did you mean" while the person types.
#[utoipa::path(post, path = "/v1/resolve", tag = "generations",
    request_body = ResolveBody,
    responses((status = 200, body = PromptResolution), (status = 422, body = crate::replies::Reply)),
    security(("bearer" = [])))]
pub async fn resolve_prompt(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<PromptResolution>, ApiError> {
    let tenant = authenticated_tenant(&state.core, &headers).await?;
    let body: ResolveBody = serde_json::from_slice(&body).map_err(|e| {
        error(
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
            "malformed_json",
            format!("the body must be {{\"prompt\": \"...\"}}: {e}"),
        )
    })?;
    if body.prompt.chars().count() > crate::request::MAX_PROMPT_CHARS {
        return Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
            "invalid_field",
            format!(
                "the prompt is longer than {} characters",
                crate::request::MAX_PROMPT_CHARS
            ),
        ));
    }
    let loaded = state.intake.library.load(&tenant).await.map_err(internal)?;
    let parsed = prompt::parse_prompt(&body.prompt);
    let resolution = prompt::resolve(&parsed, &loaded.library.catalog);
    let mut answer = describe(&resolution, &loaded.library);
    answer.corrections = parsed
        .corrections
        .iter()
        .map(|c| [c.written.clone(), c.read_as.clone()])
        .collect();
    Ok(Json(answer))
}

/// The resolution in the terms a person reads, each reference with the photos that match it.
pub fn describe(resolution: &Resolution, library: &TenantLibrary) -> PromptResolution {
    let mut references = Vec::new();
    let reference =
        |kind: &str, text: &str, resolved: &str, id: Option<String>, photos: Vec<String>| {
            ResolvedReference {
                kind: kind.to_string(),
                text: text.to_string(),
                resolved: resolved.to_string(),
                id,
                photo_count: photos.len(),
                photos: photos.into_iter().take(SAMPLE_PHOTOS).collect(),
                face: None,
            }
        };
    let photos_where = |keep: &dyn Fn(&crate::library::CatalogPhoto) -> bool| -> Vec<String> {
        library
            .photos
            .iter()
            .filter(|p| keep(p))
            .map(|p| p.photo.to_string())
            .collect()
    };
    for person in &resolution.people {
        let photos = photos_where(&|p| p.faces.iter().any(|f| f.person == person.id));
        // The person marked as the tenant and never given a name is "you", not "me → me".
        let unnamed_self = ["me", "i", "myself"].contains(&person.name.to_lowercase().as_str());
        let name = if unnamed_self {
            "you"
        } else {
            person.name.as_str()
        };
        references.push(ResolvedReference {
            face: largest_face(library, &person.id),
            ..reference("person", &person.via, name, Some(person.id.clone()), photos)
        });
    }
    for pet in &resolution.pets {
        let photos = photos_where(&|p| p.pets.contains(&pet.id));
        references.push(reference(
            "pet",
            &pet.via,
            &pet.name,
            Some(pet.id.clone()),
            photos,
        ));
    }
    for place in &resolution.places {
        let photos = photos_where(&|p| p.place.as_deref() == Some(place.id.as_str()));
        references.push(reference(
            "place",
            &place.via,
            &place.name,
            Some(place.id.clone()),
            photos,
        ));
    }
    for light in &resolution.light {
        let photos = photos_where(&|p| p.light.contains(&light.tag));
        references.push(reference("light", &light.tag, &light.tag, None, photos));
    }
    for scene in &resolution.scenes {
        let photos = photos_where(&|p| {
            p.scenes
                .iter()
                .chain(&p.keywords)
                .any(|s| *s == scene.scene)
        });
        references.push(reference("scene", &scene.scene, &scene.scene, None, photos));
    }
    for album in &resolution.albums {
        let photos = photos_where(&|p| p.albums.contains(&album.name));
        references.push(reference("album", &album.via, &album.name, None, photos));
    }
    PromptResolution {
        references,
        unresolved: resolution
            .unresolved
            .iter()
            .map(|u| UnresolvedReference {
                kind: format!("{:?}", u.kind).to_lowercase(),
                text: u.text.clone(),
                message: u.message.clone(),
                suggestions: u.suggestions.clone(),
            })
            .collect(),
        styles: resolution.style.styles.clone(),
        artists: resolution.style.artists.clone(),
        corrections: Vec::new(),
    }
}

/// A style a request may name.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StyleView {
    pub name: String,
    /// The phrases a prompt may use for it.
    pub phrases: Vec<String>,
    /// Whether the painterly renderer paints it (without diffusion weights); other styles are a hint
    /// to a diffusion model and need one.
    pub painterly: bool,
}

/// The art styles the planner knows, with the phrases that name each: the painterly presets first
/// (every phrase that names one is listed under it), then the styles only a diffusion model can draw.
#[utoipa::path(get, path = "/v1/styles", tag = "generations",
    responses((status = 200, body = [StyleView])))]
pub async fn list_styles() -> Json<Vec<StyleView>> {
    let mut painterly: BTreeMap<String, BTreeSet<&str>> = reverie_styles::PRESET_NAMES
        .iter()
        .map(|name| (name.to_string(), BTreeSet::new()))
        .collect();
    let mut diffusion: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (phrase, style) in STYLE_PHRASES {
        match reverie_styles::preset_name(style) {
            Some(preset) => painterly
                .entry(preset.to_string())
                .or_default()
                .insert(phrase),
            None => diffusion.entry(style).or_default().insert(phrase),
        };
    }
    let view = |name: String, phrases: BTreeSet<&str>, painterly: bool| StyleView {
        name,
        phrases: phrases.into_iter().map(str::to_string).collect(),
        painterly,
    };
    Json(
        painterly
            .into_iter()
            .map(|(name, phrases)| view(name, phrases, true))
            .chain(
                diffusion
                    .into_iter()
                    .map(|(name, phrases)| view(name.to_string(), phrases, false)),
            )
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_confined_to_the_tenants_own_results_and_albums() {
        let anna = TenantId::new("anna").unwrap();
        assert!(is_own_output(&anna, "tenants/anna/results/r1/0.png"));
        assert!(is_own_output(
            &anna,
            "tenants/anna/albums/italy/contact-sheet.png"
        ));
        assert!(!is_own_output(&anna, "tenants/bob/results/r1/0.png"));
        assert!(!is_own_output(&anna, "tenants/anna/tenant.json"));
        assert!(!is_own_output(&anna, "tenants/anna/results/../tenant.json"));
        assert!(!is_own_output(&anna, "tenants/anna/results//x.png"));
        assert!(!is_own_output(&anna, "tenants/annabel/results/r1/0.png"));
    }

    #[test]
    fn every_style_is_listed_once_with_its_phrases() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let Json(styles) = runtime.block_on(list_styles());
        let watercolour = styles.iter().find(|s| s.name == "watercolour").unwrap();
        assert!(watercolour.painterly);
        assert!(watercolour.phrases.contains(&"aquarelle".to_string()));
        let pencil = styles.iter().find(|s| s.name == "pencil").unwrap();
        assert!(pencil.painterly && pencil.phrases.contains(&"sketch".to_string()));
        let anime = styles.iter().find(|s| s.name == "anime").unwrap();
        assert!(!anime.painterly, "only a diffusion model draws anime");
        let names: BTreeSet<&str> = styles.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names.len(), styles.len());
    }
}
