//! Reading image files safely: the format from the bytes (not the extension), the pixel size checked
//! against a limit before any pixels are decoded, orientation applied. HEIC/HEIF decodes through libheif
//! when the crate is built with the `heic` feature; otherwise it is recognised and reported unsupported.

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

/// The format name HEIF files get (their shards members are `{photo}.heic`).
pub const HEIC: &str = "heic";

/// What reading an image's headers may allocate: chunks that come before the pixels (a PNG's ICC
/// profile and text, a TIFF's tag values) are compressed and could otherwise inflate to hundreds of
/// megabytes before the pixel size is known. Real profiles and metadata are far smaller; what is over
/// is dropped by the decoders (PNG) or refused (TIFF).
pub const HEADER_MAX_ALLOC: u64 = 8 * 1024 * 1024;

/// Archive signatures: an archive inside an import is reported as such, never unpacked.
fn archive_kind(bytes: &[u8]) -> Option<&'static str> {
    let starts = |magic: &[u8]| bytes.starts_with(magic);
    Some(
        if starts(b"PK\x03\x04") || starts(b"PK\x05\x06") || starts(b"PK\x07\x08") {
            "zip"
        } else if starts(&[0x1F, 0x8B]) {
            "gzip"
        } else if starts(b"7z\xBC\xAF\x27\x1C") {
            "7z"
        } else if starts(b"Rar!\x1A\x07") {
            "rar"
        } else if starts(&[0xFD, b'7', b'z', b'X', b'Z', 0]) {
            "xz"
        } else if starts(&[0x28, 0xB5, 0x2F, 0xFD]) {
            "zstd"
        } else if starts(b"BZh") {
            "bzip2"
        } else if bytes.get(257..262) == Some(&b"ustar"[..]) {
            "tar"
        } else {
            return None;
        },
    )
}

/// The format and stored pixel size, read from headers only. For HEIC the size is that of the primary
/// image after the container's own rotation and mirroring, which decoding applies.
pub fn probe(bytes: &[u8]) -> Result<(&'static str, u32, u32), Damage> {
    if is_heif(bytes) {
        let (width, height) = heif::probe(bytes)?;
        return Ok((HEIC, width, height));
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Damage::Unreadable(e.to_string()))?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(HEADER_MAX_ALLOC);
    reader.limits(limits);
    let format = reader.format().ok_or_else(|| match archive_kind(bytes) {
        Some(kind) => Damage::Unsupported(format!(
            "a {kind} archive inside the import: archives are not unpacked inside another source; \
             import it on its own"
        )),
        None => Damage::NotAnImage("no known image signature".into()),
    })?;
    let name = format_name(format).ok_or_else(|| Damage::Unsupported(format!("{format:?}")))?;
    let (width, height) = reader
        .into_dimensions()
        .map_err(|e| Damage::Corrupt(format!("header: {e}")))?;
    Ok((name, width, height))
}

/// Decodes after checking the pixel count, then applies the EXIF orientation (1–8). HEIC is upright
/// once decoded (its `irot`/`imir` boxes are applied, EXIF orientation is not).
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
    if format == HEIC {
        return heif::decode(bytes).map(DynamicImage::ImageRgb8);
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| Damage::Unreadable(e.to_string()))?;
    // The decoders' own buffers and the chunks before the pixels stay within 16 bytes a pixel (or
    // 1 MiB for tiny images): memory follows the pixel limit, never the file's compressed contents.
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

#[cfg(feature = "heic")]
mod heif {
    use std::sync::OnceLock;

    use image::RgbImage;
    use libheif_rs::{ColorSpace, HeifContext, LibHeif, RgbChroma};

    use crate::error::Damage;

    /// libheif is initialised once per process (its plugins load then).
    fn library() -> &'static LibHeif {
        static LIBRARY: OnceLock<LibHeif> = OnceLock::new();
        LIBRARY.get_or_init(LibHeif::new)
    }

    fn corrupt(error: libheif_rs::HeifError) -> Damage {
        Damage::Corrupt(format!("HEIF: {error}"))
    }

    /// The primary image's size from the container's boxes; no pixels are decoded.
    pub fn probe(bytes: &[u8]) -> Result<(u32, u32), Damage> {
        library();
        let context = HeifContext::read_from_bytes(bytes).map_err(corrupt)?;
        let handle = context.primary_image_handle().map_err(corrupt)?;
        Ok((handle.width(), handle.height()))
    }

    /// Decodes the primary image to interleaved 8-bit RGB (libheif converts the colour space).
    pub fn decode(bytes: &[u8]) -> Result<RgbImage, Damage> {
        let heif = library();
        let context = HeifContext::read_from_bytes(bytes).map_err(corrupt)?;
        let handle = context.primary_image_handle().map_err(corrupt)?;
        // No decoding options: libheif-rs 0.20 frees them before libheif reads them (fixed in 1.0.1).
        let image = heif
            .decode(&handle, ColorSpace::Rgb(RgbChroma::Rgb), None)
            .map_err(corrupt)?;
        let plane = image
            .planes()
            .interleaved
            .ok_or_else(|| Damage::Corrupt("HEIF: no interleaved RGB plane".into()))?;
        if plane.storage_bits_per_pixel != 24 {
            return Err(Damage::Unsupported(format!(
                "HEIF decoded to {} bits per pixel, not 8-bit RGB",
                plane.storage_bits_per_pixel
            )));
        }
        let row = plane.width as usize * 3;
        if plane.stride < row || plane.data.len() < plane.stride * plane.height as usize {
            return Err(Damage::Corrupt(
                "HEIF: decoded plane is smaller than its size".into(),
            ));
        }
        let pixels = plane
            .data
            .chunks(plane.stride)
            .take(plane.height as usize)
            .flat_map(|line| &line[..row])
            .copied()
            .collect();
        RgbImage::from_raw(plane.width, plane.height, pixels)
            .ok_or_else(|| Damage::Corrupt("HEIF: decoded plane does not fill the image".into()))
    }
}

#[cfg(not(feature = "heic"))]
mod heif {
    use crate::error::Damage;

    fn unsupported() -> Damage {
        Damage::Unsupported(
            "HEIC/HEIF (this build has no HEIF decoder: build with the `heic` feature and libheif)"
                .into(),
        )
    }

    pub fn probe(_bytes: &[u8]) -> Result<(u32, u32), Damage> {
        Err(unsupported())
    }

    pub fn decode(_bytes: &[u8]) -> Result<image::RgbImage, Damage> {
        Err(unsupported())
    }
}
