//! Reverie's configuration: every key, its default and its meaning, in one place.
//!
//! Layers, later ones winning: built-in defaults < TOML file (`--config FILE` or `REVERIE_CONFIG`) <
//! `REVERIE_*` environment variables < command-line flags (`--data-dir`, ..., and `--set key=value` for any
//! key). The environment variable of a key is `REVERIE_` + the key upper-cased with `.` as `_`
//! (`worker.batch_max` → `REVERIE_WORKER_BATCH_MAX`). Secrets can be given as a value or, for Kubernetes
//! secret mounts, as a path in the `*_file` key — never both.
//!
//! With no service addresses configured every role uses the embedded adapters under `data_dir`, so the
//! defaults work on a laptop with nothing installed. `reverie config keys` prints the table below and
//! docs/configuration.md is generated from it.
//!
//! The parts: `settings` (each section's settings and their defaults), `keys` (the documented key
//! table), `layers` (loading and layering: file, environment, `--set`), `validate` (checks across
//! keys) and `secrets` (a value or a secret file, redaction). Everything is used from here:
//! `reverie_shared::config::{Config, WorkerSettings, KEYS, ...}`.

mod keys;
mod layers;
mod secrets;
mod settings;
mod validate;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use keys::{Key, KEYS};
pub use settings::{
    AmqpSettings, CacheSettings, DiffusionSettings, LogFormat, QueueSettings, RedisSettings,
    RetrySettings, S3Settings, SchedulerSettings, ServeSettings, WorkerSettings,
};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {path}: {detail}")]
    File { path: String, detail: String },
    #[error("configuration key {key} (from {source_name}): {detail}")]
    Value {
        key: String,
        source_name: String,
        detail: String,
    },
    #[error(
        "unknown configuration key {key:?} in {source_name}; `reverie config keys` lists them all"
    )]
    UnknownKey { key: String, source_name: String },
    #[error("configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub data_dir: PathBuf,
    pub models_dir: Option<PathBuf>,
    pub log_format: LogFormat,
    pub log_level: String,
    pub amqp: AmqpSettings,
    pub redis: RedisSettings,
    pub s3: S3Settings,
    pub queues: QueueSettings,
    pub retry: RetrySettings,
    pub cache: CacheSettings,
    pub scheduler: SchedulerSettings,
    pub worker: WorkerSettings,
    pub serve: ServeSettings,
    pub diffusion: DiffusionSettings,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            data_dir: PathBuf::from(".reverie"),
            models_dir: None,
            log_format: LogFormat::Human,
            log_level: "info".to_string(),
            amqp: AmqpSettings::default(),
            redis: RedisSettings::default(),
            s3: S3Settings::default(),
            queues: QueueSettings::default(),
            retry: RetrySettings::default(),
            cache: CacheSettings::default(),
            scheduler: SchedulerSettings::default(),
            worker: WorkerSettings::default(),
            serve: ServeSettings::default(),
            diffusion: DiffusionSettings::default(),
        }
    }
}

impl Config {
    pub fn models_dir(&self) -> PathBuf {
        self.models_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("models"))
    }

    /// The diffusion model registry file.
    pub fn diffusion_registry(&self) -> PathBuf {
        self.diffusion
            .registry
            .clone()
            .unwrap_or_else(|| self.models_dir().join("diffusion").join("registry.toml"))
    }
}
