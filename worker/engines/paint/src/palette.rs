//! Colour palettes in CIELAB: dominant palette extraction (weighted k-means with k-means++
//! seeding), palette distance, tenant favourite palettes and palette transfer.

use image::DynamicImage;
use serde::{Deserialize, Serialize};

use crate::colour::{lab_dist2, lab_to_rgb8, lab_to_rgbf, rgb8_to_lab, rgbf_to_lab};
use crate::error::{PaintError, Result};
use crate::raster::ColourImage;
use crate::rng::SeededRng;

/// Extraction works on an image downsampled to at most this many pixels: palettes are a
/// property of large areas and 16k samples pin them down well.
const ANALYSIS_PIXELS: u32 = 16_384;
const KMEANS_ITERATIONS: usize = 25;

/// One palette entry.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PaletteColour {
    /// CIELAB (D65) coordinates.
    pub lab: [f32; 3],
    /// The same colour as 8-bit sRGB.
    pub rgb: [u8; 3],
    /// Share of the image (or aggregate) this colour covers; a palette's weights sum to 1.
    pub weight: f32,
}

/// A weighted set of colours, heaviest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Palette {
    pub colours: Vec<PaletteColour>,
}

impl Palette {
    /// Dominant palette of a photo: k-means (k clamped to 1..=16; 5–8 is typical) in Lab on a
    /// downsampled copy, seeded k-means++ so the result is fixed by `seed`. Images with fewer
    /// distinct colours than k yield fewer colours.
    pub fn extract(image: &DynamicImage, k: usize, seed: u64) -> Result<Palette> {
        crate::raster::check_size(image.width(), image.height(), "palette source")?;
        let small = downsample(image);
        let samples: Vec<[f32; 3]> = small.data.iter().map(|&c| rgbf_to_lab(c)).collect();
        let weights = vec![1.0; samples.len()];
        let clusters = weighted_kmeans(&samples, &weights, k.clamp(1, 16), seed);
        Ok(Palette::from_clusters(clusters))
    }

    /// Builds a palette from Lab colours and (unnormalised) weights.
    pub fn from_lab(colours: &[([f32; 3], f32)]) -> Palette {
        Palette::from_clusters(colours.iter().map(|&(lab, w)| (lab, w.max(0.0))).collect())
    }

    /// Builds a palette from 8-bit sRGB colours and weights.
    pub fn from_rgb(colours: &[([u8; 3], f32)]) -> Palette {
        let labs: Vec<([f32; 3], f32)> = colours
            .iter()
            .map(|&(rgb, w)| (rgb8_to_lab(rgb), w))
            .collect();
        Palette::from_lab(&labs)
    }

    fn from_clusters(clusters: Vec<([f32; 3], f32)>) -> Palette {
        let total: f32 = clusters.iter().map(|c| c.1).sum();
        let mut colours: Vec<PaletteColour> = clusters
            .into_iter()
            .filter(|c| c.1 > 0.0)
            .map(|(lab, w)| PaletteColour {
                lab,
                rgb: lab_to_rgb8(lab),
                weight: if total > 0.0 { w / total } else { 0.0 },
            })
            .collect();
        colours.sort_by(|a, b| {
            b.weight
                .total_cmp(&a.weight)
                .then(a.lab[0].total_cmp(&b.lab[0]))
        });
        Palette { colours }
    }

    pub fn len(&self) -> usize {
        self.colours.len()
    }

    pub fn is_empty(&self) -> bool {
        self.colours.is_empty()
    }
}

fn downsample(image: &DynamicImage) -> ColourImage {
    let (w, h) = (image.width(), image.height());
    let pixels = w as u64 * h as u64;
    let image = if pixels > ANALYSIS_PIXELS as u64 {
        let factor = (ANALYSIS_PIXELS as f64 / pixels as f64).sqrt();
        let nw = ((w as f64 * factor).round() as u32).max(1);
        let nh = ((h as f64 * factor).round() as u32).max(1);
        image.resize_exact(nw, nh, image::imageops::FilterType::Triangle)
    } else {
        image.clone()
    };
    // Size was checked by the caller and resize keeps it >= 1, so this cannot fail.
    ColourImage::from_dynamic(&image, "palette source")
        .unwrap_or_else(|_| ColourImage::new(1, 1, [0.0; 3]))
}

/// Weighted k-means with k-means++ seeding; returns (centre, total weight) per non-empty cluster.
pub fn weighted_kmeans(
    samples: &[[f32; 3]],
    weights: &[f32],
    k: usize,
    seed: u64,
) -> Vec<([f32; 3], f32)> {
    if samples.is_empty() || k == 0 {
        return Vec::new();
    }
    let mut centres = kmeans_plus_plus(samples, weights, k, seed);
    let mut assignment = vec![0usize; samples.len()];
    for _ in 0..KMEANS_ITERATIONS {
        let mut changed = false;
        for (i, s) in samples.iter().enumerate() {
            let best = nearest_index(&centres, *s);
            if best != assignment[i] {
                assignment[i] = best;
                changed = true;
            }
        }
        let mut sums = vec![[0.0f64; 4]; centres.len()];
        for (i, s) in samples.iter().enumerate() {
            let acc = &mut sums[assignment[i]];
            let w = weights[i] as f64;
            acc[0] += s[0] as f64 * w;
            acc[1] += s[1] as f64 * w;
            acc[2] += s[2] as f64 * w;
            acc[3] += w;
        }
        for (centre, acc) in centres.iter_mut().zip(&sums) {
            if acc[3] > 0.0 {
                *centre = [
                    (acc[0] / acc[3]) as f32,
                    (acc[1] / acc[3]) as f32,
                    (acc[2] / acc[3]) as f32,
                ];
            }
        }
        if !changed {
            break;
        }
    }
    let mut totals = vec![0.0f32; centres.len()];
    for (i, s) in samples.iter().enumerate() {
        let best = nearest_index(&centres, *s);
        totals[best] += weights[i];
    }
    centres
        .into_iter()
        .zip(totals)
        .filter(|c| c.1 > 0.0)
        .collect()
}

fn kmeans_plus_plus(samples: &[[f32; 3]], weights: &[f32], k: usize, seed: u64) -> Vec<[f32; 3]> {
    let mut rng = SeededRng::new(seed);
    let first = pick_weighted(weights, rng.next_f32()).unwrap_or(0);
    let mut centres = vec![samples[first]];
    let mut nearest: Vec<f32> = samples.iter().map(|s| lab_dist2(*s, centres[0])).collect();
    while centres.len() < k {
        let scores: Vec<f32> = nearest.iter().zip(weights).map(|(d, w)| d * w).collect();
        // All remaining samples coincide with a centre: fewer distinct colours than k.
        let Some(next) = pick_weighted(&scores, rng.next_f32()) else {
            break;
        };
        let centre = samples[next];
        centres.push(centre);
        for (d, s) in nearest.iter_mut().zip(samples) {
            *d = d.min(lab_dist2(*s, centre));
        }
    }
    centres
}

/// Index chosen with probability proportional to its score; None if all scores are ~zero.
fn pick_weighted(scores: &[f32], u: f32) -> Option<usize> {
    let total: f64 = scores.iter().map(|&s| s as f64).sum();
    if total <= 1e-9 {
        return None;
    }
    let target = u as f64 * total;
    let mut acc = 0.0f64;
    for (i, &s) in scores.iter().enumerate() {
        acc += s as f64;
        if acc > target && s > 0.0 {
            return Some(i);
        }
    }
    scores.iter().rposition(|&s| s > 0.0)
}

fn nearest_index(centres: &[[f32; 3]], lab: [f32; 3]) -> usize {
    let mut best = (0, f32::INFINITY);
    for (j, c) in centres.iter().enumerate() {
        let d = lab_dist2(lab, *c);
        if d < best.1 {
            best = (j, d);
        }
    }
    best.0
}

/// Clusters an image's colours: per-pixel labels and the cluster centres as sRGB [0,1].
/// Centres are fitted on a subsample (k-means cost stays flat with image size).
pub fn assign_clusters(image: &ColourImage, k: usize, seed: u64) -> (Vec<u8>, Vec<[f32; 3]>) {
    // Every pixel is converted to Lab once: the labels need all of them and the fit a subsample.
    let lab: Vec<[f32; 3]> = image.data.iter().map(|&c| rgbf_to_lab(c)).collect();
    let stride = (lab.len() / ANALYSIS_PIXELS as usize).max(1);
    let samples: Vec<[f32; 3]> = lab.iter().step_by(stride).copied().collect();
    let weights = vec![1.0; samples.len()];
    let clusters = weighted_kmeans(&samples, &weights, k.clamp(1, 255), seed);
    let centres: Vec<[f32; 3]> = if clusters.is_empty() {
        vec![[50.0, 0.0, 0.0]]
    } else {
        clusters.iter().map(|c| c.0).collect()
    };
    let labels = lab
        .iter()
        .map(|&c| nearest_index(&centres, c) as u8)
        .collect();
    (labels, centres.iter().map(|&c| lab_to_rgbf(c)).collect())
}

/// Replaces every pixel by its cluster centre: flat colour washes.
pub fn quantise(image: &ColourImage, k: usize, seed: u64) -> ColourImage {
    let (labels, centres) = assign_clusters(image, k, seed);
    ColourImage {
        width: image.width,
        height: image.height,
        data: labels.iter().map(|&l| centres[l as usize]).collect(),
    }
}

/// Palette distance: symmetric weighted mean of each colour's ΔE (CIE76) to the nearest colour
/// of the other palette. 0 for identical palettes; ~2 is a just-noticeable difference.
pub fn palette_distance(a: &Palette, b: &Palette) -> f32 {
    if a.is_empty() || b.is_empty() {
        return if a.is_empty() && b.is_empty() {
            0.0
        } else {
            f32::INFINITY
        };
    }
    0.5 * (directed_distance(a, b) + directed_distance(b, a))
}

fn directed_distance(from: &Palette, to: &Palette) -> f32 {
    let total: f32 = from.colours.iter().map(|c| c.weight).sum::<f32>().max(1e-9);
    from.colours
        .iter()
        .map(|c| {
            let nearest = to
                .colours
                .iter()
                .map(|t| lab_dist2(c.lab, t.lab))
                .fold(f32::INFINITY, f32::min);
            c.weight * nearest.sqrt()
        })
        .sum::<f32>()
        / total
}

/// How strongly the transfer pulls toward the target.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TransferOptions {
    /// 0 = unchanged, 1 = full transfer.
    pub strength: f32,
    /// How much of the lightness shift to apply (keeping some preserves the photo's structure).
    pub lightness: f32,
    /// Seed of the source palette extraction.
    pub seed: u64,
}

impl Default for TransferOptions {
    fn default() -> Self {
        Self {
            strength: 1.0,
            lightness: 0.7,
            seed: 0,
        }
    }
}

/// Recolours `image` toward `target`: the image's own palette (same size as the target) is
/// matched to the target colours (greedy by ΔE, heaviest first), then every pixel moves by the
/// blend of matched offsets, weighted by a Gaussian of its Lab distance to each source colour
/// (palette-based recolouring in the manner of Chang et al. 2015).
pub fn transfer_palette(
    image: &DynamicImage,
    target: &Palette,
    options: &TransferOptions,
) -> Result<image::RgbImage> {
    if target.is_empty() {
        return Err(PaintError::EmptyPalette("transfer target"));
    }
    let source_image = ColourImage::from_dynamic(image, "palette transfer source")?;
    let source = Palette::extract(image, target.len().max(2), options.seed)?;
    let offsets = match_offsets(&source, target);
    let sigma2 = mean_spacing2(&source).max(25.0);
    let mut out = source_image.clone();
    for pixel in &mut out.data {
        let lab = rgbf_to_lab(*pixel);
        let mut shift = [0.0f32; 3];
        let mut total = 0.0f32;
        for (colour, offset) in source.colours.iter().zip(&offsets) {
            let w = (-lab_dist2(lab, colour.lab) / (2.0 * sigma2)).exp() + 1e-12;
            total += w;
            for c in 0..3 {
                shift[c] += w * offset[c];
            }
        }
        let s = options.strength / total.max(1e-12);
        let moved = [
            lab[0] + shift[0] * s * options.lightness,
            lab[1] + shift[1] * s,
            lab[2] + shift[2] * s,
        ];
        *pixel = lab_to_rgbf([moved[0].clamp(0.0, 100.0), moved[1], moved[2]]);
    }
    Ok(out.to_rgb())
}

/// Offset (target − source) in Lab for each source colour.
fn match_offsets(source: &Palette, target: &Palette) -> Vec<[f32; 3]> {
    let mut used = vec![false; target.len()];
    source
        .colours
        .iter()
        .map(|s| {
            // Prefer an unused target colour so the whole target palette gets represented.
            let pick = |allow_used: bool| {
                target
                    .colours
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| allow_used || !used[*j])
                    .min_by(|a, b| lab_dist2(s.lab, a.1.lab).total_cmp(&lab_dist2(s.lab, b.1.lab)))
                    .map(|(j, _)| j)
            };
            let j = pick(false).or_else(|| pick(true)).unwrap_or(0);
            used[j] = true;
            let t = target.colours[j].lab;
            [t[0] - s.lab[0], t[1] - s.lab[1], t[2] - s.lab[2]]
        })
        .collect()
}

fn mean_spacing2(palette: &Palette) -> f32 {
    let mut sum = 0.0;
    let mut n = 0;
    for (i, a) in palette.colours.iter().enumerate() {
        for b in &palette.colours[i + 1..] {
            sum += lab_dist2(a.lab, b.lab);
            n += 1;
        }
    }
    if n == 0 {
        400.0
    } else {
        sum / n as f32 * 0.25
    }
}

/// One photo's palette with the signals that say how much the tenant likes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaletteVote {
    pub palette: Palette,
    /// Star rating 0..=5 if the tenant rated the photo.
    pub rating: Option<f32>,
    /// Marked as favourite.
    pub favourite: bool,
}

/// A favourite palette and the evidence behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FavouritePalette {
    pub palette: Palette,
    /// Sum of vote weights of the photos in this group.
    pub score: f32,
    /// Number of photos whose palettes fell into this group (recurrence).
    pub photos: usize,
    /// Indices (into the votes passed in) of the photos in this group, heaviest vote first.
    #[serde(default)]
    pub members: Vec<usize>,
}

/// Weight of one photo: unrated photos count 1, each star adds 0.3, a favourite adds 2.
pub fn vote_weight(vote: &PaletteVote) -> f32 {
    let rating = vote.rating.map(|r| r.clamp(0.0, 5.0)).unwrap_or(0.0);
    1.0 + 0.3 * rating + if vote.favourite { 2.0 } else { 0.0 }
}

/// Tenant favourite palettes: photo palettes are grouped into up to `groups` clusters by palette
/// distance (farthest-point seeding from the heaviest vote, then Lloyd iterations whose group
/// centres are re-fitted palettes); each group's palette is a weighted k-means over all its
/// photos' colours, so colours recurring across many liked photos dominate. Sorted by score.
pub fn favourite_palettes(
    votes: &[PaletteVote],
    groups: usize,
    colours: usize,
    seed: u64,
) -> Vec<FavouritePalette> {
    // Indices of the usable votes in the caller's slice, so members can name them.
    let usable: Vec<usize> = (0..votes.len())
        .filter(|&i| !votes[i].palette.is_empty())
        .collect();
    let votes: Vec<&PaletteVote> = usable.iter().map(|&i| &votes[i]).collect();
    if votes.is_empty() || groups == 0 {
        return Vec::new();
    }
    let weights: Vec<f32> = votes.iter().map(|v| vote_weight(v)).collect();
    let mut centres = farthest_point_seeds(&votes, &weights, groups);
    let mut assignment = vec![0usize; votes.len()];
    for round in 0..8 {
        let mut changed = false;
        for (i, v) in votes.iter().enumerate() {
            let best = (0..centres.len())
                .min_by(|&a, &b| {
                    palette_distance(&v.palette, &centres[a])
                        .total_cmp(&palette_distance(&v.palette, &centres[b]))
                })
                .unwrap_or(0);
            changed |= best != assignment[i];
            assignment[i] = best;
        }
        if round > 0 && !changed {
            break;
        }
        centres = (0..centres.len())
            .map(|g| {
                merge_group(&votes, &weights, &assignment, g, colours, seed)
                    .unwrap_or_else(|| centres[g].clone())
            })
            .collect();
    }
    let mut result: Vec<FavouritePalette> = (0..centres.len())
        .filter_map(|g| {
            let mut members: Vec<usize> =
                (0..votes.len()).filter(|&i| assignment[i] == g).collect();
            if members.is_empty() {
                return None;
            }
            members.sort_by(|&a, &b| weights[b].total_cmp(&weights[a]).then(a.cmp(&b)));
            Some(FavouritePalette {
                palette: centres[g].clone(),
                score: members.iter().map(|&i| weights[i]).sum(),
                photos: members.len(),
                members: members.iter().map(|&i| usable[i]).collect(),
            })
        })
        .collect();
    result.sort_by(|a, b| b.score.total_cmp(&a.score).then(b.photos.cmp(&a.photos)));
    result
}

/// One palette for a set of photos (an album, a place, a render's palette references): every photo's
/// colours weighted by its vote, clustered into `colours` colours. `None` when no vote has colours.
pub fn blend_palettes(votes: &[PaletteVote], colours: usize, seed: u64) -> Option<Palette> {
    favourite_palettes(votes, 1, colours, seed)
        .into_iter()
        .next()
        .map(|group| group.palette)
}

fn farthest_point_seeds(votes: &[&PaletteVote], weights: &[f32], groups: usize) -> Vec<Palette> {
    let heaviest = (0..votes.len())
        .max_by(|&a, &b| weights[a].total_cmp(&weights[b]).then(b.cmp(&a)))
        .unwrap_or(0);
    let mut seeds = vec![votes[heaviest].palette.clone()];
    let mut nearest: Vec<f32> = votes
        .iter()
        .map(|v| palette_distance(&v.palette, &seeds[0]))
        .collect();
    while seeds.len() < groups {
        let Some((i, &d)) = nearest
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
        else {
            break;
        };
        if d <= 1e-3 {
            break;
        }
        let palette = votes[i].palette.clone();
        for (n, v) in nearest.iter_mut().zip(votes) {
            *n = n.min(palette_distance(&v.palette, &palette));
        }
        seeds.push(palette);
    }
    seeds
}

fn merge_group(
    votes: &[&PaletteVote],
    weights: &[f32],
    assignment: &[usize],
    group: usize,
    colours: usize,
    seed: u64,
) -> Option<Palette> {
    let mut samples = Vec::new();
    let mut sample_weights = Vec::new();
    for (i, v) in votes.iter().enumerate() {
        if assignment[i] != group {
            continue;
        }
        for c in &v.palette.colours {
            samples.push(c.lab);
            sample_weights.push(c.weight * weights[i]);
        }
    }
    if samples.is_empty() {
        return None;
    }
    let clusters = weighted_kmeans(&samples, &sample_weights, colours.clamp(1, 16), seed);
    Some(Palette::from_clusters(clusters))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_tone(a: [u8; 3], b: [u8; 3]) -> DynamicImage {
        let img = image::RgbImage::from_fn(64, 32, |x, _| image::Rgb(if x < 48 { a } else { b }));
        DynamicImage::ImageRgb8(img)
    }

    #[test]
    fn extract_finds_two_colours_with_weights() {
        let p = Palette::extract(&two_tone([200, 20, 20], [20, 20, 200]), 6, 1).expect("palette");
        assert_eq!(p.len(), 2, "only two distinct colours: {p:?}");
        assert!((p.colours[0].weight - 0.75).abs() < 0.02);
        assert!((p.colours[0].rgb[0] as i32 - 200).abs() <= 2);
    }

    #[test]
    fn distance_is_zero_for_self_and_symmetric() {
        let a = Palette::from_rgb(&[([255, 0, 0], 1.0), ([0, 0, 255], 2.0)]);
        let b = Palette::from_rgb(&[([0, 255, 0], 1.0)]);
        assert!(palette_distance(&a, &a) < 1e-4);
        assert!((palette_distance(&a, &b) - palette_distance(&b, &a)).abs() < 1e-4);
        assert!(palette_distance(&a, &b) > 50.0);
    }

    #[test]
    fn favourites_prefer_liked_recurring_palettes() {
        let warm = Palette::from_rgb(&[([220, 120, 40], 0.6), ([250, 220, 150], 0.4)]);
        let cold = Palette::from_rgb(&[([30, 60, 160], 0.7), ([200, 220, 240], 0.3)]);
        let mut votes = vec![
            PaletteVote {
                palette: cold.clone(),
                rating: None,
                favourite: false
            };
            3
        ];
        for _ in 0..3 {
            votes.push(PaletteVote {
                palette: warm.clone(),
                rating: Some(5.0),
                favourite: true,
            });
        }
        let fav = favourite_palettes(&votes, 2, 4, 7);
        assert_eq!(fav.len(), 2);
        assert!(palette_distance(&fav[0].palette, &warm) < 3.0, "{fav:?}");
        assert_eq!(fav[0].photos, 3);
        assert_eq!(fav[0].members, vec![3, 4, 5], "the warm votes");
        assert!(fav[0].score > fav[1].score);
    }
}
