//! `reverie library analyse` and `reverie people list|show|name|merge|split`.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Subcommand;
use reverie_faces::FaceBox;
use reverie_library::load_manifest;
use reverie_shared::ids::TenantId;
use reverie_shared::Backends;
use reverie_worker::analysis::{analyse_shard, Analyser, Outcome};
use reverie_worker::people::{load_people, people_view, save_people, update_people};

use crate::app::{self, GlobalArgs};

#[derive(Debug, Subcommand)]
pub enum PeopleCommand {
    /// Every person with their faces.
    List {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        json: bool,
    },
    /// One person.
    Show {
        #[arg(long)]
        tenant: String,
        id: u64,
    },
    /// Name a person; "me", "I" or "myself" marks the person as the tenant themselves.
    Name {
        #[arg(long)]
        tenant: String,
        id: u64,
        name: String,
    },
    /// Merge person FROM into person INTO.
    Merge {
        #[arg(long)]
        tenant: String,
        into: u64,
        from: u64,
    },
    /// Move faces (PHOTO_ID:LEFT,TOP,RIGHT,BOTTOM) out of a person into a new one.
    Split {
        #[arg(long)]
        tenant: String,
        id: u64,
        #[arg(long = "face", required = true)]
        faces: Vec<String>,
    },
}

/// Analyses every shard of the tenant's library (faces, palettes, fingerprints), then grows its people.
pub async fn analyse(global: &GlobalArgs, tenant: String) -> anyhow::Result<()> {
    let config = app::start_quiet(global)?;
    let backends = Backends::connect(&config).await?;
    let tenant = TenantId::new(tenant)?;
    let analyser = Analyser::load(
        &config.models_dir(),
        Duration::from_secs(config.cache.embedding_ttl_s),
    );
    if let Err(reason) = &analyser.faces {
        eprintln!("warning: faces are not analysed: {reason}");
    }
    let summary = analyse_library(&backends, &tenant, &analyser, &|_, _| {}).await?;
    println!("{summary}");
    Ok(())
}

/// What an in-process analysis of a library did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct AnalysisSummary {
    pub shards: usize,
    /// Shards analysed now, and shards whose analysis was already stored.
    pub computed: usize,
    pub reused: usize,
    pub faces: usize,
    pub new_faces: usize,
    pub people: usize,
    pub seconds: f64,
}

impl std::fmt::Display for AnalysisSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "analysed {} shards ({} computed, {} already analysed) in {:.1}s: {} faces ({} new), {} people",
            self.shards, self.computed, self.reused, self.seconds, self.faces, self.new_faces, self.people
        )
    }
}

/// The analysis of a whole library, in-process (the demo, `library analyse` and `reverie serve`'s
/// imports use it; farms publish analyse jobs instead). `progress(done, total)` follows the shards.
pub async fn analyse_library(
    backends: &Backends,
    tenant: &TenantId,
    analyser: &Analyser,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> anyhow::Result<AnalysisSummary> {
    let manifest = load_manifest(&*backends.store, tenant).await?;
    let started = Instant::now();
    let mut summary = AnalysisSummary {
        shards: manifest.shards.len(),
        ..AnalysisSummary::default()
    };
    let mut analyses = Vec::new();
    for (done, shard) in manifest.shards.iter().enumerate() {
        progress(done, manifest.shards.len());
        let (analysis, outcome) = analyse_shard(
            analyser,
            &*backends.store,
            &*backends.cache,
            tenant,
            &shard.id,
        )
        .await?;
        match outcome {
            Outcome::Computed => summary.computed += 1,
            Outcome::Persisted { .. } => summary.reused += 1,
        }
        summary.faces += analysis.photos.iter().map(|p| p.faces.len()).sum::<usize>();
        analyses.push(analysis);
    }
    progress(manifest.shards.len(), manifest.shards.len());
    let mut people = load_people(&*backends.store, tenant).await?;
    summary.new_faces = update_people(&mut people, &manifest, &analyses);
    save_people(&*backends.store, tenant, &people).await?;
    let palettes = reverie_worker::palettes::library_palettes(&manifest, &analyses);
    reverie_worker::palettes::save_palettes(&*backends.store, tenant, &palettes).await?;
    summary.people = people.people.len();
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

fn parse_face(text: &str) -> anyhow::Result<(String, FaceBox)> {
    let (photo, coords) = text
        .split_once(':')
        .context("--face takes PHOTO_ID:LEFT,TOP,RIGHT,BOTTOM")?;
    let n: Vec<i64> = coords
        .split(',')
        .map(|v| v.trim().parse())
        .collect::<Result<_, _>>()
        .with_context(|| format!("--face {text:?}: coordinates must be integers"))?;
    let [left, top, right, bottom] = n[..] else {
        bail!("--face {text:?}: four coordinates expected")
    };
    Ok((
        photo.to_string(),
        FaceBox {
            left,
            top,
            right,
            bottom,
        },
    ))
}

pub async fn run(global: &GlobalArgs, command: PeopleCommand) -> anyhow::Result<()> {
    let config = app::start_quiet(global)?;
    let backends = Backends::connect(&config).await?;
    let tenant_of = |t: &str| TenantId::new(t);
    match command {
        PeopleCommand::List { tenant, json } => {
            let tenant = tenant_of(&tenant)?;
            let people = load_people(&*backends.store, &tenant).await?;
            let manifest = load_manifest(&*backends.store, &tenant).await?;
            let view = people_view(&people, &manifest);
            if json {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                for person in &view {
                    let name = person.name.clone().unwrap_or_else(|| "(unnamed)".into());
                    let me = if person.is_me { " (me)" } else { "" };
                    println!("{:>4}  {name}{me}: {} faces", person.id, person.faces.len());
                }
            }
        }
        PeopleCommand::Show { tenant, id } => {
            let tenant = tenant_of(&tenant)?;
            let people = load_people(&*backends.store, &tenant).await?;
            let manifest = load_manifest(&*backends.store, &tenant).await?;
            let view = people_view(&people, &manifest);
            let person = view
                .iter()
                .find(|p| p.id == id)
                .with_context(|| format!("no person {id}"))?;
            println!("{}", serde_json::to_string_pretty(person)?);
        }
        PeopleCommand::Name { tenant, id, name } => {
            edit(&backends, &tenant_of(&tenant)?, |p| {
                p.name(id, &name).map(|_| ())
            })
            .await?
        }
        PeopleCommand::Merge { tenant, into, from } => {
            edit(&backends, &tenant_of(&tenant)?, |p| p.merge(into, from)).await?
        }
        PeopleCommand::Split { tenant, id, faces } => {
            let faces = faces
                .iter()
                .map(|f| parse_face(f))
                .collect::<anyhow::Result<Vec<_>>>()?;
            edit(&backends, &tenant_of(&tenant)?, |p| {
                p.split(id, &faces).map(|new| println!("new person {new}"))
            })
            .await?
        }
    }
    Ok(())
}

async fn edit(
    backends: &Backends,
    tenant: &TenantId,
    change: impl FnOnce(
        &mut reverie_faces::people::People,
    ) -> Result<(), reverie_faces::people::PeopleError>,
) -> anyhow::Result<()> {
    let mut people = load_people(&*backends.store, tenant).await?;
    change(&mut people)?;
    save_people(&*backends.store, tenant, &people).await?;
    Ok(())
}
