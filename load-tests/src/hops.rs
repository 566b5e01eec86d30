//! Per-hop accounting of a load run: how many calls each job cost on the queue, the cache and the
//! object store, and how long each kind of call took, read from the farm's own metrics (the in-process
//! scheduler, workers and load generator share one registry) as the difference of two snapshots.

use std::collections::BTreeMap;

use reverie_shared::metrics;

const FAMILIES: [(&str, &str); 3] = [
    ("reverie_queue_operation_seconds", "queue"),
    ("reverie_cache_operation_seconds", "cache"),
    ("reverie_store_operation_seconds", "store"),
];

/// `(service, backend, op)` -> (calls, seconds) at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot(BTreeMap<(String, String, String), (u64, f64)>);

impl Snapshot {
    pub fn take() -> Snapshot {
        let mut calls = BTreeMap::new();
        for family in metrics::global().registry.gather() {
            let Some((_, service)) = FAMILIES.iter().find(|(name, _)| *name == family.name())
            else {
                continue;
            };
            for metric in family.get_metric() {
                let label = |wanted: &str| {
                    metric
                        .get_label()
                        .iter()
                        .find(|pair| pair.name() == wanted)
                        .map(|pair| pair.value().to_string())
                        .unwrap_or_default()
                };
                let histogram = metric.get_histogram();
                calls.insert(
                    (service.to_string(), label("backend"), label("op")),
                    (histogram.get_sample_count(), histogram.get_sample_sum()),
                );
            }
        }
        Snapshot(calls)
    }

    /// Calls made and time spent since `before`, per kind of call.
    pub fn since(&self, before: &Snapshot) -> Vec<Hop> {
        self.0
            .iter()
            .filter_map(|(key, (calls, seconds))| {
                let (calls0, seconds0) = before.0.get(key).copied().unwrap_or_default();
                let calls = calls.saturating_sub(calls0);
                (calls > 0).then(|| Hop {
                    service: key.0.clone(),
                    backend: key.1.clone(),
                    op: key.2.clone(),
                    calls,
                    seconds: (seconds - seconds0).max(0.0),
                })
            })
            .collect()
    }
}

/// One kind of service call during the run.
#[derive(Debug, Clone)]
pub struct Hop {
    pub service: String,
    pub backend: String,
    pub op: String,
    pub calls: u64,
    pub seconds: f64,
}

/// Prints calls per finished job and mean latency per call, the table that shows where a job's time
/// and the services' work go.
pub fn print(hops: &[Hop], jobs: u64) {
    if hops.is_empty() || jobs == 0 {
        return;
    }
    println!("| service call | calls per job | mean latency (ms) |");
    println!("|---|---|---|");
    for hop in hops {
        println!(
            "| {} {} {} | {:.2} | {:.2} |",
            hop.service,
            hop.backend,
            hop.op,
            hop.calls as f64 / jobs as f64,
            hop.seconds * 1000.0 / hop.calls as f64
        );
    }
    println!();
}
