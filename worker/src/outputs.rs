//! Durable results: the image with its provenance in PNG text chunks, and the same provenance as JSON
//! beside it. Keys derive from the job, so a retried job overwrites its own outputs instead of adding more.

use std::collections::BTreeMap;

use bytes::Bytes;
use image::RgbImage;
use reverie_shared::destinations::{DestinationError, OutputPlace};
use reverie_shared::jobs::{GenerateJob, Provenance};
use reverie_shared::keys;
use reverie_shared::ports::store::{ObjectStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("could not encode the PNG: {0}")]
    Encode(String),
    #[error(transparent)]
    Destination(#[from] DestinationError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl OutputError {
    /// A store that failed for a moment is worth another attempt; a refused destination is not.
    pub fn is_transient(&self) -> bool {
        match self {
            OutputError::Store(e) | OutputError::Destination(DestinationError::Store(e)) => {
                e.is_transient()
            }
            _ => false,
        }
    }
}

/// Encodes RGB pixels as PNG with `tEXt` chunks (iTXt for non-Latin-1 text such as prompts with emoji).
pub fn encode_png(
    image: &RgbImage,
    text: &BTreeMap<String, String>,
) -> Result<Vec<u8>, OutputError> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, image.width(), image.height());
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        // fdeflate's PNG-tuned mode: several times faster than the default level for a few percent
        // more bytes, which matters when encoding is a visible share of a cheap render's cost.
        encoder.set_compression(png::Compression::Fast);
        for (key, value) in text {
            let latin1 = value.chars().all(|c| (c as u32) < 256);
            let added = if latin1 {
                encoder.add_text_chunk(key.clone(), value.clone())
            } else {
                encoder.add_itxt_chunk(key.clone(), value.clone())
            };
            added.map_err(|e| OutputError::Encode(e.to_string()))?;
        }
        let mut writer = encoder
            .write_header()
            .map_err(|e| OutputError::Encode(e.to_string()))?;
        writer
            .write_image_data(image.as_raw())
            .map_err(|e| OutputError::Encode(e.to_string()))?;
        writer
            .finish()
            .map_err(|e| OutputError::Encode(e.to_string()))?;
    }
    Ok(out)
}

/// The text chunks written into every output PNG.
pub fn provenance_chunks(provenance: &Provenance) -> BTreeMap<String, String> {
    let mut text = BTreeMap::new();
    text.insert(
        "Software".to_string(),
        format!("Reverie {}", env!("CARGO_PKG_VERSION")),
    );
    text.insert("prompt".to_string(), provenance.prompt.clone());
    text.insert(
        "negative_prompt".to_string(),
        provenance.negative_prompt.clone(),
    );
    text.insert("seed".to_string(), provenance.seed.to_string());
    text.insert("steps".to_string(), provenance.steps.to_string());
    text.insert("guidance".to_string(), provenance.guidance.to_string());
    text.insert(
        "renderer".to_string(),
        provenance.renderer.label().to_string(),
    );
    text.insert("style".to_string(), provenance.style.clone());
    if let Some(scheduler) = &provenance.scheduler {
        text.insert("scheduler".to_string(), scheduler.clone());
    }
    if let Some(model) = &provenance.model {
        text.insert("model".to_string(), model.clone());
    }
    if let Some(hash) = &provenance.model_hash {
        text.insert("model_hash".to_string(), hash.clone());
    }
    let references: Vec<&str> = provenance.references.iter().map(|p| p.as_str()).collect();
    text.insert("reference_photos".to_string(), references.join(","));
    if !provenance.loras.is_empty() {
        let loras = serde_json::to_string(&provenance.loras).unwrap_or_default();
        text.insert("loras".to_string(), loras);
    }
    if let Some(identity) = &provenance.identity {
        // Machine-readable as JSON, and a line a person reads in any PNG viewer.
        text.insert(
            "identity".to_string(),
            serde_json::to_string(identity).unwrap_or_default(),
        );
        text.insert("identity_summary".to_string(), identity_summary(identity));
    }
    text.insert("job".to_string(), provenance.job.to_string());
    text.insert(
        "provenance".to_string(),
        serde_json::to_string(provenance).unwrap_or_default(),
    );
    text
}

/// "Anna: verified (0.41); Rex: missing", or why the check could not run.
pub fn identity_summary(identity: &reverie_shared::jobs::IdentityReport) -> String {
    if let Some(reason) = &identity.unchecked {
        return format!("unchecked: {reason}");
    }
    identity
        .people
        .iter()
        .map(|p| match p.distance {
            Some(d) => format!("{}: {} ({d:.2})", p.person, p.verdict.label()),
            None => format!("{}: {}", p.person, p.verdict.label()),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Where a job's image and provenance go, and the file stem they share. Album runs name a prefix of
/// the tenant's store or a registered bucket of theirs (checked again here: the worker writes only to
/// the tenant's own storage, whatever the job says).
pub async fn output_place(
    store: &dyn ObjectStore,
    job: &GenerateJob,
) -> Result<(OutputPlace, String), OutputError> {
    let stem = job
        .output
        .name
        .clone()
        .unwrap_or_else(|| job.index.to_string());
    let destination = match &job.output.destination {
        Some(destination) => destination.clone(),
        None => keys::results_prefix(&job.tenant, &job.request),
    };
    let place = OutputPlace::resolve(store, &job.tenant, &destination).await?;
    Ok((place, stem))
}

/// Writes the image and its provenance; returns where they went (keys of Reverie's store, or
/// `s3://bucket/key` in a tenant's own bucket). In an album run the JSON goes last, because a resumed
/// run takes its presence to mean the photo's output set is complete; otherwise both go side by side
/// (the scheduler's record, written after the confirmed result, is what marks the job done).
pub async fn write_outputs(
    store: &dyn ObjectStore,
    job: &GenerateJob,
    image: &RgbImage,
    provenance: &Provenance,
) -> Result<Vec<String>, OutputError> {
    let (place, stem) = output_place(store, job).await?;
    let png = encode_png(image, &provenance_chunks(provenance))?;
    let json =
        serde_json::to_vec_pretty(provenance).map_err(|e| OutputError::Encode(e.to_string()))?;
    let files = [(format!("{stem}.png"), png), (format!("{stem}.json"), json)];
    let put = |(name, body): &(String, Vec<u8>)| {
        let (target, key) = place.locate(store, name);
        let body = Bytes::from(body.clone());
        async move { target.put(&key, body).await }
    };
    if job.batch_run.is_some() {
        for file in &files {
            put(file).await?;
        }
    } else {
        futures::future::try_join_all(files.iter().map(put)).await?;
    }
    Ok(files.iter().map(|(name, _)| place.describe(name)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_carries_text_chunks() {
        let image = RgbImage::from_pixel(3, 2, image::Rgb([10, 20, 30]));
        let text = BTreeMap::from([
            ("prompt".to_string(), "me and my dog 🐶".to_string()),
            ("seed".to_string(), "42".to_string()),
        ]);
        let bytes = encode_png(&image, &text).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes.clone()));
        let reader = decoder.read_info().unwrap();
        let info = reader.info();
        assert!(info
            .uncompressed_latin1_text
            .iter()
            .any(|c| c.keyword == "seed" && c.text == "42"));
        assert!(info
            .utf8_text
            .iter()
            .any(|c| c.keyword == "prompt" && c.get_text().unwrap() == "me and my dog 🐶"));
        let decoded = image::load_from_memory(&bytes).unwrap().to_rgb8();
        assert_eq!(decoded, image);
    }
}
