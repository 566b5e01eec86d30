//! What both ingresses share: binding a request to a tenant, validating it (schema v1, see
//! [`crate::request`]), resolving it against the tenant's library ([`resolve`]), and handing it to the
//! core's intake. Every refusal becomes a `rejected` reply with reasons; only infrastructure failures
//! are errors.

mod resolve;

use std::sync::Arc;

use reverie_shared::ids::{RequestId, TenantId};

use crate::error::Result;
use crate::library::{self, CachedLibrary};
pub use crate::records::Ingress;
use crate::records::ReplyRoute;
use crate::replies::{Reason, Reply};
use crate::request::{GenerationRequest, RequestError};
use crate::service::{Core, Intake};
use crate::tenants::{AuthError, Tenant};
use resolve::{plan_input, resolve_against, source_replacements};

/// The AMQP header carrying a tenant token.
pub const TOKEN_HEADER: &str = "x-reverie-token";
/// The AMQP header by which a requester chooses its replies: `final` leaves out the `accepted`
/// acknowledgement and `progress` (the final reply, or the rejection, still comes): one confirmed publish
/// fewer per request for services that only wait for the result. Absent or any other value: every reply.
pub const REPLIES_HEADER: &str = "x-reverie-replies";
/// Request bodies above this are refused unread.
pub const MAX_REQUEST_BYTES: usize = crate::request::MAX_REQUEST_BYTES;

/// Whether a `REPLIES_HEADER` value asks for the final reply only.
pub fn asks_final_only(replies_header: Option<&str>) -> bool {
    replies_header.is_some_and(|value| value.trim().eq_ignore_ascii_case("final"))
}

/// The header a scheduler that forwards an AMQP request to its tenant's shard puts the sender's
/// broker-validated `user_id` in (the broker lets a publisher set `user_id` to its own user only).
pub const FORWARDED_USER_HEADER: &str = "x-reverie-broker-user";

/// The broker user a request read from a shard's requests queue was sent by: its `user_id`, or, on a
/// request a scheduler forwarded (its `user_id` is the schedulers' own user, `own_user`, which the
/// broker checked), the user the forwarding scheduler saw. Only for a shard's own queue: on the shared
/// requests queue the header is never believed.
pub fn broker_user_of(
    props: &reverie_shared::ports::queue::MessageProps,
    own_user: Option<String>,
) -> Option<String> {
    let forwarded = props.headers.get(FORWARDED_USER_HEADER);
    match (&props.user_id, forwarded, own_user) {
        (Some(sender), Some(original), Some(own)) if *sender == own => Some(original.clone()),
        _ => props.user_id.clone(),
    }
}

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

/// The tenant part of a `TENANT:SECRET` token, unauthenticated (`None` when it has none).
pub fn token_tenant(token: &str) -> Option<&str> {
    let (tenant, _) = token.trim().split_once(':')?;
    (!tenant.is_empty()).then_some(tenant)
}

/// The tenants a request claims to act for before it is authenticated: the token's tenant, the body's
/// `tenant`, the broker user. Used only to decide where a rejection may be answered: any of them (the
/// sender could have claimed any one alone).
fn claimed_tenants(credentials: &Credentials, body_tenant: Option<&str>) -> Vec<TenantId> {
    [
        credentials
            .token
            .as_deref()
            .and_then(token_tenant)
            .map(str::to_string),
        body_tenant.map(str::to_string),
        credentials.broker_user.clone(),
    ]
    .into_iter()
    .flatten()
    .filter_map(|name| TenantId::new(&name).ok())
    .collect()
}

/// The tenant a request would act for, read before it is authenticated (the same order
/// [`bind_tenant`] applies: the token's tenant, else the tenant the body names, else the broker user):
/// where to route it, never whom to trust.
pub fn tenant_hint(credentials: &Credentials, body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Named {
        tenant: Option<String>,
    }
    credentials
        .token
        .as_deref()
        .and_then(token_tenant)
        .map(str::to_string)
        .or_else(|| {
            serde_json::from_slice::<Named>(body)
                .ok()
                .and_then(|named| named.tenant)
        })
        .or_else(|| credentials.broker_user.clone())
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
    let input = plan_input(&request, &parsed, offered, &library);
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
