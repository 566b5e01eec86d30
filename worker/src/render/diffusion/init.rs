//! What a job gives the pipeline: its text (prompt and style words) and, when it has photos, the
//! init picture (a fitted background, or the subjects composed onto it), the mask of what to repaint,
//! and the img2img strength; jobs that differ in these run as sub-batches.

use image::{DynamicImage, GrayImage, Luma, Rgb, RgbImage};
use reverie_paint::compose;
use reverie_shared::jobs::ReferenceRole;

use crate::render::{RenderError, RenderRequest};

/// The model's text: the prompt (references already removed by the planner) and the style words.
pub(super) fn prompt_text(request: &RenderRequest) -> String {
    let spec = &request.spec;
    [spec.prompt.trim(), spec.style.trim()]
        .into_iter()
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The init picture, its mask (white = repaint) and the strength, when the job has photos.
pub(super) type InitPicture = (RgbImage, Option<GrayImage>, f64);

pub(super) fn init_picture(
    request: &RenderRequest,
    guided: bool,
) -> Result<Option<InitPicture>, RenderError> {
    let Some(strength) = init_picture_strength(request, guided) else {
        return Ok(None);
    };
    let strength = f64::from(strength);
    let spec = &request.spec;
    let (width, height) = (spec.width.max(8), spec.height.max(8));
    let background = request
        .photos
        .iter()
        .find(|(reference, _)| reference.role == ReferenceRole::Background)
        .map(|(_, image)| {
            image.resize_to_fill(width, height, image::imageops::FilterType::Triangle)
        });
    let subjects = request.subjects();
    if subjects.is_empty() {
        return Ok(background.map(|b| (b.to_rgb8(), None, strength)));
    }
    let canvas = background.unwrap_or_else(|| {
        DynamicImage::ImageRgb8(RgbImage::from_pixel(width, height, Rgb([128, 128, 128])))
    });
    let composite = compose(&canvas, &subjects).map_err(|e| RenderError::Invalid(e.to_string()))?;
    if guided {
        // Restyled whole: no mask, guidance holds the faces.
        return Ok(Some((composite.image, None, strength)));
    }
    // Subjects are kept and the rest repainted; with no background photo the canvas is neutral (and
    // the strength 1: the whole schedule runs on it).
    let repaint = GrayImage::from_fn(composite.mask.width(), composite.mask.height(), |x, y| {
        Luma([255 - composite.mask.get_pixel(x, y)[0]])
    });
    Ok(Some((composite.image, Some(repaint), strength)))
}

/// Sub-batches: text-to-image jobs together, img2img jobs by strength (a pipeline run has one).
pub(super) fn group_key(request: &RenderRequest, guided: bool) -> (bool, u32) {
    match init_picture_strength(request, guided) {
        None => (false, 0),
        Some(strength) => (true, strength.to_bits()),
    }
}

/// The img2img strength a job runs at: `None` for text-to-image; the job's strength for a
/// background and for a guided restyle; 1 for kept subjects on a blank canvas.
pub(super) fn init_picture_strength(request: &RenderRequest, guided: bool) -> Option<f32> {
    let has = |role| request.photos.iter().any(|(r, _)| r.role == role);
    match (has(ReferenceRole::Background), has(ReferenceRole::Subject)) {
        (false, false) => None,
        (false, true) if !guided => Some(1.0),
        _ => Some(request.spec.strength.clamp(0.05, 1.0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reverie_shared::ids::{PhotoId, ShardId};
    use reverie_shared::jobs::{PhotoRef, RenderSpec, RendererKind};

    fn reference(role: ReferenceRole) -> PhotoRef {
        PhotoRef {
            photo: PhotoId::of_bytes(&[role as u8]),
            shard: ShardId::new("s").unwrap(),
            offset: 0,
            length: 0,
            role,
            face_box: None,
            label: None,
        }
    }

    fn request(photos: Vec<(PhotoRef, DynamicImage)>, strength: f32) -> RenderRequest {
        RenderRequest {
            spec: RenderSpec {
                renderer: RendererKind::Diffusion,
                prompt: "me at the beach".into(),
                negative_prompt: String::new(),
                style: "watercolour".into(),
                model: None,
                width: 64,
                height: 48,
                steps: 4,
                guidance: 1.0,
                scheduler: None,
                seed: 1,
                strength,
                palette_transfer: false,
                identity_strength: 0.0,
                best_of: 1,
                adapters: Default::default(),
            },
            photos,
            identity: Vec::new(),
            loras: Vec::new(),
            cached_image_prompt: None,
            pet_boxes: Vec::new(),
        }
    }

    #[test]
    fn text_carries_the_style_words() {
        assert_eq!(
            prompt_text(&request(vec![], 0.5)),
            "me at the beach, watercolour"
        );
    }

    #[test]
    fn text_only_jobs_have_no_init_picture() {
        let job = request(vec![], 0.5);
        assert!(init_picture(&job, false).unwrap().is_none());
        assert_eq!(group_key(&job, false), (false, 0));
    }

    #[test]
    fn a_background_is_fitted_and_used_at_the_job_strength() {
        let photo = DynamicImage::ImageRgb8(RgbImage::from_pixel(300, 100, Rgb([9, 99, 199])));
        let job = request(vec![(reference(ReferenceRole::Background), photo)], 0.6);
        let (picture, mask, strength) = init_picture(&job, false).unwrap().unwrap();
        assert_eq!((picture.width(), picture.height()), (64, 48));
        assert_eq!(picture.get_pixel(10, 10).0, [9, 99, 199]);
        assert!(mask.is_none());
        assert!((strength - 0.6).abs() < 1e-6);
    }

    #[test]
    fn subjects_are_kept_and_the_rest_repainted() {
        let background = DynamicImage::ImageRgb8(RgbImage::from_pixel(64, 48, Rgb([40, 90, 160])));
        let person = DynamicImage::ImageRgb8(RgbImage::from_pixel(30, 40, Rgb([230, 40, 40])));
        let job = request(
            vec![
                (reference(ReferenceRole::Background), background),
                (reference(ReferenceRole::Subject), person),
            ],
            0.8,
        );
        let (picture, mask, _) = init_picture(&job, false).unwrap().unwrap();
        let mask = mask.expect("a mask");
        assert_eq!((mask.width(), mask.height()), (64, 48));
        let (mut kept_red, mut kept, mut repainted_blue) = (0, 0, 0);
        for (x, y, m) in mask.enumerate_pixels() {
            let p = picture.get_pixel(x, y).0;
            if m[0] < 128 {
                kept += 1;
                kept_red += usize::from(p[0] > 150 && p[2] < 110);
            } else if p == [40, 90, 160] {
                repainted_blue += 1;
            }
        }
        assert!(
            kept > 0 && kept_red * 10 >= kept * 8,
            "kept pixels are the subject"
        );
        assert!(
            repainted_blue > 0,
            "the scene around the subject is repainted"
        );
    }

    #[test]
    fn subjects_without_a_setting_use_the_whole_schedule() {
        let person = DynamicImage::ImageRgb8(RgbImage::from_pixel(30, 40, Rgb([230, 40, 40])));
        let job = request(vec![(reference(ReferenceRole::Subject), person)], 0.3);
        let (_, mask, strength) = init_picture(&job, false).unwrap().unwrap();
        assert!(mask.is_some());
        assert_eq!(strength, 1.0);
    }

    #[test]
    fn guided_subjects_are_restyled_whole_at_the_job_strength() {
        let person = DynamicImage::ImageRgb8(RgbImage::from_pixel(30, 40, Rgb([230, 40, 40])));
        let job = request(vec![(reference(ReferenceRole::Subject), person)], 0.3);
        let (picture, mask, strength) = init_picture(&job, true).unwrap().unwrap();
        assert!(mask.is_none(), "a guided restyle has no keep-mask");
        assert!((strength - 0.3).abs() < 1e-6);
        // The composite still carries the (colour-matched, so paler) red subject for img2img to
        // restyle on the grey canvas.
        assert!(picture
            .pixels()
            .any(|p| i32::from(p[0]) > i32::from(p[1]) + 30));
        assert_eq!(group_key(&job, true), (true, 0.3f32.to_bits()));
    }
}
