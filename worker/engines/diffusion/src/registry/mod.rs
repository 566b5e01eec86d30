//! Named models and adapters: where each lives (a local folder or `s3://bucket/prefix`) and the
//! SHA-256 of every file, checked before the files are used. A model's identity hash, recorded with
//! every output, is derived from the hashes of the files the pipeline reads; an adapter's (LoRA,
//! IP-Adapter: `adapters`) from those of its files.
//!
//! The registry file is TOML (docs/diffusion.md):
//!
//! ```toml
//! [models.sd15]
//! location = "s3://models/sd15"          # or a folder, relative to this file
//! [models.sd15.files]
//! "model_index.json" = "<sha256 hex>"
//! "unet/diffusion_pytorch_model.safetensors" = "<sha256 hex>"
//! ```

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{DiffusionError, Result};

mod adapters;

pub use adapters::{
    adapter_entry_toml, adapter_weights_at, resolve_local_adapter, AdapterEntry, AdapterKind,
    ResolvedAdapter, IMAGE_ENCODER_FILES,
};

/// Where a model's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelLocation {
    Local(PathBuf),
    S3 { bucket: String, prefix: String },
}

/// One registered model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelEntry {
    pub location: ModelLocation,
    pub description: Option<String>,
    /// Relative path (with `/`) -> lowercase SHA-256 hex.
    pub files: BTreeMap<String, String>,
}

/// Copies one object to a local file; the registry verifies it afterwards. The production
/// implementation wraps the shared `ObjectStore` port.
pub trait BlobFetcher {
    fn fetch(&self, bucket: &str, key: &str, destination: &Path)
        -> std::result::Result<(), String>;
}

/// A model ready to load: a verified local folder and its identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedModel {
    pub name: String,
    pub dir: PathBuf,
    /// SHA-256 of the `sha256sum`-style listing of the files the pipeline reads.
    pub identity: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    #[serde(default)]
    models: BTreeMap<String, EntryFile>,
    /// Read entry by entry, so that one bad adapter does not stop the models from resolving.
    #[serde(default)]
    adapters: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryFile {
    location: String,
    #[serde(default)]
    description: Option<String>,
    files: BTreeMap<String, String>,
}

/// The models and adapters of one registry file.
#[derive(Debug, Clone, Default)]
pub struct ModelRegistry {
    models: BTreeMap<String, ModelEntry>,
    /// Each adapter entry, or what is wrong with it (said when it is asked for).
    adapters: BTreeMap<String, std::result::Result<AdapterEntry, String>>,
}

/// An error about the registry entry `entry` ("model `sd15`", "adapter `ip-plus`").
fn entry_error(entry: &str, reason: impl Into<String>) -> DiffusionError {
    DiffusionError::Registry {
        entry: entry.to_string(),
        reason: reason.into(),
    }
}

fn model_label(name: &str) -> String {
    format!("model `{name}`")
}

fn registry_error(model: &str, reason: impl Into<String>) -> DiffusionError {
    entry_error(&model_label(model), reason)
}

/// `s3://bucket/prefix` as (bucket, prefix without a trailing slash).
fn parse_s3(location: &str) -> Option<(String, String)> {
    let rest = location.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return None;
    }
    Some((bucket.to_string(), prefix.trim_end_matches('/').to_string()))
}

/// A location as written in the registry: `s3://bucket/prefix`, or a folder relative to `base`.
fn parse_location(entry: &str, location: &str, base: &Path) -> Result<ModelLocation> {
    match parse_s3(location) {
        Some((bucket, prefix)) => Ok(ModelLocation::S3 { bucket, prefix }),
        None if location.starts_with("s3://") => {
            Err(entry_error(entry, "s3 location has no bucket"))
        }
        None => Ok(ModelLocation::Local(base.join(location))),
    }
}

/// An entry's file list: plain relative paths, each with a SHA-256 (stored lowercase).
fn parse_files(entry: &str, files: BTreeMap<String, String>) -> Result<BTreeMap<String, String>> {
    let mut checked = BTreeMap::new();
    for (path, hash) in files {
        check_relative(entry, &path)?;
        let hash = hash.to_ascii_lowercase();
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(entry_error(
                entry,
                format!("hash of `{path}` is not 64 hex digits"),
            ));
        }
        checked.insert(path, hash);
    }
    Ok(checked)
}

/// A relative path that cannot leave the entry's folder.
fn check_relative(entry: &str, path: &str) -> Result<()> {
    let clean = !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\\')
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..");
    if clean {
        Ok(())
    } else {
        Err(entry_error(
            entry,
            format!("file `{path}` is not a plain relative path"),
        ))
    }
}

impl ModelRegistry {
    /// Reads a registry file; relative folder locations are resolved against its folder.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| DiffusionError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base).map_err(|e| match e {
            DiffusionError::Registry { entry, reason } => DiffusionError::Registry {
                entry,
                reason: format!("{reason} (in {})", path.display()),
            },
            other => other,
        })
    }

    /// Parses registry TOML; `base` anchors relative folder locations.
    pub fn parse(text: &str, base: &Path) -> Result<Self> {
        let file: RegistryFile = toml::from_str(text)
            .map_err(|e| entry_error("the registry", format!("invalid TOML: {e}")))?;
        let mut models = BTreeMap::new();
        for (name, entry) in file.models {
            let label = model_label(&name);
            let model = ModelEntry {
                location: parse_location(&label, &entry.location, base)?,
                description: entry.description,
                files: parse_files(&label, entry.files)?,
            };
            models.insert(name, model);
        }
        let adapters = file
            .adapters
            .into_iter()
            .map(|(name, entry)| {
                let adapter = AdapterEntry::parse(&name, entry, base, &models);
                (name, adapter)
            })
            .collect();
        Ok(Self { models, adapters })
    }

    pub fn get(&self, name: &str) -> Option<&ModelEntry> {
        self.models.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.models.keys().map(String::as_str)
    }

    /// A verified local folder for `name`: local models are hashed in place; S3 models are
    /// fetched into `cache_dir/<identity>/` (files already there with the right hash are kept).
    pub fn resolve(
        &self,
        name: &str,
        cache_dir: &Path,
        fetcher: Option<&dyn BlobFetcher>,
    ) -> Result<ResolvedModel> {
        let entry = self.get(name).ok_or_else(|| {
            let known = self.names().collect::<Vec<_>>().join(", ");
            registry_error(name, format!("not in the registry (known: {known})"))
        })?;
        let label = model_label(name);
        let dir = verified_dir(&label, &entry.location, &entry.files, cache_dir, fetcher)?;
        let identity = identity_of(&pipeline_hashes(name, &dir, &entry.files)?);
        Ok(ResolvedModel {
            name: name.to_string(),
            dir,
            identity,
        })
    }
}

/// The local folder holding an entry's files, each checked against its SHA-256: a local folder is
/// hashed in place; an S3 prefix is fetched into `cache_dir/<identity>/` (files already there with
/// the right hash are kept).
fn verified_dir(
    entry: &str,
    location: &ModelLocation,
    files: &BTreeMap<String, String>,
    cache_dir: &Path,
    fetcher: Option<&dyn BlobFetcher>,
) -> Result<PathBuf> {
    match location {
        ModelLocation::Local(dir) => {
            for (path, expected) in files {
                verify_file(entry, &dir.join(path), path, expected)?;
            }
            Ok(dir.clone())
        }
        ModelLocation::S3 { bucket, prefix } => {
            let fetcher = fetcher.ok_or_else(|| {
                entry_error(entry, "lives in S3 but no object store is configured")
            })?;
            let dir = cache_dir.join(identity_of(files));
            for (path, expected) in files {
                fetch_verified(entry, fetcher, bucket, prefix, &dir, path, expected)?;
            }
            Ok(dir)
        }
    }
}

/// The files `StableDiffusion::from_dir` reads from a diffusers folder, relative to it and
/// sorted: what a model's identity covers. SDXL folders add `text_encoder_2/` and `tokenizer_2/`;
/// an SDXL refiner has only those.
pub fn pipeline_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = [
        "model_index.json",
        "scheduler/scheduler_config.json",
        "unet/config.json",
        "vae/config.json",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    for component in ["unet", "vae"] {
        // The loaders take the full-precision weights if present, else the fp16 variant.
        let full = format!("{component}/diffusion_pytorch_model.safetensors");
        let half = format!("{component}/diffusion_pytorch_model.fp16.safetensors");
        let chosen = if !dir.join(&full).is_file() && dir.join(&half).is_file() {
            half
        } else {
            full
        };
        files.push(chosen.into());
    }
    // SD 1.x/2.x and SDXL base read `text_encoder/`; the SDXL refiner has only the second pair.
    let has_second = dir.join("text_encoder_2").is_dir();
    let mut pairs = Vec::new();
    if !has_second || dir.join("text_encoder").is_dir() {
        pairs.push(("text_encoder", "tokenizer"));
    }
    if has_second {
        pairs.push(("text_encoder_2", "tokenizer_2"));
    }
    for (encoder, tokenizer) in pairs {
        files.push(format!("{encoder}/config.json").into());
        files.push(format!("{encoder}/model.safetensors").into());
        let folder = dir.join(tokenizer);
        if folder.join("tokenizer.json").exists() {
            files.push(format!("{tokenizer}/tokenizer.json").into());
        } else {
            files.push(format!("{tokenizer}/vocab.json").into());
            files.push(format!("{tokenizer}/merges.txt").into());
        }
        if folder.join("tokenizer_config.json").exists() {
            files.push(format!("{tokenizer}/tokenizer_config.json").into());
        }
    }
    files.sort();
    files
}

/// The hashes of the files the pipeline reads, every one of which the entry must list.
fn pipeline_hashes(
    name: &str,
    dir: &Path,
    listed: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>> {
    pipeline_files(dir)
        .iter()
        .map(|path| {
            let key = path.to_string_lossy().replace('\\', "/");
            let hash = listed
                .get(&key)
                .ok_or_else(|| registry_error(name, format!("the entry does not list `{key}`")))?;
            Ok((key, hash.clone()))
        })
        .collect()
}

fn verify_file(entry: &str, file: &Path, path: &str, expected: &str) -> Result<()> {
    if !file.is_file() {
        return Err(entry_error(
            entry,
            format!("`{path}` is missing ({})", file.display()),
        ));
    }
    let actual = sha256_file(file)?;
    if actual != expected {
        return Err(entry_error(
            entry,
            format!("`{path}` has SHA-256 {actual}, the registry expects {expected}"),
        ));
    }
    Ok(())
}

fn fetch_verified(
    entry: &str,
    fetcher: &dyn BlobFetcher,
    bucket: &str,
    prefix: &str,
    dir: &Path,
    path: &str,
    expected: &str,
) -> Result<()> {
    let target = dir.join(path);
    if target.is_file() && sha256_file(&target)? == expected {
        return Ok(());
    }
    let parent = target.parent().unwrap_or(dir);
    std::fs::create_dir_all(parent).map_err(|source| DiffusionError::Io {
        path: parent.to_path_buf(),
        source,
    })?;
    let partial = target.with_extension("partial");
    let key = if prefix.is_empty() {
        path.to_string()
    } else {
        format!("{prefix}/{path}")
    };
    fetcher
        .fetch(bucket, &key, &partial)
        .map_err(|e| entry_error(entry, format!("fetching s3://{bucket}/{key}: {e}")))?;
    // Verify before the file takes its real name, so a bad download is never loaded.
    let result = verify_file(entry, &partial, path, expected);
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
        return result;
    }
    std::fs::rename(&partial, &target).map_err(|source| DiffusionError::Io {
        path: target.clone(),
        source,
    })
}

/// Lowercase hex SHA-256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    let io_error = |source| DiffusionError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io_error)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer).map_err(io_error)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// SHA-256 of the listing `"{hash}  {path}\n"` sorted by path (what `sha256sum` prints).
pub fn identity_of(files: &BTreeMap<String, String>) -> String {
    let mut hasher = Sha256::new();
    for (path, hash) in files {
        hasher.update(format!("{hash}  {path}\n").as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// The hashes of the files the pipeline reads from an unregistered folder.
pub fn hash_model_dir(dir: &Path) -> Result<BTreeMap<String, String>> {
    pipeline_files(dir)
        .iter()
        .map(|path| {
            let key = path.to_string_lossy().replace('\\', "/");
            Ok((key, sha256_file(&dir.join(path))?))
        })
        .collect()
}

/// An unregistered folder: named after itself, identity from its files' hashes.
pub fn resolve_local_dir(dir: &Path) -> Result<ResolvedModel> {
    let name = dir.file_name().map_or_else(
        || dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    Ok(ResolvedModel {
        name,
        dir: dir.to_path_buf(),
        identity: identity_of(&hash_model_dir(dir)?),
    })
}

/// A registry entry for `dir` in the TOML format, for `location`.
pub fn entry_toml(name: &str, location: &str, dir: &Path) -> Result<String> {
    let mut text = format!("[models.{name}]\nlocation = {location:?}\n[models.{name}.files]\n");
    for (path, hash) in hash_model_dir(dir)? {
        text.push_str(&format!("{path:?} = {hash:?}\n"));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_folders_and_s3_locations() {
        let text = r#"
            [models.a]
            location = "models/a"
            files = { "model_index.json" = "AB00000000000000000000000000000000000000000000000000000000000000" }
            [models.b]
            location = "s3://bucket/some/prefix/"
            files = {}
        "#;
        let registry = ModelRegistry::parse(text, Path::new("/reg")).unwrap();
        let a = registry.get("a").unwrap();
        assert_eq!(
            a.location,
            ModelLocation::Local(PathBuf::from("/reg/models/a"))
        );
        assert!(a.files["model_index.json"].starts_with("ab"));
        assert_eq!(
            registry.get("b").unwrap().location,
            ModelLocation::S3 {
                bucket: "bucket".into(),
                prefix: "some/prefix".into()
            }
        );
    }

    #[test]
    fn rejects_bad_hashes_escaping_paths_and_unknown_keys() {
        let bad_hash = "[models.a]\nlocation = \"x\"\nfiles = { \"a\" = \"123\" }\n";
        assert!(ModelRegistry::parse(bad_hash, Path::new(".")).is_err());
        let zeros = "0".repeat(64);
        let escape =
            format!("[models.a]\nlocation = \"x\"\nfiles = {{ \"../a\" = \"{zeros}\" }}\n");
        let err = ModelRegistry::parse(&escape, Path::new(".")).unwrap_err();
        assert!(err.to_string().contains("relative path"));
        let unknown = "[models.a]\nlocation = \"x\"\nfiles = {}\nsha = 1\n";
        assert!(ModelRegistry::parse(unknown, Path::new(".")).is_err());
    }

    #[test]
    fn identity_is_the_hash_of_the_sha256sum_listing() {
        let files = BTreeMap::from([
            ("b".to_string(), "2".repeat(64)),
            ("a".to_string(), "1".repeat(64)),
        ]);
        let listing = format!("{}  a\n{}  b\n", "1".repeat(64), "2".repeat(64));
        assert_eq!(
            identity_of(&files),
            hex::encode(Sha256::digest(listing.as_bytes()))
        );
    }
}

#[cfg(test)]
mod fetch_tests {
    use super::*;
    use std::cell::RefCell;

    /// Serves "objects" from a local folder and records what it was asked for.
    struct FolderFetcher {
        root: PathBuf,
        asked: RefCell<Vec<String>>,
    }

    impl BlobFetcher for FolderFetcher {
        fn fetch(
            &self,
            bucket: &str,
            key: &str,
            destination: &Path,
        ) -> std::result::Result<(), String> {
            self.asked.borrow_mut().push(format!("{bucket}/{key}"));
            std::fs::copy(self.root.join(key), destination)
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("reverie-registry-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A fake model folder holding exactly the files the pipeline reads.
    fn fake_model(root: &Path) -> BTreeMap<String, String> {
        for path in pipeline_files(root) {
            let file = root.join("models/m").join(&path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, format!("contents of {}", path.display())).unwrap();
        }
        hash_model_dir(&root.join("models/m")).unwrap()
    }

    fn registry_for(files: &BTreeMap<String, String>) -> ModelRegistry {
        let mut text =
            "[models.m]\nlocation = \"s3://bucket/models/m\"\n[models.m.files]\n".to_string();
        for (path, hash) in files {
            text.push_str(&format!("{path:?} = {hash:?}\n"));
        }
        ModelRegistry::parse(&text, Path::new(".")).unwrap()
    }

    #[test]
    fn s3_models_are_fetched_verified_cached_and_keep_their_identity() {
        let root = scratch("s3");
        let files = fake_model(&root);
        let registry = registry_for(&files);
        let fetcher = FolderFetcher {
            root: root.clone(),
            asked: RefCell::new(Vec::new()),
        };
        let cache = root.join("cache");
        let resolved = registry.resolve("m", &cache, Some(&fetcher)).unwrap();
        assert_eq!(fetcher.asked.borrow().len(), files.len());
        assert!(fetcher
            .asked
            .borrow()
            .contains(&"bucket/models/m/model_index.json".to_string()));
        assert_eq!(resolved.identity, identity_of(&files));
        assert_eq!(
            resolved.identity,
            resolve_local_dir(&root.join("models/m")).unwrap().identity
        );

        // A second resolve reuses the verified cache; a damaged cached file is fetched again.
        fetcher.asked.borrow_mut().clear();
        registry.resolve("m", &cache, Some(&fetcher)).unwrap();
        assert!(fetcher.asked.borrow().is_empty());
        std::fs::write(resolved.dir.join("vae/config.json"), "damaged").unwrap();
        registry.resolve("m", &cache, Some(&fetcher)).unwrap();
        assert_eq!(
            *fetcher.asked.borrow(),
            vec!["bucket/models/m/vae/config.json".to_string()]
        );

        // A remote file that does not match is refused and never lands under its real name.
        std::fs::write(root.join("models/m/unet/config.json"), "tampered").unwrap();
        std::fs::remove_file(resolved.dir.join("unet/config.json")).unwrap();
        let error = registry
            .resolve("m", &cache, Some(&fetcher))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("unet/config.json") && error.contains("SHA-256"),
            "{error}"
        );
        assert!(!resolved.dir.join("unet/config.json").exists());
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn entries_must_list_every_file_the_pipeline_reads() {
        let root = scratch("partial");
        let mut files = fake_model(&root);
        files.remove("tokenizer/vocab.json");
        let registry = registry_for(&files);
        let fetcher = FolderFetcher {
            root: root.clone(),
            asked: RefCell::new(Vec::new()),
        };
        let error = registry
            .resolve("m", &root.join("cache"), Some(&fetcher))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("does not list `tokenizer/vocab.json`"),
            "{error}"
        );
        assert!(registry.resolve("m", &root.join("cache"), None).is_err());
        let _ = std::fs::remove_dir_all(&root);
    }
}
