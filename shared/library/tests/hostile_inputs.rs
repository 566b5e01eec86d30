//! Hostile input to the import (issue #20, items 5 and 6): decompression bombs in every accepted image
//! format, zip bombs (extreme ratios, entries that inflate past their declared size, overlapping
//! entries, nested archives, unsafe names) and objects larger than the file limit. Every file is built
//! here. Allocations are counted per thread by this binary's allocator, so "the decoder's memory is
//! bounded" is measured, not assumed: the import runs on a current-thread runtime, on the test's thread.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::Write;
use std::ops::Range;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use image::ImageFormat;
use reverie_library::{import, load_manifest, Damage, ImportOptions, ImportReport, ImportSource};
use reverie_shared::ids::TenantId;
use reverie_shared::ports::store::{
    LocalStore, ObjectMeta, ObjectReader, ObjectStore, SharedStore, StoreError,
};
use tokio::io::{AsyncRead, ReadBuf};

// ---- allocation accounting ----------------------------------------------------------------------

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(delta: isize, request: usize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
    let _ = LARGEST.try_with(|largest| largest.set(largest.get().max(request)));
}

// SAFETY: every call is passed on to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size() as isize, layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size() as isize, layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(-(layout.size() as isize), 0);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size as isize - layout.size() as isize, new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// What `f` gave, the most memory this thread held at once while it ran (above what was held before),
/// and the largest single allocation it asked for.
fn measured<T>(f: impl FnOnce() -> T) -> (T, usize, usize) {
    let start = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(start));
    LARGEST.with(|largest| largest.set(0));
    let value = f();
    let peak = (PEAK.with(Cell::get) - start).max(0) as usize;
    (value, peak, LARGEST.with(Cell::get))
}

const MIB: usize = 1024 * 1024;

// ---- building files -----------------------------------------------------------------------------

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                0xEDB8_8320 ^ (crc >> 1)
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn zlib(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// A zlib stream that inflates to 64 MiB of zeros (about 64 KiB of it), made once.
static ZEROS_64_MIB: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let chunk = vec![0u8; MIB];
    for _ in 0..64 {
        encoder.write_all(&chunk).unwrap();
    }
    encoder.finish().unwrap()
});

/// A small JPEG whose bytes depend on `shade`.
fn jpeg(shade: u8) -> Vec<u8> {
    let image = image::RgbImage::from_fn(48, 32, |x, y| {
        image::Rgb([shade, (x * 5) as u8, (y * 7) as u8])
    });
    let mut bytes = std::io::Cursor::new(Vec::new());
    image.write_to(&mut bytes, ImageFormat::Jpeg).unwrap();
    bytes.into_inner()
}

/// A real JPEG whose frame header (SOF0) claims `width` x `height`.
fn jpeg_claiming(width: u16, height: u16) -> Vec<u8> {
    let mut bytes = jpeg(7);
    let sof = bytes.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    bytes[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    bytes[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    bytes
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend((data.len() as u32).to_be_bytes());
    out.extend(kind);
    out.extend(data);
    let mut covered = kind.to_vec();
    covered.extend(data);
    out.extend(crc32(&covered).to_be_bytes());
}

/// An RGBA PNG of `width` x `height` with `extra` chunks before its image data `idat` (a zlib stream).
fn png(width: u32, height: u32, extra: &[(&[u8; 4], Vec<u8>)], idat: &[u8]) -> Vec<u8> {
    let mut out = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    let mut header = Vec::new();
    header.extend(width.to_be_bytes());
    header.extend(height.to_be_bytes());
    header.extend([8, 6, 0, 0, 0]);
    png_chunk(&mut out, b"IHDR", &header);
    for (kind, data) in extra {
        png_chunk(&mut out, kind, data);
    }
    png_chunk(&mut out, b"IDAT", idat);
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// One opaque red pixel as PNG image data.
fn one_pixel_idat() -> Vec<u8> {
    zlib(&[0, 255, 0, 0, 255])
}

/// A GIF whose logical screen is `screen` and whose first frame claims `frame`, with an LZW stream that
/// holds only a clear code and the end code.
fn gif(screen: (u16, u16), frame: (u16, u16)) -> Vec<u8> {
    let mut out = b"GIF89a".to_vec();
    out.extend(screen.0.to_le_bytes());
    out.extend(screen.1.to_le_bytes());
    out.extend([0x80, 0, 0, 0, 0, 0, 255, 255, 255]);
    out.push(0x2C);
    out.extend([0, 0, 0, 0]);
    out.extend(frame.0.to_le_bytes());
    out.extend(frame.1.to_le_bytes());
    out.push(0);
    out.extend([2, 1, 0x2C, 0]);
    out.push(0x3B);
    out
}

/// A little-endian 8-bit greyscale TIFF of one strip holding `strip` (compressed with `compression`:
/// 1 none, 8 deflate), claiming `width` x `height`.
fn tiff(width: u32, height: u32, compression: u16, strip: &[u8]) -> Vec<u8> {
    let mut out = b"II*\0".to_vec();
    let padded = strip.len() + strip.len() % 2;
    let ifd_at = 8 + padded as u32;
    out.extend(ifd_at.to_le_bytes());
    out.extend(strip);
    out.resize(8 + padded, 0);
    let entries: [(u16, u16, u32); 9] = [
        (256, 4, width),
        (257, 4, height),
        (258, 3, 8),
        (259, 3, u32::from(compression)),
        (262, 3, 1),
        (273, 4, 8),
        (277, 3, 1),
        (278, 4, height),
        (279, 4, strip.len() as u32),
    ];
    out.extend((entries.len() as u16).to_le_bytes());
    for (tag, kind, value) in entries {
        out.extend(tag.to_le_bytes());
        out.extend(kind.to_le_bytes());
        out.extend(1u32.to_le_bytes());
        out.extend(value.to_le_bytes());
    }
    out.extend(0u32.to_le_bytes());
    out
}

fn riff(chunks: &[(&[u8; 4], Vec<u8>)]) -> Vec<u8> {
    let mut body = b"WEBP".to_vec();
    for (fourcc, data) in chunks {
        body.extend(*fourcc);
        body.extend((data.len() as u32).to_le_bytes());
        body.extend(data);
        if data.len() % 2 == 1 {
            body.push(0);
        }
    }
    let mut out = b"RIFF".to_vec();
    out.extend((body.len() as u32).to_le_bytes());
    out.extend(body);
    out
}

/// A lossless WebP bitstream header claiming `width` x `height` (at most 16384 each), then junk.
fn vp8l(width: u32, height: u32) -> Vec<u8> {
    let bits = (width - 1) | ((height - 1) << 14);
    let mut data = vec![0x2F];
    data.extend(bits.to_le_bytes());
    data.extend([0u8; 16]);
    data
}

/// An extended-format (VP8X) header claiming a `width` x `height` canvas (at most 2^24 each).
fn vp8x(width: u32, height: u32) -> Vec<u8> {
    let mut data = vec![0u8; 4];
    data.extend(&(width - 1).to_le_bytes()[..3]);
    data.extend(&(height - 1).to_le_bytes()[..3]);
    data
}

/// A zip written by the zip crate; `deflate` per entry.
fn zip_of(entries: &[(&str, &[u8], bool)]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, bytes, deflate) in entries {
        let method = if *deflate {
            zip::CompressionMethod::Deflated
        } else {
            zip::CompressionMethod::Stored
        };
        let options = zip::write::SimpleFileOptions::default().compression_method(method);
        writer.start_file(*name, options).unwrap();
        writer.write_all(bytes).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

/// Rewrites the uncompressed size that both headers of entry `name` declare.
fn declare_size(zip: &mut [u8], name: &str, size: u32) {
    let mut patched = 0;
    for at in 0..zip.len().saturating_sub(46) {
        let (signature, name_at, size_at) = match &zip[at..at + 4] {
            [b'P', b'K', 3, 4] => ("local", at + 30, at + 22),
            [b'P', b'K', 1, 2] => ("central", at + 46, at + 24),
            _ => continue,
        };
        let name_len_at = if signature == "local" {
            at + 26
        } else {
            at + 28
        };
        let name_len = usize::from(u16::from_le_bytes([zip[name_len_at], zip[name_len_at + 1]]));
        if zip.get(name_at..name_at + name_len) == Some(name.as_bytes()) {
            zip[size_at..size_at + 4].copy_from_slice(&size.to_le_bytes());
            patched += 1;
        }
    }
    assert_eq!(patched, 2, "both headers of {name}");
}

/// One entry of a hand-written zip: stored (not compressed), with any name bytes and Unix mode, or
/// pointing at an earlier entry's local header and data (overlapping entries).
struct Raw {
    name: Vec<u8>,
    data: Vec<u8>,
    unix_mode: Option<u32>,
    same_data_as: Option<usize>,
}

impl Raw {
    fn file(name: &str, data: Vec<u8>) -> Raw {
        Raw {
            name: name.as_bytes().to_vec(),
            data,
            unix_mode: None,
            same_data_as: None,
        }
    }
}

fn raw_zip(entries: &[Raw]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut offsets: Vec<u32> = Vec::new();
    for entry in entries {
        if let Some(earlier) = entry.same_data_as {
            offsets.push(offsets[earlier]);
            continue;
        }
        offsets.push(out.len() as u32);
        out.extend(0x0403_4b50u32.to_le_bytes());
        out.extend(20u16.to_le_bytes());
        out.extend(0x0800u16.to_le_bytes());
        out.extend(0u16.to_le_bytes());
        out.extend(0u16.to_le_bytes());
        out.extend(0x21u16.to_le_bytes());
        out.extend(crc32(&entry.data).to_le_bytes());
        out.extend((entry.data.len() as u32).to_le_bytes());
        out.extend((entry.data.len() as u32).to_le_bytes());
        out.extend((entry.name.len() as u16).to_le_bytes());
        out.extend(0u16.to_le_bytes());
        out.extend(&entry.name);
        out.extend(&entry.data);
    }
    let directory_at = out.len();
    for (entry, offset) in entries.iter().zip(&offsets) {
        let data = match entry.same_data_as {
            Some(earlier) => &entries[earlier].data,
            None => &entry.data,
        };
        out.extend(0x0201_4b50u32.to_le_bytes());
        let made_by: u16 = if entry.unix_mode.is_some() {
            (3 << 8) | 20
        } else {
            20
        };
        out.extend(made_by.to_le_bytes());
        out.extend(20u16.to_le_bytes());
        out.extend(0x0800u16.to_le_bytes());
        out.extend(0u16.to_le_bytes());
        out.extend(0u16.to_le_bytes());
        out.extend(0x21u16.to_le_bytes());
        out.extend(crc32(data).to_le_bytes());
        out.extend((data.len() as u32).to_le_bytes());
        out.extend((data.len() as u32).to_le_bytes());
        out.extend((entry.name.len() as u16).to_le_bytes());
        out.extend([0u8; 8]);
        out.extend((entry.unix_mode.unwrap_or(0) << 16).to_le_bytes());
        out.extend(offset.to_le_bytes());
        out.extend(&entry.name);
    }
    let directory_len = out.len() - directory_at;
    out.extend(0x0605_4b50u32.to_le_bytes());
    out.extend([0u8; 4]);
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend((entries.len() as u16).to_le_bytes());
    out.extend((directory_len as u32).to_le_bytes());
    out.extend((directory_at as u32).to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out
}

// ---- running imports ----------------------------------------------------------------------------

fn kind(damage: &Damage) -> String {
    serde_json::to_value(damage).unwrap()["kind"]
        .as_str()
        .unwrap()
        .to_string()
}

/// File → (kind, message) of everything the report skipped.
fn skipped(report: &ImportReport) -> BTreeMap<String, (String, String)> {
    report
        .skipped
        .iter()
        .map(|s| (s.file.clone(), (kind(&s.reason), s.reason.to_string())))
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Imports the zip `bytes` with `options` into a fresh store; returns the report, the photos' original
/// names, and the import's peak memory on this thread.
fn import_zip(bytes: &[u8], options: &ImportOptions) -> (ImportReport, Vec<String>, usize) {
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("takeout.zip");
    std::fs::write(&zip, bytes).unwrap();
    let store = LocalStore::open(dir.path().join("store")).unwrap();
    let tenant = TenantId::new("mallory").unwrap();
    let runtime = runtime();
    let (report, peak, _) = measured(|| {
        runtime
            .block_on(import(
                &store,
                &tenant,
                ImportSource::Zip(zip.clone()),
                options,
            ))
            .unwrap()
    });
    let manifest = runtime.block_on(load_manifest(&store, &tenant)).unwrap();
    let photos = manifest
        .photos
        .iter()
        .map(|p| p.meta.original.clone())
        .collect();
    (report, photos, peak)
}

// ---- image formats: the size is checked from the header, and decoding memory is bounded --------

/// Decodes `bytes` under the default 100 MP limit; the result, the peak memory and the largest single
/// allocation.
fn decode_measured(bytes: &[u8]) -> (Result<image::DynamicImage, Damage>, usize, usize) {
    measured(|| reverie_library::decode(bytes, ImportOptions::default().max_pixels, 1))
}

#[track_caller]
fn assert_too_large(format: &str, bytes: &[u8], width: u32, height: u32) {
    let (result, peak, largest) = decode_measured(bytes);
    match result {
        Err(Damage::TooLarge {
            width: w,
            height: h,
            limit,
        }) => {
            assert_eq!((w, h, limit), (width, height, 100_000_000), "{format}");
        }
        other => panic!(
            "{format}: expected too_large, got {:?}",
            other.map(|i| i.dimensions_of())
        ),
    }
    assert!(
        peak < 4 * MIB && largest < 4 * MIB,
        "{format}: refusing a header took {peak} bytes (largest allocation {largest})"
    );
}

trait DimensionsOf {
    fn dimensions_of(&self) -> (u32, u32);
}

impl DimensionsOf for image::DynamicImage {
    fn dimensions_of(&self) -> (u32, u32) {
        (self.width(), self.height())
    }
}

#[test]
fn every_accepted_format_is_refused_from_its_header_when_past_the_pixel_limit() {
    assert_too_large("jpeg", &jpeg_claiming(60_000, 60_000), 60_000, 60_000);
    assert_too_large(
        "png",
        &png(100_000, 100_000, &[], &one_pixel_idat()),
        100_000,
        100_000,
    );
    assert_too_large("gif", &gif((65_535, 65_535), (1, 1)), 65_535, 65_535);
    assert_too_large(
        "tiff",
        &tiff(100_000, 100_000, 1, &[0; 64]),
        100_000,
        100_000,
    );
    // (16,000 rather than the format's 16,384: image-webp 0.2.4 reads a 16,384-pixel side of a
    // simple lossless file as 0, which is refused as corrupt all the same.)
    assert_too_large(
        "webp (lossless)",
        &riff(&[(b"VP8L", vp8l(16_000, 16_000))]),
        16_000,
        16_000,
    );
    assert_too_large(
        "webp (extended)",
        &riff(&[(b"VP8X", vp8x(12_000, 12_000)), (b"VP8L", vp8l(16, 16))]),
        12_000,
        12_000,
    );
    // Canvases past what the WebP decoder itself accepts are refused by its header check.
    let (result, peak, _) = decode_measured(&riff(&[
        (b"VP8X", vp8x(1 << 20, 1 << 20)),
        (b"VP8L", vp8l(16, 16)),
    ]));
    assert!(
        matches!(result, Err(Damage::Corrupt(_))),
        "{:?}",
        result.err()
    );
    assert!(peak < 4 * MIB, "{peak}");
}

/// Files whose headers are within the pixel limit but whose contents would make a decoder allocate far
/// more than the picture needs: each is refused or decoded with memory bounded by its pixel count.
#[test]
fn decoder_memory_is_bounded_by_the_pixel_count_not_by_the_file() {
    let bombs: Vec<(&str, Vec<u8>)> = vec![
        // A 16x16 screen whose frame claims 65535x65535 (17 GB of RGBA).
        (
            "gif frame larger than its screen",
            gif((16, 16), (65_535, 65_535)),
        ),
        // 1x1 PNGs whose text, ICC profile and image data inflate to 64 MiB.
        ("png zTXt bomb", {
            let mut text = b"Comment\0\0".to_vec();
            text.extend(ZEROS_64_MIB.iter());
            png(1, 1, &[(b"zTXt", text)], &one_pixel_idat())
        }),
        ("png iTXt bomb", {
            let mut text = b"Comment\0\x01\0\0\0".to_vec();
            text.extend(ZEROS_64_MIB.iter());
            png(1, 1, &[(b"iTXt", text)], &one_pixel_idat())
        }),
        ("png iCCP bomb", {
            let mut profile = b"icc\0\0".to_vec();
            profile.extend(ZEROS_64_MIB.iter());
            png(1, 1, &[(b"iCCP", profile)], &one_pixel_idat())
        }),
        ("png IDAT bomb", png(1, 1, &[], &ZEROS_64_MIB)),
        // A 64x64 deflate TIFF strip that inflates to 64 MiB.
        ("tiff deflate strip bomb", tiff(64, 64, 8, &ZEROS_64_MIB)),
        // A strip that claims to start far past the end of the file.
        ("tiff strip out of the file", {
            let mut bytes = tiff(64, 64, 1, &[0; 16]);
            let at = bytes.len() - 4 - 12 * 4 + 8;
            bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
            bytes
        }),
        // A 16x16 canvas whose image claims 16384x16384.
        (
            "webp image larger than its canvas",
            riff(&[(b"VP8X", vp8x(16, 16)), (b"VP8L", vp8l(16_384, 16_384))]),
        ),
    ];
    for (name, bytes) in bombs {
        let (result, peak, largest) = decode_measured(&bytes);
        if let Ok(image) = &result {
            assert!(
                u64::from(image.width()) * u64::from(image.height()) <= 64 * 64,
                "{name}: decoded {:?}",
                image.dimensions_of()
            );
        }
        // Headers may take 8 MiB (reverie_library::decode::HEADER_MAX_ALLOC); each bomb inflates to 64.
        assert!(
            peak < 12 * MIB && largest < 12 * MIB,
            "{name}: decoding took {peak} bytes at once, largest allocation {largest} ({:?})",
            result.as_ref().err()
        );
    }
}

/// The header budget refuses nothing ordinary: a 9 MB TIFF and a PNG with a 2 MiB ICC profile decode.
#[test]
fn ordinary_images_decode_within_the_header_budget() {
    let picture = image::RgbImage::from_fn(2000, 1500, |x, y| {
        image::Rgb([(x % 251) as u8, (y % 241) as u8, ((x + y) % 239) as u8])
    });
    let mut tiff_bytes = std::io::Cursor::new(Vec::new());
    picture
        .write_to(&mut tiff_bytes, ImageFormat::Tiff)
        .unwrap();
    let decoded = reverie_library::decode(tiff_bytes.get_ref(), 100_000_000, 1).unwrap();
    assert_eq!(decoded.dimensions_of(), (2000, 1500));

    let mut profile = b"big profile\0\0".to_vec();
    profile.extend(zlib(&vec![7u8; 2 * MIB]));
    let png_bytes = png(1, 1, &[(b"iCCP", profile)], &one_pixel_idat());
    let decoded = reverie_library::decode(&png_bytes, 100_000_000, 1).unwrap();
    assert_eq!(decoded.dimensions_of(), (1, 1));
}

#[test]
fn formats_the_import_does_not_accept_are_refused_before_any_decoding() {
    // A BMP header claiming 1,000,000 x 1,000,000: known to the image crate, not accepted here.
    let mut bmp = b"BM".to_vec();
    bmp.extend([0u8; 12]);
    bmp.extend(40u32.to_le_bytes());
    bmp.extend(1_000_000i32.to_le_bytes());
    bmp.extend(1_000_000i32.to_le_bytes());
    bmp.extend([1, 0, 24, 0]);
    bmp.extend([0u8; 24]);
    let (result, peak, _) = decode_measured(&bmp);
    assert!(
        matches!(result, Err(Damage::Unsupported(_))),
        "{:?}",
        result.err()
    );
    assert!(peak < MIB, "{peak}");
}

// ---- zip archives -------------------------------------------------------------------------------

/// A zip entry that inflates to far more than photos ever do (an extreme compression ratio) is
/// refused before it is inflated, whatever its declared size.
#[test]
fn zip_entries_with_an_extreme_compression_ratio_are_refused_unread() {
    let zeros = vec![0u8; 32 * MIB];
    let good = jpeg(1);
    let archive = zip_of(&[
        ("Takeout/Google Photos/Trip/zeros.jpg", &zeros, true),
        ("Takeout/Google Photos/Trip/good.jpg", &good, true),
    ]);
    drop(zeros);
    assert!(archive.len() < MIB, "{}", archive.len());
    let (report, photos, peak) = import_zip(&archive, &ImportOptions::default());
    let skipped = skipped(&report);
    let (kind, message) = &skipped["Takeout/Google Photos/Trip/zeros.jpg"];
    assert_eq!(kind, "suspicious_archive", "{message}");
    assert!(message.contains("ratio"), "{message}");
    assert_eq!(photos, ["Takeout/Google Photos/Trip/good.jpg"]);
    assert!(peak < 8 * MIB, "the import held {peak} bytes at once");
}

/// An entry whose headers declare a small size but whose data inflates to far more is cut where its
/// declared size ends and refused.
#[test]
fn zip_entries_that_inflate_past_their_declared_size_are_cut_there() {
    let zeros = vec![0u8; 32 * MIB];
    let good = jpeg(2);
    let mut archive = zip_of(&[
        ("Takeout/liar.jpg", &zeros, true),
        ("Takeout/good.jpg", &good, true),
    ]);
    drop(zeros);
    declare_size(&mut archive, "Takeout/liar.jpg", 1000);
    let (report, photos, peak) = import_zip(&archive, &ImportOptions::default());
    let skipped = skipped(&report);
    let (kind, message) = &skipped["Takeout/liar.jpg"];
    assert_eq!(kind, "suspicious_archive", "{message}");
    assert!(message.contains("1000"), "{message}");
    assert_eq!(photos, ["Takeout/good.jpg"]);
    assert!(peak < 8 * MIB, "the import held {peak} bytes at once");
}

/// Entries that share their data (the overlapping-entries zip bomb: thousands of names over one
/// inflating kernel) are refused; the entry that overlaps nothing imports.
#[test]
fn overlapping_zip_entries_are_refused() {
    let archive = raw_zip(&[
        Raw::file("Takeout/a.jpg", jpeg(3)),
        Raw {
            same_data_as: Some(0),
            ..Raw::file("Takeout/b.jpg", Vec::new())
        },
        Raw::file("Takeout/c.jpg", jpeg(4)),
    ]);
    let (report, photos, _) = import_zip(&archive, &ImportOptions::default());
    let skipped = skipped(&report);
    for name in ["Takeout/a.jpg", "Takeout/b.jpg"] {
        let (kind, message) = &skipped[name];
        assert_eq!(kind, "suspicious_archive", "{name}: {message}");
        assert!(message.contains("overlap"), "{message}");
    }
    assert_eq!(photos, ["Takeout/c.jpg"]);
}

/// A zip inside the zip is not unpacked (no recursion, no bomb in a bomb) and says so.
#[test]
fn nested_archives_are_reported_not_unpacked() {
    let inner = zip_of(&[("IMG_1.jpg", &jpeg(5), true)]);
    let archive = zip_of(&[
        ("Takeout/Google Photos/inner.zip", &inner, false),
        ("Takeout/Google Photos/good.jpg", &jpeg(6), true),
    ]);
    let (report, photos, _) = import_zip(&archive, &ImportOptions::default());
    let skipped = skipped(&report);
    let (kind, message) = &skipped["Takeout/Google Photos/inner.zip"];
    assert_eq!(kind, "unsupported", "{message}");
    assert!(message.contains("archive"), "{message}");
    assert_eq!(photos, ["Takeout/Google Photos/good.jpg"]);
}

/// Names that would escape an extraction folder, links, and NUL bytes are refused by name; the rest of
/// the archive imports.
#[test]
fn unsafe_zip_names_are_refused_and_the_rest_imports() {
    let archive = raw_zip(&[
        Raw::file("../../escaped.jpg", jpeg(10)),
        Raw::file("Takeout\\..\\..\\escaped.jpg", jpeg(11)),
        Raw::file("/etc/absolute.jpg", jpeg(12)),
        Raw::file("C:\\Windows\\drive.jpg", jpeg(13)),
        Raw {
            name: b"Takeout/nul\0.jpg".to_vec(),
            ..Raw::file("", jpeg(14))
        },
        Raw {
            unix_mode: Some(0o120_777),
            ..Raw::file("Takeout/link.jpg", b"/etc/passwd".to_vec())
        },
        Raw::file("Takeout/good.jpg", jpeg(15)),
    ]);
    let (report, photos, _) = import_zip(&archive, &ImportOptions::default());
    let kinds: Vec<String> = report.skipped.iter().map(|s| kind(&s.reason)).collect();
    assert_eq!(kinds, vec!["unsafe_path"; 6], "{:#?}", report.skipped);
    assert_eq!(photos, ["Takeout/good.jpg"]);
}

// ---- object-store prefixes ----------------------------------------------------------------------

/// The source store: a local store that records which objects were read and how many bytes were served,
/// and can under-report sizes in its listing (an object replaced after it was listed).
#[derive(Debug)]
struct Recording {
    inner: LocalStore,
    listed_at_most: Option<u64>,
    reads: Mutex<Vec<String>>,
    served: Arc<AtomicU64>,
}

impl Recording {
    fn new(root: &Path, listed_at_most: Option<u64>) -> Recording {
        Recording {
            inner: LocalStore::open(root).unwrap(),
            listed_at_most,
            reads: Mutex::new(Vec::new()),
            served: Arc::new(AtomicU64::new(0)),
        }
    }
}

struct CountingReader {
    inner: ObjectReader,
    served: Arc<AtomicU64>,
}

impl AsyncRead for CountingReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = self.inner.as_mut().poll_read(cx, buf);
        let read = buf.filled().len() - before;
        self.served.fetch_add(read as u64, Ordering::Relaxed);
        poll
    }
}

#[async_trait::async_trait]
impl ObjectStore for Recording {
    fn backend(&self) -> &'static str {
        "recording"
    }

    fn other_bucket(&self, bucket: &str) -> Result<SharedStore, StoreError> {
        self.inner.other_bucket(bucket)
    }

    async fn put(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
        self.inner.put(key, body).await
    }

    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<bool, StoreError> {
        self.inner.put_if_absent(key, body).await
    }

    async fn put_file(&self, key: &str, path: &Path) -> Result<(), StoreError> {
        self.inner.put_file(key, path).await
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        self.reads.lock().unwrap().push(key.to_string());
        let bytes = self.inner.get(key).await?;
        self.served.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(bytes)
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        self.reads.lock().unwrap().push(key.to_string());
        let bytes = self.inner.get_range(key, range).await?;
        self.served.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(bytes)
    }

    async fn reader(&self, key: &str) -> Result<ObjectReader, StoreError> {
        self.reads.lock().unwrap().push(key.to_string());
        Ok(Box::pin(CountingReader {
            inner: self.inner.reader(key).await?,
            served: self.served.clone(),
        }))
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        self.inner.head(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let mut objects = self.inner.list(prefix).await?;
        if let Some(most) = self.listed_at_most {
            for object in &mut objects {
                object.size = object.size.min(most);
            }
        }
        Ok(objects)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
}

/// Imports everything under `incoming/` of `source` into a separate library store.
async fn import_objects(
    source: &Recording,
    options: &ImportOptions,
) -> (ImportReport, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let library = LocalStore::open(dir.path()).unwrap();
    let tenant = TenantId::new("olga").unwrap();
    let report = import(
        &library,
        &tenant,
        ImportSource::Objects {
            store: source,
            prefix: "incoming".into(),
        },
        options,
    )
    .await
    .unwrap();
    let manifest = load_manifest(&library, &tenant).await.unwrap();
    let photos = manifest
        .photos
        .iter()
        .map(|p| p.meta.original.clone())
        .collect();
    (report, photos)
}

/// A JPEG padded to `size` bytes (decoders stop at the end-of-image marker).
fn big_jpeg(size: usize) -> Vec<u8> {
    let mut bytes = jpeg(20);
    bytes.resize(size, 0);
    bytes
}

/// An object over the per-photo limit is refused from its listed size: it is never downloaded.
#[tokio::test]
async fn an_object_over_the_file_limit_is_refused_without_downloading_it() {
    let dir = tempfile::tempdir().unwrap();
    let source = Recording::new(dir.path(), None);
    source
        .put("incoming/big.jpg", big_jpeg(3 * MIB).into())
        .await
        .unwrap();
    source
        .put("incoming/good.jpg", jpeg(21).into())
        .await
        .unwrap();
    let options = ImportOptions {
        max_file_bytes: MIB as u64,
        ..ImportOptions::default()
    };
    let (report, photos) = import_objects(&source, &options).await;
    let skipped = skipped(&report);
    assert_eq!(skipped["big.jpg"].0, "file_too_large", "{skipped:?}");
    assert!(
        skipped["big.jpg"].1.contains("3145728 bytes"),
        "{skipped:?}"
    );
    assert_eq!(photos, ["good.jpg"]);
    let reads = source.reads.lock().unwrap().clone();
    assert!(
        !reads.iter().any(|key| key == "incoming/big.jpg"),
        "the big object was read: {reads:?}"
    );
    assert!(source.served.load(Ordering::Relaxed) < MIB as u64);
}

/// An object that holds more than its listing said (replaced after the listing, or a lying store) is
/// read no further than the listed size.
#[tokio::test]
async fn an_object_larger_than_its_listing_is_read_no_further() {
    let dir = tempfile::tempdir().unwrap();
    let source = Recording::new(dir.path(), Some(100_000));
    source
        .put("incoming/grown.jpg", big_jpeg(3 * MIB).into())
        .await
        .unwrap();
    source
        .put("incoming/good.jpg", jpeg(22).into())
        .await
        .unwrap();
    let (report, photos) = import_objects(&source, &ImportOptions::default()).await;
    let skipped = skipped(&report);
    let (_, message) = &skipped["grown.jpg"];
    assert!(message.contains("100000"), "{message}");
    assert_eq!(photos, ["good.jpg"]);
    let served = source.served.load(Ordering::Relaxed);
    // Each photo is read twice (hash, then describe); the grown one is cut at its listed size.
    assert!(served < 4 * 100_000, "{served} bytes served");
}

// ---- import-wide limits -------------------------------------------------------------------------

/// A source with more photos than `max_files` is cut in name order; the cut is one report entry that
/// names the first photo left out and how many follow it. Sidecars do not count.
#[test]
fn a_zip_with_more_photos_than_max_files_is_cut_and_the_cut_named() {
    let mut entries: Vec<(String, Vec<u8>)> = (0..30u8)
        .map(|i| (format!("Takeout/IMG_{i:02}.jpg"), jpeg(30 + i)))
        .collect();
    for i in 0..5 {
        entries.push((
            format!("Takeout/IMG_{i:02}.jpg.json"),
            br#"{"title":"sidecar"}"#.to_vec(),
        ));
    }
    let entries: Vec<(&str, &[u8], bool)> = entries
        .iter()
        .map(|(name, bytes)| (name.as_str(), bytes.as_slice(), true))
        .collect();
    let options = ImportOptions {
        max_files: 10,
        ..ImportOptions::default()
    };
    let (report, mut photos, _) = import_zip(&zip_of(&entries), &options);
    photos.sort();
    let expected: Vec<String> = (0..10).map(|i| format!("Takeout/IMG_{i:02}.jpg")).collect();
    assert_eq!(photos, expected);
    assert_eq!(report.skipped.len(), 1, "{:#?}", report.skipped);
    let skipped = skipped(&report);
    let (kind, message) = &skipped["Takeout/IMG_10.jpg"];
    assert_eq!(kind, "limit_reached");
    assert!(
        message.contains("the 19 after it") && message.contains("max_files"),
        "{message}"
    );
}

/// `max_total_bytes` cuts a prefix by the objects' listed sizes, before any of the cut is downloaded.
#[tokio::test]
async fn a_prefix_over_max_total_bytes_is_cut_before_downloading() {
    let dir = tempfile::tempdir().unwrap();
    let source = Recording::new(dir.path(), None);
    for i in 0..5u8 {
        let mut bytes = jpeg(60 + i);
        bytes.resize(100_000, 0);
        source
            .put(&format!("incoming/IMG_{i}.jpg"), bytes.into())
            .await
            .unwrap();
    }
    let options = ImportOptions {
        max_total_bytes: 250_000,
        ..ImportOptions::default()
    };
    let (report, mut photos) = import_objects(&source, &options).await;
    photos.sort();
    assert_eq!(photos, ["IMG_0.jpg", "IMG_1.jpg"]);
    let skipped = skipped(&report);
    let (kind, message) = &skipped["IMG_2.jpg"];
    assert_eq!(kind, "limit_reached");
    assert!(
        message.contains("the 2 after it") && message.contains("max_total_bytes"),
        "{message}"
    );
    let reads = source.reads.lock().unwrap().clone();
    assert!(
        reads
            .iter()
            .all(|key| key < &"incoming/IMG_2.jpg".to_string()),
        "{reads:?}"
    );
}

/// The same limits apply to folders.
#[tokio::test]
async fn a_folder_with_more_photos_than_max_files_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("photos");
    std::fs::create_dir(&root).unwrap();
    for i in 0..5u8 {
        std::fs::write(root.join(format!("IMG_{i}.jpg")), jpeg(70 + i)).unwrap();
    }
    let store = LocalStore::open(dir.path().join("store")).unwrap();
    let tenant = TenantId::new("fred").unwrap();
    let options = ImportOptions {
        max_files: 3,
        ..ImportOptions::default()
    };
    let report = import(&store, &tenant, ImportSource::Folder(root), &options)
        .await
        .unwrap();
    assert_eq!(report.imported, 3);
    let skipped = skipped(&report);
    assert_eq!(skipped["IMG_3.jpg"].0, "limit_reached", "{skipped:?}");
}
