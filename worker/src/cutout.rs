//! People cut out of their photos before composition: the person segmentation (MediaPipe selfie
//! segmentation on candle, `reverie_faces::segmentation`) turns each subject photo into an RGBA
//! image whose alpha is the person, so the compositor takes the person's outline instead of an
//! ellipse around the face. Without a segmenter (models not fetched) subjects stay as they are and
//! the compositor falls back to the ellipse.

use image::{DynamicImage, RgbaImage};
use reverie_faces::segmentation::PersonSegmenter;
use reverie_shared::jobs::ReferenceRole;

use crate::render::RenderRequest;

/// Below this share of person pixels the mask is not trusted (a face too small or a segmenter
/// miss) and the photo is left whole: an empty cut-out would erase the subject.
const MIN_PERSON_SHARE: f64 = 0.02;

/// Replaces every subject photo of `requests` by its cut-out (in place).
pub fn cut_out_people(requests: &mut [RenderRequest], segmenter: &PersonSegmenter) {
    for request in requests {
        let pets: Vec<bool> = request
            .photos
            .iter()
            .map(|(reference, _)| request.pet_box(reference).is_some())
            .collect();
        for ((reference, image), is_pet) in request.photos.iter_mut().zip(pets) {
            // A pet is placed by its detected box; the person segmenter would cut it away.
            if reference.role != ReferenceRole::Subject || is_pet || is_cut_out(image) {
                continue;
            }
            match cut_out(segmenter, image) {
                Ok(Some(cutout)) => *image = cutout,
                Ok(None) => tracing::debug!(photo = %reference.photo, "no person found to cut out"),
                Err(error) => {
                    tracing::warn!(photo = %reference.photo, %error, "person segmentation failed")
                }
            }
        }
    }
}

/// Whether a photo already carries an outline (real transparency, not just an opaque alpha
/// channel).
fn is_cut_out(image: &DynamicImage) -> bool {
    image.color().has_alpha() && image.to_rgba8().pixels().any(|p| p[3] < 255)
}

/// The photo as RGBA with the person mask as alpha; `None` when too little of it is a person.
pub fn cut_out(
    segmenter: &PersonSegmenter,
    image: &DynamicImage,
) -> reverie_faces::Result<Option<DynamicImage>> {
    let rgb = image.to_rgb8();
    let mask = segmenter.mask(&rgb)?;
    let person: u64 = mask.as_raw().iter().map(|&v| u64::from(v)).sum();
    let share = person as f64 / (255.0 * mask.as_raw().len().max(1) as f64);
    if share < MIN_PERSON_SHARE {
        return Ok(None);
    }
    let rgba = RgbaImage::from_fn(rgb.width(), rgb.height(), |x, y| {
        let [r, g, b] = rgb.get_pixel(x, y).0;
        image::Rgba([r, g, b, mask.get_pixel(x, y)[0]])
    });
    Ok(Some(DynamicImage::ImageRgba8(rgba)))
}
