//! Palette transfer from the library: the sample library is imported and analysed on the embedded
//! store, its palettes aggregated and persisted, and a painterly job that carries the album's palette
//! photos (what the scheduler plans for "in the colours of my Hawaii 2023 album") comes out closer to the
//! album's palette than the same job without them.

use std::path::PathBuf;
use std::time::Duration;

use image::DynamicImage;
use reverie_library::{import, load_manifest, ImportOptions, ImportSource};
use reverie_paint::{palette_distance, Palette};
use reverie_shared::ids::TenantId;
use reverie_shared::jobs::{PhotoRef, ReferenceRole, RenderSpec, RendererKind};
use reverie_shared::ports::cache::MemoryCache;
use reverie_shared::ports::store::LocalStore;
use reverie_worker::analysis::{analyse_shard, Analyser};
use reverie_worker::palettes::{library_palettes, load_palettes, save_palettes};
use reverie_worker::render::{PainterlyRenderer, RenderRequest, Renderer};

fn sample_folder() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/library/folder")
}

fn spec(palette_transfer: bool) -> RenderSpec {
    RenderSpec {
        renderer: RendererKind::Painterly,
        prompt: String::new(),
        negative_prompt: String::new(),
        style: "impressionist".to_string(),
        model: None,
        width: 256,
        height: 256,
        steps: 1,
        guidance: 0.0,
        scheduler: None,
        seed: 7,
        strength: 1.0,
        palette_transfer,
        identity_strength: 0.0,
        best_of: 1,
        adapters: Default::default(),
    }
}

#[tokio::test]
async fn album_palette_pulls_the_painting_toward_the_album_colours() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path().join("store")).unwrap();
    let cache = MemoryCache::open(&dir.path().join("cache.bin"), 64 << 20).unwrap();
    let tenant = TenantId::new("ann").unwrap();
    import(
        &store,
        &tenant,
        ImportSource::Folder(sample_folder()),
        &ImportOptions::default(),
    )
    .await
    .unwrap();
    let manifest = load_manifest(&store, &tenant).await.unwrap();
    let analyser = Analyser {
        faces: Err("faces are not needed here".to_string()),
        segmenter: None,
        pets: Err("not loaded in this test".into()),
        cache_ttl: Duration::from_secs(60),
    };
    let mut analyses = Vec::new();
    for shard in &manifest.shards {
        let (analysis, _) = analyse_shard(&analyser, &store, &cache, &tenant, &shard.id)
            .await
            .unwrap();
        analyses.push(analysis);
    }
    save_palettes(&store, &tenant, &library_palettes(&manifest, &analyses))
        .await
        .unwrap();
    let palettes = load_palettes(&store, &tenant).await.unwrap().unwrap();
    assert!(!palettes.favourites.is_empty(), "favourites are persisted");
    let album = &palettes.albums["Hawaii 2023"];
    assert_eq!(album.members.len(), 3);

    // The job as the scheduler plans it: a background from another album, the album's palette photos.
    let photo = |id: &str| {
        let entry = manifest
            .photos
            .iter()
            .find(|p| p.meta.id.as_str() == id || p.meta.original.ends_with(id))
            .unwrap();
        let bytes = std::fs::read(sample_folder().join(&entry.meta.original)).unwrap();
        let image = image::load_from_memory(&bytes).unwrap();
        (entry.clone(), image)
    };
    let reference = |entry: &reverie_library::PhotoEntry, role| PhotoRef {
        photo: entry.meta.id.clone(),
        shard: entry.shard.clone(),
        offset: entry.offset,
        length: entry.length,
        role,
        face_box: None,
        label: None,
    };
    let (background, background_image) = photo("rim_sunrise.jpg");
    let mut photos = vec![(
        reference(&background, ReferenceRole::Background),
        background_image,
    )];
    for member in &album.members {
        let (entry, image) = photo(&member.photo);
        photos.push((reference(&entry, ReferenceRole::Palette), image));
    }
    let render = |palette_transfer: bool| {
        let request = RenderRequest {
            spec: spec(palette_transfer),
            photos: photos.clone(),
            identity: Vec::new(),
            loras: Vec::new(),
            cached_image_prompt: None,
            pet_boxes: Vec::new(),
        };
        let mut out =
            PainterlyRenderer.render_batch(&[request], &reverie_worker::render::NoProgress);
        out.remove(0).unwrap()
    };
    let distance_to_album = |image: &image::RgbImage| {
        let palette = Palette::extract(&DynamicImage::ImageRgb8(image.clone()), 6, 0).unwrap();
        palette_distance(&palette, &album.palette)
    };
    let plain = render(false);
    let recoloured = render(true);
    assert_eq!(recoloured.details["palette_photos"], "3");
    let (before, after) = (
        distance_to_album(&plain.image),
        distance_to_album(&recoloured.image),
    );
    assert!(
        after < before * 0.95,
        "album palette distance {after:.1} with the phrase vs {before:.1} without"
    );
}
