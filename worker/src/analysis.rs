//! Analysing a shard: faces (dlib's pipeline), dominant palette and style fingerprint of every photo.
//!
//! The result is persisted next to the shard (`tenants/{t}/analysis/{shard}/analysis.json`) and each
//! photo's embeddings are cached (`reverie:{t}:emb:{face|style|palette}:{model}:{photo}`). A second
//! analysis of the same shard computes nothing: it finds the persisted analysis and refills whatever the
//! cache lost (a flushed Redis is refilled from the store, not recomputed).
//!
//! Nothing here knows the queues: the analysis jobs are consumed by `analysis_jobs`, which calls
//! [`analyse_shard`].

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use image::DynamicImage;
use reverie_faces::people::FaceQuality;
use reverie_faces::segmentation::PersonSegmenter;
use reverie_faces::{Face, FaceAnalyzer, FaceModels};
use reverie_library::read_samples;
use reverie_paint::{Fingerprint, Palette};
use reverie_pets::{pets_of, Appearance, Kind, PetDetector, Species};
use reverie_shared::ids::{PhotoId, ShardId, TenantId};
use reverie_shared::keys;
use reverie_shared::metrics;
use reverie_shared::ports::cache::{Cache, CacheError};
use reverie_shared::ports::store::{ObjectStore, StoreError};
use serde::{Deserialize, Serialize};

/// Bump when the analysis format or what it computes changes: older analyses are recomputed.
pub const ANALYSIS_VERSION: u32 = 1;
/// Colours in each photo's dominant palette.
pub const PALETTE_COLOURS: usize = 6;
/// Analysis works on copies at most this large: faces keep detail, cost stays bounded.
const ANALYSIS_MAX_SIDE: u32 = 1600;
/// The largest photo (in pixels) analysis and generation decode.
pub(crate) const MAX_PIXELS: u64 = 100_000_000;

#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Library(#[from] reverie_library::LibraryError),
    #[error("shard {shard} is damaged: {detail}")]
    Shard { shard: String, detail: String },
    #[error("face analysis failed: {0}")]
    Faces(String),
    #[error("pet analysis failed: {0}")]
    Pets(String),
}

impl AnalysisError {
    pub fn retryable(&self) -> bool {
        match self {
            AnalysisError::Store(e) => e.is_transient(),
            AnalysisError::Cache(_) => true,
            _ => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysedFace {
    #[serde(flatten)]
    pub face: Face,
    pub quality: FaceQuality,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhotoAnalysis {
    pub photo: PhotoId,
    pub width: u32,
    pub height: u32,
    pub faces: Vec<AnalysedFace>,
    pub palette: Option<Palette>,
    pub fingerprint: Option<Fingerprint>,
    /// Cats and dogs, best first (empty when the pet detector was not loaded).
    #[serde(default)]
    pub pets: Vec<AnalysedPet>,
    /// People as the pet detector sees them (whole bodies), a cross-check for the faces.
    #[serde(default)]
    pub bodies: Vec<DetectedBody>,
}

/// A cat or dog in a photo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysedPet {
    pub species: Species,
    pub score: f32,
    /// Photo pixels, `[left, top, right, bottom)`.
    #[serde(rename = "box")]
    pub bbox: [i64; 4],
    /// Coat colour (`reverie_pets::appearance`), for telling pets apart.
    pub appearance: Vec<f32>,
}

/// A person's whole body found by the pet detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectedBody {
    pub score: f32,
    #[serde(rename = "box")]
    pub bbox: [i64; 4],
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardAnalysis {
    pub version: u32,
    pub shard: ShardId,
    /// SHA-256 of the face descriptor model, when faces were analysed.
    pub face_model: Option<String>,
    /// Why faces were not analysed (models not fetched), so the gap is visible, not silent.
    pub faces_skipped: Option<String>,
    /// SHA-256 of the pet detector, when pets were analysed.
    #[serde(default)]
    pub pet_model: Option<String>,
    /// Why pets were not analysed (model not fetched).
    #[serde(default)]
    pub pets_skipped: Option<String>,
    pub photos: Vec<PhotoAnalysis>,
}

/// What a worker analyses with. Face models are optional: without them palettes and fingerprints are
/// still computed and the analysis says why faces are missing.
#[derive(Clone)]
pub struct Analyser {
    pub faces: Result<Arc<FaceAnalyzer>, String>,
    /// Person segmentation for cutting people out of their photos (renders, not analysis).
    pub segmenter: Option<Arc<PersonSegmenter>>,
    /// Cats, dogs and bodies; optional like the face models.
    pub pets: Result<Arc<PetDetector>, String>,
    pub cache_ttl: Duration,
}

impl Analyser {
    /// Loads the face models from `models_dir`; a missing or corrupt model is remembered as the reason.
    pub fn load(models_dir: &std::path::Path, cache_ttl: Duration) -> Analyser {
        let faces = FaceModels::load(models_dir)
            .map(|models| Arc::new(FaceAnalyzer::new(models)))
            .map_err(|e| e.to_string());
        if let Err(reason) = &faces {
            tracing::warn!(%reason, "face analysis disabled");
        }
        let segmenter = match PersonSegmenter::load(models_dir, &candle_core::Device::Cpu) {
            Ok(segmenter) => Some(Arc::new(segmenter)),
            Err(error) => {
                tracing::warn!(%error, "person segmentation disabled: people are cut out by an ellipse");
                None
            }
        };
        let pets = PetDetector::load(models_dir, &candle_core::Device::Cpu)
            .map(Arc::new)
            .map_err(|e| e.to_string());
        if let Err(reason) = &pets {
            tracing::warn!(%reason, "pet analysis disabled");
        }
        Analyser {
            faces,
            segmenter,
            pets,
            cache_ttl,
        }
    }

    fn pet_model(&self) -> Option<String> {
        self.pets
            .as_ref()
            .ok()
            .map(|_| reverie_pets::fetch::DETECTOR_SHA256.to_string())
    }

    fn face_model(&self) -> Option<String> {
        self.faces
            .as_ref()
            .ok()
            .map(|f| f.models().descriptor_model_sha256.to_string())
    }
}

/// Whether the analysis was computed now or found persisted (and how many cache entries it refilled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Computed,
    Persisted { refilled: usize },
}

pub fn analysis_key(tenant: &TenantId, shard: &ShardId) -> String {
    keys::shard_analysis(tenant, shard, "analysis.json")
}

/// Analyses one shard, or reuses its persisted analysis.
pub async fn analyse_shard(
    analyser: &Analyser,
    store: &dyn ObjectStore,
    cache: &dyn Cache,
    tenant: &TenantId,
    shard: &ShardId,
) -> Result<(ShardAnalysis, Outcome), AnalysisError> {
    let key = analysis_key(tenant, shard);
    let existing = persisted(store, &key).await?;
    let previous = existing.filter(|e| e.version == ANALYSIS_VERSION);
    let faces_current = previous
        .as_ref()
        .is_some_and(|e| e.face_model == analyser.face_model() || analyser.faces.is_err());
    let pets_current = previous
        .as_ref()
        .is_some_and(|e| e.pet_model == analyser.pet_model() || analyser.pets.is_err());
    if let (true, true, Some(existing)) = (faces_current, pets_current, &previous) {
        let refilled = fill_cache(cache, tenant, existing, analyser.cache_ttl, true).await?;
        return Ok((previous.expect("checked"), Outcome::Persisted { refilled }));
    }
    // A model added since (the pet detector, say) computes only what it adds.
    let reuse = Reuse {
        faces: faces_current.then(|| previous.clone()).flatten(),
        pets: pets_current.then_some(previous).flatten(),
    };
    let tar = store.get(&keys::shard(tenant, shard)).await?;
    let worker = analyser.clone();
    let shard_id = shard.clone();
    let analysis = tokio::task::spawn_blocking(move || compute(&worker, &shard_id, &tar, &reuse))
        .await
        .map_err(|e| AnalysisError::Faces(format!("analysis task failed: {e}")))??;
    let json = serde_json::to_vec(&analysis).map_err(|e| AnalysisError::Faces(e.to_string()))?;
    store.put(&key, Bytes::from(json)).await?;
    fill_cache(cache, tenant, &analysis, analyser.cache_ttl, false).await?;
    Ok((analysis, Outcome::Computed))
}

async fn persisted(
    store: &dyn ObjectStore,
    key: &str,
) -> Result<Option<ShardAnalysis>, AnalysisError> {
    match store.get(key).await {
        // An unreadable old analysis is recomputed rather than trusted.
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
        Err(error) if error.is_not_found() => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// Stored analyses whose face (or pet) part is still current, so computing skips it.
struct Reuse {
    faces: Option<ShardAnalysis>,
    pets: Option<ShardAnalysis>,
}

fn reused_photo<'a>(
    previous: &'a Option<ShardAnalysis>,
    photo: &PhotoId,
) -> Option<&'a PhotoAnalysis> {
    previous.as_ref()?.photos.iter().find(|p| &p.photo == photo)
}

fn compute(
    analyser: &Analyser,
    shard: &ShardId,
    tar: &[u8],
    reuse: &Reuse,
) -> Result<ShardAnalysis, AnalysisError> {
    let mut photos = Vec::new();
    let mut images = Vec::new();
    read_samples(tar, |sample| {
        match reverie_library::decode(&sample.image, MAX_PIXELS, sample.meta.orientation) {
            Ok(image) => {
                photos.push((sample.photo, image.width(), image.height()));
                images.push(image);
            }
            // A photo that decoded at import and not now is damaged in storage: analyse the rest.
            Err(damage) => {
                tracing::warn!(photo = %sample.photo, %damage, "photo skipped by analysis")
            }
        }
        Ok(())
    })
    .map_err(|e| AnalysisError::Shard {
        shard: shard.to_string(),
        detail: e.to_string(),
    })?;
    let (copies, scales): (Vec<DynamicImage>, Vec<f64>) = images.iter().map(working_copy).unzip();
    let pets = match (&analyser.pets, &reuse.pets) {
        (Ok(detector), None) => detect_pets(detector, &copies, &scales)?,
        _ => photos
            .iter()
            .map(|(photo, ..)| {
                reused_photo(&reuse.pets, photo)
                    .map(|p| (p.pets.clone(), p.bodies.clone()))
                    .unwrap_or_default()
            })
            .collect(),
    };
    let faces: Vec<Vec<AnalysedFace>> = match (&analyser.faces, &reuse.faces) {
        (_, Some(_)) => photos
            .iter()
            .map(|(photo, ..)| {
                reused_photo(&reuse.faces, photo)
                    .map(|p| p.faces.clone())
                    .unwrap_or_default()
            })
            .collect(),
        (Ok(faces), None) => {
            // All photos of the shard in one call: the detector batches photos of similar
            // size into shared network passes and descriptors run across all faces.
            let found = faces
                .analyze_dynamic_batch(&copies)
                .map_err(|e| AnalysisError::Faces(e.to_string()))?;
            found
                .into_iter()
                .zip(scales)
                .map(|(faces, scale)| faces.into_iter().map(|f| analysed(f, scale)).collect())
                .collect()
        }
        (Err(_), None) => vec![Vec::new(); images.len()],
    };
    let mut analysed_photos = Vec::with_capacity(photos.len());
    for ((((photo, width, height), image), faces), (pets, bodies)) in
        photos.into_iter().zip(&images).zip(faces).zip(pets)
    {
        if let Some(previous) = reused_photo(&reuse.faces, &photo) {
            analysed_photos.push(PhotoAnalysis {
                pets,
                bodies,
                ..previous.clone()
            });
            continue;
        }
        metrics::global().faces_analysed.inc_by(faces.len() as u64);
        analysed_photos.push(PhotoAnalysis {
            pets,
            bodies,
            palette: Palette::extract(image, PALETTE_COLOURS, 0).ok(),
            fingerprint: Fingerprint::compute(image).ok(),
            photo,
            width,
            height,
            faces,
        });
    }
    Ok(ShardAnalysis {
        version: ANALYSIS_VERSION,
        shard: shard.clone(),
        // A reused part keeps the model that made it.
        face_model: match &reuse.faces {
            Some(previous) => previous.face_model.clone(),
            None => analyser.face_model(),
        },
        faces_skipped: match &reuse.faces {
            Some(previous) => previous.faces_skipped.clone(),
            None => analyser.faces.as_ref().err().cloned(),
        },
        pet_model: match &reuse.pets {
            Some(previous) => previous.pet_model.clone(),
            None => analyser.pet_model(),
        },
        pets_skipped: match &reuse.pets {
            Some(previous) => previous.pets_skipped.clone(),
            None => analyser.pets.as_ref().err().cloned(),
        },
        photos: analysed_photos,
    })
}

/// Photos per pass of the pet detector (each is a 416x416 input).
const PET_BATCH: usize = 8;

type PhotoPets = (Vec<AnalysedPet>, Vec<DetectedBody>);

/// Cats, dogs and bodies in every working copy, batched; boxes scaled back to the photos.
fn detect_pets(
    detector: &PetDetector,
    copies: &[DynamicImage],
    scales: &[f64],
) -> Result<Vec<PhotoPets>, AnalysisError> {
    let mut out = Vec::with_capacity(copies.len());
    for (chunk, chunk_scales) in copies.chunks(PET_BATCH).zip(scales.chunks(PET_BATCH)) {
        // Converted a batch at a time: a whole shard's RGB copies at once would add a third to the
        // analysis's peak memory.
        let chunk: Vec<image::RgbImage> = chunk.iter().map(DynamicImage::to_rgb8).collect();
        let refs: Vec<&image::RgbImage> = chunk.iter().collect();
        let found = detector
            .detect_batch(&refs)
            .map_err(|e| AnalysisError::Pets(e.to_string()))?;
        for ((detections, photo), scale) in found.iter().zip(&chunk).zip(chunk_scales) {
            let to_photo = |b: &reverie_pets::BoxF| {
                [b.left, b.top, b.right, b.bottom].map(|v| (f64::from(v) * scale).round() as i64)
            };
            let pets: Vec<AnalysedPet> = pets_of(detections)
                .iter()
                .filter_map(|d| {
                    Some(AnalysedPet {
                        species: Species::of(d.kind)?,
                        score: d.score,
                        bbox: to_photo(&d.bbox),
                        appearance: Appearance::of(photo, &d.bbox).0,
                    })
                })
                .collect();
            let bodies = detections
                .iter()
                .filter(|d| d.kind == Kind::Person)
                .map(|d| DetectedBody {
                    score: d.score,
                    bbox: to_photo(&d.bbox),
                })
                .collect();
            metrics::global().pets_detected.inc_by(pets.len() as u64);
            out.push((pets, bodies));
        }
    }
    Ok(out)
}

/// Faces are found on a copy at most `ANALYSIS_MAX_SIDE` wide; boxes are scaled back to the photo.
fn working_copy(image: &DynamicImage) -> (DynamicImage, f64) {
    let side = image.width().max(image.height());
    if side <= ANALYSIS_MAX_SIDE {
        return (image.clone(), 1.0);
    }
    let copy = image.resize(
        ANALYSIS_MAX_SIDE,
        ANALYSIS_MAX_SIDE,
        image::imageops::FilterType::Triangle,
    );
    let scale = f64::from(side) / f64::from(copy.width().max(copy.height()));
    (copy, scale)
}

fn analysed(face: Face, scale: f64) -> AnalysedFace {
    let quality = match &face.chip {
        Some(chip) => FaceQuality::measure(chip, &face.landmarks, &face.bbox),
        None => FaceQuality {
            sharpness: 0.0,
            frontalness: 0.0,
            size: 0.0,
        },
    };
    let mut face = face;
    if scale != 1.0 {
        let s = |v: i64| (v as f64 * scale).round() as i64;
        face.bbox.left = s(face.bbox.left);
        face.bbox.top = s(face.bbox.top);
        face.bbox.right = s(face.bbox.right);
        face.bbox.bottom = s(face.bbox.bottom);
        for point in &mut face.landmarks {
            *point = [s(point[0]), s(point[1])];
        }
    }
    face.chip = None;
    AnalysedFace {
        face,
        quality: FaceQuality {
            size: quality.size * scale as f32,
            ..quality
        },
    }
}

/// Writes each photo's embeddings to the cache; with `only_missing`, only the ones the cache lost.
async fn fill_cache(
    cache: &dyn Cache,
    tenant: &TenantId,
    analysis: &ShardAnalysis,
    ttl: Duration,
    only_missing: bool,
) -> Result<usize, AnalysisError> {
    let face_model = analysis
        .face_model
        .clone()
        .unwrap_or_else(|| "none".to_string());
    let style_version = format!("v{}", reverie_paint::fingerprint::VERSION);
    let mut entries: Vec<(String, Bytes)> = Vec::new();
    for photo in &analysis.photos {
        if analysis.face_model.is_some() {
            let descriptors: Vec<&Vec<f32>> =
                photo.faces.iter().map(|f| &f.face.descriptor).collect();
            let value = serde_json::to_vec(&descriptors).unwrap_or_default();
            entries.push((
                keys::embedding_cache_key(tenant, "face", &face_model, &photo.photo),
                Bytes::from(value),
            ));
        }
        if let Some(pet_model) = &analysis.pet_model {
            let value = serde_json::to_vec(&photo.pets).unwrap_or_default();
            entries.push((
                keys::embedding_cache_key(tenant, "pet", pet_model, &photo.photo),
                Bytes::from(value),
            ));
        }
        if let Some(fingerprint) = &photo.fingerprint {
            entries.push((
                keys::embedding_cache_key(tenant, "style", &style_version, &photo.photo),
                Bytes::from(fingerprint.to_bytes()),
            ));
        }
        if let Some(palette) = &photo.palette {
            let value = serde_json::to_vec(palette).unwrap_or_default();
            entries.push((
                keys::embedding_cache_key(tenant, "palette", &style_version, &photo.photo),
                Bytes::from(value),
            ));
        }
    }
    if only_missing {
        let keys: Vec<String> = entries.iter().map(|(k, _)| k.clone()).collect();
        let present = cache.get_many(&keys).await?;
        entries = entries
            .into_iter()
            .zip(present)
            .filter(|(_, present)| present.is_none())
            .map(|(entry, _)| entry)
            .collect();
    }
    let count = entries.len();
    cache.set_many(&entries, Some(ttl)).await?;
    Ok(count)
}
