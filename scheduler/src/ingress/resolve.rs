//! A validated request against its tenant's library: its prompt resolved (unresolved references are
//! refused with suggestions), an album run's photos, a refinement's source swaps, and the plan input
//! made of them: the one conversion of a request into what the planner reads.

use reverie_shared::ids::RequestId;

use crate::library::{self, TenantLibrary};
use crate::plan::PlanInput;
use crate::prompt;
use crate::replies::Reason;
use crate::request::{GenerationRequest, RequestKind};

/// A refinement's source swaps checked against its parent's sources and the tenant's library: the
/// swapped photo must be a source of the parent, its replacement a photo of this tenant, and every
/// person the old photo stood for must show in the new one (their face there is their new reference).
pub(super) fn source_replacements(
    request: &GenerationRequest,
    parent: Option<&(RequestId, crate::plan::Plan)>,
    library: &TenantLibrary,
) -> std::result::Result<Vec<crate::plan::SourceReplacement>, Reason> {
    if request.replace_sources.is_empty() {
        return Ok(Vec::new());
    }
    let Some((_, parent)) = parent else {
        return Err(Reason::new(
            "invalid_field",
            "replace_sources is only for refinements: name the request being refined",
        )
        .on_field("replace_sources"));
    };
    let mut replacements = Vec::new();
    for (i, swap) in request.replace_sources.iter().enumerate() {
        let olds: Vec<&reverie_shared::jobs::PhotoRef> = parent
            .references
            .iter()
            .filter(|r| r.photo.as_str() == swap.photo)
            .collect();
        let Some(first) = olds.first() else {
            return Err(Reason::new(
                "invalid_field",
                format!(
                    "photo {} is not a source of the request being refined",
                    swap.photo
                ),
            )
            .on_field(format!("replace_sources[{i}].photo")));
        };
        let Some(photo) = library
            .photos
            .iter()
            .find(|p| p.photo.as_str() == swap.with)
        else {
            return Err(Reason::new(
                "not_found",
                format!("no photo {} in this tenant's library", swap.with),
            )
            .on_field(format!("replace_sources[{i}].with")));
        };
        let mut faces = std::collections::BTreeMap::new();
        for old in olds.iter().filter(|r| r.face_box.is_some()) {
            let label = old.label.clone().unwrap_or_default();
            let Some(face) = face_of(library, photo, &label) else {
                return Err(Reason::new(
                    "invalid_field",
                    format!(
                        "photo {} does not show {label:?}, whom the replaced photo stood for",
                        swap.with
                    ),
                )
                .on_field(format!("replace_sources[{i}].with")));
            };
            faces.insert(label, face);
        }
        replacements.push(crate::plan::SourceReplacement {
            photo: first.photo.clone(),
            with: library::photo_ref(photo, first.role, None, None),
            faces,
            albums: photo.albums.clone(),
        });
    }
    Ok(replacements)
}

/// The box of the face of the person named `name` (a catalog person's name or alias) in `photo`.
fn face_of(library: &TenantLibrary, photo: &library::CatalogPhoto, name: &str) -> Option<[u32; 4]> {
    let wanted = name.trim().to_lowercase();
    let person = library.catalog.people.iter().find(|p| {
        p.name.trim().to_lowercase() == wanted
            || p.aliases.iter().any(|a| a.trim().to_lowercase() == wanted)
    })?;
    photo
        .faces
        .iter()
        .find(|f| f.person == person.id)
        .map(|f| f.face_box)
}

pub(super) type Resolved = (
    Option<crate::plan::AlbumRun>,
    prompt::ParsedPrompt,
    prompt::Resolution,
);

/// The request's album run and prompt resolved against a library, or why they do not resolve.
pub(super) fn resolve_against(
    library: &TenantLibrary,
    request: &GenerationRequest,
) -> std::result::Result<Resolved, Vec<Reason>> {
    let album_run = match &request.kind {
        RequestKind::AlbumToArt(spec) => Some(album_run(library, spec).map_err(|r| vec![r])?),
        RequestKind::Generate => None,
    };
    let parsed = prompt::parse_prompt(&request.prompt);
    let resolution = prompt::resolve(&parsed, &library.catalog);
    let reasons: Vec<Reason> = resolution
        .unresolved
        .iter()
        .map(|u| {
            Reason::new("unresolved_reference", u.message.clone())
                .on_field("prompt")
                .suggesting(u.suggestions.clone())
        })
        .collect();
    if !reasons.is_empty() {
        return Err(reasons);
    }
    Ok((album_run, parsed, resolution))
}

/// The photos of an album run, in the album's order, at most `limit`; an unknown album is refused with
/// the closest album names.
fn album_run(
    library: &library::TenantLibrary,
    spec: &crate::request::AlbumToArt,
) -> std::result::Result<crate::plan::AlbumRun, Reason> {
    let wanted = spec.album.trim().to_lowercase();
    let photos: Vec<_> = library
        .photos
        .iter()
        .filter(|photo| {
            photo
                .albums
                .iter()
                .any(|a| a.trim().to_lowercase() == wanted)
        })
        .take(spec.limit.max(1) as usize)
        .map(|photo| reverie_shared::jobs::PhotoRef {
            photo: photo.photo.clone(),
            shard: photo.shard.clone(),
            offset: photo.offset,
            length: photo.length,
            role: reverie_shared::jobs::ReferenceRole::Background,
            face_box: None,
            label: Some(spec.album.clone()),
        })
        .collect();
    if photos.is_empty() {
        let known: Vec<&str> = library.catalog.albums.iter().map(String::as_str).collect();
        return Err(Reason::new(
            "unknown_album",
            format!("no album named {:?} in this library", spec.album),
        )
        .on_field("album_to_art.album")
        .suggesting(prompt::suggest(&spec.album, known)));
    }
    Ok(crate::plan::AlbumRun {
        album: spec.album.clone(),
        to: spec.to.clone(),
        photos,
    })
}

/// The text for the model: what no reference consumed, plus the setting in words (the references
/// supply faces and photos, but the model still needs to hear "at sunset on a beach in Lisbon").
fn model_prompt(original: &str, parsed: &prompt::ParsedPrompt) -> String {
    let setting = &parsed.setting;
    let mut parts: Vec<String> = Vec::new();
    if !parsed.free_text.trim().is_empty() {
        parts.push(parsed.free_text.trim().to_string());
    }
    parts.extend(setting.scenes.iter().cloned());
    parts.extend(
        setting
            .light
            .iter()
            .map(|light| light.tag().replace('_', " ")),
    );
    parts.extend(
        setting
            .places
            .iter()
            .map(|place| format!("in {}", place.name)),
    );
    if parts.is_empty() {
        original.to_string()
    } else {
        parts.join(", ")
    }
}

/// What the plan is made from: the request's wishes and the photos its prompt resolved to.
pub(super) fn plan_input(
    request: &GenerationRequest,
    parsed: &prompt::ParsedPrompt,
    offered: library::Offered,
    library: &TenantLibrary,
) -> PlanInput {
    let album_style = match &request.kind {
        RequestKind::AlbumToArt(spec) => Some(spec.style.clone()),
        RequestKind::Generate => None,
    };
    let style = album_style
        .or_else(|| request.style.clone())
        .or_else(|| parsed.style.styles.first().cloned())
        .or_else(|| {
            parsed
                .style
                .artists
                .first()
                .map(|artist| format!("in the style of {artist}"))
        });
    let model_prompt = model_prompt(&request.prompt, parsed);
    PlanInput {
        model_prompt,
        negative_prompt: request.negative_prompt.clone().unwrap_or_default(),
        style,
        variants: request.variants,
        width: request.size.map(|s| s.width),
        height: request.size.map(|s| s.height),
        steps: request.steps,
        guidance: request.guidance,
        scheduler: None,
        seed: request.seed,
        renderer: None,
        priority: request.priority,
        palette_transfer: parsed.style.palette.is_some(),
        // Unset means the default restyle under guidance; an explicit 0 keeps subjects' pixels.
        identity_strength: request
            .identity_strength
            .unwrap_or(reverie_shared::jobs::DEFAULT_IDENTITY_STRENGTH),
        best_of: request.best_of.unwrap_or(1),
        subjects: offered.subjects,
        backgrounds: offered.backgrounds,
        palettes: offered.palettes,
        places_parent_subjects: false,
        loras: library.loras.clone(),
    }
}
