//! Adapters in the registry: LoRAs and IP-Adapters, each a named set of files with their SHA-256
//! and the registered base models it is made for.
//!
//! ```toml
//! [adapters.ip-plus]
//! kind = "ip-adapter"                        # or "lora"
//! location = "adapters/ip-plus"             # a folder relative to the registry, or s3://bucket/prefix
//! file = "ip-adapter-plus_sd15.safetensors" # the weights, one of `files`
//! base = ["sd15", "sd15-turbo"]              # the registered models it fits
//! [adapters.ip-plus.files]
//! "ip-adapter-plus_sd15.safetensors" = "<sha256 hex>"
//! "image_encoder/config.json" = "<sha256 hex>"
//! "image_encoder/model.safetensors" = "<sha256 hex>"
//! ```
//!
//! An adapter's identity is the hash of its file listing, as a model's is: what an output's
//! provenance records for its image prompt and what cached image prompt embeddings are keyed by. An
//! adapter given as a file is identified by the file and, for an IP-Adapter, the image encoder files
//! beside it — the same identity as an entry that lists exactly those files with the weights at its
//! location's root — and gets no base check by name (the engine's shape checks, which name the tensor
//! that does not fit, still apply). A bad entry is reported when it is asked for, so it never stops
//! the registry's models from resolving.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{
    entry_error, identity_of, model_label, parse_files, parse_location, sha256_file, verified_dir,
    BlobFetcher, ModelEntry, ModelLocation, ModelRegistry,
};
use crate::error::{DiffusionError, Result};

/// The image encoder files an IP-Adapter reads beside its weights (`image_encoder/`).
pub const IMAGE_ENCODER_FILES: [&str; 2] = [
    "image_encoder/config.json",
    "image_encoder/model.safetensors",
];

/// What an adapter does to its base model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdapterKind {
    /// Low-rank weight deltas, fused into the model.
    Lora,
    /// Image prompts: a CLIP vision tower and decoupled cross-attention.
    IpAdapter,
}

impl AdapterKind {
    /// As the registry writes it.
    pub fn label(self) -> &'static str {
        match self {
            AdapterKind::Lora => "lora",
            AdapterKind::IpAdapter => "ip-adapter",
        }
    }

    /// As a sentence says it.
    pub fn described(self) -> &'static str {
        match self {
            AdapterKind::Lora => "a LoRA",
            AdapterKind::IpAdapter => "an IP-Adapter",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AdapterFile {
    kind: AdapterKind,
    location: String,
    file: String,
    base: Vec<String>,
    #[serde(default)]
    description: Option<String>,
    files: BTreeMap<String, String>,
}

/// One registered adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterEntry {
    pub kind: AdapterKind,
    pub location: ModelLocation,
    /// The weights file, relative to the location (one of `files`).
    pub file: String,
    /// The registered models it is made for.
    pub base: Vec<String>,
    pub description: Option<String>,
    /// Relative path (with `/`) -> lowercase SHA-256 hex.
    pub files: BTreeMap<String, String>,
}

fn adapter_label(name: &str) -> String {
    format!("adapter `{name}`")
}

impl AdapterEntry {
    /// Reads one `[adapters.NAME]` table; `Err` holds what is wrong with it.
    pub(super) fn parse(
        name: &str,
        raw: toml::Value,
        base_dir: &Path,
        models: &BTreeMap<String, ModelEntry>,
    ) -> std::result::Result<Self, String> {
        let raw = AdapterFile::deserialize(raw).map_err(|e| format!("invalid entry: {e}"))?;
        Self::check(name, raw, base_dir, models).map_err(|error| match error {
            DiffusionError::Registry { reason, .. } => reason,
            other => other.to_string(),
        })
    }

    fn check(
        name: &str,
        raw: AdapterFile,
        base_dir: &Path,
        models: &BTreeMap<String, ModelEntry>,
    ) -> Result<Self> {
        let label = adapter_label(name);
        let files = parse_files(&label, raw.files)?;
        if !files.contains_key(&raw.file) {
            return Err(entry_error(
                &label,
                format!("its file `{}` is not among its files", raw.file),
            ));
        }
        if raw.kind == AdapterKind::IpAdapter {
            let missing: Vec<&str> = IMAGE_ENCODER_FILES
                .into_iter()
                .filter(|f| !files.contains_key(*f))
                .collect();
            if !missing.is_empty() {
                return Err(entry_error(
                    &label,
                    format!(
                        "an IP-Adapter needs the image encoder it was trained with: list {}",
                        missing.join(" and ")
                    ),
                ));
            }
        }
        if raw.base.is_empty() {
            return Err(entry_error(
                &label,
                "`base` is empty: name the registered models it is made for",
            ));
        }
        if let Some(unknown) = raw.base.iter().find(|b| !models.contains_key(*b)) {
            let known = models.keys().cloned().collect::<Vec<_>>().join(", ");
            return Err(entry_error(
                &label,
                format!("base `{unknown}` is not a registered model (known: {known})"),
            ));
        }
        Ok(AdapterEntry {
            kind: raw.kind,
            location: parse_location(&label, &raw.location, base_dir)?,
            file: raw.file,
            base: raw.base,
            description: raw.description,
            files,
        })
    }
}

/// An adapter ready to load: its verified weights file and identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedAdapter {
    pub name: String,
    pub kind: AdapterKind,
    /// The weights file (an IP-Adapter's `image_encoder/` is beside it).
    pub path: PathBuf,
    /// SHA-256 of the `sha256sum`-style listing of its files.
    pub identity: String,
    /// The registered models it fits; empty for an adapter given as a file (not checked by name).
    pub base: Vec<String>,
}

impl ResolvedAdapter {
    /// Refuses a registered adapter for a model it was not made for.
    pub fn check_base(&self, model: &str) -> Result<()> {
        if self.base.is_empty() || self.base.iter().any(|b| b == model) {
            return Ok(());
        }
        Err(entry_error(
            &adapter_label(&self.name),
            format!(
                "made for {}, not for {}",
                self.base.join(", "),
                model_label(model)
            ),
        ))
    }
}

impl ModelRegistry {
    /// A well-formed adapter entry.
    pub fn adapter(&self, name: &str) -> Option<&AdapterEntry> {
        self.adapters.get(name)?.as_ref().ok()
    }

    pub fn adapter_names(&self) -> impl Iterator<Item = &str> {
        self.adapters.keys().map(String::as_str)
    }

    /// The verified weights of adapter `name`, of `kind`: local files are hashed in place; S3 ones
    /// are fetched into `cache_dir/<identity>/`.
    pub fn resolve_adapter(
        &self,
        name: &str,
        kind: AdapterKind,
        cache_dir: &Path,
        fetcher: Option<&dyn BlobFetcher>,
    ) -> Result<ResolvedAdapter> {
        let label = adapter_label(name);
        let entry = match self.adapters.get(name) {
            Some(Ok(entry)) => entry,
            Some(Err(problem)) => return Err(entry_error(&label, problem.clone())),
            None => {
                let known = self.adapter_names().collect::<Vec<_>>().join(", ");
                return Err(entry_error(
                    &label,
                    format!("not in the registry (known adapters: {known})"),
                ));
            }
        };
        if entry.kind != kind {
            return Err(entry_error(
                &label,
                format!("is {}, not {}", entry.kind.described(), kind.described()),
            ));
        }
        let dir = verified_dir(&label, &entry.location, &entry.files, cache_dir, fetcher)?;
        Ok(ResolvedAdapter {
            name: name.to_string(),
            kind,
            path: dir.join(&entry.file),
            identity: identity_of(&entry.files),
            base: entry.base.clone(),
        })
    }
}

/// The weights file an adapter path names: the file itself, or the one `.safetensors` file in a
/// folder (an IP-Adapter's folder, with `image_encoder/` inside).
pub fn adapter_weights_at(path: &Path) -> Result<PathBuf> {
    if !path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let io_error = |source| DiffusionError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(io_error)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    let names = || {
        files
            .iter()
            .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match files.len() {
        1 => Ok(files[0].clone()),
        0 => Err(DiffusionError::InvalidInput(format!(
            "{}: no .safetensors file in the folder",
            path.display()
        ))),
        _ => Err(DiffusionError::InvalidInput(format!(
            "{}: several adapters ({}); name the file",
            path.display(),
            names()
        ))),
    }
}

/// An adapter given as a file: named after it, its identity from its hash (and, for an IP-Adapter,
/// those of the image encoder files beside it that exist; a missing encoder is refused by name when
/// the adapter loads).
pub fn resolve_local_adapter(file: &Path, kind: AdapterKind) -> Result<ResolvedAdapter> {
    let file_name = file.file_name().map_or_else(
        || file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut files = BTreeMap::from([(file_name.clone(), sha256_file(file)?)]);
    if kind == AdapterKind::IpAdapter {
        let folder = file.parent().unwrap_or(Path::new("."));
        for relative in IMAGE_ENCODER_FILES {
            let path = folder.join(relative);
            if path.is_file() {
                files.insert(relative.to_string(), sha256_file(&path)?);
            }
        }
    }
    let name = file
        .file_stem()
        .map_or(file_name, |s| s.to_string_lossy().into_owned());
    Ok(ResolvedAdapter {
        name,
        kind,
        path: file.to_path_buf(),
        identity: identity_of(&files),
        base: Vec::new(),
    })
}

/// A registry entry in the TOML format for the adapter file `weights` (an IP-Adapter's image
/// encoder files beside it included) living at `location`, made for the models `base`.
pub fn adapter_entry_toml(
    name: &str,
    kind: AdapterKind,
    location: &str,
    weights: &Path,
    base: &[&str],
) -> Result<String> {
    let file = weights
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let mut files = vec![(file.clone(), sha256_file(weights)?)];
    if kind == AdapterKind::IpAdapter {
        let folder = weights.parent().unwrap_or(Path::new("."));
        for relative in IMAGE_ENCODER_FILES {
            files.push((relative.to_string(), sha256_file(&folder.join(relative))?));
        }
    }
    let quoted = |value: &str| toml::Value::String(value.to_string()).to_string();
    let base: Vec<String> = base.iter().map(|b| quoted(b)).collect();
    let name = quoted(name);
    let mut text = format!(
        "[adapters.{name}]\nkind = {}\nlocation = {}\nfile = {}\nbase = [{}]\n\
         [adapters.{name}.files]\n",
        quoted(kind.label()),
        quoted(location),
        quoted(&file),
        base.join(", ")
    );
    for (path, hash) in files {
        text.push_str(&format!("{} = {}\n", quoted(&path), quoted(&hash)));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("reverie-adapters-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A registry with model `sd15` and an IP-Adapter whose files are written under `root`.
    fn registry_text(root: &Path, extra: &str) -> String {
        let folder = root.join("adapters/ip");
        std::fs::create_dir_all(folder.join("image_encoder")).unwrap();
        let mut listing = String::new();
        for (path, contents) in [
            ("ip.safetensors", "weights"),
            ("image_encoder/config.json", "{}"),
            ("image_encoder/model.safetensors", "tower"),
        ] {
            std::fs::write(folder.join(path), contents).unwrap();
            let hash = sha256_file(&folder.join(path)).unwrap();
            listing.push_str(&format!("{path:?} = {hash:?}\n"));
        }
        let zeros = "0".repeat(64);
        format!(
            "[models.sd15]\nlocation = \"m\"\nfiles = {{ \"model_index.json\" = \"{zeros}\" }}\n\
             [models.sdxl]\nlocation = \"x\"\nfiles = {{}}\n\
             [adapters.ip]\nkind = \"ip-adapter\"\nlocation = \"adapters/ip\"\n\
             file = \"ip.safetensors\"\nbase = [\"sd15\"]\n{extra}[adapters.ip.files]\n{listing}"
        )
    }

    #[test]
    fn a_registered_adapter_resolves_to_its_verified_file_with_the_identity_of_its_folder() {
        let root = scratch("resolve");
        let registry = ModelRegistry::parse(&registry_text(&root, ""), &root).unwrap();
        let resolved = registry
            .resolve_adapter("ip", AdapterKind::IpAdapter, &root.join("cache"), None)
            .unwrap();
        assert_eq!(resolved.path, root.join("adapters/ip/ip.safetensors"));
        let local = resolve_local_adapter(&resolved.path, AdapterKind::IpAdapter).unwrap();
        assert_eq!(
            resolved.identity, local.identity,
            "same files, same identity"
        );
        resolved.check_base("sd15").unwrap();
        let wrong = resolved.check_base("sdxl").unwrap_err().to_string();
        assert!(
            wrong.contains("adapter `ip`")
                && wrong.contains("made for sd15")
                && wrong.contains("sdxl"),
            "{wrong}"
        );
        let kind = registry
            .resolve_adapter("ip", AdapterKind::Lora, &root.join("cache"), None)
            .unwrap_err()
            .to_string();
        assert!(kind.contains("is an IP-Adapter, not a LoRA"), "{kind}");

        // A changed file is refused by name before anything loads it.
        std::fs::write(
            root.join("adapters/ip/image_encoder/model.safetensors"),
            "other",
        )
        .unwrap();
        let tampered = registry
            .resolve_adapter("ip", AdapterKind::IpAdapter, &root.join("cache"), None)
            .unwrap_err()
            .to_string();
        assert!(
            tampered.contains("image_encoder/model.safetensors"),
            "{tampered}"
        );
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_bad_adapter_entry_is_named_when_asked_for_and_leaves_the_models_alone() {
        let root = scratch("parse");
        let text = registry_text(&root, "");
        let problem = |text: String| {
            let registry = ModelRegistry::parse(&text, &root).expect("the models still read");
            assert!(registry.get("sd15").is_some() && registry.adapter("ip").is_none());
            registry
                .resolve_adapter("ip", AdapterKind::IpAdapter, &root.join("cache"), None)
                .unwrap_err()
                .to_string()
        };
        let error = problem(text.replace("\"image_encoder/config.json\"", "\"other.json\""));
        assert!(
            error.contains("adapter `ip`")
                && error.contains("image encoder")
                && error.contains("image_encoder/config.json"),
            "{error}"
        );
        let error = problem(text.replace("base = [\"sd15\"]", "base = [\"sd9\"]"));
        assert!(
            error.contains("base `sd9` is not a registered model"),
            "{error}"
        );
        let error = problem(text.replace("base = [\"sd15\"]", "base = []"));
        assert!(error.contains("`base` is empty"), "{error}");
        let error = problem(text.replace(
            "file = \"ip.safetensors\"",
            "file = \"missing.safetensors\"",
        ));
        assert!(
            error.contains("`missing.safetensors` is not among its files"),
            "{error}"
        );
        let error = problem(text.replace("kind = \"ip-adapter\"", "kind = \"loha\""));
        assert!(
            error.contains("invalid entry") && error.contains("loha"),
            "{error}"
        );
        let error = problem(registry_text(&root, "weight = 1\n"));
        assert!(error.contains("weight"), "{error}");
        let _ = std::fs::remove_dir_all(&root);
    }
}
