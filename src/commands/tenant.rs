//! Tenant administration and consent, run in-process against the configured backends (an operator's
//! tools: they need the farm's credentials, not a tenant token).

use std::time::Duration;

use clap::Subcommand;
use reverie_scheduler::tenants::LIBRARY_SOURCE;
use reverie_scheduler::{Core, SchedulerOptions};
use reverie_shared::destinations::TenantDestinations;
use reverie_shared::ids::TenantId;
use reverie_shared::Backends;

use crate::app::{self, GlobalArgs};

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant (idempotent) and print a new API token for it.
    Create {
        tenant: String,
        /// Token lifetime in days (default: no expiry).
        #[arg(long)]
        expires_days: Option<u64>,
    },
    /// Issue another API token.
    Token {
        tenant: String,
        #[arg(long)]
        expires_days: Option<u64>,
    },
    /// Bind a RabbitMQ user: its messages (broker-validated user_id) act for this tenant.
    BindAmqpUser { tenant: String, user: String },
    /// Register a bucket the tenant owns (`s3://bucket/prefix`, same S3 endpoint and credentials as the
    /// farm) as a place album runs may deliver to (`reverie batch --to s3://bucket/prefix/...`).
    AddDestination { tenant: String, url: String },
    /// List the tenant's registered output destinations.
    Destinations { tenant: String },
    /// Delete everything of a tenant — shards, analyses, embeddings, people, results, job records — and
    /// report what was deleted.
    Forget { tenant: String },
}

#[derive(Debug, Subcommand)]
pub enum ConsentCommand {
    /// Allow a source (`library` or `album:NAME`) to be analysed and used for generation.
    Grant {
        #[arg(long)]
        tenant: String,
        source: String,
    },
    /// Withdraw consent; queued work on the source is cancelled.
    Revoke {
        #[arg(long)]
        tenant: String,
        source: String,
    },
    /// List the sources the tenant consented to.
    Show {
        #[arg(long)]
        tenant: String,
    },
}

async fn connect(global: &GlobalArgs) -> anyhow::Result<(Core, Backends)> {
    let config = app::start_quiet(global)?;
    let backends = Backends::connect(&config).await?;
    let core = Core::new(backends.clone(), SchedulerOptions::from_config(&config));
    Ok((core, backends))
}

fn lifetime(days: Option<u64>) -> Option<Duration> {
    days.map(|d| Duration::from_secs(d * 24 * 3600))
}

pub async fn run(global: &GlobalArgs, command: TenantCommand) -> anyhow::Result<()> {
    let (core, backends) = connect(global).await?;
    match command {
        TenantCommand::Create {
            tenant,
            expires_days,
        } => {
            let tenant = TenantId::new(tenant)?;
            core.tenants().create(&tenant).await?;
            println!(
                "{}",
                core.tenants()
                    .issue_token(&tenant, lifetime(expires_days), None)
                    .await?
            );
        }
        TenantCommand::Token {
            tenant,
            expires_days,
        } => {
            let tenant = TenantId::new(tenant)?;
            println!(
                "{}",
                core.tenants()
                    .issue_token(&tenant, lifetime(expires_days), None)
                    .await?
            );
        }
        TenantCommand::BindAmqpUser { tenant, user } => {
            core.tenants()
                .bind_amqp_user(&TenantId::new(tenant)?, &user)
                .await?;
        }
        TenantCommand::AddDestination { tenant, url } => {
            let tenant = core.tenants().require(&TenantId::new(tenant)?).await?.id;
            let destination = TenantDestinations::register(&*backends.store, &tenant, &url).await?;
            println!("{}", destination.url());
        }
        TenantCommand::Destinations { tenant } => {
            let tenant = TenantId::new(tenant)?;
            for url in TenantDestinations::load(&*backends.store, &tenant)
                .await?
                .destinations
            {
                println!("{url}");
            }
        }
        TenantCommand::Forget { tenant } => {
            let report = core.forget(&TenantId::new(tenant)?).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
    }
    Ok(())
}

pub async fn consent(global: &GlobalArgs, command: ConsentCommand) -> anyhow::Result<()> {
    let (core, backends) = connect(global).await?;
    match command {
        ConsentCommand::Grant { tenant, source } => {
            let tenant = TenantId::new(tenant)?;
            core.tenants().set_consent(&tenant, &source, true).await?;
            if source == LIBRARY_SOURCE {
                // Consent is what the library's analysis waited for.
                let config = global.load_config()?;
                let analysis = super::analyse::follow_up(&config, &backends, &tenant).await?;
                println!("{analysis}");
            }
        }
        ConsentCommand::Revoke { tenant, source } => {
            let cancelled = core
                .revoke_consent(&TenantId::new(tenant)?, &source)
                .await?;
            println!("consent for {source} revoked; {cancelled} queued jobs cancelled");
        }
        ConsentCommand::Show { tenant } => {
            let tenant = core.tenants().require(&TenantId::new(tenant)?).await?;
            for source in tenant.granted_sources() {
                println!("{source}");
            }
        }
    }
    Ok(())
}
