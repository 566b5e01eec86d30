//! The worker against real RabbitMQ, Redis and S3: batching, retries with exactly one output set,
//! a worker killed mid-batch, graceful drain, poison messages, bad input.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::RealFarm;
use image::RgbImage;
use reverie_shared::config::{RetrySettings, WorkerSettings};
use reverie_shared::envelope;
use reverie_shared::ids::{JobId, RequestId, TenantId};
use reverie_shared::jobs::{Job, JobEvent, JobSpec, Priority, RendererKind};
use reverie_shared::keys;
use reverie_shared::ports::queue::{dead_queue_name, Consumer, Message, DEAD_REASON_HEADER};
use reverie_worker::render::{Progress, RenderError, RenderRequest, RenderedImage, Renderer};
use reverie_worker::{Renderers, WorkerContext};

/// A renderer for exercising the farm: its image is a function of the seed, and prompts steer faults.
/// `fail-once` fails the first attempt, `slow` takes 600 ms, `stall` takes 3 s.
#[derive(Default)]
struct ScriptedRenderer {
    batches: Mutex<Vec<usize>>,
    failures: AtomicU32,
}

impl Renderer for ScriptedRenderer {
    fn kind(&self) -> RendererKind {
        RendererKind::Painterly
    }

    fn render_batch(
        &self,
        requests: &[RenderRequest],
        progress: Progress<'_>,
    ) -> Vec<Result<RenderedImage, RenderError>> {
        self.batches.lock().unwrap().push(requests.len());
        requests
            .iter()
            .enumerate()
            .map(|(index, request)| {
                progress.step(index, 1, 1);
                match request.spec.prompt.as_str() {
                    "fail-once" if self.failures.fetch_add(1, Ordering::SeqCst) == 0 => {
                        return Err(RenderError::Failed("transient device error".into()))
                    }
                    "invalid" => return Err(RenderError::Invalid("unknown style".into())),
                    "slow" => std::thread::sleep(Duration::from_millis(600)),
                    "stall" => std::thread::sleep(Duration::from_secs(3)),
                    _ => {}
                }
                let shade = (request.spec.seed % 251) as u8;
                Ok(RenderedImage {
                    image: RgbImage::from_pixel(
                        request.spec.width,
                        request.spec.height,
                        image::Rgb([shade, 0, 0]),
                    ),
                    model_hash: None,
                    details: BTreeMap::new(),
                    computed_image_prompt: None,
                })
            })
            .collect()
    }
}

fn settings() -> WorkerSettings {
    WorkerSettings {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        batch_max: 4,
        batch_wait_ms: 150,
        batches_in_flight: 2,
        started_after_ms: 0,
        max_attempts: 3,
        max_deliveries: 2,
        drain_grace_s: 10,
        heartbeat_s: 1,
        shard_cache_mb: 16,
        preview_interval_ms: 0,
        max_outage_retries: 360,
    }
}

fn context(farm: &RealFarm, renderer: Arc<ScriptedRenderer>, id: &str) -> Arc<WorkerContext> {
    context_with(farm, renderer, id, settings())
}

fn context_with(
    farm: &RealFarm,
    renderer: Arc<ScriptedRenderer>,
    id: &str,
    settings: WorkerSettings,
) -> Arc<WorkerContext> {
    Arc::new(WorkerContext {
        worker_id: id.to_string(),
        backends: farm.backends.clone(),
        queues: farm.queues.clone(),
        settings,
        retry: RetrySettings {
            initial_ms: 50,
            max_ms: 200,
            max_attempts: 0,
        },
        cache_prefix: farm.cache_prefix.clone(),
        renderers: Renderers::default().with(renderer),
        photo_cache: None,
        analyser: None,
        event_routes: Default::default(),
    })
}

fn job(request: &str, index: u32, prompt: &str) -> Job {
    common::painterly_job(request, index, prompt, 16, 1000 + u64::from(index))
}

async fn publish(farm: &RealFarm, job: &Job) {
    common::publish_job(&farm.backends, &farm.queues, job).await
}

use common::start_worker as start;

/// Collects events until every job in `jobs` has a final one (or the timeout passes).
async fn final_events(
    farm: &RealFarm,
    consumer: &mut Box<dyn Consumer>,
    jobs: &[&str],
    wait: Duration,
) -> BTreeMap<String, Vec<JobEvent>> {
    let mut seen: BTreeMap<String, Vec<JobEvent>> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + wait;
    let done = |seen: &BTreeMap<String, Vec<JobEvent>>| {
        jobs.iter().all(|j| {
            seen.get(*j).is_some_and(|events| {
                events
                    .iter()
                    .any(|e| matches!(e, JobEvent::Succeeded { .. } | JobEvent::Failed { .. }))
            })
        })
    };
    while !done(&seen) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let delivery = match tokio::time::timeout(left, consumer.next()).await {
            Ok(Ok(delivery)) => delivery,
            _ => panic!("timed out waiting for final events of {jobs:?}; seen {seen:?}"),
        };
        for event in envelope::decode_events(delivery.body()).unwrap() {
            seen.entry(event.job().to_string()).or_default().push(event);
        }
        delivery.ack().await.unwrap();
    }
    let _ = farm;
    seen
}

async fn result_objects(farm: &RealFarm, request: &str) -> Vec<String> {
    let prefix = keys::results_prefix(
        &TenantId::new("tenant-a").unwrap(),
        &RequestId::new(request).unwrap(),
    );
    farm.backends
        .store
        .list(&prefix)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect()
}

/// A farm with `count` compatible jobs of `request` already queued, a scripted renderer and a consumer
/// of the events queue (started before any worker, so no event is missed).
async fn farm_with_jobs(
    request: &str,
    count: u32,
    prompt: &str,
) -> (RealFarm, Arc<ScriptedRenderer>, Box<dyn Consumer>) {
    let farm = RealFarm::start().await;
    for index in 0..count {
        publish(&farm, &job(request, index, prompt)).await;
    }
    let events = farm
        .backends
        .queue
        .consume(&farm.queues.events, 50)
        .await
        .unwrap();
    (farm, Arc::new(ScriptedRenderer::default()), events)
}

#[tokio::test]
async fn batches_compatible_jobs_and_writes_outputs_with_provenance() {
    let (farm, renderer, mut events) = farm_with_jobs("batch-req", 6, "a lighthouse").await;
    let (stop, handle) = start(context(&farm, renderer.clone(), "w-batch"));
    let ids: Vec<String> = (0..6).map(|i| format!("batch-req.{i}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let seen = final_events(&farm, &mut events, &refs, Duration::from_secs(30)).await;
    assert!(seen
        .values()
        .all(|e| e.iter().any(|e| matches!(e, JobEvent::Succeeded { .. }))));
    let batches = renderer.batches.lock().unwrap().clone();
    assert_eq!(batches.iter().sum::<usize>(), 6);
    assert!(
        batches.iter().any(|&n| n > 1),
        "jobs waiting together are batched: {batches:?}"
    );
    assert!(
        batches.iter().all(|&n| n <= 4),
        "batch_max holds: {batches:?}"
    );

    let objects = result_objects(&farm, "batch-req").await;
    assert_eq!(objects.len(), 12, "one png + one json per job: {objects:?}");
    let png = farm.backends.store.get(&objects[1]).await.unwrap();
    let decoded = image::load_from_memory(&png).unwrap().to_rgb8();
    assert_eq!((decoded.width(), decoded.height()), (16, 8));
    let provenance: serde_json::Value =
        serde_json::from_slice(&farm.backends.store.get(&objects[0]).await.unwrap()).unwrap();
    assert_eq!(provenance["prompt"], "a lighthouse");
    assert_eq!(provenance["seed"], 1000);

    // The same job renders the same image whatever batch it ran in.
    let again = job("batch-req", 0, "a lighthouse");
    let JobSpec::Generate(spec) = again.spec else {
        unreachable!()
    };
    let alone = renderer.render_batch(
        &[RenderRequest {
            spec: spec.render,
            photos: vec![],
            identity: Vec::new(),
            loras: Vec::new(),
            cached_image_prompt: None,
            pet_boxes: Vec::new(),
        }],
        &|_, _, _| {},
    );
    assert_eq!(alone[0].as_ref().unwrap().image, decoded);

    stop.send(true).unwrap();
    handle.await.unwrap();
    drop(events);
    farm.stop().await;
}

/// With `batch_wait_ms = 0` nothing waits, yet jobs the broker already delivered share a render pass,
/// and their results come back in fewer event messages than jobs (one per batch).
#[tokio::test]
async fn jobs_already_delivered_are_batched_without_waiting_and_reported_together() {
    let (farm, renderer, mut events) = farm_with_jobs("eager-req", 8, "a harbour").await;
    let settings = WorkerSettings {
        batch_wait_ms: 0,
        ..settings()
    };
    let (stop, handle) = start(context_with(&farm, renderer.clone(), "w-eager", settings));
    let mut succeeded = std::collections::BTreeSet::new();
    let mut messages = 0;
    while succeeded.len() < 8 {
        let delivery = tokio::time::timeout(Duration::from_secs(30), events.next())
            .await
            .expect("results within 30 s")
            .unwrap();
        // Count the messages that carry results: a slow machine also sees `Started` events for
        // batches still rendering after `started_after_ms`, which say nothing about grouping.
        let mut carries_results = false;
        for event in envelope::decode_events(delivery.body()).unwrap() {
            if let JobEvent::Succeeded { job, .. } = event {
                succeeded.insert(job.to_string());
                carries_results = true;
            }
        }
        messages += usize::from(carries_results);
        delivery.ack().await.unwrap();
    }
    let batches = renderer.batches.lock().unwrap().clone();
    assert_eq!(batches.iter().sum::<usize>(), 8);
    assert!(
        batches.iter().any(|&n| n > 1) && batches.iter().all(|&n| n <= 4),
        "delivered jobs are batched up to batch_max: {batches:?}"
    );
    assert!(
        messages < 8,
        "a batch's results share one message: {messages} messages for 8 jobs"
    );
    assert_eq!(result_objects(&farm, "eager-req").await.len(), 16);
    stop.send(true).unwrap();
    handle.await.unwrap();
    drop(events);
    farm.stop().await;
}

#[tokio::test]
async fn a_retried_job_leaves_exactly_one_output_set() {
    let farm = RealFarm::start().await;
    publish(&farm, &job("retry-req", 0, "fail-once")).await;
    let renderer = Arc::new(ScriptedRenderer::default());
    let mut events = farm
        .backends
        .queue
        .consume(&farm.queues.events, 50)
        .await
        .unwrap();
    let (stop, handle) = start(context(&farm, renderer.clone(), "w-retry"));
    let seen = final_events(
        &farm,
        &mut events,
        &["retry-req.0"],
        Duration::from_secs(30),
    )
    .await;
    assert!(seen["retry-req.0"]
        .iter()
        .any(|e| matches!(e, JobEvent::Succeeded { .. })));
    assert_eq!(
        renderer.failures.load(Ordering::SeqCst),
        2,
        "failed once, then rendered"
    );
    assert_eq!(result_objects(&farm, "retry-req").await.len(), 2);
    stop.send(true).unwrap();
    handle.await.unwrap();
    drop(events);
    farm.stop().await;
}

#[tokio::test]
async fn invalid_jobs_and_garbage_are_dead_lettered_with_reasons() {
    let farm = RealFarm::start().await;
    publish(&farm, &job("bad-req", 0, "invalid")).await;
    farm.backends
        .queue
        .publish(&farm.queues.generate, Message::new(b"not a job".to_vec()))
        .await
        .unwrap();
    publish(&farm, &job("good-req", 0, "fine")).await;
    let renderer = Arc::new(ScriptedRenderer::default());
    let mut events = farm
        .backends
        .queue
        .consume(&farm.queues.events, 50)
        .await
        .unwrap();
    let (stop, handle) = start(context(&farm, renderer, "w-bad"));
    let seen = final_events(
        &farm,
        &mut events,
        &["bad-req.0", "good-req.0"],
        Duration::from_secs(30),
    )
    .await;
    assert!(seen["bad-req.0"].iter().any(|e| matches!(
        e,
        JobEvent::Failed {
            retryable: false,
            ..
        }
    )));
    assert!(
        seen["good-req.0"]
            .iter()
            .any(|e| matches!(e, JobEvent::Succeeded { .. })),
        "the worker kept serving"
    );
    let mut dead = farm
        .backends
        .queue
        .consume(&dead_queue_name(&farm.queues.generate), 10)
        .await
        .unwrap();
    let mut reasons = Vec::new();
    for _ in 0..2 {
        let letter = tokio::time::timeout(Duration::from_secs(10), dead.next())
            .await
            .unwrap()
            .unwrap();
        reasons.push(letter.props().headers[DEAD_REASON_HEADER].clone());
        letter.ack().await.unwrap();
    }
    reasons.sort();
    // "not a job" starts with the byte 110: read as an envelope version this build does not know.
    assert_eq!(reasons, ["invalid", "unknown_version"]);
    stop.send(true).unwrap();
    handle.await.unwrap();
    drop((events, dead));
    farm.stop().await;
}

#[tokio::test]
async fn a_worker_killed_mid_batch_leaves_its_jobs_to_another() {
    let farm = RealFarm::start().await;
    for index in 0..3 {
        publish(&farm, &job("kill-req", index, "slow")).await;
    }
    let mut events = farm
        .backends
        .queue
        .consume(&farm.queues.events, 50)
        .await
        .unwrap();
    let first = Arc::new(ScriptedRenderer::default());
    let (_stop_first, killed) = start(context(&farm, first.clone(), "w-doomed"));
    // Wait until the first worker is rendering, then kill it without any chance to drain.
    while first.batches.lock().unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    killed.abort();
    let _ = killed.await;
    let second = Arc::new(ScriptedRenderer::default());
    let (stop, handle) = start(context(&farm, second.clone(), "w-survivor"));
    let seen = final_events(
        &farm,
        &mut events,
        &["kill-req.0", "kill-req.1", "kill-req.2"],
        Duration::from_secs(60),
    )
    .await;
    for job in ["kill-req.0", "kill-req.1", "kill-req.2"] {
        assert!(
            seen[job]
                .iter()
                .any(|e| matches!(e, JobEvent::Succeeded { .. })),
            "{job} finished"
        );
    }
    assert!(
        !second.batches.lock().unwrap().is_empty(),
        "the survivor rendered the killed worker's jobs"
    );
    assert_eq!(
        result_objects(&farm, "kill-req").await.len(),
        6,
        "one output set per job, no duplicates"
    );
    stop.send(true).unwrap();
    handle.await.unwrap();
    drop(events);
    farm.stop().await;
}

#[tokio::test]
async fn draining_finishes_the_batch_in_hand_and_exits() {
    let farm = RealFarm::start().await;
    publish(&farm, &job("drain-req", 0, "slow")).await;
    let renderer = Arc::new(ScriptedRenderer::default());
    let (stop, handle) = start(context(&farm, renderer.clone(), "w-drain"));
    while renderer.batches.lock().unwrap().is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(15), handle)
        .await
        .expect("worker exits within the grace period")
        .unwrap();
    assert_eq!(
        result_objects(&farm, "drain-req").await.len(),
        2,
        "the job in hand finished"
    );
    assert_eq!(
        farm.backends
            .queue
            .depth(&farm.queues.generate)
            .await
            .unwrap(),
        0,
        "and was acked"
    );
    farm.stop().await;
}

#[tokio::test]
async fn a_job_that_keeps_killing_workers_is_dead_lettered_as_poison() {
    let farm = RealFarm::start().await;
    publish(&farm, &job("poison-req", 0, "stall")).await;
    let mut events = farm
        .backends
        .queue
        .consume(&farm.queues.events, 50)
        .await
        .unwrap();
    // Two workers die holding it (max_deliveries = 2); the third must refuse it.
    for attempt in 0..2 {
        let renderer = Arc::new(ScriptedRenderer::default());
        let (_stop, handle) = start(context(
            &farm,
            renderer.clone(),
            &format!("w-victim-{attempt}"),
        ));
        while renderer.batches.lock().unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        handle.abort();
        let _ = handle.await;
    }
    let renderer = Arc::new(ScriptedRenderer::default());
    let (stop, handle) = start(context(&farm, renderer.clone(), "w-wary"));
    let seen = final_events(
        &farm,
        &mut events,
        &["poison-req.0"],
        Duration::from_secs(30),
    )
    .await;
    assert!(seen["poison-req.0"]
        .iter()
        .any(|e| matches!(e, JobEvent::Failed { .. })));
    assert!(
        renderer.batches.lock().unwrap().is_empty(),
        "the wary worker never rendered it"
    );
    let mut dead = farm
        .backends
        .queue
        .consume(&dead_queue_name(&farm.queues.generate), 1)
        .await
        .unwrap();
    let letter = tokio::time::timeout(Duration::from_secs(10), dead.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(letter.props().headers[DEAD_REASON_HEADER], "poison");
    letter.ack().await.unwrap();
    stop.send(true).unwrap();
    handle.await.unwrap();
    drop((events, dead));
    farm.stop().await;
}

#[tokio::test]
async fn a_job_cancelled_while_queued_is_skipped() {
    let farm = RealFarm::start().await;
    let cancelled = job("cancel-req", 0, "a lighthouse");
    let key = keys::job_cache_key(&TenantId::new("tenant-a").unwrap(), "cancel-req.0");
    farm.backends
        .cache
        .set(
            &key,
            bytes::Bytes::from_static(br#"{"state":"cancelled"}"#),
            None,
        )
        .await
        .unwrap();
    publish(&farm, &cancelled).await;
    publish(&farm, &job("kept-req", 0, "a lighthouse")).await;
    let renderer = Arc::new(ScriptedRenderer::default());
    let mut events = farm
        .backends
        .queue
        .consume(&farm.queues.events, 50)
        .await
        .unwrap();
    let (stop, handle) = start(context(&farm, renderer.clone(), "w-cancel"));
    final_events(&farm, &mut events, &["kept-req.0"], Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        result_objects(&farm, "cancel-req").await.is_empty(),
        "a cancelled job renders nothing"
    );
    assert_eq!(
        farm.backends
            .queue
            .depth(&farm.queues.generate)
            .await
            .unwrap(),
        0,
        "and is acked"
    );
    let _ = farm.backends.cache.delete(&key).await;
    stop.send(true).unwrap();
    handle.await.unwrap();
    drop(events);
    farm.stop().await;
}

#[tokio::test]
async fn shard_analysis_runs_from_its_queue_persists_and_refills_a_flushed_cache() {
    use reverie_shared::jobs::{AnalyseJob, Analysis};
    use reverie_worker::analysis::{analyse_shard, Analyser, Outcome};

    let farm = RealFarm::start().await;
    let tenant = TenantId::new(common::unique("analysed")).unwrap();
    let folder = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/library/folder");
    reverie_library::import(
        &*farm.backends.store,
        &tenant,
        reverie_library::ImportSource::Folder(folder),
        &Default::default(),
    )
    .await
    .unwrap();
    let manifest = reverie_library::load_manifest(&*farm.backends.store, &tenant)
        .await
        .unwrap();
    let shard = manifest.shards[0].id.clone();
    let models = std::env::var("REVERIE_MODELS_DIR").unwrap_or_else(|_| "target/models".into());
    let analyser = Arc::new(Analyser::load(
        std::path::Path::new(&models),
        Duration::from_secs(600),
    ));

    let mut ctx = Arc::try_unwrap(context(
        &farm,
        Arc::new(ScriptedRenderer::default()),
        "w-analyse",
    ))
    .ok()
    .unwrap();
    ctx.analyser = Some(analyser.clone());
    let (stop, handle) = start(Arc::new(ctx));
    let mut events = farm
        .backends
        .queue
        .consume(&farm.queues.events, 50)
        .await
        .unwrap();
    let job = Job {
        spec: JobSpec::Analyse(AnalyseJob {
            job: JobId::new("analyse-1.0").unwrap(),
            tenant: tenant.clone(),
            shard: shard.clone(),
            analyses: vec![Analysis::Faces, Analysis::Palettes, Analysis::Fingerprints],
        }),
        attempt: 1,
        priority: Priority::Batch,
        accepted_ms: 0,
    };
    farm.backends
        .queue
        .publish(
            &farm.queues.analyse,
            Message::new(envelope::encode_job(&job).unwrap()),
        )
        .await
        .unwrap();
    let seen = final_events(
        &farm,
        &mut events,
        &["analyse-1.0"],
        Duration::from_secs(120),
    )
    .await;
    let Some(JobEvent::Succeeded { outputs, .. }) = seen["analyse-1.0"]
        .iter()
        .find(|e| matches!(e, JobEvent::Succeeded { .. }))
    else {
        panic!("analysis failed: {seen:?}")
    };
    let analysis: serde_json::Value =
        serde_json::from_slice(&farm.backends.store.get(&outputs[0]).await.unwrap()).unwrap();
    assert_eq!(
        analysis["photos"].as_array().unwrap().len(),
        manifest.shards[0].photos
    );
    assert!(
        analysis["photos"][0]["palette"].is_object()
            && analysis["photos"][0]["fingerprint"].is_object()
    );
    if analyser.faces.is_ok() {
        let faces: usize = analysis["photos"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["faces"].as_array().unwrap().len())
            .sum();
        assert!(faces > 0, "the sample library has faces");
    }
    // The worker that stored the library's last analysis grouped its people (after its ack).
    let grouping_deadline = std::time::Instant::now();
    let status = loop {
        let status = reverie_worker::library_analysis::analysis_status(
            &*farm.backends.store,
            &tenant,
            &manifest,
            true,
        )
        .await
        .unwrap();
        if status.analysis == reverie_worker::library_analysis::AnalysisState::Done {
            break status;
        }
        assert!(
            grouping_deadline.elapsed() < Duration::from_secs(60),
            "one shard, one analysis job: the library must end grouped ({status:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.shards_analysed, 1);
    let people = reverie_worker::people::load_people(&*farm.backends.store, &tenant)
        .await
        .unwrap();
    if analyser.faces.is_ok() {
        assert!(!people.people.is_empty(), "the sample library has people");
    }
    let cached = farm
        .backends
        .cache
        .keys(&keys::tenant_cache_prefix(&tenant))
        .await
        .unwrap();
    assert!(
        cached.iter().any(|k| k.contains(":emb:style:")),
        "{cached:?}"
    );

    // Again: nothing is computed; a flushed cache is refilled from the persisted analysis.
    let (_, outcome) = analyse_shard(
        &analyser,
        &*farm.backends.store,
        &*farm.backends.cache,
        &tenant,
        &shard,
    )
    .await
    .unwrap();
    assert_eq!(outcome, Outcome::Persisted { refilled: 0 });
    let flushed = farm
        .backends
        .cache
        .delete_prefix(&keys::tenant_cache_prefix(&tenant))
        .await
        .unwrap();
    let (_, outcome) = analyse_shard(
        &analyser,
        &*farm.backends.store,
        &*farm.backends.cache,
        &tenant,
        &shard,
    )
    .await
    .unwrap();
    assert_eq!(
        outcome,
        Outcome::Persisted {
            refilled: flushed as usize
        }
    );

    farm.backends
        .cache
        .delete_prefix(&keys::tenant_cache_prefix(&tenant))
        .await
        .unwrap();
    stop.send(true).unwrap();
    handle.await.unwrap();
    drop(events);
    farm.stop().await;
}
