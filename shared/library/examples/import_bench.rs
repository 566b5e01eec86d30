//! Library import throughput: generates a folder of JPEG photos with EXIF (capture time, offset, GPS,
//! camera) at 1–2 megapixels, imports it into the embedded store, then streams every shard back through
//! the shard reader — from the embedded store and, when reachable, from the test S3 server.
//!
//!     cargo run --release -p reverie-library --example import_bench [-- --photos 1000]
//!
//! Prints a table; numbers for this machine are in docs/performance.md ("Library import").

use std::path::Path;
use std::time::{Duration, Instant};

use image::codecs::jpeg::JpegEncoder;
use image::{ImageEncoder, RgbImage};
use reverie_library::{import, load_manifest, read_samples, ImportOptions, ImportSource};
use reverie_shared::ids::TenantId;
use reverie_shared::keys;
use reverie_shared::ports::store::{LocalStore, ObjectStore, S3Store};

/// Sizes around 1–2 MP, landscape and portrait, as phones and compacts write them.
const SIZES: &[(u32, u32)] = &[
    (1200, 900),
    (1280, 960),
    (1440, 1080),
    (1600, 1200),
    (1632, 1224),
    (1024, 1365),
    (1080, 1440),
    (1200, 1600),
];

/// Places with cities nearby, so reverse geocoding does real work.
const PLACES: &[(f64, f64)] = &[
    (21.2766, -157.8278),
    (48.8566, 2.3522),
    (36.0544, -112.1401),
    (56.1572, 10.2107),
    (41.8902, 12.4922),
    (35.6762, 139.6503),
];

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let photos = photo_count()?;
    let source = tempfile::tempdir()?;
    let started = Instant::now();
    let source_bytes = generate(source.path(), photos)?;
    println!(
        "generated {photos} JPEGs ({:.1} MB) in {:.1} s",
        source_bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );

    let store_dir = tempfile::tempdir()?;
    let local = LocalStore::open(store_dir.path())?;
    let tenant = TenantId::new("bench")?;
    let started = Instant::now();
    let report = import(
        &local,
        &tenant,
        ImportSource::Folder(source.path().to_path_buf()),
        &ImportOptions::default(),
    )
    .await?;
    let import_time = started.elapsed();
    if report.imported != photos {
        return Err(format!(
            "imported {} of {photos} photos; skipped: {:?}",
            report.imported, report.skipped
        )
        .into());
    }

    let mut rows = vec![Row {
        step: "import folder → embedded store".into(),
        items: photos,
        bytes: source_bytes,
        time: import_time,
    }];
    rows.push(read_all_shards(&local, &tenant, "shard read, embedded store").await?);
    match s3_store().await {
        Some(s3) => {
            copy_shards(&local, &s3, &tenant).await?;
            rows.push(read_all_shards(&s3, &tenant, "shard read, S3 (s3s-fs)").await?);
            s3.remove_bucket().await?;
        }
        None => println!("S3 server not reachable: S3 shard read skipped"),
    }
    print_table(&rows, report.shards_written);
    Ok(())
}

fn photo_count() -> Result<usize, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => Ok(1000),
        [flag, n] if flag == "--photos" => n.parse().map_err(|e| format!("--photos {n}: {e}")),
        other => Err(format!("usage: import_bench [--photos N]; got {other:?}")),
    }
}

struct Row {
    step: String,
    items: usize,
    bytes: u64,
    time: Duration,
}

fn print_table(rows: &[Row], shards: usize) {
    println!("\n{shards} shards");
    println!(
        "| {:<34} | {:>6} | {:>9} | {:>8} | {:>9} | {:>7} |",
        "step", "photos", "MB", "seconds", "photos/s", "MB/s"
    );
    println!(
        "|{:-<36}|{:->8}|{:->11}|{:->10}|{:->11}|{:->9}|",
        "", "", "", "", "", ""
    );
    for row in rows {
        let seconds = row.time.as_secs_f64();
        println!(
            "| {:<34} | {:>6} | {:>9.1} | {:>8.2} | {:>9.1} | {:>7.1} |",
            row.step,
            row.items,
            row.bytes as f64 / 1e6,
            seconds,
            row.items as f64 / seconds,
            row.bytes as f64 / 1e6 / seconds
        );
    }
}

/// Writes `count` photos into `dir` on every core; returns their total size.
fn generate(dir: &Path, count: usize) -> Result<u64, String> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let written: Result<Vec<u64>, String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let mut bytes = 0;
                    for i in (t..count).step_by(threads) {
                        let jpeg = photo(i)?;
                        bytes += jpeg.len() as u64;
                        let album = dir.join(format!("album_{:02}", i % 12));
                        std::fs::create_dir_all(&album).map_err(|e| e.to_string())?;
                        std::fs::write(album.join(format!("IMG_{i:05}.jpg")), jpeg)
                            .map_err(|e| e.to_string())?;
                    }
                    Ok(bytes)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .map_err(|_| "generator thread panicked".to_string())?
            })
            .collect()
    });
    Ok(written?.iter().sum())
}

/// One synthetic photo: a lit gradient with shapes and sensor-like noise (so it compresses like a
/// photo, not like a flat test card), JPEG quality 88, with EXIF.
fn photo(i: usize) -> Result<Vec<u8>, String> {
    let (width, height) = SIZES[i % SIZES.len()];
    let mut seed = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut noise = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 56) as i32 - 128
    };
    let hue = (i * 37 % 255) as f32;
    let (cx, cy, r) = (
        (width / 2 + (i as u32 * 53) % (width / 3)) as f32,
        (height / 3 + (i as u32 * 31) % (height / 3)) as f32,
        (height / 5) as f32,
    );
    let image = RgbImage::from_fn(width, height, |x, y| {
        let (fx, fy) = (x as f32 / width as f32, y as f32 / height as f32);
        let inside = (x as f32 - cx).powi(2) + (y as f32 - cy).powi(2) < r * r;
        let base = if inside {
            [230.0, 200.0 - hue * 0.3, 90.0]
        } else {
            [
                hue * (1.0 - fy),
                120.0 + 80.0 * fx,
                200.0 * (1.0 - fy) + 40.0,
            ]
        };
        let n = noise() as f32 * 0.08;
        image::Rgb(base.map(|c| (c + n).clamp(0.0, 255.0) as u8))
    });
    let mut jpeg = Vec::new();
    let mut encoder = JpegEncoder::new_with_quality(&mut jpeg, 88);
    encoder
        .set_exif_metadata(exif(i))
        .map_err(|e| e.to_string())?;
    encoder
        .write_image(&image, width, height, image::ExtendedColorType::Rgb8)
        .map_err(|e| e.to_string())?;
    Ok(jpeg)
}

/// One TIFF directory entry, its value already in little-endian bytes.
struct Entry {
    tag: u16,
    kind: u16,
    count: u32,
    data: Vec<u8>,
}

fn ascii(tag: u16, text: &str) -> Entry {
    let mut data = text.as_bytes().to_vec();
    data.push(0);
    Entry {
        tag,
        kind: 2,
        count: data.len() as u32,
        data,
    }
}

fn long(tag: u16, value: u32) -> Entry {
    Entry {
        tag,
        kind: 4,
        count: 1,
        data: value.to_le_bytes().to_vec(),
    }
}

fn rationals(tag: u16, values: &[(u32, u32)]) -> Entry {
    Entry {
        tag,
        kind: 5,
        count: values.len() as u32,
        data: values
            .iter()
            .flat_map(|(n, d)| n.to_le_bytes().into_iter().chain(d.to_le_bytes()))
            .collect(),
    }
}

fn degrees(value: f64) -> [(u32, u32); 3] {
    let value = value.abs();
    let minutes = value.fract() * 60.0;
    [
        (value as u32, 1),
        (minutes as u32, 1),
        ((minutes.fract() * 60.0 * 100.0) as u32, 100),
    ]
}

/// Bytes an IFD takes: count, entries, next-IFD offset, then values longer than 4 bytes (even-aligned).
fn ifd_len(entries: &[Entry]) -> usize {
    let values: usize = entries
        .iter()
        .filter(|e| e.data.len() > 4)
        .map(|e| (e.data.len() + 1) & !1)
        .sum();
    2 + 12 * entries.len() + 4 + values
}

fn write_ifd(tiff: &mut Vec<u8>, entries: &[Entry]) {
    let mut value_at = tiff.len() + 2 + 12 * entries.len() + 4;
    let mut values = Vec::new();
    tiff.extend((entries.len() as u16).to_le_bytes());
    for entry in entries {
        tiff.extend(entry.tag.to_le_bytes());
        tiff.extend(entry.kind.to_le_bytes());
        tiff.extend(entry.count.to_le_bytes());
        if entry.data.len() <= 4 {
            let mut inline = entry.data.clone();
            inline.resize(4, 0);
            tiff.extend(inline);
        } else {
            tiff.extend((value_at as u32).to_le_bytes());
            values.extend(&entry.data);
            if entry.data.len() % 2 == 1 {
                values.push(0);
            }
            value_at += (entry.data.len() + 1) & !1;
        }
    }
    tiff.extend(0u32.to_le_bytes());
    tiff.extend(values);
}

/// EXIF (a little-endian TIFF): camera, capture time with its UTC offset, GPS position.
fn exif(i: usize) -> Vec<u8> {
    let (lat, lon) = PLACES[i % PLACES.len()];
    let day = 1 + i % 28;
    let hour = 6 + i % 14;
    let exif_ifd = vec![
        ascii(
            0x9003,
            &format!("2023:05:{day:02} {hour:02}:{:02}:00", i % 60),
        ),
        ascii(0x9011, "+02:00"),
    ];
    let gps_ifd = vec![
        ascii(0x0001, if lat >= 0.0 { "N" } else { "S" }),
        rationals(0x0002, &degrees(lat)),
        ascii(0x0003, if lon >= 0.0 { "E" } else { "W" }),
        rationals(0x0004, &degrees(lon)),
    ];
    let mut ifd0 = vec![
        ascii(0x010F, "Reverie"),
        ascii(0x0110, "Bench Cam"),
        long(0x8769, 0),
        long(0x8825, 0),
    ];
    let exif_at = 8 + ifd_len(&ifd0);
    let gps_at = exif_at + ifd_len(&exif_ifd);
    ifd0[2] = long(0x8769, exif_at as u32);
    ifd0[3] = long(0x8825, gps_at as u32);
    let mut tiff = b"II*\0".to_vec();
    tiff.extend(8u32.to_le_bytes());
    write_ifd(&mut tiff, &ifd0);
    write_ifd(&mut tiff, &exif_ifd);
    write_ifd(&mut tiff, &gps_ifd);
    tiff
}

/// Streams every shard of the library through [`read_samples`] (the reader workers use), checking
/// each photo's content hash, and times it.
async fn read_all_shards(
    store: &dyn ObjectStore,
    tenant: &TenantId,
    step: &str,
) -> Result<Row, Box<dyn std::error::Error>> {
    let manifest = load_manifest(store, tenant).await?;
    let started = Instant::now();
    let mut photos = 0;
    let mut bytes = 0;
    for shard in &manifest.shards {
        let reader = store.reader(&keys::shard(tenant, &shard.id)).await?;
        photos += tokio::task::spawn_blocking(move || {
            let blocking = tokio_util::io::SyncIoBridge::new(reader);
            read_samples(std::io::BufReader::new(blocking), |sample| {
                if reverie_shared::ids::PhotoId::of_bytes(&sample.image) != sample.photo {
                    return Err(reverie_library::LibraryError::Shard {
                        shard: "bench".into(),
                        detail: format!("photo {} does not match its hash", sample.photo),
                    });
                }
                Ok(())
            })
        })
        .await??;
        bytes += shard.bytes;
    }
    if photos != manifest.photos.len() {
        return Err(format!("read {photos} of {} photos", manifest.photos.len()).into());
    }
    Ok(Row {
        step: step.into(),
        items: photos,
        bytes,
        time: started.elapsed(),
    })
}

async fn copy_shards(
    from: &dyn ObjectStore,
    to: &dyn ObjectStore,
    tenant: &TenantId,
) -> Result<(), Box<dyn std::error::Error>> {
    for key in [keys::library_manifest(tenant)].into_iter().chain(
        from.list(&keys::shards_prefix(tenant))
            .await?
            .into_iter()
            .map(|o| o.key),
    ) {
        to.put(&key, from.get(&key).await?).await?;
    }
    Ok(())
}

/// The test S3 server (scripts/test's settings), or `None` when it does not answer.
async fn s3_store() -> Option<S3Store> {
    use reverie_shared::testing::{s3_config, unique};
    let store = S3Store::connect(s3_config(&unique("reverie-bench"))).await;
    match tokio::time::timeout(Duration::from_secs(5), store.ensure_bucket()).await {
        Ok(Ok(())) => Some(store),
        _ => None,
    }
}
