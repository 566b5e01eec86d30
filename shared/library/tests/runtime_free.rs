//! An import shares its async runtime with a server (`reverie serve` imports while it answers the web
//! app): decoding, hashing and listing must run on blocking threads, never on the runtime's own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reverie_library::{import, ImportOptions, ImportSource};
use reverie_shared::ids::TenantId;
use reverie_shared::ports::store::LocalStore;

/// A photo that takes a while to decode: noise does not compress, so the PNG decoder works for it.
fn heavy_png(path: &std::path::Path, seed: u32) {
    let mut state = 0x2545_f491_u32 ^ seed.wrapping_mul(0x9e37_79b9);
    let image = image::RgbImage::from_fn(5000, 3500, |_, _| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let [r, g, b, _] = state.to_le_bytes();
        image::Rgb([r, g, b])
    });
    // Encoded fast (the test's time), decoded in full all the same.
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let encoder = image::codecs::png::PngEncoder::new_with_quality(
        file,
        image::codecs::png::CompressionType::Fast,
        image::codecs::png::FilterType::NoFilter,
    );
    image.write_with_encoder(encoder).unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn the_runtime_keeps_running_other_tasks_while_an_import_decodes() {
    let photos = tempfile::tempdir().unwrap();
    for i in 0..2 {
        heavy_png(&photos.path().join(format!("noise_{i}.png")), i + 1);
    }
    // How long one decode holds a thread, measured here on this machine: the yardstick for the gaps.
    let bytes = std::fs::read(photos.path().join("noise_0.png")).unwrap();
    let started = Instant::now();
    reverie_library::decode(&bytes, u64::MAX, 1).unwrap();
    let one_decode = started.elapsed();

    // One runtime thread: a task that wants to run every millisecond notes its longest wait.
    let done = Arc::new(AtomicBool::new(false));
    let ticker = tokio::spawn({
        let done = done.clone();
        async move {
            let mut worst = Duration::ZERO;
            let mut last = Instant::now();
            while !done.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(1)).await;
                worst = worst.max(last.elapsed());
                last = Instant::now();
            }
            worst
        }
    });
    let data = tempfile::tempdir().unwrap();
    let store = LocalStore::open(data.path()).unwrap();
    let report = import(
        &store,
        &TenantId::new("busy").unwrap(),
        ImportSource::Folder(photos.path().to_path_buf()),
        &ImportOptions::default(),
    )
    .await
    .unwrap();
    done.store(true, Ordering::Relaxed);
    let worst = ticker.await.unwrap();
    assert_eq!(report.imported, 2);
    assert!(
        worst < one_decode / 2,
        "another task waited {worst:?} while the import ran; one decode takes {one_decode:?}: \
         the import blocked the runtime"
    );
}
