//! Fetching the segmentation model: `npm pack` of the pinned
//! `@mediapipe/selfie_segmentation` package (or a given `.tgz`), the `.tflite`
//! checked against its pinned SHA-256, converted to safetensors, the result checked
//! against its own pinned SHA-256 and written by write-then-rename.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::convert::{convert, to_safetensors};
use super::tflite::TfliteModel;
use super::SegmentationVariant;
use crate::error::{FaceError, Result};
use crate::models::sha256_hex;

/// npm package that ships the model files (Apache-2.0).
pub const NPM_PACKAGE: &str = "@mediapipe/selfie_segmentation";
/// Its pinned version (the latest published).
pub const NPM_VERSION: &str = "0.1.1675465747";
/// File name `npm pack` gives the tarball.
pub const NPM_TARBALL: &str = "mediapipe-selfie_segmentation-0.1.1675465747.tgz";

/// Largest `.tflite` accepted from the archive (the real ones are ~250 KB).
const MAX_TFLITE_BYTES: u64 = 16 << 20;

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> FaceError + '_ {
    move |source| FaceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn check_hash(path: &Path, bytes: &[u8], expected: &str) -> Result<()> {
    let actual = sha256_hex(bytes);
    if actual != expected {
        return Err(FaceError::ModelHashMismatch {
            path: path.to_path_buf(),
            expected: expected.to_string(),
            actual,
        });
    }
    Ok(())
}

/// Reads a converted model file and checks its pinned hash.
pub fn read_verified(dir: &Path, variant: SegmentationVariant) -> Result<Vec<u8>> {
    let path = dir.join(variant.safetensors_name());
    if !path.is_file() {
        return Err(FaceError::ModelMissing { path });
    }
    let bytes = fs::read(&path).map_err(io_error(&path))?;
    check_hash(&path, &bytes, variant.safetensors_sha256())?;
    Ok(bytes)
}

/// Converts the bytes of a `.tflite` (checked against the pinned hash first) into
/// the safetensors bytes this crate loads, checked against their pinned hash.
pub fn convert_tflite(
    tflite: &[u8],
    variant: SegmentationVariant,
    origin: &Path,
) -> Result<Vec<u8>> {
    check_hash(origin, tflite, variant.tflite_sha256())?;
    let model = TfliteModel::parse(tflite)?;
    let weights = convert(&model, variant)?;
    let bytes = to_safetensors(&weights)?;
    check_hash(
        &origin.with_file_name(variant.safetensors_name()),
        &bytes,
        variant.safetensors_sha256(),
    )?;
    Ok(bytes)
}

/// The `.tflite` files of `variants` from the npm tarball, in the same order.
pub fn extract_tflite(archive: &Path, variants: &[SegmentationVariant]) -> Result<Vec<Vec<u8>>> {
    let file = fs::File::open(archive).map_err(io_error(archive))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut found: Vec<Option<Vec<u8>>> = vec![None; variants.len()];
    for entry in tar.entries().map_err(io_error(archive))? {
        let entry = entry.map_err(io_error(archive))?;
        let path = entry.path().map_err(io_error(archive))?.into_owned();
        // npm tarballs put everything under `package/`.
        let Some(name) = path
            .strip_prefix("package")
            .ok()
            .and_then(|p| p.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        let Some(slot) = variants.iter().position(|v| v.tflite_name() == name) else {
            continue;
        };
        let mut bytes = Vec::new();
        entry
            .take(MAX_TFLITE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io_error(archive))?;
        if bytes.len() as u64 > MAX_TFLITE_BYTES {
            return Err(FaceError::Fetch(format!(
                "{name} in {} is implausibly large",
                archive.display()
            )));
        }
        found[slot] = Some(bytes);
    }
    variants
        .iter()
        .zip(found)
        .map(|(v, bytes)| {
            bytes.ok_or_else(|| {
                FaceError::Fetch(format!(
                    "{} does not contain package/{}",
                    archive.display(),
                    v.tflite_name()
                ))
            })
        })
        .collect()
}

/// Runs `npm pack <package>@<version>` in `download_dir`; returns the tarball.
pub fn download_with_npm(download_dir: &Path) -> Result<PathBuf> {
    fs::create_dir_all(download_dir).map_err(io_error(download_dir))?;
    let spec = format!("{NPM_PACKAGE}@{NPM_VERSION}");
    let output = Command::new("npm")
        .args(["pack", "--silent", &spec])
        .current_dir(download_dir)
        .output()
        .map_err(|e| FaceError::Fetch(format!("could not run npm (is it installed?): {e}")))?;
    if !output.status.success() {
        return Err(FaceError::Fetch(format!(
            "npm pack {spec} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    let tarball = download_dir.join(NPM_TARBALL);
    if !tarball.is_file() {
        return Err(FaceError::Fetch(format!(
            "npm pack {spec} did not write {}",
            tarball.display()
        )));
    }
    Ok(tarball)
}

/// Makes sure `dest` holds the converted `variants`: valid files are kept;
/// otherwise the tarball is taken from `archive` when given, or downloaded with
/// `npm pack` into a scratch directory. Returns the safetensors paths.
pub fn fetch_segmentation_variants(
    dest: &Path,
    archive: Option<&Path>,
    variants: &[SegmentationVariant],
) -> Result<Vec<PathBuf>> {
    let paths: Vec<PathBuf> = variants
        .iter()
        .map(|v| dest.join(v.safetensors_name()))
        .collect();
    let missing: Vec<SegmentationVariant> = variants
        .iter()
        .copied()
        .filter(|v| read_verified(dest, *v).is_err())
        .collect();
    if missing.is_empty() {
        return Ok(paths);
    }
    fs::create_dir_all(dest).map_err(io_error(dest))?;
    let scratch = dest.join(".download-segmentation");
    let tarball = match archive {
        Some(path) => path.to_path_buf(),
        None => download_with_npm(&scratch)?,
    };
    let result = (|| {
        let tflites = extract_tflite(&tarball, &missing)?;
        for (variant, tflite) in missing.iter().zip(tflites) {
            let origin = tarball.with_file_name(variant.tflite_name());
            let bytes = convert_tflite(&tflite, *variant, &origin)?;
            let target = dest.join(variant.safetensors_name());
            // Write then rename so a crash never leaves a truncated model behind.
            let partial = dest.join(format!("{}.partial", variant.safetensors_name()));
            fs::write(&partial, &bytes).map_err(io_error(&partial))?;
            fs::rename(&partial, &target).map_err(io_error(&target))?;
        }
        Ok(())
    })();
    if archive.is_none() {
        // Only a cache of the tarball; failing to delete it is harmless.
        let _ = fs::remove_dir_all(&scratch);
    }
    result.map(|()| paths)
}

/// Makes sure `dest` holds `selfie_segmentation.safetensors` (the general 256x256
/// model), fetching and converting it when missing or invalid. Returns its path.
pub fn fetch_segmentation_model(dest: &Path, archive: Option<&Path>) -> Result<PathBuf> {
    let mut paths = fetch_segmentation_variants(dest, archive, &[SegmentationVariant::General])?;
    paths
        .pop()
        .ok_or_else(|| FaceError::Fetch("no segmentation model was fetched".to_string()))
}

/// Both variants (general and landscape), from one tarball.
pub fn fetch_segmentation_models(dest: &Path, archive: Option<&Path>) -> Result<Vec<PathBuf>> {
    fetch_segmentation_variants(dest, archive, &SegmentationVariant::ALL)
}
