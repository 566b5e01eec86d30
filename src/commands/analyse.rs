//! The library's analysis from the command line: `reverie analyse`, and the analysis that follows every
//! import and every grant of consent. On the embedded default it runs in-process; on a farm (a broker is
//! configured) it is published as one analysis job per shard, and the worker that finishes the last one
//! groups the people (`reverie_worker::library_analysis`).

use std::time::Duration;

use anyhow::bail;
use reverie_library::{load_manifest, LibraryManifest};
use reverie_scheduler::tenants::{Tenants, LIBRARY_SOURCE};
use reverie_shared::config::Config;
use reverie_shared::envelope;
use reverie_shared::ids::{JobId, TenantId};
use reverie_shared::jobs::{AnalyseJob, Analysis, Job, JobSpec, Priority};
use reverie_shared::ports::queue::{Message, MessageProps};
use reverie_shared::queues::QueueNames;
use reverie_shared::Backends;
use reverie_worker::analysis::Analyser;
use reverie_worker::library_analysis::{analyse_library, AnalysisSummary};
use reverie_worker::library_analysis::{analysis_status, group_when_complete, AnalysisStatus};
use serde::Serialize;

use crate::app::{self, GlobalArgs};

/// `reverie analyse --tenant T`: analyses every shard of the library (faces, palettes, fingerprints),
/// then groups faces into people. Refused without the tenant's consent.
pub async fn analyse(global: &GlobalArgs, tenant: String) -> anyhow::Result<()> {
    let config = app::start_quiet(global)?;
    let backends = Backends::connect(&config).await?;
    let tenant = TenantId::new(tenant)?;
    if !library_consented(&backends, &tenant).await? {
        bail!("{}", no_consent_message(&backends, &tenant).await?);
    }
    let analyser = load_analyser(&config);
    let summary = analyse_library(&backends, &tenant, &analyser, &print_progress).await?;
    println!("{summary}");
    Ok(())
}

/// Whether the tenant consented to the analysis of its whole library.
pub async fn library_consented(backends: &Backends, tenant: &TenantId) -> anyhow::Result<bool> {
    Ok(Tenants::new(backends.store.clone(), backends.cache.clone())
        .get(tenant)
        .await?
        .is_some_and(|record| record.granted_sources().iter().any(|s| s == LIBRARY_SOURCE)))
}

/// What to tell a tenant whose library may not be analysed, with the commands that allow it.
pub async fn no_consent_message(backends: &Backends, tenant: &TenantId) -> anyhow::Result<String> {
    let registry = Tenants::new(backends.store.clone(), backends.cache.clone());
    let create = if registry.get(tenant).await?.is_none() {
        format!("`reverie tenant create {tenant}`, then ")
    } else {
        String::new()
    };
    Ok(format!(
        "tenant {tenant} has not consented to the analysis of its library, so no faces are analysed and \
         no people are grouped; grant it with {create}`reverie consent grant --tenant {tenant} library` \
         (the analysis then runs)"
    ))
}

fn load_analyser(config: &Config) -> Analyser {
    let analyser = Analyser::load(
        &config.models_dir(),
        Duration::from_secs(config.cache.embedding_ttl_s),
    );
    if let Err(reason) = &analyser.faces {
        eprintln!("warning: faces are not analysed: {reason}");
    }
    if let Err(reason) = &analyser.pets {
        eprintln!("warning: pets are not analysed: {reason}");
    }
    analyser
}

fn print_progress(done: usize, total: usize) {
    if total > 0 {
        eprintln!("analysing the library: {done} of {total} shards");
    }
}

/// What happened to the analysis after an import or a grant of consent.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "ran", rename_all = "snake_case")]
pub enum FollowUp {
    /// Analysed in-process.
    InProcess {
        #[serde(flatten)]
        summary: AnalysisSummary,
        #[serde(flatten)]
        status: AnalysisStatus,
    },
    /// Published as analysis jobs for the farm's workers.
    Queued {
        jobs: usize,
        #[serde(flatten)]
        status: AnalysisStatus,
    },
    /// Not run: the tenant did not consent.
    NotRun {
        reason: String,
        #[serde(flatten)]
        status: AnalysisStatus,
    },
}

impl std::fmt::Display for FollowUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FollowUp::InProcess { summary, .. } => write!(f, "{summary}"),
            FollowUp::Queued { jobs, .. } => write!(
                f,
                "analysis queued: {jobs} shard jobs for the farm's workers (`reverie people list` shows \
                 the progress)"
            ),
            FollowUp::NotRun { reason, .. } => write!(f, "not analysed: {reason}"),
        }
    }
}

/// Runs the library's analysis when the tenant consented: in-process on the embedded default, as
/// analysis jobs on a farm.
pub async fn follow_up(
    config: &Config,
    backends: &Backends,
    tenant: &TenantId,
) -> anyhow::Result<FollowUp> {
    let consented = library_consented(backends, tenant).await?;
    let manifest = load_manifest(&*backends.store, tenant).await?;
    if !consented {
        return Ok(FollowUp::NotRun {
            reason: no_consent_message(backends, tenant).await?,
            status: analysis_status(&*backends.store, tenant, &manifest, consented).await?,
        });
    }
    if config.amqp_url()?.is_some() {
        let jobs = publish_analysis_jobs(config, backends, tenant, &manifest).await?;
        if jobs == 0 {
            // Every shard is analysed but the grouping may not have run (its worker stopped): run it.
            group_when_complete(&*backends.store, tenant).await?;
        }
        return Ok(FollowUp::Queued {
            jobs,
            status: analysis_status(&*backends.store, tenant, &manifest, consented).await?,
        });
    }
    let analyser = load_analyser(config);
    let summary = analyse_library(backends, tenant, &analyser, &print_progress).await?;
    let manifest = load_manifest(&*backends.store, tenant).await?;
    Ok(FollowUp::InProcess {
        summary,
        status: analysis_status(&*backends.store, tenant, &manifest, consented).await?,
    })
}

/// One analysis job per shard that has no stored analysis yet. The job id is the shard's, so a job
/// published twice (two imports before a worker got to it) analyses once and is reused the second time.
async fn publish_analysis_jobs(
    config: &Config,
    backends: &Backends,
    tenant: &TenantId,
    manifest: &LibraryManifest,
) -> anyhow::Result<usize> {
    let queues = QueueNames::new(&config.queues.prefix);
    for spec in queues.specs() {
        backends.queue.declare(&spec).await?;
    }
    let mut published = 0;
    for shard in &manifest.shards {
        let key = reverie_worker::analysis::analysis_key(tenant, &shard.id);
        if backends.store.head(&key).await?.is_some() {
            continue;
        }
        let job = Job {
            spec: JobSpec::Analyse(AnalyseJob {
                job: JobId::new(format!("analyse-{}", shard.id))?,
                tenant: tenant.clone(),
                shard: shard.id.clone(),
                analyses: vec![Analysis::Faces, Analysis::Palettes, Analysis::Fingerprints],
            }),
            attempt: 1,
            priority: Priority::Batch,
            accepted_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        };
        let props = MessageProps {
            message_id: Some(job.spec.id().to_string()),
            content_type: Some("application/x-reverie-job".to_string()),
            priority: Priority::Batch.amqp(),
            ..MessageProps::default()
        };
        let body = envelope::encode_job(&job)?;
        backends
            .queue
            .publish(&queues.analyse, Message::new(body).with_props(props))
            .await?;
        published += 1;
    }
    Ok(published)
}
