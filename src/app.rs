//! The global options every command takes and the start-up every command shares: configuration layers,
//! logging, and the shutdown signal.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use reverie_shared::config::{Config, LogFormat};
use tokio::sync::watch;

/// Flags every command takes. They override the TOML file and REVERIE_* variables; `--set` reaches any key.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// TOML configuration file.
    #[arg(long, global = true, env = "REVERIE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory of the embedded adapters' state.
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// `human` or `json` logs.
    #[arg(long, global = true)]
    pub log_format: Option<String>,
    /// RabbitMQ URL (none: in-process queue).
    #[arg(long, global = true)]
    pub amqp_url: Option<String>,
    /// Redis URL (none: in-memory cache).
    #[arg(long, global = true)]
    pub redis_url: Option<String>,
    /// S3 bucket (none: local directory store).
    #[arg(long, global = true)]
    pub s3_bucket: Option<String>,
    /// Endpoint of an S3-compatible server.
    #[arg(long, global = true)]
    pub s3_endpoint: Option<String>,
    /// Any configuration key: `--set worker.batch_max=16` (repeatable).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

impl GlobalArgs {
    /// File < environment < flags.
    pub fn load_config(&self) -> anyhow::Result<Config> {
        let mut config = Config::load(self.config.as_deref())?;
        let flags = [
            (
                "data_dir",
                self.data_dir.as_ref().map(|p| p.display().to_string()),
            ),
            ("log_format", self.log_format.clone()),
            ("amqp.url", self.amqp_url.clone()),
            ("redis.url", self.redis_url.clone()),
            ("s3.bucket", self.s3_bucket.clone()),
            ("s3.endpoint", self.s3_endpoint.clone()),
        ];
        for (key, value) in flags {
            if let Some(value) = value {
                config.set(&format!("{key}={value}"))?;
            }
        }
        for assignment in &self.overrides {
            config.set(assignment)?;
        }
        config.validate()?;
        Ok(config)
    }
}

/// Loads the configuration and starts logging; every command begins here.
pub fn start(global: &GlobalArgs) -> anyhow::Result<Config> {
    let config = global.load_config().context("configuration")?;
    reverie_shared::telemetry::init(config.log_format, &config.log_level);
    Ok(config)
}

/// Starts logging for a client command whose output is for people: warnings only, unless asked.
pub fn start_quiet(global: &GlobalArgs) -> anyhow::Result<Config> {
    let config = global.load_config().context("configuration")?;
    let level = if std::env::var_os("RUST_LOG").is_some() {
        config.log_level.as_str()
    } else {
        "warn"
    };
    reverie_shared::telemetry::init(LogFormat::Human, level);
    Ok(config)
}

/// A channel that turns true on SIGTERM or Ctrl-C: roles drain and exit 0.
pub fn shutdown_signal() -> watch::Receiver<bool> {
    let (sender, receiver) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested; draining");
        let _ = sender.send(true);
    });
    receiver
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut terminate) => {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
