//! The weight-free renderer: compose the job's subjects onto its background photo, fit the canvas to the
//! requested size, optionally recolour toward the palette photos, and paint in the job's style.

use std::collections::BTreeMap;

use image::imageops::FilterType;
use image::DynamicImage;
use reverie_paint::{
    blend_palettes, compose, paint_rgb, transfer_palette, Palette, PaletteVote, StyleSpec,
    TransferOptions,
};
use reverie_shared::jobs::{ReferenceRole, RendererKind};

use super::{Progress, RenderError, RenderRequest, RenderedImage, Renderer};

/// Colours of the palette a render is recoloured toward ("in my colours").
const PALETTE_SIZE: usize = 6;

#[derive(Debug, Default)]
pub struct PainterlyRenderer;

impl Renderer for PainterlyRenderer {
    fn kind(&self) -> RendererKind {
        RendererKind::Painterly
    }

    fn render_batch(
        &self,
        requests: &[RenderRequest],
        progress: Progress<'_>,
    ) -> Vec<Result<RenderedImage, RenderError>> {
        // Each request is independent, so its image cannot depend on its batch-mates.
        requests
            .iter()
            .enumerate()
            .map(|(index, request)| {
                let result = render_one(request);
                progress.step(index, 1, 1);
                result
            })
            .collect()
    }
}

fn invalid(error: impl std::fmt::Display) -> RenderError {
    RenderError::Invalid(error.to_string())
}

fn render_one(request: &RenderRequest) -> Result<RenderedImage, RenderError> {
    let spec = &request.spec;
    let style = style_of(&spec.style)?;
    let subjects = request.subjects();
    // People and pets without a setting photo stand on a neutral canvas: painting over one of their
    // own photos would show them twice. Without subjects, the painter needs some photo to paint
    // (never an `Identity` one: those only describe a person's face).
    let canvas = match pick(request, ReferenceRole::Background) {
        Some(background) => fit(background, spec.width, spec.height),
        None if !subjects.is_empty() => neutral_canvas(spec.width, spec.height),
        None => {
            let photo = request
                .photos
                .iter()
                .find(|(r, _)| !matches!(r.role, ReferenceRole::Identity | ReferenceRole::Subject))
                .map(|(_, image)| image)
                .ok_or_else(|| {
                    invalid(
                        "the painterly renderer paints from a photo, and the job references none",
                    )
                })?;
            fit(photo, spec.width, spec.height)
        }
    };
    let scene = if subjects.is_empty() {
        canvas
    } else {
        DynamicImage::ImageRgb8(compose(&canvas, &subjects).map_err(invalid)?.image)
    };
    let mut details = BTreeMap::from([("style".to_string(), style.name.clone())]);
    let scene = match (spec.palette_transfer, target_palette(request)?) {
        (true, Some((palette, photos))) => {
            details.insert("palette_transfer".to_string(), "true".to_string());
            details.insert("palette_photos".to_string(), photos.to_string());
            details.insert("palette".to_string(), palette_hex(&palette));
            let options = TransferOptions {
                seed: spec.seed,
                ..TransferOptions::default()
            };
            DynamicImage::ImageRgb8(transfer_palette(&scene, &palette, &options).map_err(invalid)?)
        }
        _ => scene,
    };
    let image = paint_rgb(&scene.to_rgb8(), &style, spec.seed).map_err(invalid)?;
    Ok(RenderedImage {
        image,
        model_hash: None,
        details,
        computed_image_prompt: None,
    })
}

/// The palette to recolour toward: the blend of every palette photo's palette (the scheduler sends the
/// photos behind the tenant's favourite palette, or an album's or place's photos), with how many photos
/// it came from. Each photo's palette is extracted with a fixed seed so the target does not depend on
/// the job's seed.
fn target_palette(request: &RenderRequest) -> Result<Option<(Palette, usize)>, RenderError> {
    let votes = request
        .photos
        .iter()
        .filter(|(reference, _)| reference.role == ReferenceRole::Palette)
        .map(|(_, image)| {
            Palette::extract(image, PALETTE_SIZE, 0).map(|palette| PaletteVote {
                palette,
                rating: None,
                favourite: false,
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(invalid)?;
    Ok(blend_palettes(&votes, PALETTE_SIZE, 0).map(|palette| (palette, votes.len())))
}

fn palette_hex(palette: &Palette) -> String {
    palette
        .colours
        .iter()
        .map(|c| format!("#{:02x}{:02x}{:02x}", c.rgb[0], c.rgb[1], c.rgb[2]))
        .collect::<Vec<_>>()
        .join(" ")
}

fn pick(request: &RenderRequest, role: ReferenceRole) -> Option<&DynamicImage> {
    request
        .photos
        .iter()
        .find(|(reference, _)| reference.role == role)
        .map(|(_, image)| image)
}

/// The style painted when a job names none.
pub const DEFAULT_STYLE: &str = "impressionist";

/// A style by preset name, or parsed out of style words ("watercolor, inspired by Monet"). Words that
/// name no known style are an error, never silently replaced.
fn style_of(text: &str) -> Result<StyleSpec, RenderError> {
    if text.trim().is_empty() {
        return StyleSpec::from_name(DEFAULT_STYLE).map_err(invalid);
    }
    if let Ok(style) = StyleSpec::from_name(text) {
        return Ok(style);
    }
    let words = reverie_paint::parse_style_words(text);
    words.spec.ok_or_else(|| {
        invalid(format!(
            "no known style in {text:?} (unknown: {:?})",
            words.unknown
        ))
    })
}

/// The canvas people are painted on when no setting photo fits: a warm, light grey with a gentle
/// vertical gradient, so the painter's strokes have some tone to work with.
fn neutral_canvas(width: u32, height: u32) -> DynamicImage {
    let (width, height) = (width.max(1), height.max(1));
    DynamicImage::ImageRgb8(image::RgbImage::from_fn(width, height, |_, y| {
        let t = y as f32 / height as f32;
        let level = |top: f32, bottom: f32| (top + (bottom - top) * t).round() as u8;
        image::Rgb([
            level(214.0, 176.0),
            level(208.0, 170.0),
            level(196.0, 160.0),
        ])
    }))
}

/// Scales and centre-crops to exactly `width`×`height` (cover), so outputs have the requested size.
fn fit(image: &DynamicImage, width: u32, height: u32) -> DynamicImage {
    let (width, height) = (width.max(1), height.max(1));
    if image.width() == width && image.height() == height {
        return image.clone();
    }
    image.resize_to_fill(width, height, FilterType::Triangle)
}
