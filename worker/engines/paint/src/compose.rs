//! Composition of several subjects onto a background photo.
//!
//! Layout rules (documented in docs/styles.md):
//! 1. The canvas is the background photo at its own size.
//! 2. Crops: a person with a face box gets a head-and-shoulders crop 3.0 face widths wide and 3.6
//!    face heights tall with the face centre 40% from the top; a pet/object uses its box grown by
//!    10% on every side; without a box the whole reference image is used. Crops are clipped to
//!    the reference image.
//! 3. Heights: people 60% of the canvas height, pets 38%, objects 30%; if the subjects' total
//!    width exceeds 92% of the canvas, all are scaled down together.
//! 4. Order left to right: people in the middle (in input order), pets and objects alternately on
//!    the left and right flanks; subjects sit side by side with a gap of 2% of the canvas width,
//!    centred as a group.
//! 5. Vertical: people stand on the bottom edge (their crop is cut off by the frame, as in a
//!    portrait); pets and objects stand on a ground line at 94% of the height.
//! 6. Each subject is colour-matched halfway toward the background's Lab mean and spread so it
//!    reads as lit by the same scene, and blended with a feathered mask: a person cut out by
//!    segmentation (an RGBA subject) by its alpha with only the crop's edges softened; a person
//!    without one by an ellipse; pets/objects by a rounded rectangle times their alpha if any.
//!    The composite mask is the per-pixel maximum of the subject masks.

use image::{DynamicImage, GrayImage, Luma, RgbImage, RgbaImage};
use serde::{Deserialize, Serialize};

use crate::colour::{lab_to_rgbf, rgbf_to_lab};
use crate::error::Result;
use crate::raster::ColourImage;

/// A rectangle in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rect {
    pub x: f32,
    pub y: f32,
    pub width: f32,
    pub height: f32,
}

/// What a subject is; decides crop, size and mask shape.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SubjectKind {
    /// A person; `face` is the detected face box in the reference image.
    Person { face: Option<Rect> },
    /// A pet; `bbox` its box in the reference image.
    Pet { bbox: Option<Rect> },
    /// Any other object.
    Object { bbox: Option<Rect> },
}

/// A subject taken from a reference photo (RGBA: a segmentation alpha is honoured).
#[derive(Debug, Clone)]
pub struct Subject {
    pub image: DynamicImage,
    pub kind: SubjectKind,
}

/// Where a subject ended up.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    /// Index into the input subjects.
    pub subject: usize,
    /// Crop taken from the reference image.
    pub crop: Rect,
    /// Where the crop was drawn on the canvas (may extend past the frame).
    pub target: Rect,
    /// A person's face box carried from the reference photo to the canvas (canvas pixels): where the
    /// picture shows their face, for the identity check and identity guidance. `None` for pets,
    /// objects and people without a face box.
    #[serde(default)]
    pub face: Option<Rect>,
}

/// The composed picture and its subject mask (255 = subject), ready to paint or to use as the
/// init image and mask for diffusion img2img.
#[derive(Debug, Clone)]
pub struct Composite {
    pub image: RgbImage,
    pub mask: GrayImage,
    pub placements: Vec<Placement>,
}

impl Composite {
    /// Paints the composite as one picture.
    pub fn paint(&self, style: &crate::StyleSpec, seed: u64) -> Result<RgbImage> {
        crate::paint(&DynamicImage::ImageRgb8(self.image.clone()), style, seed)
    }
}

const GAP: f32 = 0.02;
const MAX_ROW_WIDTH: f32 = 0.92;
const GROUND: f32 = 0.94;

/// Composes `subjects` onto `background` by the layout rules above.
pub fn compose(background: &DynamicImage, subjects: &[Subject]) -> Result<Composite> {
    let mut canvas = ColourImage::from_dynamic(background, "composition background")?;
    let stats = lab_stats(&canvas.data);
    for subject in subjects {
        crate::raster::check_size(
            subject.image.width(),
            subject.image.height(),
            "composition subject",
        )?;
    }
    let placements = layout(canvas.width as u32, canvas.height as u32, subjects);
    let mut mask = GrayImage::new(canvas.width as u32, canvas.height as u32);
    for placement in &placements {
        draw_subject(
            &mut canvas,
            &mut mask,
            &subjects[placement.subject],
            placement.crop,
            placement.target,
            &stats,
        )?;
    }
    Ok(Composite {
        image: canvas.to_rgb(),
        mask,
        placements,
    })
}

/// Where [`compose`] puts each subject on a `width`×`height` canvas, left to right, without drawing:
/// the layout depends only on the canvas size, the subjects' kinds, sizes and boxes, so a worker
/// knows where each face will be before any renderer runs.
pub fn layout(width: u32, height: u32, subjects: &[Subject]) -> Vec<Placement> {
    let (cw, ch) = (width as f32, height as f32);
    let mut items = Vec::new();
    for (index, subject) in subjects.iter().enumerate() {
        let crop = crop_for(subject);
        let height = ch * height_share(&subject.kind);
        let width = height * crop.width / crop.height.max(1.0);
        items.push((index, crop, width, height));
    }
    let gap = GAP * cw;
    let total: f32 =
        items.iter().map(|i| i.2).sum::<f32>() + gap * items.len().saturating_sub(1) as f32;
    let shrink = if total > MAX_ROW_WIDTH * cw {
        MAX_ROW_WIDTH * cw / total
    } else {
        1.0
    };
    let order = left_to_right(subjects);
    let mut x = 0.5 * (cw - total * shrink);
    let mut placements = Vec::new();
    for &index in &order {
        let Some(&(_, crop, width, height)) = items.iter().find(|i| i.0 == index) else {
            continue;
        };
        let (width, height) = (width * shrink, height * shrink);
        let bottom = match subjects[index].kind {
            SubjectKind::Person { .. } => ch,
            _ => ch * GROUND,
        };
        let target = Rect {
            x,
            y: bottom - height,
            width,
            height,
        };
        placements.push(Placement {
            subject: index,
            crop,
            target,
            face: face_on_canvas(&subjects[index].kind, crop, target),
        });
        x += width + gap * shrink;
    }
    placements
}

/// A person's face box mapped from the reference photo through the crop onto the canvas.
fn face_on_canvas(kind: &SubjectKind, crop: Rect, target: Rect) -> Option<Rect> {
    let SubjectKind::Person { face: Some(face) } = *kind else {
        return None;
    };
    if !(crop.width > 0.0 && crop.height > 0.0 && face.width >= 1.0 && face.height >= 1.0) {
        return None;
    }
    let (sx, sy) = (target.width / crop.width, target.height / crop.height);
    Some(Rect {
        x: target.x + (face.x - crop.x) * sx,
        y: target.y + (face.y - crop.y) * sy,
        width: face.width * sx,
        height: face.height * sy,
    })
}

fn height_share(kind: &SubjectKind) -> f32 {
    match kind {
        SubjectKind::Person { .. } => 0.60,
        SubjectKind::Pet { .. } => 0.38,
        SubjectKind::Object { .. } => 0.30,
    }
}

fn left_to_right(subjects: &[Subject]) -> Vec<usize> {
    let people: Vec<usize> = (0..subjects.len())
        .filter(|&i| matches!(subjects[i].kind, SubjectKind::Person { .. }))
        .collect();
    let others: Vec<usize> = (0..subjects.len())
        .filter(|&i| !matches!(subjects[i].kind, SubjectKind::Person { .. }))
        .collect();
    let mut left = Vec::new();
    let mut right = Vec::new();
    for (k, &i) in others.iter().enumerate() {
        if k % 2 == 0 {
            left.push(i)
        } else {
            right.push(i)
        }
    }
    left.reverse();
    left.into_iter().chain(people).chain(right).collect()
}

fn crop_for(subject: &Subject) -> Rect {
    let (iw, ih) = (subject.image.width() as f32, subject.image.height() as f32);
    // A box from a detector may be degenerate or non-finite: then the whole image is the crop.
    let usable = |r: &Rect| {
        [r.x, r.y, r.width, r.height].iter().all(|v| v.is_finite())
            && r.width >= 1.0
            && r.height >= 1.0
    };
    let raw = match subject.kind {
        SubjectKind::Person { face: Some(f) } if usable(&f) => {
            let (cx, cy) = (f.x + f.width / 2.0, f.y + f.height / 2.0);
            let (w, h) = (3.0 * f.width, 3.6 * f.height);
            Rect {
                x: cx - w / 2.0,
                y: cy - 0.4 * h,
                width: w,
                height: h,
            }
        }
        SubjectKind::Pet { bbox: Some(b) } | SubjectKind::Object { bbox: Some(b) } => Rect {
            x: b.x - 0.1 * b.width,
            y: b.y - 0.1 * b.height,
            width: 1.2 * b.width,
            height: 1.2 * b.height,
        },
        _ => Rect {
            x: 0.0,
            y: 0.0,
            width: iw,
            height: ih,
        },
    };
    let x0 = raw.x.clamp(0.0, iw - 1.0);
    let y0 = raw.y.clamp(0.0, ih - 1.0);
    let x1 = (raw.x + raw.width).clamp(x0 + 1.0, iw);
    let y1 = (raw.y + raw.height).clamp(y0 + 1.0, ih);
    Rect {
        x: x0,
        y: y0,
        width: x1 - x0,
        height: y1 - y0,
    }
}

struct LabStats {
    mean: [f32; 3],
    std: [f32; 3],
}

fn lab_stats(pixels: &[[f32; 3]]) -> LabStats {
    let step = (pixels.len() / 20_000).max(1);
    let labs: Vec<[f32; 3]> = pixels
        .iter()
        .step_by(step)
        .map(|&c| rgbf_to_lab(c))
        .collect();
    let n = labs.len().max(1) as f32;
    let mut mean = [0.0; 3];
    let mut std = [0.0; 3];
    for c in 0..3 {
        mean[c] = labs.iter().map(|l| l[c]).sum::<f32>() / n;
        std[c] = (labs.iter().map(|l| (l[c] - mean[c]).powi(2)).sum::<f32>() / n)
            .sqrt()
            .max(1.0);
    }
    LabStats { mean, std }
}

fn draw_subject(
    canvas: &mut ColourImage,
    mask: &mut GrayImage,
    subject: &Subject,
    crop: Rect,
    target: Rect,
    background: &LabStats,
) -> Result<()> {
    let rgba: RgbaImage = subject.image.to_rgba8();
    let source = ColourImage::from_dynamic(&subject.image, "composition subject")?;
    let own = lab_stats(&source.data);
    let person = matches!(subject.kind, SubjectKind::Person { .. });
    // A subject with real transparency comes cut out by person segmentation: its alpha is the
    // outline, so the ellipse (the fallback without a segmenter) would only cut the shoulders off.
    // An opaque alpha channel (a PNG export) is no outline: the ellipse applies.
    let segmented = subject.image.color().has_alpha() && rgba.pixels().any(|p| p[3] < 255);
    let (cw, ch) = (canvas.width as i64, canvas.height as i64);
    let x0 = target.x.floor().max(0.0) as i64;
    let y0 = target.y.floor().max(0.0) as i64;
    let x1 = ((target.x + target.width).ceil() as i64).min(cw);
    let y1 = ((target.y + target.height).ceil() as i64).min(ch);
    for y in y0..y1 {
        for x in x0..x1 {
            // Normalised position inside the target box.
            let u = (x as f32 + 0.5 - target.x) / target.width;
            let v = (y as f32 + 0.5 - target.y) / target.height;
            if !(0.0..1.0).contains(&u) || !(0.0..1.0).contains(&v) {
                continue;
            }
            let feather = match (person, segmented) {
                (true, false) => ellipse_feather(u, v),
                (true, true) => cutout_feather(u, v),
                (false, _) => rect_feather(u, v),
            };
            let sx = crop.x + u * crop.width;
            let sy = crop.y + v * crop.height;
            let alpha_px = rgba.get_pixel(
                (sx as u32).min(rgba.width() - 1),
                (sy as u32).min(rgba.height() - 1),
            )[3] as f32
                / 255.0;
            let alpha = feather * alpha_px;
            if alpha <= 0.0 {
                continue;
            }
            let colour = harmonise(source.sample(sx - 0.5, sy - 0.5), &own, background);
            let idx = (y * cw + x) as usize;
            let dst = &mut canvas.data[idx];
            for c in 0..3 {
                dst[c] += (colour[c] - dst[c]) * alpha;
            }
            let m = mask.get_pixel_mut(x as u32, y as u32);
            *m = Luma([m[0].max((alpha * 255.0).round() as u8)]);
        }
    }
    Ok(())
}

/// Moves a colour halfway from its own Lab statistics toward the background's.
fn harmonise(rgb: [f32; 3], own: &LabStats, background: &LabStats) -> [f32; 3] {
    let lab = rgbf_to_lab(rgb);
    let mut out = [0.0; 3];
    for c in 0..3 {
        let matched = (lab[c] - own.mean[c]) / own.std[c] * background.std[c] + background.mean[c];
        out[c] = 0.5 * lab[c] + 0.5 * matched;
    }
    lab_to_rgbf(out)
}

/// Ellipse inscribed in the box, soft over the outer 25% of its radius; the bottom edge stays
/// solid because people are cut off by the frame there.
fn ellipse_feather(u: f32, v: f32) -> f32 {
    let dx = (u - 0.5) / 0.5;
    let dy = if v > 0.5 { 0.0 } else { (v - 0.5) / 0.5 };
    let r = (dx * dx + dy * dy).sqrt();
    smoothstep(1.0, 0.75, r)
}

/// For a segmented person: the outline is the alpha, so only the crop's own edges are softened
/// (left, right and top, over 5%), and the bottom stays solid where the frame cuts the body off.
fn cutout_feather(u: f32, v: f32) -> f32 {
    let edge = u.min(1.0 - u).min(v);
    smoothstep(0.0, 0.05, edge)
}

/// Rounded rectangle soft over 10% of each side.
fn rect_feather(u: f32, v: f32) -> f32 {
    let edge = u.min(1.0 - u).min(v).min(1.0 - v);
    smoothstep(0.0, 0.1, edge)
}

fn smoothstep(edge0: f32, edge1: f32, x: f32) -> f32 {
    let t = ((x - edge0) / (edge1 - edge0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_composite_reports_where_each_face_went() {
        let background =
            DynamicImage::ImageRgb8(RgbImage::from_pixel(512, 384, image::Rgb([90; 3])));
        // A 40×50 face at (80, 60) of a 200×300 portrait, and a pet with no face.
        let person = Subject {
            image: DynamicImage::ImageRgb8(RgbImage::from_pixel(200, 300, image::Rgb([200; 3]))),
            kind: SubjectKind::Person {
                face: Some(Rect {
                    x: 80.0,
                    y: 60.0,
                    width: 40.0,
                    height: 50.0,
                }),
            },
        };
        let pet = Subject {
            image: DynamicImage::ImageRgb8(RgbImage::from_pixel(100, 100, image::Rgb([30; 3]))),
            kind: SubjectKind::Pet { bbox: None },
        };
        let subjects = [person, pet];
        let composite = compose(&background, &subjects).unwrap();
        assert_eq!(composite.placements, layout(512, 384, &subjects));
        let placed = composite
            .placements
            .iter()
            .find(|p| p.subject == 0)
            .unwrap();
        let face = placed.face.expect("the person's face");
        // The crop is 3 face widths wide with the face centred, so the face is the middle third.
        let centre = face.x + face.width / 2.0;
        assert!((centre - (placed.target.x + placed.target.width / 2.0)).abs() < 1.0);
        assert!((face.width - placed.target.width / 3.0).abs() < 1.0);
        assert!(face.y >= placed.target.y && face.y + face.height <= 384.0);
        let pet = composite
            .placements
            .iter()
            .find(|p| p.subject == 1)
            .unwrap();
        assert_eq!(pet.face, None);
    }
}
