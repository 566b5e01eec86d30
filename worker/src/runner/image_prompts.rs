//! Image prompt embeddings through the farm's cache: read for a batch before it renders (one round
//! trip), and the ones the renderer computed written back after, so a tenant's photo goes through
//! the image encoder once for every worker. The cache is an optimisation here: when it is away or
//! slow the batch computes its embeddings and renders all the same — the read waits at most
//! [`READ_WAIT`], and the write goes on beside the batch's results.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reverie_shared::config::CacheSettings;

use super::Held;
use crate::context::WorkerContext;
use crate::identity::Outcome;
use crate::render::{RenderError, RenderRequest, Renderer};

/// The longest a batch waits for its cached embeddings before computing them (an encoding costs
/// tens of milliseconds on a GPU, a second or so on a CPU).
const READ_WAIT: Duration = Duration::from_millis(500);

/// Each job's image prompt cache key (`None`: the job has no image prompt), with the embeddings
/// found under it put into its request.
pub(super) async fn read_cached(
    ctx: &WorkerContext,
    renderer: &dyn Renderer,
    ready: &[(Held, RenderRequest)],
    requests: &mut [RenderRequest],
) -> Vec<Option<String>> {
    let keys: Vec<Option<String>> = ready
        .iter()
        .map(|(held, request)| {
            let source = renderer.image_prompt_source(request)?;
            Some(source.cache_key(&held.spec.tenant))
        })
        .collect();
    let wanted: Vec<String> = keys.iter().flatten().cloned().collect();
    if wanted.is_empty() {
        return keys;
    }
    let found = match tokio::time::timeout(READ_WAIT, ctx.backends.cache.get_many(&wanted)).await {
        Ok(Ok(found)) => found,
        Ok(Err(error)) => {
            tracing::warn!(%error, "image prompt embeddings not read from the cache; computing them");
            return keys;
        }
        Err(_) => {
            tracing::warn!(
                wait_ms = READ_WAIT.as_millis() as u64,
                "the cache did not answer in time; computing the image prompt embeddings"
            );
            return keys;
        }
    };
    let mut found = found.into_iter();
    for (request, key) in requests.iter_mut().zip(&keys) {
        if key.is_some() {
            request.cached_image_prompt = found.next().flatten();
        }
    }
    keys
}

/// Caches the embeddings the renderer computed, under the keys [`read_cached`] gave, beside the
/// batch's results (nothing waits for it).
pub(super) fn write_computed(
    ctx: &Arc<WorkerContext>,
    keys: &[Option<String>],
    results: &[Result<Outcome, RenderError>],
) {
    let entries: Vec<(String, Bytes)> = keys
        .iter()
        .zip(results)
        .filter_map(|(key, result)| {
            let computed = result
                .as_ref()
                .ok()?
                .rendered
                .computed_image_prompt
                .clone()?;
            Some((key.clone()?, computed))
        })
        .collect();
    if entries.is_empty() {
        return;
    }
    let (cache, ttl) = (ctx.backends.cache.clone(), embedding_ttl(ctx));
    tokio::spawn(async move {
        if let Err(error) = cache.set_many(&entries, Some(ttl)).await {
            tracing::warn!(%error, "image prompt embeddings not cached; the next job computes them again");
        }
    });
}

/// How long embeddings stay cached: `cache.embedding_ttl_s`, as the analyser keeps face descriptors.
fn embedding_ttl(ctx: &WorkerContext) -> Duration {
    match &ctx.analyser {
        Some(analyser) => analyser.cache_ttl,
        None => Duration::from_secs(CacheSettings::default().embedding_ttl_s),
    }
}
