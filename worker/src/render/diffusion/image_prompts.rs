//! Image prompts of farm jobs: which part of which subject photo a job's IP-Adapter reads, and the
//! encoder's output for it in the form the cache keeps.
//!
//! Embeddings are cached per (tenant, adapter identity, photo, crop) in the farm's cache (Redis),
//! like face descriptors, so a person's photo goes through the CLIP vision tower once for every
//! worker. They are kept as f16 — an IP-Adapter Plus's hidden states of a ViT-H are 257 × 1280
//! values, 650 KB per photo that way — and every job uses the f16 values, freshly computed or read
//! back, so a job renders the same image on a cache hit as on a miss.

use bytes::Bytes;
use candle_core::{DType, Device, Tensor};
use reverie_shared::ids::{PhotoId, TenantId};
use reverie_shared::keys;

/// What the cache holds starts with this (layout version 1).
const MAGIC: &[u8; 4] = b"RIP1";
/// The most dimensions an embedding has (`(1, tokens, hidden)`).
const MAX_DIMS: usize = 4;

/// What a job's image prompt is read from: the IP-Adapter (its identity), the photo and the part of
/// it shown. Equal sources give equal embeddings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImagePromptSource {
    /// The IP-Adapter's identity (the SHA-256 of its file listing).
    pub adapter_identity: String,
    pub photo: PhotoId,
    /// `[left, top, width, height]` in the upright photo's pixels.
    pub crop: [u32; 4],
}

impl ImagePromptSource {
    /// Where `tenant`'s embeddings of this source are cached (under the tenant's prefix, so
    /// forgetting the tenant removes them).
    pub fn cache_key(&self, tenant: &TenantId) -> String {
        let [left, top, width, height] = self.crop;
        let detail = format!("{}:{left},{top},{width},{height}", self.adapter_identity);
        keys::embedding_cache_key(tenant, "image_prompt", &detail, &self.photo)
    }
}

/// The part of a subject photo its image prompt shows, `[left, top, width, height]`: a square 2.5
/// times the face's size around it (the head and shoulders IP-Adapters were trained on), clamped to
/// the photo; the whole photo when there is no face box (a pet).
pub fn image_prompt_crop(width: u32, height: u32, face: Option<[u32; 4]>) -> [u32; 4] {
    let Some([l, t, r, b]) = face.filter(|[l, t, r, b]| r > l && b > t) else {
        return [0, 0, width.max(1), height.max(1)];
    };
    let side = ((r - l).max(b - t) as f32 * 2.5).round() as u32;
    let side = side.clamp(1, width.min(height).max(1));
    let (cx, cy) = ((l + r) / 2, (t + b) / 2);
    let left = cx.saturating_sub(side / 2).min(width.saturating_sub(side));
    let top = cy.saturating_sub(side / 2).min(height.saturating_sub(side));
    [left, top, side, side]
}

/// An embedding as the cache keeps it: the magic, the number of dimensions (one byte), each
/// dimension (u32 little-endian), then the values as f16 little-endian.
pub fn to_cached(embedding: &Tensor) -> candle_core::Result<Bytes> {
    let dims = embedding.dims();
    let values = embedding
        .to_dtype(DType::F16)?
        .flatten_all()?
        .to_vec1::<half::f16>()?;
    let mut bytes = Vec::with_capacity(5 + 4 * dims.len() + 2 * values.len());
    bytes.extend_from_slice(MAGIC);
    bytes.push(dims.len() as u8);
    for &dim in dims {
        bytes.extend_from_slice(&(dim as u32).to_le_bytes());
    }
    for value in values {
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    Ok(Bytes::from(bytes))
}

/// The embedding [`to_cached`] wrote, as f32 on `device`; `None` for bytes that are not one (an
/// entry of another layout version, or damaged: the caller computes it again).
pub fn from_cached(bytes: &[u8], device: &Device) -> Option<Tensor> {
    let rest = bytes.strip_prefix(MAGIC.as_slice())?;
    let (&count, mut rest) = rest.split_first()?;
    let count = usize::from(count);
    if count == 0 || count > MAX_DIMS || rest.len() < 4 * count {
        return None;
    }
    let mut dims = Vec::with_capacity(count);
    for _ in 0..count {
        let (dim, tail) = rest.split_at(4);
        dims.push(u32::from_le_bytes(dim.try_into().ok()?) as usize);
        rest = tail;
    }
    let elements = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d))?;
    if rest.len() != elements.checked_mul(2)? {
        return None;
    }
    let values: Vec<half::f16> = rest
        .chunks_exact(2)
        .map(|pair| half::f16::from_le_bytes([pair[0], pair[1]]))
        .collect();
    Tensor::from_vec(values, dims, device)
        .and_then(|t| t.to_dtype(DType::F32))
        .ok()
}

/// `embedding` as every job uses it: through f16, as the cache keeps it.
pub fn as_cached(embedding: &Tensor) -> candle_core::Result<Tensor> {
    embedding.to_dtype(DType::F16)?.to_dtype(DType::F32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_prompts_show_the_head_and_shoulders_inside_the_photo() {
        // A 40 px face in the middle: a 100 px square around it.
        assert_eq!(
            image_prompt_crop(400, 300, Some([180, 130, 220, 170])),
            [150, 100, 100, 100]
        );
        // At the corner: shifted inside the photo.
        assert_eq!(
            image_prompt_crop(400, 300, Some([0, 0, 40, 40])),
            [0, 0, 100, 100]
        );
        // A face filling the photo: the largest square that fits.
        assert_eq!(
            image_prompt_crop(400, 300, Some([100, 0, 300, 290])),
            [50, 0, 300, 300]
        );
        assert_eq!(image_prompt_crop(400, 300, None), [0, 0, 400, 300]);
    }

    #[test]
    fn cached_embeddings_read_back_as_the_values_jobs_use() {
        let values: Vec<f32> = (0..2 * 3 * 5)
            .map(|i| (i as f32 * 0.37).sin() * 3.0)
            .collect();
        let embedding = Tensor::from_vec(values, (2, 3, 5), &Device::Cpu).unwrap();
        let bytes = to_cached(&embedding).unwrap();
        let back = from_cached(&bytes, &Device::Cpu).unwrap();
        assert_eq!(back.dims(), &[2, 3, 5]);
        let used = as_cached(&embedding).unwrap();
        let difference = (back - &used)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(difference, 0.0, "a hit must render as the miss did");
        for broken in [
            &bytes[..bytes.len() - 1],
            &bytes[1..],
            b"RIP1".as_slice(),
            &[],
        ] {
            assert!(from_cached(broken, &Device::Cpu).is_none());
        }
    }
}
