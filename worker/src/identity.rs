//! Identity in the farm: who each generation job must show and where, the people's reference
//! descriptors, the check of every output (whatever the renderer) and the choice among `best_of`
//! candidates.
//!
//! - **Where**: the compositor's layout ([`reverie_paint::layout`]) on the output-sized canvas gives
//!   each person's face box in output pixels before anything renders. Both renderers compose on a
//!   canvas of exactly the output size (the painterly one paints the composite in place, diffusion
//!   uses it as the masked init picture), so the planned place is where the face is drawn.
//! - **Who**: a person is a `Subject` reference with a face box. Their reference descriptor is the
//!   mean of the descriptors of the face at that box and of the faces of the `Identity` references
//!   with the same label (the planner adds up to three of the person's best faces), each found
//!   again in a window around its library face box.
//! - **Check**: [`reverie_faces::identity::check::check_identities`] on each output.

use std::num::NonZeroUsize;
use std::sync::{Mutex, OnceLock};

use image::DynamicImage;
use lru::LruCache;
use reverie_faces::identity::check::{check_identities, reference_at, IdentityCheck};
use reverie_faces::identity::{mean_descriptor, CandidateRank, IdentityTarget, Verdict};
use reverie_faces::resnet::DESCRIPTOR_LEN;
use reverie_faces::FaceAnalyzer;
use reverie_shared::jobs::{
    IdentityCandidate, IdentityReport, IdentityVerdict, PersonIdentity, PhotoRef, ReferenceRole,
    MAX_BEST_OF,
};

use crate::render::{RenderError, RenderRequest};

/// The people of one job: their names for the report, and the targets the check (and guidance)
/// use, or why there are none.
#[derive(Debug, Clone, Default)]
pub struct JobIdentity {
    /// One per person, in the order of the job's subject references.
    pub people: Vec<String>,
    /// Same order as `people`: where and who.
    pub targets: Vec<IdentityTarget>,
    /// Why the check cannot run (or runs for fewer people than the picture has).
    pub unchecked: Option<String>,
}

impl JobIdentity {
    /// Whether the picture has people at all (pictures without people are not checked).
    pub fn has_people(&self) -> bool {
        !self.people.is_empty()
    }

    /// Whether outputs can be checked: people, and a target for each.
    pub fn checkable(&self) -> bool {
        self.has_people() && self.targets.len() == self.people.len()
    }
}

/// A person of the job: their label, their subject reference and its planned face place.
struct PlannedPerson<'a> {
    name: String,
    subject: &'a (PhotoRef, DynamicImage),
    place: [f32; 4],
}

/// The people a job places and where their faces go, in output pixels.
fn planned_people(request: &RenderRequest) -> Vec<PlannedPerson<'_>> {
    let subjects: Vec<&(PhotoRef, DynamicImage)> = request
        .photos
        .iter()
        .filter(|(r, _)| r.role == ReferenceRole::Subject)
        .collect();
    // The same canvas size both renderers compose on.
    let (width, height) = (request.spec.width.max(8), request.spec.height.max(8));
    let layout = reverie_paint::layout(width, height, &request.subjects());
    layout
        .into_iter()
        .filter_map(|placement| {
            let subject = *subjects.get(placement.subject)?;
            subject.0.face_box?;
            let face = placement.face?;
            Some(PlannedPerson {
                name: person_name(&subject.0),
                subject,
                place: [face.x, face.y, face.x + face.width, face.y + face.height],
            })
        })
        .collect()
}

fn person_name(reference: &PhotoRef) -> String {
    reference
        .label
        .clone()
        .unwrap_or_else(|| reference.photo.to_string())
}

/// Reference descriptors found earlier, by (descriptor model, photo, face box): a person's best faces
/// serve many jobs, and finding a face again costs a detector pass. Bounded; lost on restart.
fn memo() -> &'static Mutex<LruCache<String, [f32; DESCRIPTOR_LEN]>> {
    static MEMO: OnceLock<Mutex<LruCache<String, [f32; DESCRIPTOR_LEN]>>> = OnceLock::new();
    MEMO.get_or_init(|| Mutex::new(LruCache::new(NonZeroUsize::new(4096).expect("non-zero"))))
}

fn descriptor_at(
    analyzer: &FaceAnalyzer,
    reference: &PhotoRef,
    image: &DynamicImage,
) -> Result<Option<[f32; DESCRIPTOR_LEN]>, String> {
    let Some(face_box) = reference.face_box else {
        return Ok(None);
    };
    let key = format!(
        "{}:{}:{:?}",
        analyzer.models().descriptor_model_sha256,
        reference.photo,
        face_box
    );
    if let Some(found) = memo().lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return Ok(Some(*found));
    }
    let found = reference_at(analyzer, &image.to_rgb8(), face_box).map_err(|e| e.to_string())?;
    if let Some(descriptor) = found {
        memo()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .put(key, descriptor);
    }
    Ok(found)
}

/// The job's people with targets: places from the layout, references from the photos. `analyzer` is
/// `Err(reason)` when this worker has no face models.
pub fn job_identity(request: &RenderRequest, analyzer: Result<&FaceAnalyzer, &str>) -> JobIdentity {
    let planned = planned_people(request);
    let people: Vec<String> = planned.iter().map(|p| p.name.clone()).collect();
    if planned.is_empty() {
        return JobIdentity::default();
    }
    let analyzer = match analyzer {
        Ok(analyzer) => analyzer,
        Err(reason) => {
            return JobIdentity {
                people,
                targets: Vec::new(),
                unchecked: Some(format!("the identity check could not run: {reason}")),
            }
        }
    };
    let mut targets = Vec::new();
    let mut gaps = Vec::new();
    for person in &planned {
        let identity_photos = request.photos.iter().filter(|(r, _)| {
            r.role == ReferenceRole::Identity && r.label.as_deref() == Some(person.name.as_str())
        });
        let mut descriptors = Vec::new();
        for (reference, image) in std::iter::once(person.subject).chain(identity_photos) {
            match descriptor_at(analyzer, reference, image) {
                Ok(Some(d)) => descriptors.push(d),
                Ok(None) => {}
                Err(error) => gaps.push(format!("{}: {error}", person.name)),
            }
        }
        match mean_descriptor(descriptors.iter().map(|d| d.as_slice())) {
            Some(reference) => targets.push(IdentityTarget {
                place: person.place,
                reference,
            }),
            None => gaps.push(format!(
                "{}: no face found at the reference photos' face boxes",
                person.name
            )),
        }
    }
    if !gaps.is_empty() {
        // A person without a reference is not checked at all rather than reported missing.
        return JobIdentity {
            people,
            targets: Vec::new(),
            unchecked: Some(format!(
                "the identity check could not run: {}",
                gaps.join("; ")
            )),
        };
    }
    JobIdentity {
        people,
        targets,
        unchecked: None,
    }
}

/// Checks one output; `None` when the job cannot be checked.
pub fn check(
    analyzer: Result<&FaceAnalyzer, &str>,
    identity: &JobIdentity,
    image: &image::RgbImage,
) -> Result<Option<Vec<IdentityCheck>>, String> {
    let Ok(analyzer) = analyzer else {
        return Ok(None);
    };
    if !identity.checkable() {
        return Ok(None);
    }
    check_identities(analyzer, image, &identity.targets)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// The index of the best candidate by [`CandidateRank`] (the first of equals).
pub fn best_candidate(candidates: &[Vec<IdentityCheck>]) -> usize {
    let ranks: Vec<CandidateRank> = candidates
        .iter()
        .map(|checks| CandidateRank::of(checks.iter().map(|c| (c.distance, None))))
        .collect();
    reverie_faces::identity::best_candidate(&ranks)
}

pub fn people_of(identity: &JobIdentity, checks: &[IdentityCheck]) -> Vec<PersonIdentity> {
    identity
        .people
        .iter()
        .zip(checks)
        .map(|(person, check)| PersonIdentity {
            person: person.clone(),
            distance: check.distance,
            verdict: match check.verdict {
                Verdict::Verified => IdentityVerdict::Verified,
                Verdict::Weak => IdentityVerdict::Weak,
                Verdict::Missing => IdentityVerdict::Missing,
            },
        })
        .collect()
}

/// The report of a job: the kept candidate's people, every candidate when there were several.
pub fn report(
    identity: &JobIdentity,
    seeds: &[u64],
    checks: &[Option<Vec<IdentityCheck>>],
    kept: usize,
    failure: Option<String>,
) -> Option<IdentityReport> {
    if !identity.has_people() {
        return None;
    }
    let seed = seeds.get(kept).copied().unwrap_or_default();
    let unchecked = failure.or_else(|| identity.unchecked.clone());
    let kept_checks = checks.get(kept).cloned().flatten();
    let (people, unchecked) = match (kept_checks, unchecked) {
        (Some(checks), None) => (people_of(identity, &checks), None),
        (_, Some(reason)) => (Vec::new(), Some(reason)),
        (None, None) => (
            Vec::new(),
            Some("the identity check could not run".to_string()),
        ),
    };
    let candidates = if seeds.len() > 1 {
        seeds
            .iter()
            .zip(checks)
            .filter_map(|(&seed, checks)| {
                checks.as_ref().map(|c| IdentityCandidate {
                    seed,
                    people: people_of(identity, c),
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    Some(IdentityReport {
        people,
        unchecked,
        seed,
        candidates,
    })
}

/// A job's kept image with the seed that made it and its identity check.
pub struct Outcome {
    pub rendered: crate::render::RenderedImage,
    pub seed: u64,
    pub identity: Option<IdentityReport>,
}

/// Renders a batch and checks the identity of every output with people.
///
/// Before rendering, each job's people get their targets (planned face place, reference
/// descriptor; `RenderRequest::identity`). A job with `best_of: N` and people that can be checked
/// renders N candidates in the same batch, seeds `seed`, `seed + 1`, ... (the same on every
/// attempt, so a retry renders the same image), and keeps the candidate with the fewest people
/// missing, then the lowest total distance, the earlier seed on ties. A job without people, or whose
/// check cannot run on this worker, renders its one seed: there is nothing to choose by.
pub fn render_with_identity(
    renderer: &dyn crate::render::Renderer,
    mut requests: Vec<RenderRequest>,
    faces: Result<&reverie_faces::FaceAnalyzer, &str>,
    progress: crate::render::Progress<'_>,
) -> Vec<Result<Outcome, RenderError>> {
    let identities: Vec<JobIdentity> = requests
        .iter()
        .map(|request| job_identity(request, faces))
        .collect();
    let mut expanded = Vec::new();
    // For each rendered candidate: (job index, candidate index).
    let mut owners = Vec::new();
    for (index, (request, job_identity)) in requests.iter_mut().zip(&identities).enumerate() {
        request.identity = job_identity.targets.clone();
        let candidates = if job_identity.checkable() {
            request.spec.best_of.clamp(1, MAX_BEST_OF)
        } else {
            1
        };
        for k in 0..candidates {
            let mut candidate = request.clone();
            candidate.spec.seed = request.spec.seed.wrapping_add(u64::from(k));
            candidate.spec.best_of = 1;
            if k > 0 {
                // Renderers never draw identity photos; the extra copies need not hold them.
                candidate
                    .photos
                    .retain(|(r, _)| r.role != reverie_shared::jobs::ReferenceRole::Identity);
            }
            expanded.push(candidate);
            owners.push((index, k));
        }
    }
    // Candidates render in chunks no larger than the batch the batcher formed (its size is within
    // `worker.batch_max`), so best-of never multiplies the memory a render batch needs.
    let chunk = requests.len().max(1);
    let mut results = Vec::with_capacity(expanded.len());
    for (start, candidates) in (0..).step_by(chunk).zip(expanded.chunks(chunk)) {
        let chunk_progress = CandidateProgress {
            owners: &owners,
            start,
            jobs: progress,
        };
        results.extend(renderer.render_batch(candidates, &chunk_progress));
    }
    let mut per_job: Vec<Vec<(u64, Result<crate::render::RenderedImage, RenderError>)>> =
        requests.iter().map(|_| Vec::new()).collect();
    for ((job, _), (result, candidate)) in owners.iter().zip(results.into_iter().zip(&expanded)) {
        per_job[*job].push((candidate.spec.seed, result));
    }
    per_job
        .into_iter()
        .zip(&identities)
        .map(|(candidates, job_identity)| {
            let mut images = Vec::with_capacity(candidates.len());
            let mut seeds = Vec::with_capacity(candidates.len());
            for (seed, result) in candidates {
                // Any candidate failing fails the job: a retry then renders the same set.
                images.push(result?);
                seeds.push(seed);
            }
            let mut failure = None;
            let checks: Vec<Option<Vec<reverie_faces::identity::check::IdentityCheck>>> = images
                .iter()
                .map(|rendered| {
                    check(faces, job_identity, &rendered.image).unwrap_or_else(|error| {
                        failure = Some(format!("the identity check failed: {error}"));
                        None
                    })
                })
                .collect();
            let kept = match checks.iter().cloned().collect::<Option<Vec<_>>>() {
                Some(all) if failure.is_none() => best_candidate(&all),
                _ => 0,
            };
            let report = report(job_identity, &seeds, &checks, kept, failure);
            let seed = seeds[kept];
            let rendered = images.swap_remove(kept);
            Ok(Outcome {
                rendered,
                seed,
                identity: report,
            })
        })
        .collect()
}

/// Progress of a chunk of candidates reported as their jobs' progress: a job's first candidate stands
/// for it (its steps and previews); the others are silent.
struct CandidateProgress<'a> {
    /// For each candidate of the whole expansion: (job index, candidate index).
    owners: &'a [(usize, u32)],
    /// The chunk's first candidate in `owners`.
    start: usize,
    jobs: crate::render::Progress<'a>,
}

impl CandidateProgress<'_> {
    fn job(&self, index: usize) -> Option<usize> {
        match self.owners.get(self.start + index) {
            Some(&(job, 0)) => Some(job),
            _ => None,
        }
    }
}

impl crate::render::ProgressSink for CandidateProgress<'_> {
    fn step(&self, index: usize, step: u32, total: u32) {
        if let Some(job) = self.job(index) {
            self.jobs.step(job, step, total);
        }
    }

    fn wants_preview(&self, index: usize) -> bool {
        self.job(index)
            .is_some_and(|job| self.jobs.wants_preview(job))
    }

    fn step_with_preview(&self, index: usize, step: u32, total: u32, preview: image::RgbImage) {
        if let Some(job) = self.job(index) {
            self.jobs.step_with_preview(job, step, total, preview);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(distance: Option<f32>) -> IdentityCheck {
        IdentityCheck {
            distance,
            verdict: Verdict::of_distance(distance),
        }
    }

    #[test]
    fn best_of_prefers_everyone_present_then_the_smallest_total() {
        let candidates = vec![
            vec![check(Some(0.2)), check(None)],
            vec![check(Some(0.7)), check(Some(0.6))],
            vec![check(Some(0.5)), check(Some(0.5))],
            vec![check(Some(0.5)), check(Some(0.5))],
        ];
        // The second person is missing in the first: worst despite its low distance; of the equal
        // third and fourth, the earlier seed is kept.
        assert_eq!(best_candidate(&candidates), 2);
        assert_eq!(best_candidate(&candidates[..1]), 0);
    }

    #[test]
    fn reports_say_when_the_check_could_not_run() {
        let identity = JobIdentity {
            people: vec!["Anna".into()],
            targets: Vec::new(),
            unchecked: Some("the identity check could not run: no face models".into()),
        };
        let report = report(&identity, &[7], &[None], 0, None).unwrap();
        assert!(report.people.is_empty());
        assert!(report.unchecked.unwrap().contains("no face models"));
        assert_eq!(report.seed, 7);
        assert!(super::report(&JobIdentity::default(), &[7], &[None], 0, None).is_none());
        let identity = JobIdentity {
            people: vec!["Anna".into()],
            targets: vec![IdentityTarget {
                place: [0.0, 0.0, 1.0, 1.0],
                reference: [0.0; DESCRIPTOR_LEN],
            }],
            unchecked: None,
        };
        let checks = vec![Some(vec![check(Some(0.8))]), Some(vec![check(Some(0.3))])];
        let report = super::report(&identity, &[7, 8], &checks, 1, None).unwrap();
        assert_eq!(report.seed, 8);
        assert_eq!(report.people[0].verdict, IdentityVerdict::Verified);
        assert_eq!(report.candidates.len(), 2);
        assert_eq!(
            report.candidates[0].people[0].verdict,
            IdentityVerdict::Weak
        );
    }
}
