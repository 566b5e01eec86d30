//! Every Prometheus metric Reverie exposes, defined once and registered at start-up.
//!
//! Names follow Prometheus conventions (`_total` counters, `_seconds` histograms, base units) and labels
//! stay low-cardinality: backends, operations, kinds and outcomes — never tenant, job or photo ids.
//! docs/metrics.md is the catalogue of these names; keep the two in step.

use std::sync::LazyLock;
use std::time::Instant;

use prometheus::{
    exponential_buckets, Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Latency buckets from 0.5 ms to ~33 s: queue and cache calls sit at the low end, renders at the top.
fn latency_buckets() -> Vec<f64> {
    exponential_buckets(0.0005, 2.0, 17).expect("static bucket layout is valid")
}

pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub jobs: IntCounterVec,
    pub jobs_published: IntCounterVec,
    pub queue_depth: IntGaugeVec,
    pub queue_oldest_age: GaugeVec,
    pub job_duration: HistogramVec,
    pub job_queue_wait: HistogramVec,
    pub batch_size: HistogramVec,
    pub commit_size: HistogramVec,
    pub images_generated: IntCounterVec,
    pub diffusion_step: HistogramVec,
    pub identity_distance: HistogramVec,
    pub faces_analysed: IntCounter,
    /// Cats and dogs found by library analysis.
    pub pets_detected: IntCounter,
    pub cache_requests: IntCounterVec,
    pub cache_seconds: HistogramVec,
    pub queue_operations: IntCounterVec,
    pub queue_seconds: HistogramVec,
    pub store_operations: IntCounterVec,
    pub store_seconds: HistogramVec,
    pub store_bytes: IntCounterVec,
    pub job_retries: IntCounterVec,
    pub dead_letters: IntCounterVec,
    pub replies_undelivered: IntCounterVec,
    pub scheduler_forwarded: IntCounterVec,
    pub scheduler_shards_held: IntGauge,
    pub scheduler_shard_moves: IntCounterVec,
    pub workers_alive: IntGauge,
    pub worker_busy_seconds: prometheus::Counter,
    pub worker_slots: IntGauge,
    pub worker_jobs_held: IntGauge,
    pub worker_info: IntGaugeVec,
    pub gpu_memory_used: IntGaugeVec,
    pub gpu_utilization: GaugeVec,
    pub batch_run_photos: IntCounterVec,
    pub batch_runs_active: IntGauge,
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter");
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric name");
    metric
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Vec<f64>,
) -> HistogramVec {
    let metric = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .expect("valid histogram");
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric name");
    metric
}

fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let metric = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid gauge");
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric name");
    metric
}

fn float_gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let metric = GaugeVec::new(Opts::new(name, help), labels).expect("valid gauge");
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric name");
    metric
}

impl Metrics {
    fn new() -> Metrics {
        let r = Registry::new();
        let faces_analysed = IntCounter::new(
            "reverie_faces_analysed_total",
            "Faces detected and described.",
        )
        .expect("valid counter");
        r.register(Box::new(faces_analysed.clone()))
            .expect("unique metric name");
        let pets_detected = IntCounter::new(
            "reverie_pets_detected_total",
            "Cats and dogs found by library analysis.",
        )
        .expect("valid counter");
        r.register(Box::new(pets_detected.clone()))
            .expect("unique metric name");
        let workers_alive = IntGauge::new(
            "reverie_workers_alive",
            "Workers whose heartbeat the scheduler saw within its TTL.",
        )
        .expect("valid gauge");
        r.register(Box::new(workers_alive.clone()))
            .expect("unique metric name");
        let worker_busy_seconds = prometheus::Counter::new(
            "reverie_worker_busy_seconds_total",
            "Seconds this worker spent rendering or analysing, summed over its slots.",
        )
        .expect("valid counter");
        r.register(Box::new(worker_busy_seconds.clone()))
            .expect("unique metric name");
        let worker_slots =
            IntGauge::new("reverie_worker_slots", "Jobs this worker can hold at once.")
                .expect("valid gauge");
        r.register(Box::new(worker_slots.clone()))
            .expect("unique metric name");
        let worker_jobs_held = IntGauge::new(
            "reverie_worker_jobs_held",
            "Jobs delivered to this worker and not yet settled (acked, requeued or dead-lettered).",
        )
        .expect("valid gauge");
        r.register(Box::new(worker_jobs_held.clone()))
            .expect("unique metric name");
        let batch_runs_active = IntGauge::new(
            "reverie_batch_runs_active",
            "Album-to-art runs in progress.",
        )
        .expect("valid gauge");
        r.register(Box::new(batch_runs_active.clone()))
            .expect("unique metric name");
        let sizes = vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];
        Metrics {
            requests: counter(
                &r,
                "reverie_requests_total",
                "Requests received.",
                &["ingress", "outcome"],
            ),
            jobs: counter(
                &r,
                "reverie_jobs_total",
                "Jobs finished, by outcome.",
                &["kind", "outcome"],
            ),
            jobs_published: counter(
                &r,
                "reverie_jobs_published_total",
                "Jobs published.",
                &["kind", "priority"],
            ),
            queue_depth: gauge(
                &r,
                "reverie_queue_depth",
                "Messages ready in a queue.",
                &["queue"],
            ),
            queue_oldest_age: float_gauge(
                &r,
                "reverie_queue_oldest_age_seconds",
                "Age of the oldest queued job.",
                &["queue"],
            ),
            job_duration: histogram(
                &r,
                "reverie_job_duration_seconds",
                "Time a worker spent on a job.",
                &["kind"],
                latency_buckets(),
            ),
            job_queue_wait: histogram(
                &r,
                "reverie_job_queue_wait_seconds",
                "Time from publish to start.",
                &["kind"],
                latency_buckets(),
            ),
            batch_size: histogram(
                &r,
                "reverie_batch_size",
                "Jobs rendered in one pass.",
                &["renderer"],
                sizes,
            ),
            commit_size: histogram(
                &r,
                "reverie_scheduler_commit_size",
                "Entries written together by one group commit of the scheduler's logs.",
                &["log"],
                vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0],
            ),
            images_generated: counter(
                &r,
                "reverie_images_generated_total",
                "Images written.",
                &["renderer"],
            ),
            diffusion_step: histogram(
                &r,
                "reverie_diffusion_step_seconds",
                "Time of one denoising step of a batch.",
                &[],
                latency_buckets(),
            ),
            identity_distance: histogram(
                &r,
                "reverie_identity_distance",
                "Descriptor distance of each checked person's face in a kept output to their reference \
                 (below 0.6 is verified).",
                &["renderer"],
                vec![0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0, 1.2],
            ),
            faces_analysed,
            pets_detected,
            cache_requests: counter(
                &r,
                "reverie_cache_requests_total",
                "Cache calls.",
                &["backend", "op", "result"],
            ),
            cache_seconds: histogram(
                &r,
                "reverie_cache_operation_seconds",
                "Cache call latency.",
                &["backend", "op"],
                latency_buckets(),
            ),
            queue_operations: counter(
                &r,
                "reverie_queue_operations_total",
                "Queue calls.",
                &["backend", "op", "outcome"],
            ),
            queue_seconds: histogram(
                &r,
                "reverie_queue_operation_seconds",
                "Queue call latency.",
                &["backend", "op"],
                latency_buckets(),
            ),
            store_operations: counter(
                &r,
                "reverie_store_operations_total",
                "Object-store calls.",
                &["backend", "op", "outcome"],
            ),
            store_seconds: histogram(
                &r,
                "reverie_store_operation_seconds",
                "Object-store call latency.",
                &["backend", "op"],
                latency_buckets(),
            ),
            store_bytes: counter(
                &r,
                "reverie_store_bytes_total",
                "Bytes moved.",
                &["backend", "op"],
            ),
            job_retries: counter(
                &r,
                "reverie_job_retries_total",
                "Job attempts retried.",
                &["kind"],
            ),
            dead_letters: counter(
                &r,
                "reverie_dead_letters_total",
                "Messages dead-lettered.",
                &["queue", "reason"],
            ),
            replies_undelivered: counter(
                &r,
                "reverie_replies_undelivered_total",
                "AMQP replies not delivered: reply_to refused (malformed, farm_queue, other_tenant, foreign) or the publish failed (no_such_queue, not_confirmed, unreachable, backlog).",
                &["reason"],
            ),
            scheduler_forwarded: counter(
                &r,
                "reverie_scheduler_forwarded_total",
                "Requests and events a scheduler passed on to the owner of their tenant's shard: ingress = http (proxied), amqp (to the shard's requests queue), events (to the shard's events queue); outcome = ok | failed.",
                &["ingress", "outcome"],
            ),
            scheduler_shards_held: {
                let gauge = IntGauge::new(
                    "reverie_scheduler_shards_held",
                    "Tenant shards this scheduler holds (scheduler.shards > 1).",
                )
                .expect("valid metric");
                r.register(Box::new(gauge.clone())).expect("metric registered once");
                gauge
            },
            scheduler_shard_moves: counter(
                &r,
                "reverie_scheduler_shard_moves_total",
                "Shards this scheduler took or gave: change = taken | released | lost (its claim went with its broker connection).",
                &["change"],
            ),
            workers_alive,
            worker_busy_seconds,
            worker_slots,
            worker_jobs_held,
            worker_info: gauge(
                &r,
                "reverie_worker_info",
                "A running worker.",
                &["worker", "version"],
            ),
            gpu_memory_used: gauge(
                &r,
                "reverie_gpu_memory_used_bytes",
                "GPU memory in use.",
                &["gpu"],
            ),
            gpu_utilization: float_gauge(
                &r,
                "reverie_gpu_utilization_ratio",
                "GPU busy fraction.",
                &["gpu"],
            ),
            batch_run_photos: counter(
                &r,
                "reverie_batch_run_photos_total",
                "Album-to-art photos by outcome.",
                &["outcome"],
            ),
            batch_runs_active,
            registry: r,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        let mut families = self.registry.gather();
        families.extend(prometheus::gather());
        if TextEncoder::new().encode(&families, &mut buffer).is_err() {
            return String::new();
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    &METRICS
}

/// Times one port call and counts it with its outcome when finished.
pub struct CallTimer {
    started: Instant,
}

impl CallTimer {
    pub fn start() -> CallTimer {
        CallTimer {
            started: Instant::now(),
        }
    }

    pub fn elapsed_seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}
