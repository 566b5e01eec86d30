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

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Coloured, one line per event: for people at a terminal.
    #[default]
    Human,
    /// One JSON object per line: for log collectors.
    Json,
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

/// Which diffusion model workers render with. Without a model, jobs that ask for diffusion fall back
/// to the painterly renderer (the scheduler plans painterly jobs), so a laptop needs no weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiffusionSettings {
    /// A registered model name or a diffusers folder.
    pub model: Option<String>,
    /// The model registry (TOML); `None` means `{models_dir}/diffusion/registry.toml`.
    pub registry: Option<PathBuf>,
    pub device: String,
    pub dtype: String,
    /// Default denoising steps and image side of planned diffusion jobs (requests may override).
    pub steps: u32,
    pub size: u32,
}

impl Default for DiffusionSettings {
    fn default() -> DiffusionSettings {
        DiffusionSettings {
            model: None,
            registry: None,
            device: "cpu".to_string(),
            dtype: "f32".to_string(),
            steps: 20,
            size: 512,
        }
    }
}

impl Config {
    /// The diffusion model registry file.
    pub fn diffusion_registry(&self) -> PathBuf {
        self.diffusion
            .registry
            .clone()
            .unwrap_or_else(|| self.models_dir().join("diffusion").join("registry.toml"))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AmqpSettings {
    pub url: Option<String>,
    pub url_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSettings {
    pub url: Option<String>,
    pub url_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Settings {
    pub bucket: Option<String>,
    pub prefix: String,
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key: Option<String>,
    pub access_key_file: Option<PathBuf>,
    pub secret_key: Option<String>,
    pub secret_key_file: Option<PathBuf>,
    pub path_style: bool,
    pub multipart_threshold_mb: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueSettings {
    pub prefix: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetrySettings {
    pub initial_ms: u64,
    pub max_ms: u64,
    pub max_attempts: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSettings {
    pub prefix: String,
    pub memory_mb: usize,
    pub embedding_ttl_s: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerSettings {
    pub http_addr: SocketAddr,
    pub tenant_queue_quota: u32,
}

/// `reverie serve`: the whole farm and the web app in one process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeSettings {
    /// Folders the web app may import from, separated like PATH (`:` on Unix).
    pub import_roots: String,
    pub max_upload_mb: u64,
    pub workers: usize,
    pub tenant: String,
}

impl Default for ServeSettings {
    fn default() -> ServeSettings {
        ServeSettings {
            import_roots: String::new(),
            max_upload_mb: 25,
            workers: 1,
            tenant: "me".to_string(),
        }
    }
}

impl ServeSettings {
    /// The import roots as paths.
    pub fn import_roots(&self) -> Vec<PathBuf> {
        std::env::split_paths(&self.import_roots)
            .filter(|p| !p.as_os_str().is_empty())
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerSettings {
    pub http_addr: SocketAddr,
    pub batch_max: usize,
    pub batch_wait_ms: u64,
    pub batches_in_flight: usize,
    pub started_after_ms: u64,
    pub max_attempts: u32,
    pub max_deliveries: u32,
    /// Republishes of a job while a dependency is away before it is dead-lettered (`retries_exhausted`).
    pub max_outage_retries: u32,
    pub drain_grace_s: u64,
    pub heartbeat_s: u64,
    pub shard_cache_mb: u64,
    pub preview_interval_ms: u64,
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

impl Default for S3Settings {
    fn default() -> S3Settings {
        S3Settings {
            bucket: None,
            prefix: String::new(),
            endpoint: None,
            region: "us-east-1".to_string(),
            access_key: None,
            access_key_file: None,
            secret_key: None,
            secret_key_file: None,
            path_style: true,
            multipart_threshold_mb: 16,
        }
    }
}

impl Default for QueueSettings {
    fn default() -> QueueSettings {
        QueueSettings {
            prefix: "reverie".to_string(),
        }
    }
}

impl Default for RetrySettings {
    fn default() -> RetrySettings {
        RetrySettings {
            initial_ms: 200,
            max_ms: 10_000,
            max_attempts: 0,
        }
    }
}

impl Default for CacheSettings {
    fn default() -> CacheSettings {
        CacheSettings {
            prefix: "reverie".to_string(),
            memory_mb: 256,
            embedding_ttl_s: 30 * 24 * 3600,
        }
    }
}

impl Default for SchedulerSettings {
    fn default() -> SchedulerSettings {
        SchedulerSettings {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tenant_queue_quota: 10_000,
        }
    }
}

impl Default for WorkerSettings {
    fn default() -> WorkerSettings {
        WorkerSettings {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 9464)),
            batch_max: 8,
            batch_wait_ms: 0,
            batches_in_flight: 2,
            started_after_ms: 250,
            max_attempts: 3,
            max_deliveries: 5,
            max_outage_retries: 360,
            drain_grace_s: 60,
            heartbeat_s: 5,
            shard_cache_mb: 2048,
            preview_interval_ms: 500,
        }
    }
}

/// One documented key. The table drives environment overrides, `--set`, and docs/configuration.md.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub name: &'static str,
    pub default: &'static str,
    pub doc: &'static str,
}

impl Key {
    pub fn env_var(&self) -> String {
        format!("REVERIE_{}", self.name.to_uppercase().replace('.', "_"))
    }
}

pub const KEYS: &[Key] = &[
    Key { name: "data_dir", default: ".reverie", doc: "Directory of the embedded adapters' state (queue journal, cache snapshot, local object store) and of downloaded models." },
    Key { name: "models_dir", default: "{data_dir}/models", doc: "Where workers load model files from (REVERIE_MODELS_DIR)." },
    Key { name: "log_format", default: "human", doc: "`human` for terminals, `json` for log collectors." },
    Key { name: "log_level", default: "info", doc: "A tracing filter: `info`, `debug`, `reverie_worker=debug,info`, ..." },
    Key { name: "amqp.url", default: "(none: in-process queue)", doc: "RabbitMQ URL, e.g. amqp://guest:guest@127.0.0.1:5672/%2f." },
    Key { name: "amqp.url_file", default: "(none)", doc: "File holding the RabbitMQ URL (a secret mount)." },
    Key { name: "redis.url", default: "(none: in-memory cache)", doc: "Redis URL, e.g. redis://127.0.0.1:6379." },
    Key { name: "redis.url_file", default: "(none)", doc: "File holding the Redis URL." },
    Key { name: "s3.bucket", default: "(none: local directory store)", doc: "Bucket of the object store; setting it selects the S3 adapter." },
    Key { name: "s3.prefix", default: "", doc: "Key prefix inside the bucket." },
    Key { name: "s3.endpoint", default: "(none: AWS)", doc: "Endpoint of an S3-compatible server, e.g. http://127.0.0.1:9000." },
    Key { name: "s3.region", default: "us-east-1", doc: "Signing region." },
    Key { name: "s3.access_key", default: "(none: AWS default chain)", doc: "Access key id." },
    Key { name: "s3.access_key_file", default: "(none)", doc: "File holding the access key id." },
    Key { name: "s3.secret_key", default: "(none: AWS default chain)", doc: "Secret access key." },
    Key { name: "s3.secret_key_file", default: "(none)", doc: "File holding the secret access key." },
    Key { name: "s3.path_style", default: "true", doc: "Path-style addressing (endpoint/bucket/key), needed by most S3-compatible servers." },
    Key { name: "s3.multipart_threshold_mb", default: "16", doc: "Files larger than this are uploaded in parts of this size." },
    Key { name: "queues.prefix", default: "reverie", doc: "Prefix of every queue name (reverie.jobs.generate, ...): lets several farms or test runs share a broker." },
    Key { name: "retry.initial_ms", default: "200", doc: "First wait before retrying an unreachable service; doubles each try." },
    Key { name: "retry.max_ms", default: "10000", doc: "Longest wait between retries." },
    Key { name: "retry.max_attempts", default: "0", doc: "Tries before giving up on an unreachable service at start-up; 0 retries forever." },
    Key { name: "cache.prefix", default: "reverie", doc: "Prefix of every cache key." },
    Key { name: "cache.memory_mb", default: "256", doc: "Size of the in-memory cache (embedded mode)." },
    Key { name: "cache.embedding_ttl_s", default: "2592000", doc: "Time to live of cached embeddings (30 days); the persisted analysis refills them." },
    Key { name: "scheduler.http_addr", default: "127.0.0.1:8080", doc: "Scheduler HTTP API, /metrics, /healthz and /readyz." },
    Key { name: "scheduler.tenant_queue_quota", default: "10000", doc: "Most jobs one tenant may have queued; more are rejected with a reason." },
    Key { name: "serve.import_roots", default: "", doc: "`reverie serve`: folders on the server the web app may import from, separated like PATH (`:`); `--photos DIR` adds one. Nothing outside them is read." },
    Key { name: "serve.max_upload_mb", default: "25", doc: "`reverie serve`: the largest photo the web app may upload." },
    Key { name: "serve.workers", default: "1", doc: "`reverie serve`: workers started in the process when the queue is the embedded one (with RabbitMQ configured, farm workers do the work and this is ignored unless `--workers` says otherwise)." },
    Key { name: "serve.tenant", default: "me", doc: "`reverie serve`: the tenant created on first start, whose token is printed." },
    Key { name: "worker.http_addr", default: "127.0.0.1:9464", doc: "Worker /metrics, /healthz and /readyz." },
    Key { name: "worker.batch_max", default: "8", doc: "Most compatible jobs rendered in one pass." },
    Key { name: "worker.batch_wait_ms", default: "0", doc: "Longest wait for a batch to fill before rendering what is there. 0 renders what is already delivered: under load the next batch fills while the previous one renders (continuous batching), and a lone job is not held back." },
    Key { name: "worker.batches_in_flight", default: "2", doc: "Batches a worker holds at once: one renders while the others fetch photos and write outputs. Renders never overlap (one render pass at a time per worker), so memory per worker stays that of one batch." },
    Key { name: "worker.started_after_ms", default: "250", doc: "A batch still rendering after this long reports `Started` for its jobs (a `running` reply to requesters); faster renders report only their result. 0 reports every start." },
    Key { name: "worker.max_attempts", default: "3", doc: "Attempts of a failing job before it is dead-lettered." },
    Key { name: "worker.max_deliveries", default: "5", doc: "Deliveries of one message (crashes included) before it is treated as poison." },
    Key { name: "worker.max_outage_retries", default: "360", doc: "Times a job is put back while the object store is away (backing off up to `retry.max_ms` each time, about an hour with the defaults) before it is dead-lettered as `retries_exhausted`. A store that refuses (access denied, missing bucket) fails the job at once." },
    Key { name: "worker.drain_grace_s", default: "60", doc: "On SIGTERM, time to finish held jobs before requeueing them." },
    Key { name: "worker.heartbeat_s", default: "5", doc: "Heartbeat period; a worker is considered gone after three missed beats." },
    Key { name: "diffusion.model", default: "(none: painterly only)", doc: "Diffusion model workers load: a name in the registry or a diffusers folder (SD 1.x/2.x/Turbo). Unset, diffusion jobs are planned as painterly." },
    Key { name: "diffusion.registry", default: "{models_dir}/diffusion/registry.toml", doc: "Model registry: name -> local folder or s3://bucket/prefix, with SHA-256 of every file (docs/diffusion.md)." },
    Key { name: "diffusion.device", default: "cpu", doc: "`cpu`, or `cuda` / `cuda:N` (binaries built with the cuda feature)." },
    Key { name: "diffusion.dtype", default: "f32", doc: "`f32`, `f16` or `bf16` for the UNet and VAE (f16/bf16 on GPUs)." },
    Key { name: "diffusion.steps", default: "20", doc: "Denoising steps of planned diffusion jobs when the request names none." },
    Key { name: "diffusion.size", default: "512", doc: "Side in pixels of planned images when the request names no size (a multiple of 8; 512 for SD 1.x, 768 for SD 2.x)." },
    Key { name: "worker.shard_cache_mb", default: "2048", doc: "Local disk cache of photo shards (LRU by bytes)." },
    Key { name: "worker.preview_interval_ms", default: "500", doc: "Shortest time between two live previews of one job (a small PNG of the latents in its progress events, for apps that show the picture forming). 0 sends none." },
];

/// Where a value came from, for error messages.
#[derive(Debug, Clone, Copy)]
enum Origin<'a> {
    Environment(&'a str),
    Flag,
}

impl Config {
    /// Defaults, then the TOML file if any, then the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut config = match file {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        config.apply_environment(|name| std::env::var(name).ok())?;
        Ok(config)
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::File {
            path: path.display().to_string(),
            detail: error.to_string(),
        })?;
        toml::from_str(&text).map_err(|error| ConfigError::File {
            path: path.display().to_string(),
            detail: error.to_string(),
        })
    }

    /// Applies `REVERIE_*` variables, read through `lookup` so tests need not touch the process environment.
    pub fn apply_environment(
        &mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        for key in KEYS {
            let var = key.env_var();
            if let Some(value) = lookup(&var) {
                self.set_key(key.name, &value, Origin::Environment(&var))?;
            }
        }
        Ok(())
    }

    /// Applies one `key=value` from the command line.
    pub fn set(&mut self, assignment: &str) -> Result<(), ConfigError> {
        let (key, value) = assignment.split_once('=').ok_or_else(|| {
            ConfigError::Invalid(format!("--set takes key=value, got {assignment:?}"))
        })?;
        self.set_key(key.trim(), value.trim(), Origin::Flag)
    }

    fn set_key(&mut self, key: &str, value: &str, origin: Origin<'_>) -> Result<(), ConfigError> {
        let source_name = match origin {
            Origin::Environment(var) => format!("environment variable {var}"),
            Origin::Flag => "--set".to_string(),
        };
        if !KEYS.iter().any(|k| k.name == key) {
            return Err(ConfigError::UnknownKey {
                key: key.to_string(),
                source_name,
            });
        }
        // Round-trip through TOML so each key is parsed by the same serde types as the file.
        let mut tree =
            toml::Table::try_from(&*self).map_err(|e| ConfigError::Invalid(e.to_string()))?;
        let mut table = &mut tree;
        let parts: Vec<&str> = key.split('.').collect();
        for part in &parts[..parts.len() - 1] {
            table = table
                .entry(part.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .ok_or_else(|| ConfigError::Invalid(format!("{key} is not a table")))?;
        }
        let leaf = parts[parts.len() - 1];
        table.insert(leaf.to_string(), guess_value(value));
        let updated: Result<Config, _> = toml::Value::Table(tree.clone()).try_into();
        let updated = match updated {
            Ok(config) => config,
            Err(_) => {
                // A string that looked like a number or boolean (a bucket called "123"): retry verbatim.
                table_at(&mut tree, &parts)?
                    .insert(leaf.to_string(), toml::Value::String(value.to_string()));
                toml::Value::Table(tree)
                    .try_into()
                    .map_err(|error: toml::de::Error| ConfigError::Value {
                        key: key.to_string(),
                        source_name,
                        detail: error.message().to_string(),
                    })?
            }
        };
        *self = updated;
        Ok(())
    }

    /// Checks combinations no single key can: secrets given twice, impossible values.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let pairs = [
            (
                "amqp.url",
                self.amqp.url.is_some(),
                self.amqp.url_file.is_some(),
            ),
            (
                "redis.url",
                self.redis.url.is_some(),
                self.redis.url_file.is_some(),
            ),
            (
                "s3.access_key",
                self.s3.access_key.is_some(),
                self.s3.access_key_file.is_some(),
            ),
            (
                "s3.secret_key",
                self.s3.secret_key.is_some(),
                self.s3.secret_key_file.is_some(),
            ),
        ];
        for (key, value, file) in pairs {
            if value && file {
                return Err(ConfigError::Invalid(format!(
                    "give {key} or {key}_file, not both"
                )));
            }
        }
        if self.worker.batch_max == 0 {
            return Err(ConfigError::Invalid(
                "worker.batch_max must be at least 1".into(),
            ));
        }
        if self.worker.max_attempts == 0 || self.worker.max_deliveries == 0 {
            return Err(ConfigError::Invalid(
                "worker.max_attempts and worker.max_deliveries must be at least 1".into(),
            ));
        }
        Ok(())
    }

    pub fn models_dir(&self) -> PathBuf {
        self.models_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("models"))
    }

    pub fn amqp_url(&self) -> Result<Option<String>, ConfigError> {
        secret("amqp.url_file", &self.amqp.url, &self.amqp.url_file)
    }

    pub fn redis_url(&self) -> Result<Option<String>, ConfigError> {
        secret("redis.url_file", &self.redis.url, &self.redis.url_file)
    }

    pub fn s3_access_key(&self) -> Result<Option<String>, ConfigError> {
        secret(
            "s3.access_key_file",
            &self.s3.access_key,
            &self.s3.access_key_file,
        )
    }

    pub fn s3_secret_key(&self) -> Result<Option<String>, ConfigError> {
        secret(
            "s3.secret_key_file",
            &self.s3.secret_key,
            &self.s3.secret_key_file,
        )
    }

    /// The configuration as TOML with secrets masked (`reverie config show`).
    pub fn to_redacted_toml(&self) -> String {
        let mut copy = self.clone();
        for value in [
            &mut copy.amqp.url,
            &mut copy.redis.url,
            &mut copy.s3.access_key,
            &mut copy.s3.secret_key,
        ] {
            if value.is_some() {
                *value = Some("***".to_string());
            }
        }
        toml::to_string_pretty(&copy).unwrap_or_default()
    }

    /// The key table as Markdown (docs/configuration.md).
    pub fn keys_markdown() -> String {
        let mut out =
            String::from("| key | environment variable | default | meaning |\n|---|---|---|---|\n");
        for key in KEYS {
            out.push_str(&format!(
                "| `{}` | `{}` | `{}` | {} |\n",
                key.name,
                key.env_var(),
                key.default,
                key.doc
            ));
        }
        out
    }
}

fn table_at<'a>(
    tree: &'a mut toml::Table,
    parts: &[&str],
) -> Result<&'a mut toml::Table, ConfigError> {
    let mut table = tree;
    for part in &parts[..parts.len() - 1] {
        table = table
            .get_mut(*part)
            .and_then(toml::Value::as_table_mut)
            .ok_or_else(|| ConfigError::Invalid(format!("{part} is not a table")))?;
    }
    Ok(table)
}

fn guess_value(text: &str) -> toml::Value {
    if let Ok(b) = text.parse::<bool>() {
        toml::Value::Boolean(b)
    } else if let Ok(n) = text.parse::<i64>() {
        toml::Value::Integer(n)
    } else if let Ok(f) = text.parse::<f64>() {
        toml::Value::Float(f)
    } else {
        toml::Value::String(text.to_string())
    }
}

fn secret(
    file_key: &str,
    value: &Option<String>,
    file: &Option<PathBuf>,
) -> Result<Option<String>, ConfigError> {
    match (value, file) {
        (Some(value), _) => Ok(Some(value.clone())),
        (None, Some(path)) => std::fs::read_to_string(path)
            .map(|text| Some(text.trim().to_string()))
            .map_err(|error| ConfigError::Value {
                key: file_key.to_string(),
                source_name: path.display().to_string(),
                detail: error.to_string(),
            }),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_settable_and_documented() {
        let defaults = toml::Table::try_from(Config::default()).unwrap();
        // Every leaf with a default value appears in the key table.
        fn leaves(prefix: &str, table: &toml::Table, out: &mut Vec<String>) {
            for (k, v) in table {
                let name = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match v {
                    toml::Value::Table(t) => leaves(&name, t, out),
                    _ => out.push(name),
                }
            }
        }
        let mut names = Vec::new();
        leaves("", &defaults, &mut names);
        for name in names {
            assert!(
                KEYS.iter().any(|k| k.name == name),
                "{name} is not documented in KEYS"
            );
        }
    }

    #[test]
    fn environment_overrides_defaults_and_is_typed() {
        let mut config = Config::default();
        let env = |name: &str| match name {
            "REVERIE_WORKER_BATCH_MAX" => Some("16".to_string()),
            "REVERIE_S3_BUCKET" => Some("123".to_string()),
            "REVERIE_LOG_FORMAT" => Some("json".to_string()),
            "REVERIE_AMQP_URL" => Some("amqp://127.0.0.1".to_string()),
            _ => None,
        };
        config.apply_environment(env).unwrap();
        assert_eq!(config.worker.batch_max, 16);
        assert_eq!(config.s3.bucket.as_deref(), Some("123"));
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.amqp.url.as_deref(), Some("amqp://127.0.0.1"));
    }

    #[test]
    fn bad_values_name_the_key_and_source() {
        let mut config = Config::default();
        let error = config
            .apply_environment(|name| {
                (name == "REVERIE_WORKER_BATCH_MAX").then(|| "many".to_string())
            })
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("worker.batch_max") && error.contains("REVERIE_WORKER_BATCH_MAX"),
            "{error}"
        );
        let error = config.set("worker.nonsense=1").unwrap_err().to_string();
        assert!(error.contains("worker.nonsense"), "{error}");
    }

    #[test]
    fn file_layer_rejects_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reverie.toml");
        std::fs::write(&path, "[worker]\nbatch_max = 4\n").unwrap();
        assert_eq!(Config::from_file(&path).unwrap().worker.batch_max, 4);
        std::fs::write(&path, "[worker]\nbatch_maxx = 4\n").unwrap();
        assert!(Config::from_file(&path)
            .unwrap_err()
            .to_string()
            .contains("batch_maxx"));
    }

    #[test]
    fn secrets_come_from_value_or_file_not_both() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("url");
        std::fs::write(&path, "redis://secret-host:6379\n").unwrap();
        let mut config = Config::default();
        config.redis.url_file = Some(path);
        assert_eq!(
            config.redis_url().unwrap().as_deref(),
            Some("redis://secret-host:6379")
        );
        config.redis.url = Some("redis://other".into());
        assert!(config.validate().is_err());
        assert!(!config.to_redacted_toml().contains("redis://other"));
    }
}
