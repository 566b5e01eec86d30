//! The sections of the configuration, each with its defaults (the values `KEYS` documents).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Coloured, one line per event: for people at a terminal.
    #[default]
    Human,
    /// One JSON object per line: for log collectors.
    Json,
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
    /// The IP-Adapter workers attach to the model: a registered adapter's name or a .safetensors
    /// file (its `image_encoder/` beside it); the planner then passes jobs' subject photos as image
    /// prompts. `None`: no image prompts.
    pub ip_adapter: Option<String>,
    /// The image prompt scale of planned jobs with subjects (0 to 5).
    pub ip_scale: f32,
    /// How many models with a LoRA set fused in a worker keeps loaded beside the base model.
    pub lora_models: u32,
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
            ip_adapter: None,
            ip_scale: 0.6,
            lora_models: 2,
        }
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
    pub shards: u16,
    pub advertise_url: String,
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
            shards: 1,
            advertise_url: String::new(),
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
