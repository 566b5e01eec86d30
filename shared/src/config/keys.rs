//! The documented key table: every key's name, default and meaning. It drives environment overrides,
//! `--set`, `reverie config keys` and docs/configuration.md.

use super::Config;

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
    Key { name: "scheduler.shards", default: "1", doc: "Tenant shares of the farm (1 to 1024). 1: one active scheduler, others wait as standbys. More: every scheduler is active and owns some shares; set the same value on every scheduler and drain the farm before changing it (docs/architecture.md, \"Schedulers that share the farm\")." },
    Key { name: "scheduler.advertise_url", default: "", doc: "Base URL other schedulers use to forward HTTP requests to this one when it owns the tenant (shards > 1). Empty: http://{scheduler.http_addr}." },
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
    Key { name: "diffusion.ip_adapter", default: "(none: no image prompts)", doc: "The IP-Adapter made for diffusion.model: an adapter's name in the registry (kind = \"ip-adapter\", its base listing the model), or a .safetensors file with its CLIP vision tower in image_encoder/ beside it. Set on the scheduler and the workers: jobs that place people or pets then use their photos as image prompts, whose embeddings are cached per (adapter, photo) for cache.embedding_ttl_s." },
    Key { name: "diffusion.ip_scale", default: "0.6", doc: "Image prompt scale (0 to 5) of planned jobs with subjects, when diffusion.ip_adapter is set." },
    Key { name: "diffusion.lora_models", default: "2", doc: "Models with a tenant's LoRA set fused in that a worker keeps loaded beside the base model (each costs the model's memory again)." },
    Key { name: "worker.shard_cache_mb", default: "2048", doc: "Local disk cache of photo shards (LRU by bytes)." },
    Key { name: "worker.preview_interval_ms", default: "500", doc: "Shortest time between two live previews of one job (a small PNG of the latents in its progress events, for apps that show the picture forming). 0 sends none." },
];

impl Config {
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
}
