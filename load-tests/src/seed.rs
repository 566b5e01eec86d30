//! A one-photo library for the load tenant: a shard with one small photo and the catalog the scheduler
//! plans from. Every job paints over that photo, so render cost is fixed and small.

use bytes::Bytes;
use image::{Rgb, RgbImage};
use reverie_scheduler::library::{catalog_key, CatalogPhoto, TenantLibrary};
use reverie_shared::ids::{PhotoId, ShardId, TenantId};
use reverie_shared::keys;
use reverie_shared::ports::store::ObjectStore;

/// A tar's first member starts after its 512-byte header.
const FIRST_MEMBER_OFFSET: u64 = 512;

fn photo_png(side: u32) -> anyhow::Result<Vec<u8>> {
    let image = RgbImage::from_fn(side, side, |x, y| {
        Rgb([(x * 4) as u8, (y * 4) as u8, ((x + y) * 2) as u8])
    });
    let mut png = Vec::new();
    image.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
    Ok(png)
}

pub async fn seed_library(store: &dyn ObjectStore, tenant: &TenantId) -> anyhow::Result<()> {
    let png = photo_png(64)?;
    let photo = PhotoId::of_bytes(&png);
    let shard = ShardId::new("load-0000")?;
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(png.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, format!("{photo}.png"), png.as_slice())?;
    let shard_bytes = tar.into_inner()?;
    store
        .put(&keys::shard(tenant, &shard), Bytes::from(shard_bytes))
        .await?;
    let library = TenantLibrary {
        photos: vec![CatalogPhoto {
            photo,
            shard,
            offset: FIRST_MEMBER_OFFSET,
            length: png.len() as u64,
            albums: Vec::new(),
            place: None,
            light: Vec::new(),
            scenes: Vec::new(),
            keywords: Vec::new(),
            faces: Vec::new(),
            pets: Vec::new(),
            colourfulness: 0.5,
            close_up: false,
        }],
        ..TenantLibrary::default()
    };
    store
        .put(
            &catalog_key(tenant),
            Bytes::from(serde_json::to_vec(&library)?),
        )
        .await?;
    Ok(())
}
