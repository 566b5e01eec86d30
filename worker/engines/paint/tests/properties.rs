//! Property tests of the weight-free styles: each checks a behaviour that a wrong implementation
//! would fail, not merely that an image came out.

use image::{DynamicImage, GrayImage, ImageBuffer, Luma, LumaA, Rgb, RgbImage, Rgba, RgbaImage};
use reverie_paint::oil::{anisotropic_kuwahara, OilParams};
use reverie_paint::painterly::{plan_strokes, PainterlyParams};
use reverie_paint::raster::{blur, ColourImage};
use reverie_paint::{
    compose, nearest, paint, palette_distance, parse_style_words, transfer_palette, Fingerprint,
    PaintError, Palette, Rect, StyleKind, StyleSpec, Subject, SubjectKind, TransferOptions,
    PRESET_NAMES,
};

fn fixture(name: &str) -> DynamicImage {
    let path = format!(
        "{}/../../../tests/fixtures/faces/images/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    image::open(&path).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

fn small(name: &str, width: u32) -> DynamicImage {
    fixture(name).resize(width, width, image::imageops::FilterType::Triangle)
}

fn mean_luma(image: &RgbImage) -> f32 {
    let sum: f32 = image
        .pixels()
        .map(|p| 0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32)
        .sum();
    sum / (image.width() * image.height()) as f32 / 255.0
}

#[test]
fn every_style_is_deterministic_per_seed_and_keeps_size() {
    let photo = small("skimage_chelsea_cat.png", 120);
    for name in PRESET_NAMES {
        let style = StyleSpec::from_name(name).expect(name);
        let a = paint(&photo, &style, 11).expect(name);
        let b = paint(&photo, &style, 11).expect(name);
        assert_eq!(
            (a.width(), a.height()),
            (photo.width(), photo.height()),
            "{name} size"
        );
        assert!(a == b, "{name} is not deterministic for a fixed seed");
        assert!(a != photo.to_rgb8(), "{name} returned the photo unchanged");
    }
}

#[test]
fn seed_changes_seeded_styles() {
    let photo = small("skimage_astronaut.png", 100);
    for name in ["pointillist", "expressionist", "watercolour", "charcoal"] {
        let style = StyleSpec::from_name(name).expect(name);
        let a = paint(&photo, &style, 1).expect(name);
        let b = paint(&photo, &style, 2).expect(name);
        assert!(a != b, "{name} ignores the seed");
    }
}

/// Concentric rings: the luminance gradient is radial, so Hertzmann's strokes must run
/// tangentially (perpendicular to the gradient).
#[test]
fn strokes_run_perpendicular_to_the_gradient() {
    let size = 200usize;
    let centre = size as f32 / 2.0;
    let image = rings(size);
    let params = PainterlyParams {
        min_stroke_length: 3,
        max_stroke_length: 10,
        ..PainterlyParams::impressionist()
    };
    let layers = plan_strokes(&image, &params, 3);
    let (mut sum_cos, mut segments) = (0.0f32, 0usize);
    for stroke in layers.iter().flatten() {
        for pair in stroke.points.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
            let len = (dx * dx + dy * dy).sqrt();
            let (mx, my) = ((a[0] + b[0]) / 2.0 - centre, (a[1] + b[1]) / 2.0 - centre);
            let radius = (mx * mx + my * my).sqrt();
            if len < 1e-3 || radius < 12.0 {
                continue;
            }
            sum_cos += ((dx * mx + dy * my) / (len * radius)).abs();
            segments += 1;
        }
    }
    assert!(segments > 200, "too few stroke segments traced: {segments}");
    let mean_cos = sum_cos / segments as f32;
    // Random directions would give a mean |cos| of 2/π ≈ 0.64; tangential strokes give ~0.
    assert!(
        mean_cos < 0.2,
        "strokes are not tangential: mean |cos| to the gradient = {mean_cos}"
    );
}

/// Vertical stripes: gradient is horizontal, strokes must be vertical.
#[test]
fn strokes_follow_straight_edges() {
    let (w, h) = (160usize, 120usize);
    let mut image = ColourImage::new(w, h, [0.0; 3]);
    for y in 0..h {
        for x in 0..w {
            let v = 0.5 + 0.45 * (x as f32 / 7.0).sin();
            image.data[y * w + x] = [v, v, v];
        }
    }
    let layers = plan_strokes(&image, &PainterlyParams::expressionist(), 5);
    let mut vertical = 0.0f32;
    let mut total = 0.0f32;
    for stroke in layers.iter().flatten() {
        for pair in stroke.points.windows(2) {
            let (dx, dy) = (pair[1][0] - pair[0][0], pair[1][1] - pair[0][1]);
            vertical += dy.abs();
            total += (dx * dx + dy * dy).sqrt();
        }
    }
    assert!(total > 100.0, "strokes too short to judge: {total}");
    assert!(
        vertical / total > 0.9,
        "only {:.2} of stroke length is vertical",
        vertical / total
    );
}

#[test]
fn painterly_uses_several_brush_sizes_coarse_to_fine() {
    let photo =
        ColourImage::from_dynamic(&small("skimage_astronaut.png", 200), "test").expect("photo");
    let layers = plan_strokes(&photo, &PainterlyParams::impressionist(), 0);
    assert_eq!(layers.len(), 3);
    let radii: Vec<f32> = layers
        .iter()
        .map(|l| l.first().map(|s| s.radius).unwrap_or(0.0))
        .collect();
    assert!(
        radii[0] > radii[1] && radii[1] > radii[2],
        "layers not coarse to fine: {radii:?}"
    );
    assert!(
        layers.iter().all(|l| !l.is_empty()),
        "a layer painted nothing"
    );
    assert!(
        layers[0].iter().any(|s| s.points.len() > 4),
        "no curved multi-point strokes"
    );
}

#[test]
fn palette_transfer_lowers_distance_to_target() {
    let photo = small("skimage_astronaut.png", 160);
    let target =
        Palette::extract(&small("kpa_grand_canyon_1.png", 160), 6, 1).expect("target palette");
    let before = palette_distance(&Palette::extract(&photo, 6, 1).expect("palette"), &target);
    let recoloured =
        transfer_palette(&photo, &target, &TransferOptions::default()).expect("transfer");
    assert_eq!(recoloured.dimensions(), photo.to_rgb8().dimensions());
    let after = palette_distance(
        &Palette::extract(&DynamicImage::ImageRgb8(recoloured), 6, 1).expect("palette"),
        &target,
    );
    assert!(
        after < 0.75 * before,
        "transfer did not move toward the target: {before} -> {after}"
    );
}

#[test]
fn style_palette_recolours_the_painting() {
    let photo = small("skimage_chelsea_cat.png", 120);
    let target = Palette::from_rgb(&[
        ([20, 60, 160], 0.5),
        ([90, 170, 220], 0.3),
        ([240, 240, 250], 0.2),
    ]);
    let plain = StyleSpec::from_name("oil").expect("oil");
    let tinted = plain.clone().with_palette(target.clone());
    let distance = |img: RgbImage| {
        palette_distance(
            &Palette::extract(&DynamicImage::ImageRgb8(img), 3, 0).expect("palette"),
            &target,
        )
    };
    let before = distance(paint(&photo, &plain, 0).expect("paint"));
    let after = distance(paint(&photo, &tinted, 0).expect("paint"));
    assert!(
        after < 0.75 * before,
        "style palette ignored: {before} -> {after}"
    );
    let json = serde_json::to_string(&tinted).expect("serialise");
    assert_eq!(
        serde_json::from_str::<StyleSpec>(&json).expect("deserialise"),
        tinted
    );
    let empty = plain.with_palette(Palette { colours: vec![] });
    assert!(matches!(
        paint(&photo, &empty, 0),
        Err(PaintError::EmptyPalette(_))
    ));
}

#[test]
fn palette_extraction_is_seeded_and_weighted() {
    let photo = small("kpa_pool.png", 200);
    let a = Palette::extract(&photo, 6, 9).expect("palette");
    let b = Palette::extract(&photo, 6, 9).expect("palette");
    assert_eq!(a, b);
    assert_eq!(a.len(), 6);
    let total: f32 = a.colours.iter().map(|c| c.weight).sum();
    assert!((total - 1.0).abs() < 1e-4);
    assert!(
        a.colours.windows(2).all(|w| w[0].weight >= w[1].weight),
        "not sorted by weight"
    );
    let json = serde_json::to_string(&a).expect("serialise");
    assert_eq!(
        serde_json::from_str::<Palette>(&json).expect("deserialise"),
        a
    );
}

/// Two noisy flat regions split by a vertical edge.
fn textured_step(w: usize, h: usize) -> ColourImage {
    let mut state = 12345u32;
    let mut image = ColourImage::new(w, h, [0.0; 3]);
    for y in 0..h {
        for x in 0..w {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let noise = (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
            let base = if x < w / 2 { 0.25 } else { 0.75 };
            let v = base + 0.16 * noise;
            image.data[y * w + x] = [v, v, v];
        }
    }
    image
}

fn region_std(image: &ColourImage, x0: usize, x1: usize) -> f32 {
    let values: Vec<f32> = (0..image.height)
        .flat_map(|y| (x0..x1).map(move |x| (x, y)))
        .map(|(x, y)| image.get(x, y)[0])
        .collect();
    let mean = values.iter().sum::<f32>() / values.len() as f32;
    (values.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / values.len() as f32).sqrt()
}

/// Mean jump across the edge between columns two pixels apart.
fn edge_response(image: &ColourImage) -> f32 {
    let mid = image.width / 2;
    (0..image.height)
        .map(|y| image.get(mid + 1, y)[0] - image.get(mid - 2, y)[0])
        .sum::<f32>()
        / image.height as f32
}

#[test]
fn kuwahara_flattens_texture_but_keeps_edges() {
    // 180x120: pictures under 120 px on the short side are thumbnails, painted with brushes
    // scaled down below the 0.75 floor (raster::size_scale); this checks the reference radius.
    let image = textured_step(180, 120);
    let filtered = anisotropic_kuwahara(&image, &OilParams::default());
    let texture_before = region_std(&image, 5, 50);
    let texture_after = region_std(&filtered, 5, 50);
    assert!(
        texture_after < 0.5 * texture_before,
        "texture not flattened: {texture_before} -> {texture_after}"
    );
    let edge_before = edge_response(&image);
    let edge_after = edge_response(&filtered);
    assert!(
        edge_after > 0.85 * edge_before,
        "edge lost: {edge_before} -> {edge_after}"
    );
    // A plain blur that flattens texture as much destroys the edge; Kuwahara must beat it.
    let blurred = ColourImage::from_channels(
        &blur(&image.channel(0), 4.0),
        &blur(&image.channel(1), 4.0),
        &blur(&image.channel(2), 4.0),
    );
    assert!(
        edge_after > edge_response(&blurred) + 0.1,
        "Kuwahara edge no better than a blur"
    );
}

#[test]
fn sketches_are_monochrome_and_pop_art_is_flat() {
    let photo = small("kpa_grand_canyon_1.png", 160);
    for name in ["pencil", "charcoal"] {
        let out = paint(&photo, &StyleSpec::from_name(name).expect(name), 0).expect(name);
        let max_spread = out
            .pixels()
            .map(|p| p.0.iter().max().unwrap_or(&0) - p.0.iter().min().unwrap_or(&0))
            .max()
            .unwrap_or(0);
        // The paper tint alone spreads the channels by up to 0.07 (18/255).
        assert!(
            max_spread <= 20,
            "{name} is not a monochrome drawing (channel spread {max_spread})"
        );
    }
    let pop = paint(&photo, &StyleSpec::from_name("pop art").expect("pop"), 0).expect("pop");
    let distinct: std::collections::HashSet<[u8; 3]> = pop.pixels().map(|p| p.0).collect();
    let original: std::collections::HashSet<[u8; 3]> =
        photo.to_rgb8().pixels().map(|p| p.0).collect();
    assert!(
        distinct.len() * 2 < original.len(),
        "pop art not posterised: {} vs {} colours",
        distinct.len(),
        original.len()
    );
}

#[test]
fn bad_inputs_do_not_panic_and_give_sensible_output() {
    let black = DynamicImage::ImageRgb8(RgbImage::from_pixel(40, 30, Rgb([0, 0, 0])));
    let white = DynamicImage::ImageRgb8(RgbImage::from_pixel(40, 30, Rgb([255, 255, 255])));
    let tiny = DynamicImage::ImageRgb8(RgbImage::from_pixel(1, 1, Rgb([200, 40, 40])));
    let long = DynamicImage::ImageRgb8(RgbImage::from_fn(20_000, 100, |x, y| {
        Rgb([(x % 256) as u8, (y * 2) as u8, 90])
    }));
    let grey = DynamicImage::ImageLuma8(GrayImage::from_fn(50, 40, |x, _| Luma([(x * 5) as u8])));
    let grey_alpha = DynamicImage::ImageLumaA8(ImageBuffer::from_fn(30, 30, |x, _| {
        LumaA([100, (x * 8) as u8])
    }));
    let transparent = DynamicImage::ImageRgba8(RgbaImage::from_pixel(32, 32, Rgba([0, 0, 0, 0])));
    let half_alpha = DynamicImage::ImageRgba8(RgbaImage::from_fn(40, 20, |x, _| {
        Rgba([200, 30, 30, (x * 6) as u8])
    }));
    let deep = DynamicImage::ImageRgb16(ImageBuffer::from_fn(24, 24, |x, y| {
        Rgb([(x * 2000) as u16, (y * 2000) as u16, 30000])
    }));
    for name in PRESET_NAMES {
        let style = StyleSpec::from_name(name).expect(name);
        for (label, image) in [
            ("tiny", &tiny),
            ("long", &long),
            ("grey", &grey),
            ("grey+alpha", &grey_alpha),
            ("rgba", &half_alpha),
            ("16-bit", &deep),
        ] {
            let out = paint(image, &style, 0).unwrap_or_else(|e| panic!("{name} on {label}: {e}"));
            assert_eq!(
                out.dimensions(),
                (image.width(), image.height()),
                "{name} on {label}"
            );
        }
        let dark = mean_luma(&paint(&black, &style, 0).expect(name));
        let light = mean_luma(&paint(&white, &style, 0).expect(name));
        assert!(
            light > 0.75,
            "{name}: white input painted too dark ({light})"
        );
        assert!(
            light > dark + 0.3,
            "{name}: black ({dark}) and white ({light}) inputs not told apart"
        );
        // Fully transparent pixels are composited over white paper.
        let clear = mean_luma(&paint(&transparent, &style, 0).expect(name));
        assert!(
            clear > 0.75,
            "{name}: transparent input not treated as white ({clear})"
        );
    }
    let empty = DynamicImage::ImageRgb8(RgbImage::new(0, 5));
    let style = StyleSpec::from_name("oil").expect("oil");
    assert!(matches!(
        paint(&empty, &style, 0),
        Err(PaintError::EmptyImage { .. })
    ));
    assert!(Palette::extract(&empty, 6, 0).is_err());
    assert!(Fingerprint::compute(&empty).is_err());
    let black_palette = Palette::extract(&black, 6, 0).expect("black palette");
    assert_eq!(black_palette.len(), 1, "uniform image has a single colour");
    assert!(Fingerprint::compute(&white).is_ok() && Fingerprint::compute(&tiny).is_ok());
}

#[test]
fn fingerprints_rank_similar_styles_first() {
    let astronaut = Fingerprint::compute(&fixture("skimage_astronaut.png")).expect("fp");
    let variants = [
        fixture("skimage_astronaut__aug_flip.png"),
        fixture("kpa_grand_canyon_1.png"),
        fixture("skimage_camera_gray.png"),
        fixture("skimage_astronaut__aug_scale080.png"),
    ];
    let candidates: Vec<Fingerprint> = variants
        .iter()
        .map(|v| Fingerprint::compute(v).expect("fp"))
        .collect();
    assert_eq!(astronaut.values.len(), reverie_paint::fingerprint::DIM);
    let norm: f32 = astronaut.values.iter().map(|v| v * v).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4);
    assert!((astronaut.similarity(&astronaut) - 1.0).abs() < 1e-5);
    let ranked = nearest(&astronaut, &candidates, 4);
    let order: Vec<usize> = ranked.iter().map(|n| n.index).collect();
    assert!(
        order[..2].contains(&0) && order[..2].contains(&3),
        "flipped/scaled copies not nearest: {ranked:?}"
    );
    // Cosine is meaningful: the unrelated bright outdoor photo is least similar and far from 1.
    assert_eq!(
        order[3], 1,
        "the canyon photo should be the least similar: {ranked:?}"
    );
    assert!(ranked[3].similarity < 0.7, "{ranked:?}");
    let round_trip = Fingerprint::from_bytes(&astronaut.to_bytes()).expect("bytes");
    assert_eq!(round_trip, astronaut);
    assert!(Fingerprint::from_bytes(&[0, 1, 2]).is_err());
    assert!(Fingerprint::cache_key("abc")
        .contains(&format!("v{}", reverie_paint::fingerprint::VERSION)));
}

#[test]
fn composition_places_subjects_with_feathered_masks() {
    let background = fixture("kpa_grand_canyon_1.png");
    let person = Subject {
        image: fixture("skimage_astronaut.png"),
        kind: SubjectKind::Person {
            face: Some(Rect {
                x: 110.0,
                y: 70.0,
                width: 80.0,
                height: 95.0,
            }),
        },
    };
    let cat = Subject {
        image: fixture("skimage_chelsea_cat.png"),
        kind: SubjectKind::Pet { bbox: None },
    };
    let composite = compose(&background, &[cat, person]).expect("compose");
    assert_eq!(
        composite.image.dimensions(),
        (background.width(), background.height())
    );
    assert_eq!(composite.mask.dimensions(), composite.image.dimensions());
    assert_eq!(composite.placements.len(), 2);
    // Pet on the left flank, person in the middle, standing on the bottom edge.
    let pet = composite
        .placements
        .iter()
        .find(|p| p.subject == 0)
        .expect("pet placed");
    let human = composite
        .placements
        .iter()
        .find(|p| p.subject == 1)
        .expect("person placed");
    assert!(pet.target.x < human.target.x);
    assert!((human.target.y + human.target.height - background.height() as f32).abs() < 1.0);
    // Mask: solid inside the person, zero far outside anything, soft in between.
    let inside = composite.mask.get_pixel(
        (human.target.x + human.target.width / 2.0) as u32,
        (human.target.y + human.target.height * 0.7) as u32,
    )[0];
    assert_eq!(inside, 255);
    assert_eq!(composite.mask.get_pixel(background.width() - 1, 0)[0], 0);
    let soft = composite
        .mask
        .pixels()
        .filter(|p| p[0] > 0 && p[0] < 255)
        .count();
    assert!(soft > 100, "mask is not feathered");
    // Outside the mask the background is untouched.
    let bg = background.to_rgb8();
    assert_eq!(
        composite.image.get_pixel(bg.width() - 1, 0),
        bg.get_pixel(bg.width() - 1, 0)
    );
    let painted = composite
        .paint(&StyleSpec::from_name("impressionist").expect("style"), 1)
        .expect("paint");
    assert_eq!(painted.dimensions(), composite.image.dimensions());
}

#[test]
fn prompt_words_map_to_the_documented_presets() {
    let cases = [
        ("a watercolour of grandma", "watercolour"),
        ("dog on the beach, watercolor", "watercolour"),
        ("oil painting of our house", "oil"),
        ("pencil sketch of the kids", "pencil"),
        ("charcoal drawing", "charcoal"),
        ("impressionist garden", "impressionist"),
        ("pointillist harbour", "pointillist"),
        ("expressionist portrait", "expressionist"),
        ("pop art poster of me", "pop-art"),
        ("garden, inspired by Monet", "monet"),
        ("starry night in the style of Van Gogh", "van-gogh"),
        ("my cat in the style of Andy Warhol", "warhol"),
        ("family by Seurat", "seurat"),
    ];
    for (prompt, expected) in cases {
        let words = parse_style_words(prompt);
        assert_eq!(
            words.spec.as_ref().map(|s| s.name.as_str()),
            Some(expected),
            "{prompt}: {words:?}"
        );
        assert!(words.unknown.is_empty(), "{prompt}: {words:?}");
    }
    let words = parse_style_words("the kids in the style of Banksy");
    assert_eq!(words.unknown, vec!["banksy".to_string()]);
    assert!(parse_style_words("a photo of the kids at the lake")
        .spec
        .is_none());
    let spec = parse_style_words("watercolour in the style of Van Gogh")
        .spec
        .expect("spec");
    assert!(matches!(spec.kind, StyleKind::Watercolour(_)) && spec.saturation > 1.2);
    let json = serde_json::to_string(&spec).expect("serialise");
    assert_eq!(
        serde_json::from_str::<StyleSpec>(&json).expect("deserialise"),
        spec
    );
}

fn rings(size: usize) -> ColourImage {
    let centre = size as f32 / 2.0;
    let mut image = ColourImage::new(size, size, [0.0; 3]);
    for y in 0..size {
        for x in 0..size {
            let r = ((x as f32 - centre).powi(2) + (y as f32 - centre).powi(2)).sqrt();
            let v = 0.5 + 0.4 * (r / 9.0).sin();
            image.data[y * size + x] = [v, v * 0.8, 1.0 - v];
        }
    }
    image
}

/// Mean absolute turning angle between consecutive stroke segments.
fn mean_turn(layers: &[Vec<reverie_paint::Stroke>]) -> f32 {
    let (mut total, mut count) = (0.0f32, 0usize);
    for stroke in layers.iter().flatten() {
        for w in stroke.points.windows(3) {
            let a = (w[1][1] - w[0][1]).atan2(w[1][0] - w[0][0]);
            let b = (w[2][1] - w[1][1]).atan2(w[2][0] - w[1][0]);
            let mut d = (b - a).abs();
            if d > std::f32::consts::PI {
                d = 2.0 * std::f32::consts::PI - d;
            }
            total += d;
            count += 1;
        }
    }
    total / count.max(1) as f32
}

#[test]
fn curvature_filter_straightens_strokes_and_threshold_limits_them() {
    let image = rings(160);
    let curved = PainterlyParams {
        max_stroke_length: 12,
        ..PainterlyParams::impressionist()
    };
    let straight = PainterlyParams {
        curvature_filter: 0.1,
        ..curved.clone()
    };
    let turn_curved = mean_turn(&plan_strokes(&image, &curved, 1));
    let turn_straight = mean_turn(&plan_strokes(&image, &straight, 1));
    assert!(
        turn_straight < 0.6 * turn_curved,
        "fc=0.1 turns {turn_straight}, fc=1 turns {turn_curved}"
    );

    let count_fine = |threshold: f32| {
        let params = PainterlyParams {
            threshold,
            ..PainterlyParams::impressionist()
        };
        plan_strokes(&image, &params, 1)
            .iter()
            .skip(1)
            .map(Vec::len)
            .sum::<usize>()
    };
    let (strict, loose) = (count_fine(20.0), count_fine(150.0));
    assert!(
        strict > 2 * loose.max(1),
        "T=20 gave {strict} refinement strokes, T=150 gave {loose}"
    );
}
