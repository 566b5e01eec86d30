//! Bringing photos in from the app: a folder on the server (only under the operator's import roots)
//! or one uploaded file, then — with the tenant's consent for its library — the analysis that finds
//! faces and grows people. A folder import runs in the background; the app polls its status.

use std::path::{Path as FsPath, PathBuf};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use reverie_library::{import, ImportOptions, ImportReport, ImportSource};
use reverie_scheduler::api::{internal, ApiError};
use reverie_shared::ids::TenantId;
use serde::{Deserialize, Serialize};

use super::{bad, LibraryApi};

/// Where an import is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Import,
    Analyse,
    Done,
}

/// What `GET /v1/imports/{id}` answers.
#[derive(Debug, Clone, Serialize)]
pub struct ImportStatus {
    pub id: String,
    #[serde(skip)]
    tenant: Option<TenantId>,
    #[serde(skip)]
    started: std::time::Instant,
    /// The folder, or the uploaded file's name.
    pub path: String,
    /// `running`, `done` or `failed`.
    pub state: &'static str,
    pub phase: Phase,
    /// Progress of the phase (shards analysed of all); 0/0 while files are read.
    pub done: usize,
    pub total: usize,
    pub report: Option<ImportReport>,
    /// People in the library after the analysis.
    pub people: Option<usize>,
    /// Why faces were not analysed, when they were not (no consent, no face models).
    pub note: Option<String>,
    pub error: Option<String>,
}

impl ImportStatus {
    pub(super) fn tenant(&self) -> Option<&TenantId> {
        self.tenant.as_ref()
    }

    fn new(id: String, tenant: &TenantId, path: String) -> ImportStatus {
        ImportStatus {
            id,
            tenant: Some(tenant.clone()),
            started: std::time::Instant::now(),
            path,
            state: "running",
            phase: Phase::Import,
            done: 0,
            total: 0,
            report: None,
            people: None,
            note: None,
            error: None,
        }
    }
}

/// Finished imports kept for their status; older ones are dropped first.
const KEPT_IMPORTS: usize = 256;
/// Imports (folders and uploads) one tenant may have running at once.
const MAX_RUNNING_IMPORTS: usize = 4;

impl LibraryApi {
    /// Registers a new import's status, dropping the oldest finished ones beyond [`KEPT_IMPORTS`].
    fn register(&self, status: ImportStatus) {
        let mut imports = self
            .inner
            .imports
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if imports.len() >= KEPT_IMPORTS {
            let mut finished: Vec<(std::time::Instant, String)> = imports
                .iter()
                .filter(|(_, s)| s.state != "running")
                .map(|(id, s)| (s.started, id.clone()))
                .collect();
            finished.sort();
            for (_, id) in finished.iter().take(imports.len() + 1 - KEPT_IMPORTS) {
                imports.remove(id);
            }
        }
        imports.insert(status.id.clone(), status);
    }

    fn update(&self, id: &str, change: impl FnOnce(&mut ImportStatus)) {
        let mut imports = self
            .inner
            .imports
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(status) = imports.get_mut(id) {
            change(status);
        }
    }

    fn import_status(&self, tenant: &TenantId, id: &str) -> Option<ImportStatus> {
        let imports = self
            .inner
            .imports
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        imports
            .get(id)
            .filter(|s| s.tenant.as_ref() == Some(tenant))
            .cloned()
    }

    /// The folder an import may read: an existing directory inside one of the import roots, outside the
    /// server's own data, with no hidden folder on the way. Whether a path outside the roots exists is
    /// never told (the same 403 either way).
    fn allowed_folder(&self, requested: &str) -> Result<PathBuf, ApiError> {
        let settings = &self.inner.settings;
        let listed: Vec<String> = settings
            .import_roots
            .iter()
            .map(|r| r.display().to_string())
            .collect();
        let refused = |why: String| bad(StatusCode::FORBIDDEN, "import_not_allowed", why);
        if listed.is_empty() {
            return Err(refused(
                "this server imports from no folders; its operator lists them (reverie serve --photos DIR)"
                    .to_string(),
            ));
        }
        let outside = || {
            refused(format!(
                "{requested:?} is outside the folders this server imports from ({})",
                listed.join(", ")
            ))
        };
        // First by the words of the path alone (no file system access for paths outside the roots).
        let path = std::path::Path::new(requested);
        let lexical_root = settings
            .import_roots
            .iter()
            .find(|root| path.starts_with(root));
        let Some(root) = lexical_root else {
            return Err(outside());
        };
        let below = path.strip_prefix(root).unwrap_or(path);
        if below.components().any(|c| {
            matches!(c, std::path::Component::ParentDir)
                || c.as_os_str().to_string_lossy().starts_with('.')
        }) {
            return Err(refused(format!(
                "{requested:?}: paths with \"..\" or hidden folders are not imported"
            )));
        }
        // Then for real: symbolic links resolved, still inside a root, not the server's own data.
        let folder = std::fs::canonicalize(path)
            .ok()
            .filter(|p| p.is_dir())
            .ok_or_else(|| {
                bad(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "no_such_folder",
                    format!("{requested:?} is not a folder on the server"),
                )
            })?;
        if !settings
            .import_roots
            .iter()
            .any(|root| folder.starts_with(root))
        {
            return Err(outside());
        }
        if settings
            .private_dirs
            .iter()
            .any(|private| folder.starts_with(private) || private.starts_with(&folder))
        {
            return Err(refused(format!(
                "{requested:?} holds this server's own data, which is never imported"
            )));
        }
        Ok(folder)
    }

    /// Runs an import in its own task (it finishes even if the caller goes away; forgetting the tenant
    /// aborts it).
    /// `staging` (an upload's temporary folder) lives as long as the task.
    fn spawn_import(
        &self,
        tenant: TenantId,
        id: String,
        source: PathBuf,
        staging: Option<tempfile::TempDir>,
    ) -> tokio::task::JoinHandle<()> {
        let runner = self.clone();
        let locks = self.locks(&tenant);
        let task = tokio::spawn(async move {
            runner.run_import(tenant, id, source).await;
            drop(staging);
        });
        let mut tasks = locks
            .tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tasks.retain(|t| !t.is_finished());
        tasks.push(task.abort_handle());
        task
    }

    /// Refuses a new import while the tenant already has [`MAX_RUNNING_IMPORTS`] running.
    fn check_capacity(&self, tenant: &TenantId) -> Result<(), ApiError> {
        let running = self
            .inner
            .imports
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .filter(|s| s.tenant.as_ref() == Some(tenant) && s.state == "running")
            .count();
        if running >= MAX_RUNNING_IMPORTS {
            return Err(bad(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_imports",
                format!("{running} imports are already running; wait for one to finish"),
            ));
        }
        Ok(())
    }

    /// Imports `source`, then analyses the library when the tenant consented; updates `id`'s status.
    async fn run_import(&self, tenant: TenantId, id: String, source: PathBuf) {
        let locks = self.locks(&tenant);
        let _alive = locks.alive.read().await;
        let _edits = locks.edits.lock().await;
        // Forgotten while this import waited for its turn: write nothing.
        if !matches!(self.inner.core.tenants().get(&tenant).await, Ok(Some(_))) {
            self.update(&id, |s| {
                s.state = "failed";
                s.error = Some("the tenant no longer exists".to_string());
            });
            return;
        }
        let options = ImportOptions::default();
        let report = import(
            self.store(),
            &tenant,
            ImportSource::Folder(source),
            &options,
        )
        .await;
        let report = match report {
            Ok(report) => report,
            Err(error) => {
                tracing::warn!(%tenant, import = %id, %error, "import failed");
                self.update(&id, |s| {
                    s.state = "failed";
                    s.error = Some(error.to_string());
                });
                return;
            }
        };
        self.inner.library.invalidate(&tenant);
        self.update(&id, |s| {
            s.report = Some(report);
            s.phase = Phase::Analyse;
        });
        let outcome = self.analyse(&tenant, &id).await;
        self.inner.library.invalidate(&tenant);
        self.update(&id, |s| {
            s.phase = Phase::Done;
            match outcome {
                Ok(Analysed::People(people)) => s.people = Some(people),
                Ok(Analysed::Skipped(note)) => s.note = Some(note),
                Err(error) => s.error = Some(format!("the analysis failed: {error}")),
            }
            s.state = if s.error.is_some() { "failed" } else { "done" };
        });
    }

    async fn analyse(&self, tenant: &TenantId, id: &str) -> anyhow::Result<Analysed> {
        let record = self.inner.core.tenants().require(tenant).await?;
        if !record.granted_sources().iter().any(|s| s == "library") {
            return Ok(Analysed::Skipped(
                "faces were not analysed: there is no consent for the library (grant it under Privacy)"
                    .to_string(),
            ));
        }
        let Some(analyser) = self.inner.analyser.clone() else {
            return Ok(Analysed::Skipped(
                "faces were not analysed: this server has no face models (reverie models fetch)"
                    .to_string(),
            ));
        };
        let api = self.clone();
        let id_owned = id.to_string();
        let progress = move |done: usize, total: usize| {
            api.update(&id_owned, |s| {
                s.done = done;
                s.total = total;
            })
        };
        let summary = reverie_worker::library_analysis::analyse_library(
            &self.inner.backends,
            tenant,
            &analyser,
            &progress,
        )
        .await?;
        tracing::info!(%tenant, import = id, %summary, "library analysed");
        Ok(Analysed::People(summary.people))
    }
}

enum Analysed {
    People(usize),
    Skipped(String),
}

#[derive(Debug, Deserialize)]
pub(super) struct ImportBody {
    path: String,
}

fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// `POST /v1/imports` `{"path": "/photos/holiday"}`: 202 and the status to poll.
pub(super) async fn start(
    State(api): State<LibraryApi>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let tenant = api.tenant(&headers).await?;
    let body: ImportBody = serde_json::from_slice(&body).map_err(|e| {
        bad(
            StatusCode::UNPROCESSABLE_ENTITY,
            "malformed_json",
            format!("the body must be {{\"path\": \"/folder/on/the/server\"}}: {e}"),
        )
    })?;
    let folder = api.allowed_folder(&body.path)?;
    api.check_capacity(&tenant)?;
    let id = new_id();
    let status = ImportStatus::new(id.clone(), &tenant, folder.display().to_string());
    api.register(status.clone());
    tracing::info!(%tenant, import = %id, folder = %folder.display(), "import started");
    drop(api.spawn_import(tenant, id, folder, None));
    Ok((StatusCode::ACCEPTED, Json(status)).into_response())
}

/// `GET /v1/imports/{id}`; another tenant's import is not found.
pub(super) async fn status(
    State(api): State<LibraryApi>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<ImportStatus>, ApiError> {
    let tenant = api.tenant(&headers).await?;
    api.import_status(&tenant, &id).map(Json).ok_or_else(|| {
        bad(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no import {id} for this tenant"),
        )
    })
}

#[derive(Debug, Deserialize)]
pub(super) struct UploadQuery {
    name: Option<String>,
}

/// The last component of an uploaded file's name, without anything a path could use.
fn upload_name(name: Option<&str>) -> String {
    let base = name
        .unwrap_or("upload.jpg")
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default();
    let clean: String = base
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | ' '))
        .take(120)
        .collect();
    let clean = clean.trim_start_matches('.').trim().to_string();
    if clean.is_empty() {
        "upload.jpg".to_string()
    } else {
        clean
    }
}

fn too_large(limit: usize) -> ApiError {
    bad(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!(
            "the upload is larger than this server's limit of {} MiB",
            limit / (1024 * 1024)
        ),
    )
}

/// `POST /v1/uploads?name=IMG.jpg` with the image as the body: imported (and analysed) before the answer.
pub(super) async fn upload(
    State(api): State<LibraryApi>,
    headers: HeaderMap,
    query: Result<Query<UploadQuery>, axum::extract::rejection::QueryRejection>,
    body: axum::body::Body,
) -> Result<Json<ImportStatus>, ApiError> {
    let tenant = api.tenant(&headers).await?;
    let query = super::query(query)?;
    let limit = api.inner.settings.max_upload_bytes;
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(too_large(limit));
    }
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large(limit))?;
    if bytes.is_empty() {
        return Err(bad(
            StatusCode::UNPROCESSABLE_ENTITY,
            "empty_upload",
            "the upload is empty",
        ));
    }
    api.check_capacity(&tenant)?;
    let name = upload_name(query.name.as_deref());
    let staging = tempfile::tempdir().map_err(internal)?;
    write_upload(staging.path(), &name, &bytes).map_err(internal)?;
    let id = new_id();
    api.register(ImportStatus::new(id.clone(), &tenant, name));
    // The staging folder lives in the import task, which finishes even if the client leaves.
    let source = staging.path().to_path_buf();
    api.spawn_import(tenant.clone(), id.clone(), source, Some(staging))
        .await
        .map_err(|_| internal("the import was stopped"))?;
    let status = api
        .import_status(&tenant, &id)
        .ok_or_else(|| internal("import status lost"))?;
    if let Some(skipped) = status.report.as_ref().and_then(|r| r.skipped.first()) {
        if status
            .report
            .as_ref()
            .is_some_and(|r| r.imported == 0 && r.already_present == 0)
        {
            return Err(bad(
                StatusCode::UNPROCESSABLE_ENTITY,
                "not_imported",
                format!("{}: {}", skipped.file, skipped.reason),
            ));
        }
    }
    Ok(Json(status))
}

fn write_upload(dir: &FsPath, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(dir.join(name), bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_names_lose_their_paths_and_markup() {
        assert_eq!(upload_name(Some("../../etc/passwd")), "passwd");
        assert_eq!(upload_name(Some("C:\\photos\\IMG 1.jpg")), "IMG 1.jpg");
        assert_eq!(upload_name(Some("<script>x</script>.jpg")), "script.jpg");
        assert_eq!(upload_name(Some("a<b>&\"c.jpg")), "abc.jpg");
        assert_eq!(upload_name(Some("...")), "upload.jpg");
        assert_eq!(upload_name(None), "upload.jpg");
    }
}
