//! Renders every preset on several sample photos into docs/contact-sheet.png.
//!
//! `cargo run -p reverie-paint --example contact_sheet --release [-- OUT.png]`
//!
//! Rows are photos; columns are the original followed by the styles in `PRESET_NAMES` order
//! (impressionist, expressionist, pointillist, colourist-wash, watercolour, oil, pencil,
//! charcoal, pop-art). Each cell is painted at the photo's own resolution, then scaled to the
//! tile height so brush work looks as it would at full size.

use image::{imageops, imageops::FilterType, DynamicImage, Rgb, RgbImage};
use reverie_paint::{paint, StyleSpec, PRESET_NAMES};

const PHOTOS: [&str; 4] = [
    "tests/fixtures/faces/images/skimage_astronaut.png",
    "tests/fixtures/faces/images/skimage_chelsea_cat.png",
    "tests/fixtures/faces/images/kpa_grand_canyon_1.png",
    "tests/fixtures/faces/images/kpa_pool.png",
];
const TILE_HEIGHT: u32 = 150;
const TILE_WIDTH: u32 = 200;
const MARGIN: u32 = 4;
const SEED: u64 = 7;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..");
    let out_path = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("docs/contact-sheet.png"));
    let columns = PRESET_NAMES.len() as u32 + 1;
    let width = columns * (TILE_WIDTH + MARGIN) + MARGIN;
    let height = PHOTOS.len() as u32 * (TILE_HEIGHT + MARGIN) + MARGIN;
    let mut sheet = RgbImage::from_pixel(width, height, Rgb([250, 250, 248]));
    for (row, relative) in PHOTOS.iter().enumerate() {
        let path = root.join(relative);
        let photo =
            image::open(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let mut cells = vec![photo.to_rgb8()];
        for name in PRESET_NAMES {
            let style = StyleSpec::from_name(name)?;
            cells.push(paint(&photo, &style, SEED)?);
            eprintln!("{relative}: {name}");
        }
        for (column, cell) in cells.into_iter().enumerate() {
            let tile = fit_tile(&DynamicImage::ImageRgb8(cell));
            let x =
                MARGIN + column as u32 * (TILE_WIDTH + MARGIN) + (TILE_WIDTH - tile.width()) / 2;
            let y =
                MARGIN + row as u32 * (TILE_HEIGHT + MARGIN) + (TILE_HEIGHT - tile.height()) / 2;
            imageops::replace(&mut sheet, &tile, x as i64, y as i64);
        }
    }
    if let Some(parent) = out_path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    sheet.save(&out_path)?;
    println!("wrote {} ({}x{})", out_path.display(), width, height);
    Ok(())
}

/// Scales a cell to fit the tile, keeping its aspect ratio.
fn fit_tile(image: &DynamicImage) -> RgbImage {
    image
        .resize(TILE_WIDTH, TILE_HEIGHT, FilterType::Triangle)
        .to_rgb8()
}
