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
    pub render: Histogram<u64>,
    pub broker_messages_per_second: f64,
    pub message_bytes: usize,
    /// Service calls during the load (in-process farm and load generator together).
    pub hops: Vec<crate::hops::Hop>,
}

impl Report {
    pub fn print(&self, args: &crate::Args) {
        let throughput = self.done as f64 / self.seconds.max(1e-9);
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
        println!(
            "| raw broker throughput, {} B messages, confirmed publish + ack (msg/s) | {:.1} |",
            self.message_bytes, self.broker_messages_per_second
        );
        println!(
            "| farm / raw broker | {:.3} |",
            throughput / self.broker_messages_per_second.max(1e-9)
        );
        for (name, q) in [("p50", 0.50), ("p95", 0.95), ("p99", 0.99)] {
            let e2e = self.end_to_end.value_at_quantile(q);
            let render = self.render.value_at_quantile(q);
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
