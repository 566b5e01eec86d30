//! CPU time per job of every process a load run depends on: the load generator's own process (with an
//! in-process farm, the scheduler and workers too), the broker, the cache and the S3 server, read from
//! `/proc` before and after the load. On a machine where everything shares the same cores this is the
//! budget that decides the ceiling: 2 cores give 2,000 CPU-ms per second, so 1,000 jobs/s needs 2 CPU-ms
//! per job across all of them. Off Linux (no `/proc`) the table is empty.

use std::collections::BTreeMap;

/// Processes measured besides this one, by the name the kernel gives them (`/proc/<pid>/comm`).
const SERVICES: [(&str, &str); 4] = [
    ("beam.smp", "RabbitMQ"),
    ("redis-server", "Redis"),
    ("s3s-fs", "S3 server (s3s-fs)"),
    ("minio", "S3 server (MinIO)"),
];

/// The label of this process: the load generator and, unless `--external`, the farm it started.
pub const FARM_PROCESS: &str = "load generator + in-process farm";

/// The kernel's clock ticks per second for `/proc/<pid>/stat` (USER_HZ, 100 on every Linux port the
/// project runs on).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU ticks used so far, per process label, plus the whole machine's busy ticks.
#[derive(Debug, Clone, Default)]
pub struct CpuSnapshot {
    per_process: BTreeMap<&'static str, u64>,
    machine_busy: u64,
}

/// CPU milliseconds per finished job for one process (or for the whole machine).
#[derive(Debug, Clone)]
pub struct CpuShare {
    pub label: String,
    pub ms_per_job: f64,
}

impl CpuSnapshot {
    pub fn take() -> CpuSnapshot {
        let mut per_process = BTreeMap::new();
        if let Some(ticks) = process_ticks("self") {
            per_process.insert(FARM_PROCESS, ticks);
        }
        for pid in pids() {
            let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else {
                continue;
            };
            let Some((_, label)) = SERVICES.iter().find(|(name, _)| *name == comm.trim()) else {
                continue;
            };
            if let Some(ticks) = process_ticks(&pid) {
                *per_process.entry(*label).or_insert(0) += ticks;
            }
        }
        CpuSnapshot {
            per_process,
            machine_busy: machine_busy_ticks().unwrap_or(0),
        }
    }

    /// CPU per job since `before`, per process, then the machine's total (everything that ran).
    pub fn per_job_since(&self, before: &CpuSnapshot, jobs: u64) -> Vec<CpuShare> {
        if jobs == 0 {
            return Vec::new();
        }
        let per_job = |ticks: u64| ticks as f64 * 1000.0 / TICKS_PER_SECOND / jobs as f64;
        let mut shares: Vec<CpuShare> = self
            .per_process
            .iter()
            .map(|(label, ticks)| CpuShare {
                label: label.to_string(),
                ms_per_job: per_job(
                    ticks.saturating_sub(before.per_process.get(label).copied().unwrap_or(0)),
                ),
            })
            .collect();
        if self.machine_busy > 0 {
            shares.push(CpuShare {
                label: "whole machine (all processes)".into(),
                ms_per_job: per_job(self.machine_busy.saturating_sub(before.machine_busy)),
            });
        }
        shares
    }
}

fn pids() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.bytes().all(|b| b.is_ascii_digit()))
        .collect()
}

/// utime + stime of one process. The command name (field 2) may hold spaces, so fields are counted
/// after its closing parenthesis.
fn process_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name: state (field 3) is index 0, so utime (14) and stime (15) are 11 and 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Busy ticks of all CPUs together (everything but idle and iowait) from the `cpu` line of /proc/stat.
fn machine_busy_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let (idle, iowait) = (*values.get(3)?, *values.get(4)?);
    // guest and guest_nice (9, 10) are already counted in user and nice.
    let total: u64 = values.iter().take(8).sum();
    Some(total - idle - iowait)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_measured() {
        if !std::path::Path::new("/proc/self/stat").exists() {
            return;
        }
        let before = CpuSnapshot::take();
        // Busy for 300 ms of wall time: at least a few 10 ms ticks even on a shared machine.
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < std::time::Duration::from_millis(300) {
            for i in 0..10_000u64 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
            }
        }
        std::hint::black_box(x);
        let after = CpuSnapshot::take();
        let shares = after.per_job_since(&before, 1);
        let own = shares
            .iter()
            .find(|s| s.label.starts_with("load generator"))
            .expect("own process measured");
        assert!(own.ms_per_job > 0.0, "{shares:?}");
    }
}
