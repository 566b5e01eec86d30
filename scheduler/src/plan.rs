//! Planning: a validated request plus the references its prompt resolved to become the jobs that render
//! it. A pure function of its inputs, so a plan can be explained and reproduced from the record alone.

use std::collections::BTreeMap;

use reverie_shared::ids::{JobId, PhotoId, RequestId, TenantId};
use reverie_shared::jobs::{
    GenerateJob, OutputTarget, PhotoRef, Priority, ReferenceRole, RenderSpec, RendererKind,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What the farm can render, from configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannerSettings {
    /// The diffusion model to use; `None` means no weights are configured and the painterly renderer
    /// paints every job.
    pub diffusion_model: Option<String>,
    pub diffusion_steps: u32,
    pub diffusion_scheduler: String,
    pub diffusion_guidance: f32,
    pub default_size: u32,
    pub painterly_style: String,
    /// img2img strength when a background photo is the init image.
    pub background_strength: f32,
    /// Most subject photos per job (the renderer composes at most this many).
    pub max_subjects: usize,
}

impl Default for PlannerSettings {
    fn default() -> PlannerSettings {
        PlannerSettings {
            diffusion_model: None,
            diffusion_steps: 20,
            diffusion_scheduler: "ddim".to_string(),
            diffusion_guidance: 7.5,
            default_size: 512,
            painterly_style: "impressionist".to_string(),
            background_strength: 0.6,
            max_subjects: 4,
        }
    }
}

/// A photo the resolution offers for one role, with how well it fits (higher is better).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub reference: PhotoRef,
    pub score: f32,
    /// The albums the photo is in: consent is checked against them.
    pub albums: Vec<String>,
    /// Which resolved reference it answers ("person:Anna", "place:Lisbon", ...), to pick one per reference.
    pub answers: String,
    /// Catalog ids of the people and pets the photo shows (for a subject: the one it stands for). A
    /// setting photo that shows a subject of the picture is never its background: they would be in
    /// the picture twice.
    #[serde(default)]
    pub shows: Vec<String>,
    /// The photo is a close-up portrait (see `library::CLOSE_UP_FACE_SHARE`): never a setting for
    /// placed people.
    #[serde(default)]
    pub close_up: bool,
}

/// The request's wishes, already validated.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PlanInput {
    /// Prompt text for the model, resolved references removed.
    pub model_prompt: String,
    pub negative_prompt: String,
    pub style: Option<String>,
    pub variants: u32,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub steps: Option<u32>,
    pub guidance: Option<f32>,
    pub scheduler: Option<String>,
    pub seed: Option<u64>,
    pub renderer: Option<RendererKind>,
    pub priority: Priority,
    pub palette_transfer: bool,
    /// Identity guidance strength (0 = off), validated at intake.
    pub identity_strength: f32,
    /// Candidates per job (0 is taken as 1), validated at intake.
    pub best_of: u32,
    pub subjects: Vec<Candidate>,
    pub backgrounds: Vec<Candidate>,
    pub palettes: Vec<Candidate>,
    /// People will be placed even if `subjects` is empty: a refinement keeps its parent's
    /// (`refine_plan`), so its setting must not be anyone's close-up either.
    #[serde(default)]
    pub places_parent_subjects: bool,
}

/// The plan as recorded: enough to explain the result and render it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub renderer: RendererKind,
    pub model: Option<String>,
    pub width: u32,
    pub height: u32,
    pub steps: u32,
    pub scheduler: Option<String>,
    pub guidance: f32,
    pub style: String,
    pub model_prompt: String,
    pub negative_prompt: String,
    pub seeds: Vec<u64>,
    pub references: Vec<PhotoRef>,
    /// For every reference, the albums it is in (consent re-checks after a revoke).
    pub reference_albums: BTreeMap<String, Vec<String>>,
    pub priority: Priority,
    /// Human-readable reasons for each choice.
    pub explanation: Vec<String>,
    /// Set for album-to-art runs: one job per album photo instead of one per variant.
    #[serde(default)]
    pub album_run: Option<AlbumRun>,
    /// Identity guidance strength of every job (0 = off; absent in records of earlier versions).
    #[serde(default)]
    pub identity_strength: f32,
    /// Candidates each job renders, keeping the best identity (absent in earlier records: 1).
    #[serde(default = "one")]
    pub best_of: u32,
}

fn one() -> u32 {
    1
}

/// Further photos of each person sent as `Identity` references: their mean descriptor is the
/// person's reference for the identity check (and guidance). A few good faces are steadier than one;
/// more add fetch and detection time to every job for little gain.
pub const IDENTITY_PHOTOS: usize = 3;

/// An album turned into art: every photo of `album` painted in `style`, written to
/// `tenants/{t}/albums/{to}/{photo}.png` so a resumed run overwrites instead of duplicating.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlbumRun {
    pub album: String,
    pub to: String,
    /// The album photos, in job order (job `i` paints photo `i`).
    pub photos: Vec<PhotoRef>,
}

/// Where an album run's outputs go: an album of the tenant's store named after `to`, or, when `to` is
/// an `s3://` URL, that prefix of a bucket the tenant registered (checked at intake and by the worker).
pub fn album_output_prefix(tenant: &TenantId, to: &str) -> String {
    if reverie_shared::destinations::Destination::is_url(to) {
        return format!("{}/", to.trim_end_matches('/'));
    }
    format!(
        "{}albums/{}/",
        reverie_shared::keys::tenant_prefix(tenant),
        album_slug(to)
    )
}

/// An album name as one safe key segment ("Hawaii 2024 / best" -> "hawaii-2024-best").
pub fn album_slug(name: &str) -> String {
    let mut slug = String::new();
    for c in name.trim().chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    let slug = slug.trim_end_matches('-').to_string();
    if slug.is_empty() {
        "album".to_string()
    } else {
        slug
    }
}

/// Turns an ordinary plan into an album run: every album photo becomes a background and a seed.
pub fn album_plan(mut plan: Plan, run: AlbumRun, request: &RequestId) -> Plan {
    plan.seeds = (0..run.photos.len() as u32)
        .map(|i| variant_seed(request, i, None))
        .collect();
    plan.references = run.photos.clone();
    plan.priority = Priority::Batch;
    plan.explanation.push(format!(
        "album run: {} photos of album {:?} in style {:?}, to album {:?}",
        run.photos.len(),
        run.album,
        plan.style,
        run.to
    ));
    plan.album_run = Some(run);
    plan
}

/// The seed of the `index`-th variant: the given seed plus the index, or a hash of the request id and
/// the index, so the same request always renders the same images.
pub fn variant_seed(request: &RequestId, index: u32, given: Option<u64>) -> u64 {
    match given {
        Some(seed) => seed.wrapping_add(u64::from(index)),
        None => {
            let digest = Sha256::digest(format!("{request}#{index}").as_bytes());
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&digest[..8]);
            u64::from_le_bytes(bytes)
        }
    }
}

/// The best candidate for each distinct thing asked for, best first, at most `limit`.
fn best_per_answer(candidates: &[Candidate], limit: usize) -> Vec<&Candidate> {
    let mut best: BTreeMap<&str, &Candidate> = BTreeMap::new();
    for candidate in candidates {
        let slot = best.entry(candidate.answers.as_str()).or_insert(candidate);
        if candidate.score > slot.score {
            *slot = candidate;
        }
    }
    let mut chosen: Vec<&Candidate> = best.into_values().collect();
    chosen.sort_by(|a, b| b.score.total_cmp(&a.score));
    chosen.truncate(limit);
    chosen
}

fn with_role(candidate: &Candidate, role: ReferenceRole) -> PhotoRef {
    PhotoRef {
        role,
        ..candidate.reference.clone()
    }
}

/// Most palette photos per job: enough to pin down an album's colours, few enough to load quickly.
pub const PALETTE_PHOTOS: usize = 8;

/// Adds `candidate` in `role` unless the photo already serves that role.
fn take(
    references: &mut Vec<PhotoRef>,
    reference_albums: &mut BTreeMap<String, Vec<String>>,
    candidate: &Candidate,
    role: ReferenceRole,
    why: &str,
    explanation: &mut Vec<String>,
) {
    if references
        .iter()
        .any(|r: &PhotoRef| r.photo == candidate.reference.photo && r.role == role)
    {
        return;
    }
    explanation.push(format!(
        "{why} for {}: photo {} (score {:.2})",
        candidate.answers,
        candidate.reference.photo.short(),
        candidate.score
    ));
    reference_albums.insert(
        candidate.reference.photo.to_string(),
        candidate.albums.clone(),
    );
    references.push(with_role(candidate, role));
}

/// For every person among the chosen subjects, up to [`IDENTITY_PHOTOS`] more of their best faces as
/// `Identity` references (never drawn; the worker takes the mean of these faces' descriptors and the
/// subject's own as the person's reference). People are told apart by their face box, so a group photo
/// can serve two people.
fn identity_references(
    subjects: &[Candidate],
    references: &mut Vec<PhotoRef>,
    reference_albums: &mut BTreeMap<String, Vec<String>>,
    explanation: &mut Vec<String>,
) {
    let people: Vec<(String, PhotoRef)> = references
        .iter()
        .filter(|r| r.role == ReferenceRole::Subject && r.face_box.is_some())
        .filter_map(|r| {
            subjects
                .iter()
                .find(|c| c.reference.photo == r.photo && c.reference.face_box == r.face_box)
                .map(|c| (c.answers.clone(), r.clone()))
        })
        .collect();
    for (answers, subject) in people {
        let mut others: Vec<&Candidate> = subjects
            .iter()
            .filter(|c| c.answers == answers && c.reference.face_box.is_some())
            .filter(|c| c.reference.photo != subject.photo)
            .collect();
        others.sort_by(|a, b| b.score.total_cmp(&a.score));
        let mut taken = 0;
        for candidate in others {
            if taken == IDENTITY_PHOTOS {
                break;
            }
            let duplicate = references.iter().any(|r| {
                r.role == ReferenceRole::Identity
                    && r.photo == candidate.reference.photo
                    && r.face_box == candidate.reference.face_box
            });
            if duplicate {
                continue;
            }
            reference_albums.insert(
                candidate.reference.photo.to_string(),
                candidate.albums.clone(),
            );
            references.push(PhotoRef {
                label: subject.label.clone(),
                ..with_role(candidate, ReferenceRole::Identity)
            });
            taken += 1;
        }
        if taken > 0 {
            explanation.push(format!(
                "identity for {answers}: {taken} more of their best faces for the identity check"
            ));
        }
    }
}

/// Chooses references, renderer and parameters.
pub fn make_plan(input: &PlanInput, request: &RequestId, settings: &PlannerSettings) -> Plan {
    let mut explanation = Vec::new();
    let renderer = match (input.renderer, &settings.diffusion_model) {
        (Some(RendererKind::Diffusion), None) => {
            explanation
                .push("diffusion asked for but no weights are configured: painterly".to_string());
            RendererKind::Painterly
        }
        (Some(kind), _) => kind,
        (None, Some(_)) => RendererKind::Diffusion,
        (None, None) => RendererKind::Painterly,
    };
    explanation.push(format!("renderer {}", renderer.label()));
    let mut references = Vec::new();
    let mut reference_albums = BTreeMap::new();
    for candidate in best_per_answer(&input.subjects, settings.max_subjects) {
        take(
            &mut references,
            &mut reference_albums,
            candidate,
            ReferenceRole::Subject,
            "subject",
            &mut explanation,
        );
    }
    identity_references(
        &input.subjects,
        &mut references,
        &mut reference_albums,
        &mut explanation,
    );
    let chosen_subjects = best_per_answer(&input.subjects, settings.max_subjects);
    // Who the picture places: a setting photo showing any of them would put them in twice (the
    // person's own portrait as the garden they stand in).
    let placed: Vec<&str> = chosen_subjects
        .iter()
        .flat_map(|c| c.shows.iter().map(String::as_str))
        .collect();
    // Diffusion renders from text when no setting was named; only a painter needs a photo regardless.
    let named_setting = input
        .backgrounds
        .iter()
        .any(|c| c.answers != crate::library::FALLBACK_ANSWER);
    let backgrounds: Vec<Candidate> = input
        .backgrounds
        .iter()
        .filter(|c| {
            renderer == RendererKind::Painterly || c.answers != crate::library::FALLBACK_ANSWER
        })
        .filter(|c| !c.shows.iter().any(|who| placed.contains(&who.as_str())))
        // A close-up is someone's portrait: as a setting for placed people it would put a second
        // face behind them, whoever it shows (the grouping may not have joined them yet).
        .filter(|c| (chosen_subjects.is_empty() && !input.places_parent_subjects) || !c.close_up)
        .cloned()
        .collect();
    if let Some(candidate) = best_per_answer(&backgrounds, 1).first() {
        take(
            &mut references,
            &mut reference_albums,
            candidate,
            ReferenceRole::Background,
            "background",
            &mut explanation,
        );
    } else if named_setting && !chosen_subjects.is_empty() {
        explanation.push(
            "warning: no photo of the setting without the people of the picture in it; they are \
             placed on a neutral canvas and the setting comes from the words alone"
                .to_string(),
        );
    }
    // The renderer blends the palettes of all palette photos: several photos stand for an album's or the
    // tenant's favourite colours better than the single most colourful one.
    let mut palette_photos: Vec<&Candidate> = input.palettes.iter().collect();
    palette_photos.sort_by(|a, b| b.score.total_cmp(&a.score));
    for candidate in palette_photos.into_iter().take(PALETTE_PHOTOS) {
        take(
            &mut references,
            &mut reference_albums,
            candidate,
            ReferenceRole::Palette,
            "palette",
            &mut explanation,
        );
    }
    let size = settings.default_size;
    let (steps, scheduler, model, guidance) = match renderer {
        RendererKind::Diffusion => (
            input.steps.unwrap_or(settings.diffusion_steps),
            Some(
                input
                    .scheduler
                    .clone()
                    .unwrap_or_else(|| settings.diffusion_scheduler.clone()),
            ),
            settings.diffusion_model.clone(),
            input.guidance.unwrap_or(settings.diffusion_guidance),
        ),
        // The painterly renderer has no denoising loop: one pass.
        RendererKind::Painterly => (1, None, None, 0.0),
    };
    let variants = input.variants.max(1);
    let seeds = (0..variants)
        .map(|i| variant_seed(request, i, input.seed))
        .collect();
    Plan {
        renderer,
        model,
        width: input.width.unwrap_or(size),
        height: input.height.unwrap_or(size),
        steps,
        scheduler,
        guidance,
        style: input
            .style
            .clone()
            .unwrap_or_else(|| settings.painterly_style.clone()),
        model_prompt: input.model_prompt.clone(),
        negative_prompt: input.negative_prompt.clone(),
        seeds,
        references,
        reference_albums,
        priority: input.priority,
        explanation,
        album_run: None,
        identity_strength: input.identity_strength,
        best_of: input.best_of.max(1),
    }
}

/// The jobs that render a plan, one per variant.
pub fn jobs_for(
    plan: &Plan,
    tenant: &TenantId,
    request: &RequestId,
    settings: &PlannerSettings,
) -> Vec<GenerateJob> {
    let has_background = plan
        .references
        .iter()
        .any(|r| r.role == ReferenceRole::Background);
    let palette_transfer = plan
        .references
        .iter()
        .any(|r| r.role == ReferenceRole::Palette);
    if let Some(run) = &plan.album_run {
        return album_jobs(plan, run, tenant, request);
    }
    plan.seeds
        .iter()
        .enumerate()
        .map(|(index, &seed)| {
            let index = index as u32;
            GenerateJob {
                job: JobId::for_request(request, index),
                request: request.clone(),
                tenant: tenant.clone(),
                index,
                render: render_spec(
                    plan,
                    seed,
                    if has_background {
                        settings.background_strength
                    } else {
                        1.0
                    },
                    palette_transfer,
                ),
                references: plan.references.clone(),
                output: OutputTarget::default(),
                batch_run: None,
            }
        })
        .collect()
}

/// What a worker needs to render one image of a plan.
fn render_spec(plan: &Plan, seed: u64, strength: f32, palette_transfer: bool) -> RenderSpec {
    RenderSpec {
        renderer: plan.renderer,
        prompt: plan.model_prompt.clone(),
        negative_prompt: plan.negative_prompt.clone(),
        style: plan.style.clone(),
        model: plan.model.clone(),
        width: plan.width,
        height: plan.height,
        steps: plan.steps,
        guidance: plan.guidance,
        scheduler: plan.scheduler.clone(),
        seed,
        strength,
        palette_transfer,
        // identity guidance: the strength travels per job; the worker wires it into sampling.
        identity_strength: plan.identity_strength,
        best_of: plan.best_of.max(1),
    }
}

fn album_jobs(
    plan: &Plan,
    run: &AlbumRun,
    tenant: &TenantId,
    request: &RequestId,
) -> Vec<GenerateJob> {
    let destination = album_output_prefix(tenant, &run.to);
    run.photos
        .iter()
        .zip(&plan.seeds)
        .enumerate()
        .map(|(index, (photo, &seed))| {
            let index = index as u32;
            let mut reference = photo.clone();
            reference.role = ReferenceRole::Background;
            GenerateJob {
                job: JobId::for_request(request, index),
                request: request.clone(),
                tenant: tenant.clone(),
                index,
                // img2img keeps the photo recognisable; the painter paints over it anyway.
                render: render_spec(plan, seed, 0.6, false),
                references: vec![reference],
                output: OutputTarget {
                    destination: Some(destination.trim_end_matches('/').to_string()),
                    name: Some(photo.photo.to_string()),
                },
                batch_run: Some(request.to_string()),
            }
        })
        .collect()
}

/// A refinement keeps the parent's seeds and references unless the new prompt resolved its own: a role
/// the new prompt names replaces the parent's references of that role; the others are kept.
pub fn refine_plan(parent: &Plan, child: Plan) -> Plan {
    let mut references: Vec<PhotoRef> = Vec::new();
    let mut albums = child.reference_albums.clone();
    let mut explanation = child.explanation.clone();
    for role in [
        ReferenceRole::Subject,
        ReferenceRole::Background,
        ReferenceRole::Palette,
    ] {
        let new: Vec<&PhotoRef> = child.references.iter().filter(|r| r.role == role).collect();
        if new.is_empty() {
            for kept in parent.references.iter().filter(|r| r.role == role) {
                if let Some(a) = parent.reference_albums.get(kept.photo.as_str()) {
                    albums.insert(kept.photo.to_string(), a.clone());
                }
                explanation.push(format!(
                    "kept the parent's {role:?} photo {}",
                    kept.photo.short()
                ));
                references.push(kept.clone());
            }
        } else {
            references.extend(new.into_iter().cloned());
        }
    }
    // The faces behind the people's references follow the people: the child's when it named its own.
    let child_named_people = child
        .references
        .iter()
        .any(|r| r.role == ReferenceRole::Subject);
    let identity_source = if child_named_people { &child } else { parent };
    for kept in identity_source
        .references
        .iter()
        .filter(|r| r.role == ReferenceRole::Identity)
    {
        if let Some(a) = identity_source.reference_albums.get(kept.photo.as_str()) {
            albums.insert(kept.photo.to_string(), a.clone());
        }
        references.push(kept.clone());
    }
    // The parent's seeds, as many as the child has variants (new variants get fresh seeds).
    let mut seeds = child.seeds.clone();
    for (slot, seed) in seeds.iter_mut().zip(&parent.seeds) {
        *slot = *seed;
    }
    explanation.push("kept the parent's seeds".to_string());
    Plan {
        references,
        reference_albums: albums,
        seeds,
        explanation,
        ..child
    }
}

/// A parent's source replaced by another photo of the library (ingress checked both belong to the
/// tenant): `with` is the new photo (its role and face are taken per reference), `faces` the box of each
/// person's face in it, by the label the references carry.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceReplacement {
    pub photo: PhotoId,
    pub with: PhotoRef,
    pub faces: BTreeMap<String, [u32; 4]>,
    /// The albums the new photo is in (consent is checked against them).
    pub albums: Vec<String>,
}

/// Applies a refinement's source swaps: every reference to a replaced photo now points at its
/// replacement in the same role and with the same label, a person's reference at that person's face in
/// it. Returns the swapped photos the plan no longer used (the new prompt replaced them itself).
pub fn replace_sources(plan: &mut Plan, replacements: &[SourceReplacement]) -> Vec<PhotoId> {
    let mut unused = Vec::new();
    for replacement in replacements {
        let mut replaced = 0;
        for reference in plan
            .references
            .iter_mut()
            .filter(|r| r.photo == replacement.photo)
        {
            let face_box = reference.face_box.and_then(|_| {
                let label = reference.label.as_deref().unwrap_or_default();
                replacement.faces.get(label).copied()
            });
            *reference = PhotoRef {
                role: reference.role,
                label: reference.label.clone(),
                face_box,
                ..replacement.with.clone()
            };
            replaced += 1;
        }
        if replaced == 0 {
            unused.push(replacement.photo.clone());
            continue;
        }
        plan.reference_albums.remove(replacement.photo.as_str());
        plan.reference_albums.insert(
            replacement.with.photo.to_string(),
            replacement.albums.clone(),
        );
        plan.explanation.push(format!(
            "replaced source {} with {}",
            replacement.photo.short(),
            replacement.with.photo.short()
        ));
    }
    unused
}

/// The photos a plan uses.
pub fn photos_of(plan: &Plan) -> Vec<PhotoId> {
    let mut photos: Vec<PhotoId> = plan.references.iter().map(|r| r.photo.clone()).collect();
    photos.sort();
    photos.dedup();
    photos
}

#[cfg(test)]
mod tests {
    use super::*;
    use reverie_shared::ids::ShardId;

    fn candidate(byte: u8, answers: &str, score: f32) -> Candidate {
        Candidate {
            reference: PhotoRef {
                photo: PhotoId::of_bytes(&[byte]),
                shard: ShardId::new("s-0").unwrap(),
                offset: 0,
                length: 10,
                role: ReferenceRole::Subject,
                face_box: None,
                label: Some(answers.to_string()),
            },
            score,
            albums: vec![],
            answers: answers.to_string(),
            shows: vec![answers.to_string()],
            close_up: false,
        }
    }

    #[test]
    fn seeds_are_deterministic_per_request_and_index() {
        let request = RequestId::new("r1").unwrap();
        assert_eq!(
            variant_seed(&request, 0, None),
            variant_seed(&request, 0, None)
        );
        assert_ne!(
            variant_seed(&request, 0, None),
            variant_seed(&request, 1, None)
        );
        assert_eq!(variant_seed(&request, 2, Some(40)), 42);
    }

    #[test]
    fn renderer_follows_configured_weights() {
        let request = RequestId::new("r1").unwrap();
        let input = PlanInput {
            variants: 2,
            ..PlanInput::default()
        };
        let plan = make_plan(&input, &request, &PlannerSettings::default());
        assert_eq!(plan.renderer, RendererKind::Painterly);
        assert_eq!(plan.seeds.len(), 2);
        let settings = PlannerSettings {
            diffusion_model: Some("sd-tiny".into()),
            ..PlannerSettings::default()
        };
        let plan = make_plan(&input, &request, &settings);
        assert_eq!(plan.renderer, RendererKind::Diffusion);
        assert_eq!(plan.steps, 20);
        assert_eq!(plan.model.as_deref(), Some("sd-tiny"));
    }

    #[test]
    fn picks_the_best_photo_per_subject() {
        let request = RequestId::new("r1").unwrap();
        let input = PlanInput {
            variants: 1,
            subjects: vec![
                candidate(1, "person:Anna", 0.2),
                candidate(2, "person:Anna", 0.9),
                candidate(3, "pet:Rex", 0.5),
            ],
            ..PlanInput::default()
        };
        let plan = make_plan(&input, &request, &PlannerSettings::default());
        let photos: Vec<_> = plan.references.iter().map(|r| r.photo.clone()).collect();
        assert_eq!(
            photos,
            vec![PhotoId::of_bytes(&[2]), PhotoId::of_bytes(&[3])]
        );
        let jobs = jobs_for(
            &plan,
            &TenantId::new("t").unwrap(),
            &request,
            &PlannerSettings::default(),
        );
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].job.as_str(), "r1.0");
        assert_eq!(jobs[0].references.len(), 2);
    }

    #[test]
    fn swapped_sources_take_the_old_ones_role_and_label_and_consent_albums() {
        let settings = PlannerSettings::default();
        let input = PlanInput {
            variants: 1,
            subjects: vec![candidate(1, "person:Anna", 0.9)],
            backgrounds: vec![candidate(5, "place:Lisbon", 0.9)],
            ..PlanInput::default()
        };
        let mut plan = make_plan(&input, &RequestId::new("p").unwrap(), &settings);
        let old = plan
            .references
            .iter()
            .find(|r| r.role == ReferenceRole::Background)
            .unwrap()
            .clone();
        let new = candidate(9, "place:Porto", 0.1).reference;
        let unused = replace_sources(
            &mut plan,
            &[
                SourceReplacement {
                    photo: old.photo.clone(),
                    with: new.clone(),
                    faces: BTreeMap::new(),
                    albums: vec!["Holiday".into()],
                },
                SourceReplacement {
                    photo: PhotoId::of_bytes(b"not in the plan"),
                    with: new.clone(),
                    faces: BTreeMap::new(),
                    albums: vec![],
                },
            ],
        );
        assert_eq!(unused, [PhotoId::of_bytes(b"not in the plan")]);
        let swapped = plan
            .references
            .iter()
            .find(|r| r.photo == new.photo)
            .unwrap();
        assert_eq!(swapped.role, ReferenceRole::Background);
        assert_eq!(swapped.label, old.label);
        assert!(!plan.references.iter().any(|r| r.photo == old.photo));
        assert_eq!(plan.reference_albums[new.photo.as_str()], ["Holiday"]);
        assert!(!plan.reference_albums.contains_key(old.photo.as_str()));
        assert!(plan
            .explanation
            .last()
            .unwrap()
            .starts_with("replaced source"));
    }

    #[test]
    fn refine_keeps_parent_seed_and_references_unless_replaced() {
        let settings = PlannerSettings::default();
        let parent_input = PlanInput {
            variants: 1,
            subjects: vec![candidate(1, "person:Anna", 0.9)],
            backgrounds: vec![candidate(5, "place:Lisbon", 0.9)],
            ..PlanInput::default()
        };
        let parent = make_plan(&parent_input, &RequestId::new("p").unwrap(), &settings);
        let child_input = PlanInput {
            variants: 1,
            backgrounds: vec![candidate(6, "place:Porto", 0.8)],
            ..PlanInput::default()
        };
        let child = make_plan(&child_input, &RequestId::new("c").unwrap(), &settings);
        let refined = refine_plan(&parent, child);
        assert_eq!(refined.seeds, parent.seeds);
        let subject = refined
            .references
            .iter()
            .find(|r| r.role == ReferenceRole::Subject)
            .unwrap();
        assert_eq!(subject.photo, PhotoId::of_bytes(&[1]));
        let background = refined
            .references
            .iter()
            .find(|r| r.role == ReferenceRole::Background)
            .unwrap();
        assert_eq!(background.photo, PhotoId::of_bytes(&[6]));
    }
}
