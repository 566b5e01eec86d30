//! Reading image files safely: the format from the bytes (not the extension), the pixel size checked
//! against a limit before any pixels are decoded, orientation applied.

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, ImageReader};

use crate::error::Damage;

/// Formats the image crate decodes here.
pub fn format_name(format: ImageFormat) -> Option<&'static str> {
    Some(match format {
        ImageFormat::Jpeg => "jpeg",
        ImageFormat::Png => "png",
        ImageFormat::WebP => "webp",
        ImageFormat::Gif => "gif",
        ImageFormat::Tiff => "tiff",
        _ => return None,
    })
}

/// HEIC/HEIF (ISO-BMFF `ftyp` with a HEIF brand): recognised so it is reported, not mistaken for junk.
pub fn is_heif(bytes: &[u8]) -> bool {
    bytes.len() >= 12
        && &bytes[4..8] == b"ftyp"
        && matches!(
            &bytes[8..12],
            b"heic" | b"heix" | b"hevc" | b"hevx" | b"mif1" | b"msf1" | b"heim" | b"heis" | b"avic"
        )
}

/// The format and stored pixel size, read from headers only.
pub fn probe(bytes: &[u8]) -> Result<(&'static str, u32, u32), Damage> {
    if is_heif(bytes) {
        return Err(Damage::Unsupported(
            "HEIC/HEIF (no HEIF decoder in this build)".into(),
        ));
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Damage::Unreadable(e.to_string()))?;
    let format = reader
        .format()
        .ok_or_else(|| Damage::NotAnImage("no known image signature".into()))?;
    let name = format_name(format).ok_or_else(|| Damage::Unsupported(format!("{format:?}")))?;
    let (width, height) = reader
        .into_dimensions()
        .map_err(|e| Damage::Corrupt(format!("header: {e}")))?;
    Ok((name, width, height))
}

/// Decodes after checking the pixel count, then applies the EXIF orientation (1–8).
pub fn decode(bytes: &[u8], max_pixels: u64, orientation: u8) -> Result<DynamicImage, Damage> {
    let (format, width, height) = probe(bytes)?;
    if format == "jpeg" && jpeg_is_truncated(bytes) {
        return Err(Damage::Corrupt(
            "truncated JPEG: the scan has no end-of-image marker".into(),
        ));
    }
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(Damage::TooLarge {
            width,
            height,
            limit: max_pixels,
        });
    }
    if width == 0 || height == 0 {
        return Err(Damage::Corrupt("zero-sized image".into()));
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Damage::Unreadable(e.to_string()))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    limits.max_alloc = Some(pixels.saturating_mul(16).max(1 << 20));
    reader.limits(limits);
    let image = reader
        .decode()
        .map_err(|e| Damage::Corrupt(e.to_string()))?;
    Ok(orient(image, orientation))
}

/// JPEG decoders fill a cut-off scan with grey instead of failing; a complete file has an end-of-image
/// marker (FF D9) after its last start-of-scan (FF DA). (Thumbnails inside EXIF have their own markers,
/// which is why the order matters.)
fn jpeg_is_truncated(bytes: &[u8]) -> bool {
    let last = |marker: u8| {
        bytes
            .windows(2)
            .rposition(|w| w[0] == 0xFF && w[1] == marker)
    };
    match (last(0xDA), last(0xD9)) {
        (Some(scan), Some(end)) => end < scan,
        (Some(_), None) => true,
        _ => false,
    }
}

/// Applies an EXIF orientation value.
pub fn orient(image: DynamicImage, orientation: u8) -> DynamicImage {
    match orientation {
        2 => image.fliph(),
        3 => image.rotate180(),
        4 => image.flipv(),
        5 => image.rotate90().fliph(),
        6 => image.rotate90(),
        7 => image.rotate270().fliph(),
        8 => image.rotate270(),
        _ => image,
    }
}

/// The size after orientation: 5–8 swap width and height.
pub fn oriented_size(width: u32, height: u32, orientation: u8) -> (u32, u32) {
    if (5..=8).contains(&orientation) {
        (height, width)
    } else {
        (width, height)
    }
}
