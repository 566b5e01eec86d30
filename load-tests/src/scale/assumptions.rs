//! Every number of the model that is not read from the measured report: its name (the key of
//! `--scale-set NAME=VALUE`), its default and where the default comes from. The model's printed inputs
//! list them all, so a table is never read without the assumptions behind it.

/// One assumption as printed.
pub struct Row {
    pub name: &'static str,
    pub value: f64,
    pub source: &'static str,
}

/// Declares the assumptions once: the struct, its defaults, the printed rows and the override by name
/// all come from this one list, so they cannot drift apart.
macro_rules! assumptions {
    ($($field:ident = $default:expr, $source:literal;)*) => {
        #[derive(Debug, Clone, PartialEq)]
        pub struct Assumptions {
            $(#[doc = $source] pub $field: f64,)*
        }

        impl Default for Assumptions {
            fn default() -> Assumptions {
                Assumptions { $($field: $default,)* }
            }
        }

        impl Assumptions {
            pub fn rows(&self) -> Vec<Row> {
                vec![$(Row { name: stringify!($field), value: self.$field, source: $source },)*]
            }

            fn slot(&mut self, name: &str) -> Option<&mut f64> {
                match name {
                    $(stringify!($field) => Some(&mut self.$field),)*
                    _ => None,
                }
            }
        }
    };
}

assumptions! {
    utilisation = 0.6,
        "target busy fraction of every pool: at 0.6 an M/M/c pool's queueing stays short and a third of the \
         nodes can be lost before the rest pass 0.9";
    gpu_ms_per_job = 1000.0,
        "GPU time per diffusion job (`--scale-render-ms-gpu`): a 4-step turbo render at 512x512 in a batch, \
         per image, rounded up; not measured here (no GPU lent to this work)";
    gpu_usd_per_hour = 1.0,
        "price of one GPU an hour, to set the store's request price beside: an on-demand 24 GB cloud GPU \
         (AWS g5.xlarge, one A10G, about $1.01 an hour in us-east-1)";
    scheduler_share = 0.5,
        "share of the farm process's CPU beyond the render that is the scheduler's: on a request's path it \
         makes about half the client calls (records, open log, job publish, replies, settle writes) and \
         parses and plans; one process in the measured run, so an estimate";
    client_share = 0.15,
        "share of that CPU that is the load generator's (publishes requests, consumes replies): outside the \
         farm in production, so left out; the workers get the rest";
    scheduler_pod_cores = 8.0,
        "cores of one scheduler pod";
    broker_node_cores = 16.0,
        "cores of one RabbitMQ node (a 16-vCPU instance)";
    quorum_factor = 0.5,
        "a quorum queue's rate per queue, and its CPU per message inverted, relative to a classic queue: \
         raft replication with an fsync on each replica; RabbitMQ's docs put quorum queues below classic \
         ones for throughput; an assumption until measured on the target cluster";
    replicas = 3.0,
        "replicas of a quorum queue or a stream (RabbitMQ's usual 3: one node may be lost); every replica \
         is charged the leader's CPU, which is pessimistic";
    stream_factor = 0.25,
        "a stream's CPU per message relative to a classic queue: an append to a log that consumers read by \
         offset, no per-message queue state or ack; assumed";
    s3_writes_per_prefix = 3500.0,
        "AWS S3: PUT/COPY/POST/DELETE requests per second per partitioned prefix (S3 performance guide)";
    s3_reads_per_prefix = 5500.0,
        "AWS S3: GET/HEAD requests per second per partitioned prefix (S3 performance guide)";
    s3_put_usd_per_1000 = 0.005,
        "S3 Standard list price per 1,000 PUT, COPY, POST, LIST requests (us-east-1); DELETE is free";
    s3_get_usd_per_1000 = 0.0004,
        "S3 Standard list price per 1,000 GET and other requests (us-east-1)";
    redis_ops_per_core = 100000.0,
        "nominal Redis operations per second of one shard (commands run on one thread, so one core): \
         the order of redis-benchmark's GET/SET without pipelining";
    shards_per_scheduler = 4.0,
        "tenant shards per scheduler, so that adding or losing a scheduler moves whole shards and the load \
         stays even";
}

impl Assumptions {
    /// Applies `NAME=VALUE` overrides; an unknown name or a value out of range is an error.
    pub fn with_overrides(mut self, overrides: &[String]) -> anyhow::Result<Assumptions> {
        for assignment in overrides {
            let (name, value) = assignment
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--scale-set {assignment}: expected NAME=VALUE"))?;
            let value: f64 = value.trim().parse().map_err(|_| {
                anyhow::anyhow!("--scale-set {assignment}: {value} is not a number")
            })?;
            let known = self.rows().iter().map(|row| row.name).collect::<Vec<_>>();
            let slot = self.slot(name.trim()).ok_or_else(|| {
                anyhow::anyhow!(
                    "--scale-set: unknown name {name}; known: {}",
                    known.join(", ")
                )
            })?;
            *slot = value;
        }
        self.check()?;
        Ok(self)
    }

    fn check(&self) -> anyhow::Result<()> {
        if !(self.utilisation > 0.0 && self.utilisation <= 1.0) {
            anyhow::bail!("utilisation must be in (0, 1], not {}", self.utilisation);
        }
        if self.scheduler_share + self.client_share > 1.0 {
            anyhow::bail!("scheduler_share + client_share must not pass 1");
        }
        if let Some(row) = self.rows().iter().find(|row| row.value < 0.0) {
            anyhow::bail!("{} must not be negative", row.name);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_override_replaces_one_assumption() {
        let assumptions = Assumptions::default()
            .with_overrides(&["quorum_factor=0.25".into()])
            .unwrap();
        assert_eq!(assumptions.quorum_factor, 0.25);
        assert_eq!(assumptions.replicas, 3.0);
    }

    #[test]
    fn unknown_names_and_bad_values_are_refused() {
        let error = Assumptions::default()
            .with_overrides(&["quorum=1".into()])
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown name quorum"), "{error}");
        assert!(Assumptions::default()
            .with_overrides(&["utilisation=1.5".into()])
            .is_err());
        assert!(Assumptions::default()
            .with_overrides(&["replicas".into()])
            .is_err());
    }
}
