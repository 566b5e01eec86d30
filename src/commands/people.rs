//! `reverie people list|show|name|merge|split`.

use anyhow::{bail, Context};
use clap::Subcommand;
use reverie_faces::FaceBox;
use reverie_library::load_manifest;
use reverie_shared::ids::TenantId;
use reverie_shared::Backends;
use reverie_worker::library_analysis::{analysis_status, AnalysisState};
use reverie_worker::people::{load_people, people_view, save_people, PersonView};

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
            let (status, unfinished) =
                unfinished_analysis(&config, &backends, &tenant, &manifest, "people").await?;
            if json {
                print_people_json(&view, &status, unfinished.as_deref())?;
            } else {
                if let Some(message) = &unfinished {
                    println!("{message}");
                }
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

/// The library's analysis status and, unless it is done, what that means for the lists.
pub(crate) async fn unfinished_analysis(
    config: &reverie_shared::Config,
    backends: &Backends,
    tenant: &TenantId,
    manifest: &reverie_library::LibraryManifest,
    what: &str,
) -> anyhow::Result<(
    reverie_worker::library_analysis::AnalysisStatus,
    Option<String>,
)> {
    let consented = super::analyse::library_consented(backends, tenant).await?;
    let status = analysis_status(&*backends.store, tenant, manifest, consented).await?;
    let unfinished = match status.analysis {
        AnalysisState::Done => None,
        AnalysisState::NoConsent => {
            Some(super::analyse::no_consent_message(backends, tenant).await?)
        }
        _ => Some(analysis_message(
            tenant,
            &status,
            config.amqp_url()?.is_some(),
            what,
        )),
    };
    Ok((status, unfinished))
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

/// The people as JSON: the documented list (`reverie.people` in docs/faces.md) once the library's
/// analysis is done; while it is not, an object that says so — `{"analysis": "pending" | "running" |
/// "no_consent", "shards", "shards_analysed", "message", "people": [...]}` — never a bare empty list.
fn print_people_json(
    view: &[PersonView],
    status: &reverie_worker::library_analysis::AnalysisStatus,
    unfinished: Option<&str>,
) -> anyhow::Result<()> {
    print_list_json("people", view, status, unfinished)
}

/// A list (`people`, `pets`) as JSON: the bare list once the analysis is done, else the status object
/// with a message and the list so far under `key`.
pub(crate) fn print_list_json<T: serde::Serialize>(
    key: &str,
    view: &[T],
    status: &reverie_worker::library_analysis::AnalysisStatus,
    unfinished: Option<&str>,
) -> anyhow::Result<()> {
    let Some(message) = unfinished else {
        println!("{}", serde_json::to_string_pretty(view)?);
        return Ok(());
    };
    let mut value = serde_json::to_value(status)?;
    if let Some(object) = value.as_object_mut() {
        object.insert("message".into(), message.into());
        object.insert(key.into(), serde_json::to_value(view)?);
    }
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

/// What a pending or running analysis means for the people list, and what to do about it.
fn analysis_message(
    tenant: &TenantId,
    status: &reverie_worker::library_analysis::AnalysisStatus,
    farm: bool,
    what: &str,
) -> String {
    let progress = format!(
        "{} of {} shards analysed",
        status.shards_analysed, status.shards
    );
    if farm {
        format!(
            "the library's analysis is {}: {progress}; the farm's workers group the {what} when the \
             last shard is in (or run `reverie analyse --tenant {tenant}`)",
            state_word(status.analysis)
        )
    } else {
        format!(
            "the library's analysis is {}: {progress}; {what} appear when it finishes (it runs after \
             each import; to run it now: `reverie analyse --tenant {tenant}`)",
            state_word(status.analysis)
        )
    }
}

fn state_word(state: AnalysisState) -> &'static str {
    match state {
        AnalysisState::NoConsent => "not allowed",
        AnalysisState::Pending => "pending",
        AnalysisState::Running => "running",
        AnalysisState::Done => "done",
    }
}
