//! What both ingresses share: binding a request to a tenant, validating it (schema v1, see
//! [`crate::request`]), resolving its prompt against the tenant's library, and handing it to the core.
//! Every refusal becomes a `rejected` reply with reasons; only infrastructure failures are errors.

use std::sync::Arc;

use reverie_shared::ids::{RequestId, TenantId};

use crate::error::Result;
use crate::library::{self, CachedLibrary, TenantLibrary};
use crate::plan::PlanInput;
use crate::prompt;
pub use crate::records::Ingress;
use crate::records::ReplyRoute;
use crate::replies::{Reason, Reply};
use crate::request::{GenerationRequest, RequestError, RequestKind};
use crate::service::{Core, Intake};
use crate::tenants::{AuthError, Tenant};

/// The AMQP header carrying a tenant token.
pub const TOKEN_HEADER: &str = "x-reverie-token";
/// Request bodies above this are refused unread.
pub const MAX_REQUEST_BYTES: usize = crate::request::MAX_REQUEST_BYTES;

/// What the ingress knows about who sent a request.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// A `TENANT:SECRET` token (HTTP bearer, or the AMQP `x-reverie-token` header).
    pub token: Option<String>,
    /// The broker-validated AMQP `user_id`.
    pub broker_user: Option<String>,
}

/// The answer to a request and the AMQP reply route its replies may use (`None`: none was given, or
/// the one given was refused: docs/api.md, "Reply queues").
#[derive(Debug, Clone)]
pub struct Answer {
    pub reply: Reply,
    pub route: Option<ReplyRoute>,
}

/// The tenants a request claims to act for before it is authenticated: the token's tenant, the body's
/// `tenant`, the broker user. Used only to decide where a rejection may be answered: any of them (the
/// sender could have claimed any one alone).
fn claimed_tenants(credentials: &Credentials, body_tenant: Option<&str>) -> Vec<TenantId> {
    let token_tenant = credentials
        .token
        .as_deref()
        .and_then(|t| t.trim().split_once(':'))
        .map(|(tenant, _)| tenant.to_string());
    [
        token_tenant,
        body_tenant.map(str::to_string),
        credentials.broker_user.clone(),
    ]
    .into_iter()
    .flatten()
    .filter_map(|name| TenantId::new(&name).ok())
    .collect()
}

/// `route` if a request acting for one of `tenants` may be answered there; otherwise `None`, logged
/// and counted.
fn screen_route(
    core: &Core,
    route: Option<&ReplyRoute>,
    tenants: &[TenantId],
) -> Option<ReplyRoute> {
    let route = route?;
    let prefix = &core.options().queue_prefix;
    let verdict = if tenants.is_empty() {
        crate::reply_to::check(prefix, &route.reply_to, None)
    } else {
        tenants
            .iter()
            .map(|tenant| crate::reply_to::check(prefix, &route.reply_to, Some(tenant)))
            .find(Result::is_ok)
            .unwrap_or_else(|| crate::reply_to::check(prefix, &route.reply_to, tenants.first()))
    };
    let tenant = tenants.first();
    match verdict {
        Ok(()) => Some(route.clone()),
        Err(refusal) => {
            reverie_shared::metrics::global()
                .replies_undelivered
                .with_label_values(&[refusal.label()])
                .inc();
            tracing::warn!(
                reply_to = %route.reply_to,
                tenant = tenant.map(|t| t.as_str()).unwrap_or("-"),
                reason = refusal.label(),
                "reply_to refused: the request is handled but answered nowhere"
            );
            None
        }
    }
}

/// What intake needs besides the core.
#[derive(Clone, Debug)]
pub struct IntakeContext {
    pub library: Arc<CachedLibrary>,
}

/// The tenant a request acts for: a token wins; otherwise the broker user must be bound to the tenant
/// the request names (or to a tenant of the same name when it names none).
async fn bind_tenant(
    core: &Core,
    credentials: &Credentials,
    claimed: Option<&str>,
) -> std::result::Result<Tenant, AuthError> {
    let tenant = if let Some(token) = credentials
        .token
        .as_deref()
        .filter(|t| !t.trim().is_empty())
    {
        core.tenants().authenticate(token).await?
    } else if let Some(user) = credentials.broker_user.as_deref() {
        let name = claimed.unwrap_or(user);
        // An unknown tenant and one the user is not bound to are the same answer (no enumeration).
        let id = TenantId::new(name).map_err(|_| AuthError::UnboundUser(user.to_string()))?;
        let tenant = core
            .tenants()
            .get(&id)
            .await
            .map_err(|e| AuthError::Unavailable(e.to_string()))?
            .ok_or_else(|| AuthError::UnboundUser(user.to_string()))?;
        if !tenant.amqp_users.iter().any(|u| u == user) {
            return Err(AuthError::UnboundUser(user.to_string()));
        }
        tenant
    } else {
        return Err(AuthError::Missing);
    };
    if let Some(claimed) = claimed {
        if claimed != tenant.id.as_str() {
            return Err(AuthError::TenantMismatch {
                authenticated: tenant.id.to_string(),
                requested: claimed.to_string(),
            });
        }
    }
    Ok(tenant)
}

fn auth_reason(error: &AuthError) -> Reason {
    Reason::new(error.code(), error.to_string())
}

/// Validates, authenticates, resolves and accepts one request. `idempotency_key` is the AMQP
/// message_id or the HTTP Idempotency-Key; without one a fresh id is generated (no idempotency).
/// `reply` (AMQP) is checked against the sender: the answer says where replies may go.
#[allow(clippy::too_many_arguments)]
pub async fn submit(
    core: &Core,
    context: &IntakeContext,
    ingress: Ingress,
    credentials: &Credentials,
    idempotency_key: Option<&str>,
    body: &[u8],
    reply: Option<ReplyRoute>,
    parent: Option<RequestId>,
) -> Result<Answer> {
    let mut route = None;
    let reply = submit_checked(
        core,
        context,
        ingress,
        credentials,
        idempotency_key,
        body,
        reply.as_ref(),
        &mut route,
        parent,
    )
    .await?;
    Ok(Answer { reply, route })
}

#[allow(clippy::too_many_arguments)]
async fn submit_checked(
    core: &Core,
    context: &IntakeContext,
    ingress: Ingress,
    credentials: &Credentials,
    idempotency_key: Option<&str>,
    body: &[u8],
    given_route: Option<&ReplyRoute>,
    route: &mut Option<ReplyRoute>,
    parent: Option<RequestId>,
) -> Result<Reply> {
    let tenant_changes = core.tenant_changes();
    // Until the sender is authenticated, a rejection may go only where the tenant it claims to be may
    // be answered (or to a private queue).
    let body_tenant = (body.len() <= MAX_REQUEST_BYTES)
        .then(|| serde_json::from_slice::<serde_json::Value>(body).ok())
        .flatten()
        .and_then(|v| v.get("tenant").and_then(|t| t.as_str()).map(str::to_string));
    let claimed_ids = claimed_tenants(credentials, body_tenant.as_deref());
    *route = screen_route(core, given_route, &claimed_ids);
    let request_id = match idempotency_key {
        Some(key) => match RequestId::new(key) {
            Ok(id) => id,
            Err(error) => {
                return Ok(reject(
                    ingress,
                    None,
                    vec![Reason::new("invalid_request_id", error.to_string())],
                ));
            }
        },
        None => RequestId::random(),
    };
    let id_text = Some(request_id.to_string());
    if body.len() > MAX_REQUEST_BYTES {
        let reason = Reason::new(
            "too_large",
            format!(
                "request body of {} bytes exceeds the {MAX_REQUEST_BYTES}-byte limit",
                body.len()
            ),
        );
        return Ok(reject(ingress, id_text, vec![reason]));
    }
    // The tenant is bound before the body is judged, so strangers learn nothing from validation.
    let claimed = body_tenant.clone();
    let tenant = match bind_tenant(core, credentials, claimed.as_deref()).await {
        Ok(tenant) => {
            // Authenticated: only the tenant's own reply queues (or private ones) from here on.
            if claimed_ids != [tenant.id.clone()] {
                *route = screen_route(core, given_route, std::slice::from_ref(&tenant.id));
            }
            tenant
        }
        Err(AuthError::Unavailable(detail)) => {
            return Err(crate::error::SchedulerError::Unavailable(format!(
                "credentials could not be checked: {detail}"
            )));
        }
        Err(error) => return Ok(reject(ingress, id_text, vec![auth_reason(&error)])),
    };
    let request = match GenerationRequest::from_json(body) {
        Ok(request) => request,
        Err(error) => return Ok(reject(ingress, id_text, request_reasons(&error))),
    };
    if request.variants > core.options().max_variants {
        let reason = Reason::new(
            "too_many_variants",
            format!(
                "n = {} exceeds this scheduler's limit of {} variants per request",
                request.variants,
                core.options().max_variants
            ),
        )
        .on_field("n");
        return Ok(reject(ingress, id_text, vec![reason]));
    }
    // The parent comes from the URL (HTTP refine) or the body's refine_of; both must agree.
    let parent = match (parent, request.refine_of.clone()) {
        (Some(path), Some(body)) if path != body => {
            let reason = Reason::new(
                "invalid_field",
                format!("refine_of {body} differs from the request being refined ({path})"),
            )
            .on_field("refine_of");
            return Ok(reject(ingress, id_text, vec![reason]));
        }
        (path, body) => path.or(body),
    };
    let parent_plan = match &parent {
        Some(parent) => match core.record(&tenant.id, parent).await? {
            Some(record) => Some((parent.clone(), record.plan)),
            // Another tenant's request is indistinguishable from a missing one.
            None => {
                let reason = Reason::new(
                    "not_found",
                    format!("no generation {parent} for this tenant"),
                )
                .on_field("parent");
                return Ok(reject(ingress, id_text, vec![reason]));
            }
        },
        None => None,
    };
    let loaded = context.library.load(&tenant.id).await?;
    let resolved = match resolve_against(&loaded.library, &request) {
        Err(_) if loaded.cached => {
            // Perhaps the library changed since it was cached: judge against a fresh read.
            let library = context.library.reload(&tenant.id).await?;
            resolve_against(&library, &request).map(|r| (library, r))
        }
        other => other.map(|r| (loaded.library, r)),
    };
    let (library, (album_run, parsed, resolution)) = match resolved {
        Ok(resolved) => resolved,
        Err(reasons) => return Ok(reject(ingress, id_text, reasons)),
    };
    if let Some(run) = &album_run {
        if let Err(reason) = check_album_destination(core, &tenant.id, &run.to).await? {
            return Ok(reject(ingress, id_text, vec![reason]));
        }
    }
    let replacements = match source_replacements(&request, parent_plan.as_ref(), &library) {
        Ok(replacements) => replacements,
        Err(reason) => return Ok(reject(ingress, id_text, vec![reason])),
    };
    let offered = library::candidates(&library, &resolution);
    let input = plan_input(&request, &parsed, offered);
    let intake = Intake {
        request: request_id,
        tenant: tenant.id.clone(),
        tenant_record: tenant.clone(),
        ingress,
        reply: route.clone(),
        prompt: request.prompt.clone(),
        body: serde_json::from_slice(body).unwrap_or_default(),
        input,
        parent: parent_plan,
        album_run,
        replacements,
        tenant_changes,
    };
    core.accept(intake).await
}

/// A refinement's source swaps checked against its parent's sources and the tenant's library: the
/// swapped photo must be a source of the parent, its replacement a photo of this tenant, and every
/// person the old photo stood for must show in the new one (their face there is their new reference).
fn source_replacements(
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

type Resolved = (
    Option<crate::plan::AlbumRun>,
    prompt::ParsedPrompt,
    prompt::Resolution,
);

/// The request's album run and prompt resolved against a library, or why they do not resolve.
fn resolve_against(
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

/// An album run may deliver to a bucket of the tenant's own only when an operator registered it.
async fn check_album_destination(
    core: &Core,
    tenant: &TenantId,
    to: &str,
) -> Result<std::result::Result<(), Reason>> {
    use reverie_shared::destinations::{Destination, DestinationError, TenantDestinations};
    if !Destination::is_url(to) {
        return Ok(Ok(()));
    }
    let registered = TenantDestinations::load(&*core.backends().store, tenant).await?;
    Ok(match registered.allow(tenant, to) {
        Ok(_) => Ok(()),
        Err(DestinationError::Store(error)) => return Err(error.into()),
        Err(refused) => Err(Reason::new("destination_not_allowed", refused.to_string())
            .on_field("album_to_art.to")
            .suggesting(registered.destinations.clone())),
    })
}

fn reject(ingress: Ingress, request: Option<String>, reasons: Vec<Reason>) -> Reply {
    reverie_shared::metrics::global()
        .requests
        .with_label_values(&[ingress.label(), "rejected"])
        .inc();
    Reply::rejected(request, reasons)
}

/// One reason per problem the request parser found.
fn request_reasons(error: &RequestError) -> Vec<Reason> {
    match error {
        RequestError::Invalid { violations } => violations
            .iter()
            .map(|v| {
                Reason::new("invalid_field", format!("`{}` {}", v.field, v.reason))
                    .on_field(v.field.clone())
            })
            .collect(),
        RequestError::MissingField { field } | RequestError::UnknownField { field } => {
            vec![Reason::new(error.code(), error.to_string()).on_field(field.clone())]
        }
        RequestError::MissingSchemaVersion { .. }
        | RequestError::UnsupportedSchemaVersion { .. } => {
            vec![Reason::new(error.code(), error.to_string()).on_field("schema_version")]
        }
        other => vec![Reason::new(other.code(), other.to_string())],
    }
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
fn plan_input(
    request: &GenerationRequest,
    parsed: &prompt::ParsedPrompt,
    offered: library::Offered,
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
    }
}
