//! What the farm is measured against, in the same run: the raw broker (confirmed publish + ack of
//! request-size messages), the raw object store (writes of output-size objects) and the render alone.
//! Together with the calls a job makes (`hops`), the first two give the throughput the services alone
//! would allow if the farm cost nothing, so the farm's own cost reads as a ratio on any machine.

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use hdrhistogram::Histogram;
use reverie_shared::ids::{PhotoId, ShardId};
use reverie_shared::jobs::{PhotoRef, ReferenceRole, RenderSpec, RendererKind};
use reverie_shared::ports::queue::{JobQueue, Message, QueueSpec};
use reverie_shared::ports::store::ObjectStore;
use reverie_worker::render::{PainterlyRenderer, RenderRequest, Renderer};

use crate::stats::histogram;
use crate::Args;

const BASELINE_MESSAGES: u64 = 5_000;
const BASELINE_WRITES: usize = 2_000;
/// Writes in flight against the store: the farm's own writers (scheduler and workers) together do
/// about this many at saturation, and more only queue inside the HTTP client's pool.
pub const STORE_CONCURRENCY: usize = 64;

/// Confirmed publishes and acked consumption of same-size messages through the same port: the ceiling
/// the farm's own messaging runs under. Returns messages per second.
pub async fn raw_broker(
    queue: &dyn JobQueue,
    name: &str,
    size: usize,
    in_flight: usize,
) -> anyhow::Result<f64> {
    queue.declare(&QueueSpec::new(name)).await?;
    let body = vec![b'x'; size];
    let started = Instant::now();
    let mut consumer = queue.consume(name, 256).await?;
    let consume = async {
        for _ in 0..BASELINE_MESSAGES {
            consumer.next().await?.ack().await?;
        }
        Ok::<(), anyhow::Error>(())
    };
    let publish = async {
        let mut sent = 0;
        while sent < BASELINE_MESSAGES {
            let window = (in_flight.max(1) as u64).min(BASELINE_MESSAGES - sent);
            let publishes = (0..window).map(|_| queue.publish(name, Message::new(body.clone())));
            for result in futures::future::join_all(publishes).await {
                result?;
            }
            sent += window;
        }
        Ok::<(), anyhow::Error>(())
    };
    let (consumed, published) = tokio::join!(consume, publish);
    consumed?;
    published?;
    let rate = BASELINE_MESSAGES as f64 / started.elapsed().as_secs_f64();
    drop(consumer);
    queue.delete(name).await?;
    Ok(rate)
}

/// Writes of `size`-byte objects under `prefix` through the same store port the farm uses,
/// [`STORE_CONCURRENCY`] at a time: the ceiling the farm's durable writes run under. Returns writes per
/// second; the objects are deleted afterwards (not timed).
pub async fn raw_store(store: &dyn ObjectStore, prefix: &str, size: usize) -> anyhow::Result<f64> {
    let body = Bytes::from(vec![b'x'; size]);
    let keys: Vec<String> = (0..BASELINE_WRITES)
        .map(|i| format!("{prefix}{i:05}"))
        .collect();
    let started = Instant::now();
    let mut writes = futures::stream::iter(keys.iter().map(|key| store.put(key, body.clone())))
        .buffer_unordered(STORE_CONCURRENCY);
    while let Some(result) = writes.next().await {
        result?;
    }
    let rate = BASELINE_WRITES as f64 / started.elapsed().as_secs_f64();
    drop(writes);
    store.delete_prefix(prefix).await?;
    Ok(rate)
}

/// The render alone, in-process, for the same job: what the farm's overhead is measured against.
/// Returns the latency histogram and the size of the job's PNG (the size `raw_store` writes).
pub fn render_alone(args: &Args) -> anyhow::Result<(Histogram<u64>, usize)> {
    let png = {
        let image = image::RgbImage::from_fn(64, 64, |x, y| {
            image::Rgb([(x * 4) as u8, (y * 4) as u8, ((x + y) * 2) as u8])
        });
        image::DynamicImage::ImageRgb8(image)
    };
    let reference = PhotoRef {
        photo: PhotoId::of_bytes(b"render-alone"),
        shard: ShardId::new("load-0000")?,
        offset: 0,
        length: 0,
        role: ReferenceRole::Background,
        face_box: None,
        label: None,
    };
    let request = RenderRequest {
        spec: RenderSpec {
            renderer: RendererKind::Painterly,
            prompt: "bold shapes and bright colours".into(),
            negative_prompt: String::new(),
            style: args.style.clone(),
            model: None,
            width: args.size,
            height: args.size,
            steps: 1,
            guidance: 0.0,
            scheduler: None,
            seed: 7,
            strength: 1.0,
            palette_transfer: false,
            identity_strength: 0.0,
            best_of: 1,
            adapters: Default::default(),
        },
        photos: vec![(reference, png)],
        identity: Vec::new(),
        loras: Vec::new(),
        cached_image_prompt: None,
        pet_boxes: Vec::new(),
    };
    let renderer = PainterlyRenderer;
    let mut render = histogram();
    let mut output_bytes = 0;
    for _ in 0..200 {
        let started = Instant::now();
        let result = renderer.render_batch(
            std::slice::from_ref(&request),
            &reverie_worker::render::NoProgress,
        );
        match result.into_iter().next() {
            Some(Ok(rendered)) if output_bytes == 0 => {
                output_bytes =
                    reverie_worker::outputs::encode_png(&rendered.image, &BTreeMap::new())?.len();
            }
            Some(Err(error)) => anyhow::bail!("render alone failed: {error}"),
            _ => {}
        }
        render.record(started.elapsed().as_micros().max(1) as u64)?;
    }
    Ok((render, output_bytes))
}
