//! Where a worker finds diffusion models: a folder, or a registered name whose files live in a local
//! folder or under an S3 prefix, read through the object store port.

use std::path::{Path, PathBuf};

use reverie_diffusion::registry::{
    adapter_weights_at, resolve_local_adapter, resolve_local_dir, AdapterKind, BlobFetcher,
    ModelRegistry, ResolvedAdapter, ResolvedModel,
};
use reverie_shared::ports::store::SharedStore;
use tokio::io::AsyncWriteExt;

use crate::render::RenderError;

/// Where a worker finds diffusion models: a folder path, or a name in the registry whose files live
/// in a local folder or under an S3 prefix (fetched once into `cache_dir`, checked by SHA-256).
pub struct ModelSource {
    pub registry: PathBuf,
    pub cache_dir: PathBuf,
    /// The farm's store: registry entries in other buckets are read through `other_bucket`.
    pub store: Option<SharedStore>,
    pub runtime: tokio::runtime::Handle,
}

impl ModelSource {
    /// A verified local folder for `model` (a folder path or a registered name). Blocking: call it
    /// off the async runtime.
    pub fn resolve(&self, model: &str) -> Result<ResolvedModel, RenderError> {
        let unavailable = |detail: String| RenderError::ModelUnavailable(detail);
        let as_path = Path::new(model);
        if as_path.is_dir() {
            return resolve_local_dir(as_path)
                .map_err(|e| unavailable(format!("model folder {model}: {e}")));
        }
        let registry = self.open_registry(&format!("model {model:?} is neither a folder nor"))?;
        let fetcher = self.fetcher();
        registry
            .resolve(
                model,
                &self.cache_dir,
                fetcher.as_ref().map(|f| f as &dyn BlobFetcher),
            )
            .map_err(|e| unavailable(e.to_string()))
    }

    /// A verified adapter of `kind` for the model `model` names: a file path, or a registered
    /// adapter made for that model (checked by name when the model is registered too). Blocking.
    pub fn resolve_adapter(
        &self,
        adapter: &str,
        kind: AdapterKind,
        model: &str,
    ) -> Result<ResolvedAdapter, RenderError> {
        let unavailable = |detail: String| RenderError::ModelUnavailable(detail);
        let as_path = Path::new(adapter);
        if as_path.exists() {
            return adapter_weights_at(as_path)
                .and_then(|file| resolve_local_adapter(&file, kind))
                .map_err(|e| unavailable(format!("{} {adapter}: {e}", kind.described())));
        }
        let what = format!("{} {adapter:?} is neither a file nor", kind.described());
        let registry = self.open_registry(&what)?;
        let fetcher = self.fetcher();
        let resolved = registry
            .resolve_adapter(
                adapter,
                kind,
                &self.cache_dir,
                fetcher.as_ref().map(|f| f as &dyn BlobFetcher),
            )
            .map_err(|e| unavailable(e.to_string()))?;
        if !Path::new(model).is_dir() {
            resolved
                .check_base(model)
                .map_err(|e| unavailable(e.to_string()))?;
        }
        Ok(resolved)
    }

    /// The registry file; `what` starts the error when there is none ("model X is neither a folder nor").
    fn open_registry(&self, what: &str) -> Result<ModelRegistry, RenderError> {
        let unavailable = |detail: String| RenderError::ModelUnavailable(detail);
        if !self.registry.is_file() {
            return Err(unavailable(format!(
                "{what} registered: no registry at {} (set diffusion.registry; docs/diffusion.md)",
                self.registry.display()
            )));
        }
        ModelRegistry::from_file(&self.registry)
            .map_err(|e| unavailable(format!("model registry: {e}")))
    }

    fn fetcher(&self) -> Option<StoreFetcher> {
        self.store.as_ref().map(|store| StoreFetcher {
            store: store.clone(),
            runtime: self.runtime.clone(),
        })
    }
}

/// Reads registry objects through the object store port (counted and timed like every store call).
struct StoreFetcher {
    store: SharedStore,
    runtime: tokio::runtime::Handle,
}

impl BlobFetcher for StoreFetcher {
    fn fetch(&self, bucket: &str, key: &str, destination: &Path) -> Result<(), String> {
        let store = self.store.other_bucket(bucket).map_err(|e| e.to_string())?;
        self.runtime.block_on(async move {
            let mut reader = store.reader(key).await.map_err(|e| e.to_string())?;
            let mut file = tokio::fs::File::create(destination)
                .await
                .map_err(|e| format!("{}: {e}", destination.display()))?;
            tokio::io::copy(&mut reader, &mut file)
                .await
                .map_err(|e| format!("s3://{bucket}/{key}: {e}"))?;
            file.flush().await.map_err(|e| e.to_string())
        })
    }
}
