//! The scheduler's HTTP routes: the generation API's handlers ([`crate::api`]) and its views of
//! generations, outputs, prompts and styles ([`crate::views`]) under one router, and the OpenAPI
//! document generated from both, served at `/openapi.json`.

use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use utoipa::OpenApi;

use crate::api::{self, ApiState, ConsentView, GenerationStatus, JobStatus};
use crate::records::{JobState, ProvenanceEntry};
use crate::replies::{JobResult, Reason, Reply, ReplyBody};
use crate::tenants::ForgetReport;
use crate::views;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("TENANT:SECRET")
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Reverie scheduler API", description = "Personalised image generation: submit, follow, cancel and refine generations."),
    paths(api::create_generation, api::get_generation, api::cancel_generation, api::refine_generation,
          api::generation_events, api::photo_outputs, api::show_consent, api::grant_consent,
          api::revoke_consent, api::forget_tenant,
          views::list_generations, views::get_output, views::resolve_prompt, views::list_styles),
    components(schemas(Reply, ReplyBody, Reason, JobResult, JobState, GenerationStatus, JobStatus,
                       ProvenanceEntry, ConsentView, ForgetReport, views::ResolveBody,
                       views::PromptResolution, views::ResolvedReference,
                       views::UnresolvedReference, views::StyleView, views::FaceSample)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// The OpenAPI document of this API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

async fn serve_openapi() -> impl IntoResponse {
    Json(openapi())
}

/// The API routes (without the operations endpoints, which the caller merges).
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route(
            "/v1/generations",
            post(api::create_generation).get(views::list_generations),
        )
        .route("/v1/outputs/{*key}", get(views::get_output))
        .route("/v1/resolve", post(views::resolve_prompt))
        .route("/v1/styles", get(views::list_styles))
        .route(
            "/v1/generations/{id}",
            get(api::get_generation).delete(api::cancel_generation),
        )
        .route("/v1/generations/{id}/refine", post(api::refine_generation))
        .route("/v1/generations/{id}/events", get(api::generation_events))
        .route("/v1/photos/{photo}/outputs", get(api::photo_outputs))
        .route("/v1/consents", get(api::show_consent))
        .route(
            "/v1/consents/{source}",
            put(api::grant_consent).delete(api::revoke_consent),
        )
        .route("/v1/tenant", axum::routing::delete(api::forget_tenant))
        .route("/openapi.json", get(serve_openapi))
        .layer(axum::extract::DefaultBodyLimit::max(
            crate::ingress::MAX_REQUEST_BYTES,
        ))
        .with_state(state)
}
