//! The measured costs the model starts from, read from a `--report-json` file (`Report::to_json`).
//! Every field the model uses is required: a report without it is an error naming the field, never a
//! silent zero that would turn into "infinitely many jobs per second".

use anyhow::{bail, Context};
use serde_json::Value;

/// Label of this process in `cpu_ms_per_job` (the load generator and the in-process farm).
const FARM_PROCESS: &str = crate::cpu::FARM_PROCESS;
const BROKER_PROCESS: &str = "RabbitMQ";
const CACHE_PROCESS: &str = "Redis";
/// s3s-fs or MinIO: `cpu.rs` labels both "S3 server (...)".
const STORE_PROCESS_PREFIX: &str = "S3 server";

/// One kind of service call, per finished job.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub service: String,
    pub op: String,
    pub per_job: f64,
}

/// CPU milliseconds per finished job of each process the run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessCpu {
    /// Scheduler, workers (render included) and load generator: one process in the measured run.
    pub farm: f64,
    pub broker: f64,
    pub cache: f64,
    pub store_server: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// What ran, for the printed inputs: "64x64 pop-art, 2 workers, batch_max 16".
    pub workload: String,
    pub jobs_per_second: f64,
    /// The render alone, p50, one core: the worker's render CPU per job.
    pub render_ms: f64,
    /// The same run's raw broker: confirmed publish + ack of one queue (one Erlang process).
    pub raw_broker_messages_per_second: f64,
    pub calls: Vec<Call>,
    pub cpu: ProcessCpu,
}

impl Measured {
    pub fn read(path: &std::path::Path) -> anyhow::Result<Measured> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Measured::parse(&text).with_context(|| format!("report {}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Measured> {
        let json: Value = serde_json::from_str(text).context("not JSON")?;
        let cpu = field(&json, "cpu_ms_per_job")?;
        let measured = Measured {
            workload: format!(
                "{}x{} {}, {} workers, batch_max {}",
                number(&json, "size")?,
                number(&json, "size")?,
                text_field(&json, "style")?,
                number(&json, "workers")?,
                number(&json, "batch_max")?,
            ),
            jobs_per_second: number(&json, "jobs_per_second")?,
            render_ms: number(&json, "render_ms.p50")?,
            raw_broker_messages_per_second: number(&json, "baselines.broker_messages_per_second")?,
            calls: calls(&json)?,
            cpu: ProcessCpu {
                farm: cpu_of(cpu, FARM_PROCESS)?,
                broker: cpu_of(cpu, BROKER_PROCESS)?,
                cache: cpu_of(cpu, CACHE_PROCESS)?,
                store_server: cpu_of(cpu, STORE_PROCESS_PREFIX)?,
            },
        };
        measured.check()?;
        Ok(measured)
    }

    /// Calls per job of `service` whose op is one of `ops` (all ops when `ops` is empty).
    pub fn per_job(&self, service: &str, ops: &[&str]) -> f64 {
        self.calls
            .iter()
            .filter(|call| call.service == service && (ops.is_empty() || ops.contains(&&*call.op)))
            .map(|call| call.per_job)
            // Not `sum()`: an empty f64 sum is -0.0, which prints as "-0.00".
            .fold(0.0, |sum, per_job| sum + per_job)
    }

    /// The zeros a run without baselines or without `/proc` leaves would make every ratio infinite.
    fn check(&self) -> anyhow::Result<()> {
        if self.render_ms <= 0.0 {
            bail!("render_ms.p50 is 0: the run had --no-baseline, and the model needs the render alone");
        }
        if self.raw_broker_messages_per_second <= 0.0 {
            bail!("baselines.broker_messages_per_second is 0: the run had --no-baseline");
        }
        if self.cpu.farm <= self.render_ms {
            bail!(
                "cpu_ms_per_job.\"{FARM_PROCESS}\" ({:.2}) is not above the render alone ({:.2}): \
                 the run's CPU was not measured",
                self.cpu.farm,
                self.render_ms
            );
        }
        if self.per_job("queue", &[]) <= 0.0 || self.per_job("store", &[]) <= 0.0 {
            bail!("calls holds no queue or store calls: the run measured no farm");
        }
        Ok(())
    }
}

/// The value at a dotted path, or an error naming the path.
fn field<'a>(json: &'a Value, path: &str) -> anyhow::Result<&'a Value> {
    path.split('.')
        .try_fold(json, |value, key| value.get(key))
        .with_context(|| format!("missing field `{path}`"))
}

fn number(json: &Value, path: &str) -> anyhow::Result<f64> {
    field(json, path)?
        .as_f64()
        .with_context(|| format!("field `{path}` is not a number"))
}

fn text_field<'a>(json: &'a Value, path: &str) -> anyhow::Result<&'a str> {
    field(json, path)?
        .as_str()
        .with_context(|| format!("field `{path}` is not a string"))
}

/// The process whose label starts with `label` in `cpu_ms_per_job`.
fn cpu_of(cpu: &Value, label: &str) -> anyhow::Result<f64> {
    let map = cpu
        .as_object()
        .context("field `cpu_ms_per_job` is not an object")?;
    let (_, value) = map
        .iter()
        .find(|(name, _)| name.starts_with(label))
        .with_context(|| format!("missing field `cpu_ms_per_job.\"{label}\"`"))?;
    value
        .as_f64()
        .with_context(|| format!("field `cpu_ms_per_job.\"{label}\"` is not a number"))
}

fn calls(json: &Value) -> anyhow::Result<Vec<Call>> {
    let list = field(json, "calls")?
        .as_array()
        .context("field `calls` is not a list")?;
    list.iter()
        .enumerate()
        .map(|(i, call)| {
            let at = |key: &str| format!("calls[{i}].{key}");
            Ok(Call {
                service: text_field(call, "service")
                    .with_context(|| at("service"))?
                    .into(),
                op: text_field(call, "op").with_context(|| at("op"))?.into(),
                per_job: number(call, "calls_per_job").with_context(|| at("calls_per_job"))?,
            })
        })
        .collect()
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A hand-made report with round numbers: 4 publishes + 1 reply per job, 4 puts, 1 get, 6 cache
    /// calls; farm 3 CPU-ms of which 1 is the render.
    pub fn sample() -> Value {
        serde_json::json!({
            "size": 64, "style": "pop-art", "workers": 2, "batch_max": 16,
            "jobs_per_second": 300.0,
            "render_ms": {"p50": 1.0},
            "baselines": {"broker_messages_per_second": 10000.0},
            "calls": [
                {"service": "queue", "backend": "amqp", "op": "publish", "calls_per_job": 4.0, "mean_ms": 5.0},
                {"service": "queue", "backend": "amqp", "op": "publish_reply", "calls_per_job": 1.0, "mean_ms": 5.0},
                {"service": "queue", "backend": "amqp", "op": "ack", "calls_per_job": 5.0, "mean_ms": 1.0},
                {"service": "store", "backend": "s3", "op": "put", "calls_per_job": 4.0, "mean_ms": 20.0},
                {"service": "store", "backend": "s3", "op": "get", "calls_per_job": 1.0, "mean_ms": 2.0},
                {"service": "cache", "backend": "redis", "op": "get", "calls_per_job": 6.0, "mean_ms": 1.0},
            ],
            "cpu_ms_per_job": {
                "load generator + in-process farm": 3.0,
                "RabbitMQ": 1.0,
                "Redis": 0.2,
                "S3 server (s3s-fs)": 2.0,
                "whole machine (all processes)": 6.5,
            },
        })
    }

    pub fn sample_measured() -> Measured {
        Measured::parse(&sample().to_string()).unwrap()
    }

    #[test]
    fn a_report_is_read() {
        let measured = sample_measured();
        assert_eq!(measured.cpu.store_server, 2.0);
        assert_eq!(
            measured.per_job("queue", &["publish", "publish_reply"]),
            5.0
        );
        assert_eq!(measured.per_job("cache", &[]), 6.0);
        assert_eq!(measured.workload, "64x64 pop-art, 2 workers, batch_max 16");
    }

    fn error_without(path: &[&str]) -> String {
        let mut json = sample();
        let (last, parents) = path.split_last().unwrap();
        let parent = parents
            .iter()
            .fold(&mut json, |value, key| &mut value[*key]);
        parent.as_object_mut().unwrap().remove(*last);
        format!("{:#}", Measured::parse(&json.to_string()).unwrap_err())
    }

    #[test]
    fn a_missing_field_is_named() {
        let error = error_without(&["baselines", "broker_messages_per_second"]);
        assert!(
            error.contains("`baselines.broker_messages_per_second`"),
            "{error}"
        );
        let error = error_without(&["render_ms", "p50"]);
        assert!(error.contains("`render_ms.p50`"), "{error}");
        let error = error_without(&["cpu_ms_per_job", "RabbitMQ"]);
        assert!(error.contains("cpu_ms_per_job.\"RabbitMQ\""), "{error}");
    }

    #[test]
    fn a_run_without_baselines_is_refused() {
        let mut json = sample();
        json["render_ms"]["p50"] = serde_json::json!(0.0);
        let error = format!("{:#}", Measured::parse(&json.to_string()).unwrap_err());
        assert!(error.contains("--no-baseline"), "{error}");
    }

    #[test]
    fn a_wrong_type_and_bad_json_are_named() {
        let mut json = sample();
        json["jobs_per_second"] = serde_json::json!("fast");
        let error = format!("{:#}", Measured::parse(&json.to_string()).unwrap_err());
        assert!(
            error.contains("`jobs_per_second` is not a number"),
            "{error}"
        );
        let error = format!("{:#}", Measured::parse("{").unwrap_err());
        assert!(error.contains("not JSON"), "{error}");
    }
}
