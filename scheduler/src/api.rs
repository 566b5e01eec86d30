//! The HTTP API (axum): generations, their events, cancellation and refinement, provenance by photo,
//! the tenant's own consent (routed, with the views, in `routes.rs`, which also makes `/openapi.json`
//! from these handlers). Every route but the operations endpoints needs
//! `Authorization: Bearer TENANT:SECRET`.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::Stream;
use reverie_shared::ids::{PhotoId, RequestId, TenantId};
use serde::{Deserialize, Serialize};

use crate::ingress::{self, Credentials, Ingress, IntakeContext};
use crate::records::{JobState, ProvenanceEntry, RequestRecord};
use crate::replies::{self, Reason, Reply, ReplyBody};
use crate::service::{Core, StreamedReply};
use crate::tenants::{self, AuthError, ForgetReport};

/// The header carrying the idempotency key of a POST.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

#[derive(Clone)]
pub struct ApiState {
    pub core: Core,
    pub intake: IntakeContext,
    /// Components that keep tenant data beside the scheduler, told when a tenant is forgotten.
    pub holders: Vec<std::sync::Arc<dyn tenants::TenantDataHolder>>,
}

/// An error answer: the same `Reply` shape as everything else, with an HTTP status.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub Box<Reply>);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(*self.1)).into_response()
    }
}

/// An error answer with one reason.
pub fn error(
    status: StatusCode,
    request: Option<String>,
    code: &str,
    message: impl Into<String>,
) -> ApiError {
    ApiError(
        status,
        Box::new(Reply::rejected(request, vec![Reason::new(code, message)])),
    )
}

/// What a caller is told of a backend failure: never the backend's own error text (store paths and
/// keys, addresses, broker details), which goes to the log.
pub const UNAVAILABLE_MESSAGE: &str =
    "the service could not complete this request right now; retry later";

/// A backend failure: 503 with a fixed message (the error itself is logged), so clients retry.
pub fn internal(err: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %err, "HTTP request failed");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        None,
        "unavailable",
        UNAVAILABLE_MESSAGE,
    )
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    value.strip_prefix("Bearer ").map(|t| t.trim().to_string())
}

fn auth_status(error: &AuthError) -> StatusCode {
    match error {
        AuthError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        AuthError::TenantMismatch { .. } => StatusCode::FORBIDDEN,
        _ => StatusCode::UNAUTHORIZED,
    }
}

async fn authenticate(state: &ApiState, headers: &HeaderMap) -> Result<TenantId, ApiError> {
    authenticated_tenant(&state.core, headers).await
}

/// The tenant whose bearer token the request carries, or the 401/403/503 to answer.
pub async fn authenticated_tenant(core: &Core, headers: &HeaderMap) -> Result<TenantId, ApiError> {
    let token = bearer(headers).unwrap_or_default();
    match core.tenants().authenticate(&token).await {
        Ok(tenant) => Ok(tenant.id),
        Err(AuthError::Unavailable(detail)) => Err(internal(detail)),
        Err(e) => Err(error(auth_status(&e), None, e.code(), e.to_string())),
    }
}

pub(crate) fn request_id(text: &str) -> Result<RequestId, ApiError> {
    RequestId::new(text).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            None,
            "invalid_request_id",
            e.to_string(),
        )
    })
}

/// The HTTP status of a rejection: the most specific of its reasons.
fn rejection_status(reasons: &[Reason]) -> StatusCode {
    let has = |code: &str| reasons.iter().any(|r| r.code == code);
    if has("unauthenticated")
        || has("invalid_token")
        || has("token_expired")
        || has("unknown_tenant")
    {
        StatusCode::UNAUTHORIZED
    } else if has("tenant_mismatch") || has("no_consent") {
        StatusCode::FORBIDDEN
    } else if has("not_found") {
        StatusCode::NOT_FOUND
    } else if has("quota_exceeded") {
        StatusCode::TOO_MANY_REQUESTS
    } else if has("too_large") {
        StatusCode::PAYLOAD_TOO_LARGE
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    }
}

fn reply_response(reply: Reply) -> Response {
    let status = match &reply.body {
        ReplyBody::Accepted {
            duplicate: true, ..
        } => StatusCode::OK,
        ReplyBody::Accepted { .. } => StatusCode::ACCEPTED,
        ReplyBody::Rejected { reasons } => rejection_status(reasons),
        _ => StatusCode::OK,
    };
    (status, Json(reply)).into_response()
}

/// One job in a status answer.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobStatus {
    pub job: String,
    pub index: u32,
    pub state: JobState,
    pub attempts: u32,
    pub published: bool,
    pub worker: Option<String>,
    pub outputs: Vec<String>,
    pub error: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<DateTime<Utc>>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<DateTime<Utc>>,
    pub seed: u64,
}

/// What `GET /v1/generations/{id}` answers.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GenerationStatus {
    pub request_id: String,
    pub tenant: String,
    pub state: JobState,
    pub prompt: String,
    pub parent: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: DateTime<Utc>,
    /// The plan: renderer, parameters, seeds, references and the reasons for each choice.
    #[schema(value_type = Object)]
    pub plan: serde_json::Value,
    pub jobs: Vec<JobStatus>,
}

impl GenerationStatus {
    pub fn of(record: &RequestRecord) -> GenerationStatus {
        GenerationStatus {
            request_id: record.request.to_string(),
            tenant: record.tenant.to_string(),
            state: record.state(),
            prompt: record.prompt.clone(),
            parent: record.parent.as_ref().map(ToString::to_string),
            created_at: record.created_at,
            updated_at: record.updated_at,
            plan: serde_json::to_value(&record.plan).unwrap_or_default(),
            jobs: record
                .jobs
                .iter()
                .map(|j| JobStatus {
                    job: j.job.to_string(),
                    index: j.index,
                    state: j.state,
                    attempts: j.attempts,
                    published: j.published,
                    worker: j.worker.clone(),
                    outputs: j.outputs.clone(),
                    error: j.error.clone(),
                    started_at: j.started_at,
                    finished_at: j.finished_at,
                    seed: j.spec.render.seed,
                })
                .collect(),
        }
    }
}

/// The tenant's consent, per source.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConsentView {
    pub tenant: String,
    pub granted: Vec<String>,
    pub revoked: Vec<String>,
    /// Jobs cancelled by this change (revocations only).
    pub jobs_cancelled: u64,
}

async fn submit_http(
    state: &ApiState,
    headers: &HeaderMap,
    body: &Bytes,
    parent: Option<RequestId>,
) -> Result<Response, ApiError> {
    let credentials = Credentials {
        token: Some(bearer(headers).unwrap_or_default()),
        broker_user: None,
    };
    let key = headers
        .get(IDEMPOTENCY_HEADER)
        .and_then(|v| v.to_str().ok());
    let reply = ingress::submit(
        &state.core,
        &state.intake,
        Ingress::Http,
        &credentials,
        key,
        body,
        None,
        parent,
    )
    .await
    .map_err(internal)?
    .reply;
    Ok(reply_response(reply))
}

/// Submits a generation request (schema v1, docs/schemas/request.v1.json).
#[utoipa::path(post, path = "/v1/generations", tag = "generations",
    request_body(content = Object, description = "A generation request, schema v1", content_type = "application/json"),
    params(("Idempotency-Key" = Option<String>, Header, description = "The request id: the same key twice makes one set of jobs")),
    responses(
        (status = 202, description = "Accepted: persisted and published", body = Reply),
        (status = 200, description = "A duplicate of an accepted request", body = Reply),
        (status = 401, description = "Missing, invalid or expired token", body = Reply),
        (status = 403, description = "No consent for a photo it would use", body = Reply),
        (status = 422, description = "Invalid request, with reasons", body = Reply),
        (status = 429, description = "The tenant's queued-job quota is exhausted", body = Reply)),
    security(("bearer" = [])))]
pub async fn create_generation(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    submit_http(&state, &headers, &body, None).await
}

/// Refines an earlier generation: a child request keeping the parent's seeds and references unless the
/// new prompt changes them.
#[utoipa::path(post, path = "/v1/generations/{id}/refine", tag = "generations",
    params(("id" = String, Path, description = "The parent request id")),
    request_body(content = Object, description = "A generation request, schema v1 (the new prompt)", content_type = "application/json"),
    responses((status = 202, body = Reply), (status = 404, body = Reply), (status = 422, body = Reply)),
    security(("bearer" = [])))]
pub async fn refine_generation(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let parent = request_id(&id)?;
    submit_http(&state, &headers, &body, Some(parent)).await
}

/// A generation's state, plan and outputs.
#[utoipa::path(get, path = "/v1/generations/{id}", tag = "generations",
    params(("id" = String, Path, description = "The request id")),
    responses((status = 200, body = GenerationStatus), (status = 404, body = Reply)),
    security(("bearer" = [])))]
pub async fn get_generation(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<GenerationStatus>, ApiError> {
    let tenant = authenticate(&state, &headers).await?;
    let request = request_id(&id)?;
    match state
        .core
        .record(&tenant, &request)
        .await
        .map_err(internal)?
    {
        Some(record) => Ok(Json(GenerationStatus::of(&record))),
        None => Err(not_found(&request)),
    }
}

pub(crate) fn not_found(request: &RequestId) -> ApiError {
    error(
        StatusCode::NOT_FOUND,
        Some(request.to_string()),
        "not_found",
        format!("no generation {request} for this tenant"),
    )
}

/// Cancels a generation: queued jobs never run, running ones are not delivered.
#[utoipa::path(delete, path = "/v1/generations/{id}", tag = "generations",
    params(("id" = String, Path, description = "The request id")),
    responses((status = 200, body = GenerationStatus), (status = 404, body = Reply)),
    security(("bearer" = [])))]
pub async fn cancel_generation(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<GenerationStatus>, ApiError> {
    let tenant = authenticate(&state, &headers).await?;
    let request = request_id(&id)?;
    match state
        .core
        .cancel(&tenant, &request)
        .await
        .map_err(internal)?
    {
        Some(record) => Ok(Json(GenerationStatus::of(&record))),
        None => Err(not_found(&request)),
    }
}

/// Server-sent events of a generation: `progress` while it runs, then one of `done`, `failed` or
/// `cancelled` (each a reply v1 JSON object), then the stream ends.
#[utoipa::path(get, path = "/v1/generations/{id}/events", tag = "generations",
    params(("id" = String, Path, description = "The request id")),
    responses((status = 200, description = "text/event-stream of Reply objects", body = Reply, content_type = "text/event-stream"),
        (status = 404, body = Reply)),
    security(("bearer" = [])))]
pub async fn generation_events(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let tenant = authenticate(&state, &headers).await?;
    let request = request_id(&id)?;
    // Subscribe before reading the record, so nothing that happens in between is missed; a request
    // that does not exist (or is another tenant's) keeps no stream behind.
    let receiver = state.core.subscribe(&tenant, &request);
    let record = match state.core.record(&tenant, &request).await {
        Ok(Some(record)) => record,
        found => {
            drop(receiver);
            state.core.unsubscribe_idle(&tenant, &request);
            return Err(match found {
                Err(error) => internal(error),
                _ => not_found(&request),
            });
        }
    };
    let finished = record.is_finished();
    let receiver = if finished {
        // Nothing more will happen: answer the final reply and end, without a live subscription.
        drop(receiver);
        state.core.unsubscribe_idle(&tenant, &request);
        None
    } else {
        Some(receiver)
    };
    let first = if finished {
        replies::final_reply(&record)
    } else {
        replies::standing(&record)
    };
    let stream = futures::stream::unfold((Some(first), receiver), |(first, receiver)| async move {
        if let Some(reply) = first {
            let done = reply.is_final();
            let next = if done { None } else { receiver };
            return Some((Ok(sse_event(&StreamedReply::of(&reply))), (None, next)));
        }
        let mut receiver = receiver?;
        loop {
            match receiver.recv().await {
                Ok(reply) => {
                    let next = if reply.reply.is_final() {
                        None
                    } else {
                        Some(receiver)
                    };
                    return Some((Ok(sse_event(&reply)), (None, next)));
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

fn sse_event(reply: &StreamedReply) -> Event {
    Event::default().event(reply.reply.kind()).data(&reply.json)
}

/// Outputs made from one of the tenant's photos (provenance).
#[utoipa::path(get, path = "/v1/photos/{photo}/outputs", tag = "provenance",
    params(("photo" = String, Path, description = "The photo id (SHA-256 of its bytes)")),
    responses((status = 200, body = [ProvenanceEntry]), (status = 400, body = Reply)),
    security(("bearer" = [])))]
pub async fn photo_outputs(
    State(state): State<ApiState>,
    Path(photo): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Vec<ProvenanceEntry>>, ApiError> {
    let tenant = authenticate(&state, &headers).await?;
    let photo = PhotoId::parse(&photo).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            None,
            "invalid_photo_id",
            e.to_string(),
        )
    })?;
    let entries = state
        .core
        .records()
        .outputs_of_photo(&tenant, photo.as_str())
        .await
        .map_err(internal)?;
    Ok(Json(entries))
}

async fn consent_view(
    state: &ApiState,
    tenant: &TenantId,
    jobs_cancelled: u64,
) -> Result<ConsentView, ApiError> {
    let record = state
        .core
        .tenants()
        .require(tenant)
        .await
        .map_err(internal)?;
    Ok(ConsentView {
        tenant: tenant.to_string(),
        granted: record.granted_sources(),
        revoked: record
            .consents
            .iter()
            .filter(|(_, c)| !c.granted)
            .map(|(s, _)| s.clone())
            .collect(),
        jobs_cancelled,
    })
}

/// The tenant's consent per source.
#[utoipa::path(get, path = "/v1/consents", tag = "consent",
    responses((status = 200, body = ConsentView)), security(("bearer" = [])))]
pub async fn show_consent(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<ConsentView>, ApiError> {
    let tenant = authenticate(&state, &headers).await?;
    Ok(Json(consent_view(&state, &tenant, 0).await?))
}

fn source_of(source: &str) -> Result<String, ApiError> {
    tenants::validate_source(source)
        .map(|()| source.to_string())
        .map_err(|m| error(StatusCode::BAD_REQUEST, None, "invalid_source", m))
}

/// Grants consent for a source (`library` or `album:NAME`).
#[utoipa::path(put, path = "/v1/consents/{source}", tag = "consent",
    params(("source" = String, Path, description = "`library` or `album:NAME`")),
    responses((status = 200, body = ConsentView), (status = 400, body = Reply)), security(("bearer" = [])))]
pub async fn grant_consent(
    State(state): State<ApiState>,
    Path(source): Path<String>,
    headers: HeaderMap,
) -> Result<Json<ConsentView>, ApiError> {
    let tenant = authenticate(&state, &headers).await?;
    let source = source_of(&source)?;
    state
        .core
        .tenants()
        .set_consent(&tenant, &source, true)
        .await
        .map_err(internal)?;
    Ok(Json(consent_view(&state, &tenant, 0).await?))
}

/// Revokes consent for a source; unfinished jobs that used its photos are cancelled.
#[utoipa::path(delete, path = "/v1/consents/{source}", tag = "consent",
    params(("source" = String, Path, description = "`library` or `album:NAME`")),
    responses((status = 200, body = ConsentView), (status = 400, body = Reply)), security(("bearer" = [])))]
pub async fn revoke_consent(
    State(state): State<ApiState>,
    Path(source): Path<String>,
    headers: HeaderMap,
) -> Result<Json<ConsentView>, ApiError> {
    let tenant = authenticate(&state, &headers).await?;
    let source = source_of(&source)?;
    let cancelled = state
        .core
        .revoke_consent(&tenant, &source)
        .await
        .map_err(internal)?;
    Ok(Json(consent_view(&state, &tenant, cancelled).await?))
}

/// Forgets the calling tenant: cancels its work and deletes everything it has in the object store and
/// the cache (photos, analyses, embeddings, people, results, job records, tokens). Irreversible.
#[utoipa::path(delete, path = "/v1/tenant", tag = "tenant",
    responses((status = 200, description = "What was deleted", body = ForgetReport)),
    security(("bearer" = [])))]
pub async fn forget_tenant(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<ForgetReport>, ApiError> {
    let tenant = authenticate(&state, &headers).await?;
    // Imports and thumbnails in flight stop first, so nothing is written back after the delete.
    let mut guards = Vec::new();
    for holder in &state.holders {
        guards.push(holder.hold(&tenant).await);
    }
    let report = state.core.forget(&tenant).await.map_err(internal)?;
    state.intake.library.invalidate(&tenant);
    for holder in &state.holders {
        holder.forgotten(&tenant);
    }
    drop(guards);
    Ok(Json(report))
}
