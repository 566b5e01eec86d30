//! The client commands: `submit`, `status`, `cancel`, `refine` talk to a running scheduler over HTTP.

use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use reverie_scheduler::client::ApiClient;
use serde_json::json;

use crate::app::{self, GlobalArgs};

#[derive(Debug, Args)]
pub struct Connection {
    /// Scheduler HTTP address (default: http:// + scheduler.http_addr).
    #[arg(long, env = "REVERIE_API")]
    pub api: Option<String>,
    /// API token `TENANT:SECRET` (from `reverie tenant create`).
    #[arg(long, env = "REVERIE_TOKEN", hide_env_values = true)]
    pub token: String,
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub connection: Connection,
    #[arg(long)]
    pub tenant: String,
    /// What to make, e.g. "me and my dog at sunset on the beach, watercolour".
    pub prompt: String,
    /// Number of variants.
    #[arg(long, default_value_t = 1)]
    pub n: u32,
    /// Batch priority instead of interactive.
    #[arg(long)]
    pub batch: bool,
    /// Wait until the request finishes and print its outputs.
    #[arg(long)]
    pub wait: bool,
    /// Idempotency key: submitting twice with the same key makes one request.
    #[arg(long)]
    pub id: Option<String>,
}

#[derive(Debug, Args)]
pub struct IdArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// The request id.
    pub id: String,
}

#[derive(Debug, Args)]
pub struct RefineArgs {
    #[command(flatten)]
    pub connection: Connection,
    pub id: String,
    pub prompt: String,
    #[arg(long)]
    pub wait: bool,
}

const WAIT_LIMIT: Duration = Duration::from_secs(30 * 60);

fn client(global: &GlobalArgs, connection: &Connection) -> anyhow::Result<ApiClient> {
    let config = app::start_quiet(global)?;
    let base = connection
        .api
        .clone()
        .unwrap_or_else(|| format!("http://{}", config.scheduler.http_addr));
    Ok(ApiClient::new(&base, &connection.token))
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub async fn submit(global: &GlobalArgs, args: SubmitArgs) -> anyhow::Result<()> {
    let api = client(global, &args.connection)?;
    let request = json!({
        "schema_version": 1,
        "tenant": args.tenant,
        "prompt": args.prompt,
        "n": args.n,
        "priority": if args.batch { "batch" } else { "interactive" },
        "kind": "generate",
    });
    let answer = api.submit(&request, args.id.as_deref()).await?;
    print_json(&answer.body)?;
    if !answer.status.is_success() {
        bail!("the scheduler refused the request (HTTP {})", answer.status);
    }
    if args.wait {
        let id = answer
            .body
            .request_id
            .clone()
            .context("the reply carries no request id")?;
        print_json(
            &api.wait(&id, Duration::from_millis(500), WAIT_LIMIT)
                .await?,
        )?;
    }
    Ok(())
}

pub async fn status(global: &GlobalArgs, args: IdArgs) -> anyhow::Result<()> {
    match client(global, &args.connection)?.status(&args.id).await? {
        Ok(status) => print_json(&status),
        Err(answer) => {
            print_json(&answer.body)?;
            bail!("HTTP {}", answer.status)
        }
    }
}

pub async fn cancel(global: &GlobalArgs, args: IdArgs) -> anyhow::Result<()> {
    match client(global, &args.connection)?.cancel(&args.id).await? {
        Ok(status) => print_json(&status),
        Err(answer) => {
            print_json(&answer.body)?;
            bail!("HTTP {}", answer.status)
        }
    }
}

pub async fn refine(global: &GlobalArgs, args: RefineArgs) -> anyhow::Result<()> {
    let api = client(global, &args.connection)?;
    // A refinement is a whole request of schema v1 whose parent is named by the URL; the token names
    // the tenant (`TENANT:SECRET`).
    let tenant = args.connection.token.split(':').next().unwrap_or_default();
    let request = json!({
        "schema_version": 1,
        "tenant": tenant,
        "prompt": args.prompt,
        "n": 1,
        "priority": "interactive",
        "kind": "generate",
    });
    let answer = api.refine(&args.id, &request, None).await?;
    print_json(&answer.body)?;
    if !answer.status.is_success() {
        bail!(
            "the scheduler refused the refinement (HTTP {})",
            answer.status
        );
    }
    if args.wait {
        let id = answer
            .body
            .request_id
            .clone()
            .context("the reply carries no request id")?;
        print_json(
            &api.wait(&id, Duration::from_millis(500), WAIT_LIMIT)
                .await?,
        )?;
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct BatchArgs {
    #[command(flatten)]
    pub connection: Connection,
    #[arg(long)]
    pub tenant: String,
    /// The album to turn into art.
    #[arg(long)]
    pub album: String,
    /// Style of every image ("watercolour", "oil painting", "pop art", ...).
    #[arg(long)]
    pub style: String,
    /// Name of the output album (in the tenant's own storage; default "ALBUM in STYLE").
    #[arg(long)]
    pub to: Option<String>,
    /// At most this many photos (the request schema allows 1 to 1000 per run).
    #[arg(long, default_value_t = 1_000)]
    pub limit: u32,
}

/// The run's id: the same album, style and destination always resume the same run.
fn album_run_id(args: &BatchArgs, to: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!(
        "{}\n{}\n{}\n{}",
        args.tenant, args.album, args.style, to
    ));
    format!("album-{}", &hex::encode(digest)[..24])
}

pub async fn batch(global: &GlobalArgs, args: BatchArgs) -> anyhow::Result<()> {
    let api = client(global, &args.connection)?;
    let to = args
        .to
        .clone()
        .unwrap_or_else(|| format!("{} in {}", args.album, args.style));
    let run_id = album_run_id(&args, &to);
    let request = json!({
        "schema_version": 1,
        "tenant": args.tenant,
        "prompt": "",
        "n": 1,
        "priority": "batch",
        "kind": "album_to_art",
        "album_to_art": { "album": args.album, "style": args.style, "limit": args.limit, "to": to },
    });
    let answer = api.submit(&request, Some(&run_id)).await?;
    if !answer.status.is_success() {
        print_json(&answer.body)?;
        bail!(
            "the scheduler refused the album run (HTTP {})",
            answer.status
        );
    }
    eprintln!(
        "album run {run_id}: {} -> {to} ({})",
        args.album, args.style
    );
    let started = std::time::Instant::now();
    loop {
        let status = match api.status(&run_id).await? {
            Ok(status) => status,
            Err(answer) => bail!("status of {run_id}: HTTP {}", answer.status),
        };
        let total = status.jobs.len();
        let finished = |state: &str| {
            status
                .jobs
                .iter()
                .filter(|j| serde_json::to_value(j.state).ok() == Some(state.into()))
                .count()
        };
        let (done, failed) = (
            finished("succeeded"),
            finished("failed") + finished("cancelled"),
        );
        let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-3);
        let left = total.saturating_sub(done + failed);
        let eta = if rate > 0.0 {
            format!("{:.0}s", left as f64 / rate)
        } else {
            "?".to_string()
        };
        eprint!("\r{done}/{total} done, {failed} failed, {rate:.2} images/s, {eta} left   ");
        if left == 0 {
            eprintln!();
            print_json(&status)?;
            if failed > 0 {
                bail!("{failed} of {total} photos failed; the output album's manifest.json lists each with its reason");
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
