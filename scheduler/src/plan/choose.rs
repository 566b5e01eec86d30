//! Choosing what a plan renders: the renderer, the best photo for each subject, the identity faces
//! behind each person, a background that does not show the people placed in front of it, the
//! palette photos, the parameters and the seeds.

use std::collections::BTreeMap;

use reverie_shared::ids::RequestId;
use reverie_shared::jobs::{PhotoRef, ReferenceRole, RenderAdapters, RendererKind, MAX_LORAS};

use super::{variant_seed, Candidate, Plan, PlanInput, PlannerSettings, FALLBACK_ANSWER};

/// Further photos of each person sent as `Identity` references: their mean descriptor is the
/// person's reference for the identity check (and guidance). A few good faces are steadier than one;
/// more add fetch and detection time to every job for little gain.
pub const IDENTITY_PHOTOS: usize = 3;

/// Most palette photos per job: enough to pin down an album's colours, few enough to load quickly.
pub const PALETTE_PHOTOS: usize = 8;

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
        .any(|c| c.answers != FALLBACK_ANSWER);
    let backgrounds: Vec<Candidate> = input
        .backgrounds
        .iter()
        .filter(|c| renderer == RendererKind::Painterly || c.answers != FALLBACK_ANSWER)
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
    let adapters = match renderer {
        RendererKind::Diffusion => adapters_for(
            input,
            &chosen_subjects,
            model.as_deref(),
            settings,
            &mut explanation,
        ),
        RendererKind::Painterly => RenderAdapters::default(),
    };
    let model_prompt = with_triggers(&input.model_prompt, input, &adapters);
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
        model_prompt,
        negative_prompt: input.negative_prompt.clone(),
        seeds,
        references,
        reference_albums,
        priority: input.priority,
        explanation,
        album_run: None,
        identity_strength: input.identity_strength,
        best_of: input.best_of.max(1),
        adapters,
    }
}

/// The LoRAs bound to the subjects the picture places (at most [`MAX_LORAS`], made for this model)
/// and, when the farm's model has an IP-Adapter, the image prompt scale of a picture with subjects.
fn adapters_for(
    input: &PlanInput,
    subjects: &[&Candidate],
    model: Option<&str>,
    settings: &PlannerSettings,
    explanation: &mut Vec<String>,
) -> RenderAdapters {
    let mut adapters = RenderAdapters::default();
    for subject in subjects {
        for lora in input
            .loras
            .iter()
            .filter(|l| l.stands_for(&subject.answers, &subject.shows))
        {
            if adapters.loras.iter().any(|used| used.name == lora.name) {
                continue;
            }
            match (&lora.base_model, model) {
                (Some(base), Some(model)) if base != model => {
                    explanation.push(format!(
                        "LoRA {} of {} not used: made for model {base}, this farm renders {model}",
                        lora.name, subject.answers
                    ));
                    continue;
                }
                _ => {}
            }
            if adapters.loras.len() == MAX_LORAS {
                explanation.push(format!(
                    "LoRA {} not used: a picture uses at most {MAX_LORAS}",
                    lora.name
                ));
                continue;
            }
            explanation.push(format!(
                "LoRA {} for {} at weight {}{}",
                lora.name,
                subject.answers,
                lora.weight,
                lora.trigger
                    .as_deref()
                    .map(|t| format!(", trigger \"{t}\""))
                    .unwrap_or_default()
            ));
            adapters.loras.push(lora.usage());
        }
    }
    if settings.image_prompt_scale > 0.0 && !subjects.is_empty() {
        adapters.image_prompt_scale = settings.image_prompt_scale;
        explanation.push(format!(
            "image prompt: the subjects' photos through the IP-Adapter at scale {}",
            settings.image_prompt_scale
        ));
    }
    adapters
}

/// The model prompt with the trigger words of the LoRAs it uses in front (once each).
fn with_triggers(prompt: &str, input: &PlanInput, adapters: &RenderAdapters) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for used in &adapters.loras {
        let trigger = input
            .loras
            .iter()
            .find(|l| l.name == used.name)
            .and_then(|l| l.trigger.as_deref())
            .map(str::trim)
            .filter(|t| !t.is_empty() && !prompt.contains(*t));
        if let Some(trigger) = trigger {
            if !parts.contains(&trigger) {
                parts.push(trigger);
            }
        }
    }
    if !prompt.trim().is_empty() {
        parts.push(prompt);
    }
    parts.join(", ")
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

#[cfg(test)]
mod tests {
    use super::super::tests::candidate;
    use super::*;
    use crate::plan::jobs_for;
    use reverie_shared::ids::{PhotoId, TenantId};
    use reverie_shared::tenant_loras::TenantLora;

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

    fn lora(name: &str, subject: &str, base: Option<&str>) -> TenantLora {
        TenantLora {
            name: name.into(),
            sha256: "cd".repeat(32),
            bytes: 1,
            trigger: Some(format!("sks {name}")),
            weight: 0.8,
            base_model: base.map(str::to_string),
            subject: Some(subject.into()),
        }
    }

    /// A LoRA bound to a placed person goes into every job with its trigger words in the text; one
    /// made for another model, or bound to someone not in the picture, does not.
    #[test]
    fn loras_bound_to_placed_subjects_are_used_with_their_triggers() {
        let request = RequestId::new("r1").unwrap();
        let settings = PlannerSettings {
            diffusion_model: Some("sdxl".into()),
            ..PlannerSettings::default()
        };
        let input = PlanInput {
            variants: 2,
            model_prompt: "at the beach".into(),
            subjects: vec![candidate(1, "person:Anna", 0.9)],
            loras: vec![
                lora("anna", "anna", None),
                lora("anna-sd15", "Anna", Some("sd15")),
                lora("bob", "Bob", None),
            ],
            ..PlanInput::default()
        };
        let plan = make_plan(&input, &request, &settings);
        let names: Vec<&str> = plan
            .adapters
            .loras
            .iter()
            .map(|l| l.name.as_str())
            .collect();
        assert_eq!(names, vec!["anna"]);
        assert_eq!(plan.model_prompt, "sks anna, at the beach");
        assert!(plan
            .explanation
            .iter()
            .any(|line| line.contains("anna-sd15") && line.contains("made for model sd15")));
        let jobs = jobs_for(&plan, &TenantId::new("t").unwrap(), &request, &settings);
        assert!(jobs.iter().all(|j| j.render.adapters == plan.adapters));
        assert!(jobs[0].render.batch_key().contains("loras:anna@"));
        // The painter has no LoRAs; nor does a picture without its person.
        let painterly = make_plan(&input, &request, &PlannerSettings::default());
        assert!(painterly.adapters.is_empty());
        let nobody = PlanInput {
            subjects: vec![candidate(2, "person:Carla", 0.9)],
            ..input.clone()
        };
        assert!(make_plan(&nobody, &request, &settings)
            .adapters
            .loras
            .is_empty());
    }

    #[test]
    fn subjects_become_image_prompts_where_the_model_has_an_ip_adapter() {
        let request = RequestId::new("r1").unwrap();
        let settings = PlannerSettings {
            diffusion_model: Some("sdxl".into()),
            image_prompt_scale: 0.6,
            ..PlannerSettings::default()
        };
        let with_subject = PlanInput {
            subjects: vec![candidate(1, "person:Anna", 0.9)],
            ..PlanInput::default()
        };
        assert_eq!(
            make_plan(&with_subject, &request, &settings)
                .adapters
                .image_prompt_scale,
            0.6
        );
        let text_only = PlanInput::default();
        assert_eq!(
            make_plan(&text_only, &request, &settings)
                .adapters
                .image_prompt_scale,
            0.0
        );
    }
}
