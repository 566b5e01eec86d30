//! A small discrete-event simulation of the pipeline: pools of identical servers (cores), each job
//! visiting them along a route (scheduler intake, broker, worker, store, broker, scheduler settle),
//! Poisson arrivals and exponential service times with the measured means, FIFO at every pool. It is
//! deterministic (seeded; its own generator, no dependency), and answers what the capacity arithmetic
//! cannot: how latency grows as the load nears a pool's capacity, and which pool saturates first.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// A pool is saturated once the simulation keeps it this busy.
pub const SATURATED: f64 = 0.95;
/// The first jobs of a run fill the empty pipeline; their latencies are left out.
const WARM_UP_FRACTION: f64 = 0.1;

/// splitmix64 to seed, xorshift64* to draw: small, fast and good enough for arrival and service times.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn exponential(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.uniform()).ln()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    pub name: &'static str,
    pub servers: usize,
}

/// One visit of a job: which pool, and the mean service time there (seconds).
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub pool: usize,
    pub mean_s: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    pub pools: Vec<Pool>,
    pub route: Vec<Step>,
}

impl Network {
    /// Jobs/s at which the busiest pool is fully used: its servers over the work a job brings it.
    pub fn capacity(&self) -> f64 {
        (0..self.pools.len())
            .map(|pool| self.pools[pool].servers as f64 / self.work_per_job(pool))
            .fold(f64::INFINITY, f64::min)
    }

    fn work_per_job(&self, pool: usize) -> f64 {
        self.route
            .iter()
            .filter(|step| step.pool == pool)
            .map(|step| step.mean_s)
            .sum()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub offered: f64,
    /// Busy fraction of each pool over the run, in the order of `Network::pools`.
    pub utilisation: Vec<f64>,
    pub mean_s: f64,
    pub p50_s: f64,
    pub p99_s: f64,
}

/// Event times in seconds, ordered; `seq` keeps simultaneous events in the order they were made.
#[derive(PartialEq)]
struct At(f64, u64);
impl Eq for At {}
impl PartialOrd for At {
    fn partial_cmp(&self, other: &At) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for At {
    fn cmp(&self, other: &At) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0).then(self.1.cmp(&other.1))
    }
}

/// A scheduled event: an arrival (`None`) or the end of a job's service at a step.
type Served = Option<(usize, usize)>;

struct Run<'a> {
    network: &'a Network,
    rng: Rng,
    events: BinaryHeap<Reverse<(At, Served)>>,
    seq: u64,
    busy: Vec<usize>,
    waiting: Vec<VecDeque<(usize, usize)>>,
    busy_s: Vec<f64>,
    arrived_at: Vec<f64>,
    latencies: Vec<f64>,
}

impl Run<'_> {
    fn schedule(&mut self, at: f64, event: Served) {
        self.seq += 1;
        self.events.push(Reverse((At(at, self.seq), event)));
    }

    /// `job` reaches `step` at `now`: served at once if a server is free, else queued.
    fn enter(&mut self, now: f64, job: usize, step: usize) {
        let Some(visit) = self.network.route.get(step) else {
            self.latencies.push(now - self.arrived_at[job]);
            return;
        };
        let pool = visit.pool;
        if self.busy[pool] < self.network.pools[pool].servers {
            self.start(now, job, step);
        } else {
            self.waiting[pool].push_back((job, step));
        }
    }

    fn start(&mut self, now: f64, job: usize, step: usize) {
        let visit = &self.network.route[step];
        let service = self.rng.exponential(visit.mean_s);
        self.busy[visit.pool] += 1;
        self.busy_s[visit.pool] += service;
        self.schedule(now + service, Some((job, step)));
    }

    fn served(&mut self, now: f64, job: usize, step: usize) {
        let pool = self.network.route[step].pool;
        self.busy[pool] -= 1;
        if let Some((next_job, next_step)) = self.waiting[pool].pop_front() {
            self.start(now, next_job, next_step);
        }
        self.enter(now, job, step + 1);
    }
}

/// `jobs` Poisson arrivals at `rate` jobs/s through `network`.
pub fn simulate(network: &Network, rate: f64, jobs: usize, seed: u64) -> Outcome {
    let pools = network.pools.len();
    let mut run = Run {
        network,
        rng: Rng::new(seed),
        events: BinaryHeap::new(),
        seq: 0,
        busy: vec![0; pools],
        waiting: vec![VecDeque::new(); pools],
        busy_s: vec![0.0; pools],
        arrived_at: Vec::with_capacity(jobs),
        latencies: Vec::with_capacity(jobs),
    };
    run.schedule(0.0, None);
    let mut now = 0.0;
    while let Some(Reverse((At(at, _), event))) = run.events.pop() {
        now = at;
        match event {
            Some((job, step)) => run.served(now, job, step),
            None => {
                let job = run.arrived_at.len();
                run.arrived_at.push(now);
                if job + 1 < jobs {
                    let gap = run.rng.exponential(1.0 / rate);
                    run.schedule(now + gap, None);
                }
                run.enter(now, job, 0);
            }
        }
    }
    outcome(network, rate, now, &run.busy_s, run.latencies)
}

fn outcome(network: &Network, rate: f64, end: f64, busy_s: &[f64], latencies: Vec<f64>) -> Outcome {
    let skip = (latencies.len() as f64 * WARM_UP_FRACTION) as usize;
    let mut kept = latencies[skip..].to_vec();
    kept.sort_by(f64::total_cmp);
    let quantile = |q: f64| kept[((kept.len() - 1) as f64 * q) as usize];
    Outcome {
        offered: rate,
        utilisation: busy_s
            .iter()
            .zip(&network.pools)
            .map(|(busy, pool)| busy / (pool.servers as f64 * end))
            .collect(),
        mean_s: kept.iter().sum::<f64>() / kept.len() as f64,
        p50_s: quantile(0.50),
        p99_s: quantile(0.99),
    }
}

/// The pool that saturates first as the load rises through `sweep` (ascending): the busiest pool at
/// the first load where any pool reaches [`SATURATED`], or the busiest at the highest load if none did.
pub fn first_bottleneck(sweep: &[Outcome]) -> Option<usize> {
    let busiest = |outcome: &Outcome| {
        (0..outcome.utilisation.len())
            .max_by(|&a, &b| outcome.utilisation[a].total_cmp(&outcome.utilisation[b]))
    };
    let saturated = sweep
        .iter()
        .find(|outcome| outcome.utilisation.iter().any(|&u| u >= SATURATED));
    busiest(saturated.or(sweep.last())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_server(mean_s: f64) -> Network {
        Network {
            pools: vec![Pool {
                name: "one",
                servers: 1,
            }],
            route: vec![Step { pool: 0, mean_s }],
        }
    }

    #[test]
    fn mm1_mean_latency_is_one_over_mu_minus_lambda() {
        // mu = 100/s, lambda = 50/s: mean sojourn 1 / (100 - 50) = 20 ms.
        let outcome = simulate(&one_server(0.01), 50.0, 200_000, 7);
        assert!((outcome.mean_s - 0.02).abs() < 0.02 * 0.05, "{outcome:?}");
        assert!((outcome.utilisation[0] - 0.5).abs() < 0.02, "{outcome:?}");
    }

    #[test]
    fn the_same_seed_gives_the_same_run() {
        let network = one_server(0.01);
        assert_eq!(
            simulate(&network, 80.0, 5_000, 3),
            simulate(&network, 80.0, 5_000, 3)
        );
    }

    #[test]
    fn the_undersized_pool_is_the_bottleneck() {
        // Four pools with room for 1,000 jobs/s each but the third, which has room for 500.
        let pool = |name, servers| Pool { name, servers };
        let network = Network {
            pools: vec![pool("a", 2), pool("b", 2), pool("c", 1), pool("d", 2)],
            route: (0..4)
                .map(|pool| Step {
                    pool,
                    mean_s: 0.002,
                })
                .collect(),
        };
        assert!((network.capacity() - 500.0).abs() < 1e-9);
        let sweep: Vec<Outcome> = [0.5, 0.8, 1.0, 1.1]
            .iter()
            .map(|load| simulate(&network, load * 500.0, 20_000, 11))
            .collect();
        assert_eq!(first_bottleneck(&sweep), Some(2));
        assert!(sweep[3].p99_s > 10.0 * sweep[0].p99_s, "{sweep:?}");
    }
}
