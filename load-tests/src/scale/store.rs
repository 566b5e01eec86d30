//! The object store on AWS S3 at a target rate: requests per second by kind, the partitioned prefixes
//! S3's per-prefix limits call for, and what the requests cost a month at list prices.
//!
//! Every key a tenant owns starts `tenants/{tenant}/`, and results and records go on with a request id
//! (a random UUID unless the requester names one), so S3 can split the load by tenant and then within a
//! tenant by request id: the prefixes needed are reached by many tenants each under its own limit, or
//! by S3 splitting a busy tenant further (it does so by itself under sustained load, answering
//! 503 SlowDown meanwhile).

use super::assumptions::Assumptions;
use super::capacity::Costs;

/// AWS bills by the month of 730 hours.
const SECONDS_PER_MONTH: f64 = 730.0 * 3600.0;

#[derive(Debug, Clone, PartialEq)]
pub struct Kind {
    pub name: &'static str,
    pub per_job: f64,
    pub per_second: f64,
    pub prefixes: u64,
    pub usd_per_month: f64,
}

/// PUT, DELETE, GET/HEAD and LIST at `rate` jobs/s. PUT and DELETE share the write limit, so DELETE's
/// prefixes are counted with PUT's (the PUT row carries both).
pub fn kinds(costs: &Costs, assumptions: &Assumptions, rate: f64) -> Vec<Kind> {
    let u = assumptions.utilisation;
    let prefixes = |per_job: f64, limit: f64| (rate * per_job / (limit * u)).ceil() as u64;
    let usd = |per_job: f64, per_1000: f64| rate * per_job * SECONDS_PER_MONTH / 1000.0 * per_1000;
    let writes = costs.store_puts + costs.store_deletes;
    vec![
        Kind {
            name: "PUT (records, open log, outputs, provenance)",
            per_job: costs.store_puts,
            per_second: rate * costs.store_puts,
            prefixes: prefixes(writes, assumptions.s3_writes_per_prefix),
            usd_per_month: usd(costs.store_puts, assumptions.s3_put_usd_per_1000),
        },
        Kind {
            name: "DELETE (open-log segments; free, counted with PUT's limit)",
            per_job: costs.store_deletes,
            per_second: rate * costs.store_deletes,
            prefixes: 0,
            usd_per_month: 0.0,
        },
        Kind {
            name: "GET/HEAD (library, shards, records)",
            per_job: costs.store_reads,
            per_second: rate * costs.store_reads,
            prefixes: prefixes(costs.store_reads, assumptions.s3_reads_per_prefix),
            usd_per_month: usd(costs.store_reads, assumptions.s3_get_usd_per_1000),
        },
        Kind {
            name: "LIST (priced as PUT)",
            per_job: costs.store_lists,
            per_second: rate * costs.store_lists,
            prefixes: prefixes(costs.store_lists, assumptions.s3_reads_per_prefix),
            usd_per_month: usd(costs.store_lists, assumptions.s3_put_usd_per_1000),
        },
    ]
}

/// What one job's S3 requests cost at list prices.
pub fn usd_per_job(costs: &Costs, assumptions: &Assumptions) -> f64 {
    ((costs.store_puts + costs.store_lists) * assumptions.s3_put_usd_per_1000
        + costs.store_reads * assumptions.s3_get_usd_per_1000)
        / 1000.0
}

/// Prefixes the busiest kind needs: the store's answer for the rate.
pub fn prefixes_needed(kinds: &[Kind]) -> u64 {
    kinds.iter().map(|kind| kind.prefixes).max().unwrap_or(0)
}

pub fn usd_per_month(kinds: &[Kind]) -> f64 {
    kinds.iter().map(|kind| kind.usd_per_month).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scale::measured::tests::sample_measured;

    #[test]
    fn prefixes_and_price_follow_the_calls() {
        let assumptions = Assumptions::default();
        let costs = Costs::new(&sample_measured(), &assumptions);
        let kinds = kinds(&costs, &assumptions, 10_000.0);
        // 4 puts a job: 40,000 PUT/s against 3,500 x 0.6 = 2,100 per prefix: 20 prefixes.
        assert_eq!(kinds[0].per_second, 40_000.0);
        assert_eq!(kinds[0].prefixes, 20);
        assert_eq!(prefixes_needed(&kinds), 20);
        // 40,000 PUT/s for 2,628,000 s at $0.005 per 1,000: $525,600 a month.
        assert!((kinds[0].usd_per_month - 525_600.0).abs() < 1e-6);
        // 10,000 GET/s at $0.0004 per 1,000: $10,512.
        assert!((kinds[2].usd_per_month - 10_512.0).abs() < 1e-6);
        assert!((usd_per_month(&kinds) - 536_112.0).abs() < 1e-6);
        // Per job: 4 PUT x $0.000005 + 1 GET x $0.0000004.
        assert!((usd_per_job(&costs, &assumptions) - 0.0000204).abs() < 1e-12);
    }
}
