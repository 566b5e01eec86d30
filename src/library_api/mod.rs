//! The library half of the HTTP API (docs/web.md): what a person's app needs beyond generations —
//! the library's photos and thumbnails, importing a folder or an upload, and their people. It runs in
//! the scheduler's HTTP server (mounted by `reverie serve`), authenticates like every `/v1` route and
//! never reads outside the calling tenant's prefix.

mod imports;
mod people;
mod photos;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use reverie_scheduler::api::{authenticated_tenant, error, ApiError};
use reverie_scheduler::library::CachedLibrary;
use reverie_scheduler::Core;
use reverie_shared::ids::TenantId;
use reverie_shared::Backends;
use reverie_worker::analysis::Analyser;
use serde::Serialize;

pub use imports::ImportStatus;

/// What the library API is allowed to do on this server.
#[derive(Debug, Clone)]
pub struct LibraryApiSettings {
    /// Folders on the server that `POST /v1/imports` may read (and nothing outside them).
    pub import_roots: Vec<PathBuf>,
    /// Folders an import never reads even inside a root: the server's data and models.
    pub private_dirs: Vec<PathBuf>,
    /// The largest upload accepted by `POST /v1/uploads`.
    pub max_upload_bytes: usize,
    /// How often a running job sends a preview (reported to the app).
    pub preview_interval_ms: u64,
}

/// Shared state of the library routes.
#[derive(Clone)]
pub struct LibraryApi {
    inner: Arc<Inner>,
}

struct Inner {
    core: Core,
    backends: Backends,
    library: Arc<CachedLibrary>,
    analyser: Option<Arc<Analyser>>,
    settings: LibraryApiSettings,
    imports: Mutex<HashMap<String, ImportStatus>>,
    tenants: Mutex<HashMap<TenantId, Arc<TenantLocks>>>,
}

/// What keeps one tenant's writes in order.
#[derive(Default)]
struct TenantLocks {
    /// One writer at a time for the manifest and the people file (import, analysis, people edits).
    edits: tokio::sync::Mutex<()>,
    /// Every write holds it shared; forgetting the tenant takes it exclusively, so nothing is written
    /// back after the store was cleared.
    alive: Arc<tokio::sync::RwLock<()>>,
    /// The tenant's import tasks, aborted when it is forgotten.
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
}

impl LibraryApi {
    pub fn new(
        core: Core,
        backends: Backends,
        library: Arc<CachedLibrary>,
        analyser: Option<Arc<Analyser>>,
        settings: LibraryApiSettings,
    ) -> LibraryApi {
        LibraryApi {
            inner: Arc::new(Inner {
                core,
                backends,
                library,
                analyser,
                settings,
                imports: Mutex::new(HashMap::new()),
                tenants: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The routes, ready to merge into the scheduler's router.
    pub fn router(self) -> Router {
        Router::new()
            .route("/v1/me", get(me))
            .route("/v1/library", get(photos::summary))
            .route("/v1/photos", get(photos::list))
            .route("/v1/photos/{id}/thumbnail", get(photos::thumbnail))
            .route("/v1/photos/{id}/face", get(photos::face))
            .route("/v1/imports", post(imports::start))
            .route("/v1/imports/{id}", get(imports::status))
            .route(
                "/v1/uploads",
                post(imports::upload).layer(axum::extract::DefaultBodyLimit::disable()),
            )
            .route("/v1/people", get(people::list))
            .route("/v1/people/{id}/name", put(people::rename))
            .route("/v1/people/{id}/merge", post(people::merge))
            .route("/v1/people/{id}/split", post(people::split))
            .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
            .with_state(self)
    }

    async fn tenant(&self, headers: &HeaderMap) -> Result<TenantId, ApiError> {
        authenticated_tenant(&self.inner.core, headers).await
    }

    fn locks(&self, tenant: &TenantId) -> Arc<TenantLocks> {
        let mut tenants = self
            .inner
            .tenants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tenants.entry(tenant.clone()).or_default().clone()
    }

    fn store(&self) -> &dyn reverie_shared::ports::store::ObjectStore {
        &*self.inner.backends.store
    }
}

#[async_trait::async_trait]
impl reverie_scheduler::tenants::TenantDataHolder for LibraryApi {
    async fn hold(&self, tenant: &TenantId) -> Box<dyn std::any::Any + Send> {
        let locks = self.locks(tenant);
        let tasks = std::mem::take(
            &mut *locks
                .tasks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for task in tasks {
            task.abort();
        }
        Box::new(locks.alive.clone().write_owned().await)
    }

    fn forgotten(&self, tenant: &TenantId) {
        self.inner
            .imports
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|_, status| status.tenant() != Some(tenant));
        self.inner
            .tenants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(tenant);
    }
}

/// A query string that does not parse, answered like every other error (not axum's plain text).
fn query<T>(
    parsed: Result<axum::extract::Query<T>, axum::extract::rejection::QueryRejection>,
) -> Result<T, ApiError> {
    parsed
        .map(|axum::extract::Query(query)| query)
        .map_err(|e| bad(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))
}

/// A person id from the path.
fn person_id(text: &str) -> Result<u64, ApiError> {
    text.parse().map_err(|_| {
        bad(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no person {text:?}: person ids are numbers"),
        )
    })
}

/// A 400-class answer with one reason.
fn bad(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
    error(status, None, code, message)
}

/// Who the token belongs to and what this server allows: the app's first call.
#[derive(Debug, Serialize)]
struct Me {
    tenant: String,
    import_roots: Vec<String>,
    max_upload_bytes: usize,
    preview_interval_ms: u64,
    /// Whether faces can be found on this server (the face models are loaded).
    faces_available: bool,
}

async fn me(
    axum::extract::State(api): axum::extract::State<LibraryApi>,
    headers: HeaderMap,
) -> Result<Json<Me>, ApiError> {
    let tenant = api.tenant(&headers).await?;
    let settings = &api.inner.settings;
    Ok(Json(Me {
        tenant: tenant.to_string(),
        import_roots: settings
            .import_roots
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        max_upload_bytes: settings.max_upload_bytes,
        preview_interval_ms: settings.preview_interval_ms,
        faces_available: api.inner.analyser.as_ref().is_some_and(|a| a.faces.is_ok()),
    }))
}
