//! Latency histograms and the printed table.

use hdrhistogram::Histogram;

/// Microsecond latencies from 1 µs to 10 minutes, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("static histogram bounds are valid")
}

pub fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

#[derive(Debug)]
pub struct Report {
    /// Publishes the broker did not confirm (the farm never had them; no reply is owed).
    pub publish_failed: u64,
    pub sent: u64,
    pub done: u64,
    pub failed: u64,
    pub rejected: u64,
    pub seconds: f64,
    pub end_to_end: Histogram<u64>,
    pub baselines: Baselines,
    pub message_bytes: usize,
    /// Service calls during the load (in-process farm and load generator together).
    pub hops: Vec<crate::hops::Hop>,
    /// CPU per finished job of each process the run depends on.
    pub cpu: Vec<crate::cpu::CpuShare>,
}

/// The same run's measurements of the services alone and of the render alone.
#[derive(Debug)]
pub struct Baselines {
    pub broker_messages_per_second: f64,
    pub store_writes_per_second: f64,
    /// Writes in flight while measuring `store_writes_per_second`.
    pub store_concurrency: usize,
    /// Size of one job's PNG, the size the raw store baseline writes.
    pub output_bytes: usize,
    pub render: Histogram<u64>,
}

impl Default for Baselines {
    fn default() -> Baselines {
        Baselines {
            broker_messages_per_second: 0.0,
            store_writes_per_second: 0.0,
            store_concurrency: 0,
            output_bytes: 0,
            render: histogram(),
        }
    }
}

/// Store operations that write (each costs the S3 server about what a raw-store write costs).
const STORE_WRITES: [&str; 4] = ["put", "put_if_absent", "put_file", "delete"];

impl Baselines {
    /// Jobs per second the broker and the store alone would allow for the calls each job made, if the
    /// farm itself cost nothing: each publish (with its ack) costs one raw-broker message, each store
    /// write one raw-store write, and they share the machine, so the costs add.
    pub fn ceiling(&self, hops: &[crate::hops::Hop], jobs: u64) -> Option<f64> {
        if jobs == 0
            || self.broker_messages_per_second <= 0.0
            || self.store_writes_per_second <= 0.0
        {
            return None;
        }
        let per_job = |service: &str, ops: &[&str]| {
            hops.iter()
                .filter(|h| h.service == service && ops.contains(&h.op.as_str()))
                .map(|h| h.calls)
                .sum::<u64>() as f64
                / jobs as f64
        };
        let seconds_per_job = per_job("queue", &["publish"]) / self.broker_messages_per_second
            + per_job("store", &STORE_WRITES) / self.store_writes_per_second;
        (seconds_per_job > 0.0).then(|| 1.0 / seconds_per_job)
    }
}

impl Report {
    pub fn throughput(&self) -> f64 {
        self.done as f64 / self.seconds.max(1e-9)
    }

    /// The farm's own CPU per job: the farm process's CPU per job less the render alone (p50), i.e. what
    /// scheduling, messaging, storing and bookkeeping cost around the cheapest render. Includes the load
    /// generator's own share (it shares the process).
    pub fn own_cpu_ms_per_job(&self) -> Option<f64> {
        let farm = self
            .cpu
            .iter()
            .find(|share| share.label == crate::cpu::FARM_PROCESS)?;
        if self.baselines.render.is_empty() {
            return None;
        }
        let render_ms = ms(self.baselines.render.value_at_quantile(0.5));
        Some(farm.ms_per_job - render_ms)
    }

    /// The run as JSON (`--report-json`): what the peer comparison and the scale model read. Latencies in
    /// milliseconds; calls and CPU per finished job.
    pub fn to_json(&self, args: &crate::Args) -> serde_json::Value {
        let quantiles = |histogram: &Histogram<u64>| {
            serde_json::json!({
                "p50": ms(histogram.value_at_quantile(0.50)),
                "p95": ms(histogram.value_at_quantile(0.95)),
                "p99": ms(histogram.value_at_quantile(0.99)),
                "max": ms(histogram.max()),
            })
        };
        let jobs = self.done.max(1) as f64;
        let calls: Vec<serde_json::Value> = self
            .hops
            .iter()
            .map(|hop| {
                serde_json::json!({
                    "service": hop.service,
                    "backend": hop.backend,
                    "op": hop.op,
                    "calls_per_job": hop.calls as f64 / jobs,
                    "mean_ms": hop.seconds * 1000.0 / hop.calls.max(1) as f64,
                })
            })
            .collect();
        let cpu: serde_json::Map<String, serde_json::Value> = self
            .cpu
            .iter()
            .map(|share| (share.label.clone(), serde_json::json!(share.ms_per_job)))
            .collect();
        let base = &self.baselines;
        serde_json::json!({
            "system": "reverie",
            "workers": args.workers,
            "batch_max": args.batch_max,
            "size": args.size,
            "style": args.style,
            "sent": self.sent,
            "done": self.done,
            "failed": self.failed,
            "rejected": self.rejected,
            "publish_failed": self.publish_failed,
            "seconds": self.seconds,
            "jobs_per_second": self.throughput(),
            "latency_ms": quantiles(&self.end_to_end),
            "render_ms": quantiles(&base.render),
            "baselines": {
                "broker_messages_per_second": base.broker_messages_per_second,
                "broker_message_bytes": self.message_bytes,
                "store_writes_per_second": base.store_writes_per_second,
                "store_object_bytes": base.output_bytes,
                "ceiling_jobs_per_second": base.ceiling(&self.hops, self.done),
            },
            "calls": calls,
            "cpu_ms_per_job": cpu,
            "own_cpu_ms_per_job": self.own_cpu_ms_per_job(),
        })
    }

    pub fn print(&self, args: &crate::Args) {
        let throughput = self.throughput();
        println!(
            "Reverie load test: {} requests, {} workers, batch_max {}, {}x{} {}",
            self.sent, args.workers, args.batch_max, args.size, args.size, args.style
        );
        println!();
        println!("| measure | value |");
        println!("|---|---|");
        println!(
            "| requests done / failed / rejected | {} / {} / {} |",
            self.done, self.failed, self.rejected
        );
        println!(
            "| publishes not confirmed (not taken) | {} |",
            self.publish_failed
        );
        println!("| farm throughput (jobs/s) | {throughput:.1} |");
        let base = &self.baselines;
        println!(
            "| raw broker throughput, {} B messages, confirmed publish + ack (msg/s) | {:.1} |",
            self.message_bytes, base.broker_messages_per_second
        );
        println!(
            "| farm / raw broker | {:.3} |",
            throughput / base.broker_messages_per_second.max(1e-9)
        );
        println!(
            "| raw store writes, {} B objects, {} in flight (writes/s) | {:.1} |",
            base.output_bytes, base.store_concurrency, base.store_writes_per_second
        );
        if let Some(ceiling) = base.ceiling(&self.hops, self.done) {
            println!(
                "| ceiling of broker + store alone for this job's calls (jobs/s) | {ceiling:.1} |"
            );
            println!("| farm / that ceiling | {:.3} |", throughput / ceiling);
        }
        for (name, q) in [("p50", 0.50), ("p95", 0.95), ("p99", 0.99)] {
            let e2e = self.end_to_end.value_at_quantile(q);
            let render = base.render.value_at_quantile(q);
            println!(
                "| end-to-end {name} (ms) | {:.2} (render alone {:.2}, farm overhead {:.2}) |",
                ms(e2e),
                ms(render),
                ms(e2e.saturating_sub(render))
            );
        }
        println!("| end-to-end max (ms) | {:.2} |", ms(self.end_to_end.max()));
        println!();
        crate::hops::print(&self.hops, self.done);
        if !self.cpu.is_empty() {
            println!("| process | CPU ms per job |");
            println!("|---|---|");
            for share in &self.cpu {
                println!("| {} | {:.2} |", share.label, share.ms_per_job);
            }
            if let Some(own) = self.own_cpu_ms_per_job() {
                println!(
                    "| the farm's own cost (farm process less the render alone, p50) | {own:.2} |"
                );
            }
            println!();
        }
        println!("failed: {}", self.failed);
        let unanswered = self
            .sent
            .saturating_sub(self.done + self.failed + self.rejected + self.publish_failed);
        println!(
            "{} passed, {} failed",
            self.done,
            self.failed + self.rejected + unanswered
        );
    }
}
