//! Scheduler parity with diffusers on the sd-tiny fixture: timestep/sigma tables and whole
//! sampling loops driven by the fixture's synthetic model.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{Device, Tensor};
use reverie_diffusion::{
    build_scheduler, Scheduler, SchedulerConfig, SchedulerKind, SchedulerOverrides, TimestepSpacing,
};
use serde_json::Value;

fn fixture_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../tests/fixtures/sd-tiny"
    ))
}

fn read_json(relative: &str) -> Value {
    let path = fixture_dir().join(relative);
    let text = std::fs::read_to_string(&path).expect("fixture json readable");
    // Python's json writes -Infinity (diffusers' lambda_min_clipped); serde_json rejects it.
    let text = text.replace("-Infinity", "\"-Infinity\"");
    serde_json::from_str(&text).expect("fixture json parses")
}

fn model_config() -> SchedulerConfig {
    SchedulerConfig::from_file(&fixture_dir().join("model/scheduler/scheduler_config.json"))
        .expect("scheduler config loads")
}

fn floats(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v.as_f64().expect("number"))
        .collect()
}

fn assert_close_slice(what: &str, ours: &[f64], expected: &[f64], atol: f64, rtol: f64) {
    assert_eq!(
        ours.len(),
        expected.len(),
        "{what}: length {ours:?} vs {expected:?}"
    );
    for (i, (o, e)) in ours.iter().zip(expected).enumerate() {
        assert!(
            (o - e).abs() <= atol + rtol * e.abs(),
            "{what}[{i}]: ours {o} expected {e}\nours {ours:?}\nexpected {expected:?}"
        );
    }
}

fn spacing_from(name: &str) -> TimestepSpacing {
    match name {
        "leading" => TimestepSpacing::Leading,
        "trailing" => TimestepSpacing::Trailing,
        "linspace" => TimestepSpacing::Linspace,
        other => panic!("unknown spacing {other}"),
    }
}

#[test]
fn scheduler_tables_match_diffusers_for_every_kind_spacing_and_step_count() {
    let tables = read_json("cases/scheduler_tables.json");
    let base = model_config();
    let mut checked = 0;
    for (key, row) in tables["tables"].as_object().expect("tables object") {
        let parts: Vec<&str> = key.split('.').collect();
        let kind = SchedulerKind::from_name(parts[0]).expect("known scheduler");
        let overrides = SchedulerOverrides {
            timestep_spacing: Some(spacing_from(parts[1])),
            ..SchedulerOverrides::default()
        };
        let steps: usize = parts[2].parse().expect("step count");
        let scheduler = build_scheduler(kind, &base.with_overrides(&overrides), steps)
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_close_slice(
            &format!("{key} timesteps"),
            scheduler.timesteps(),
            &floats(&row["timesteps"]),
            1e-4,
            1e-6,
        );
        if let Some(sigmas) = row.get("sigmas") {
            let ours = scheduler.sigmas().expect("sigma scheduler exposes sigmas");
            assert_close_slice(&format!("{key} sigmas"), ours, &floats(sigmas), 1e-6, 1e-5);
        }
        let init = row["init_noise_sigma"].as_f64().expect("init sigma");
        assert_close_slice(
            &format!("{key} init_noise_sigma"),
            &[scheduler.init_noise_sigma()],
            &[init],
            1e-6,
            1e-5,
        );
        checked += 1;
    }
    assert_eq!(
        checked,
        6 * 3 * 4,
        "every scheduler x spacing x N is in the table"
    );
}

struct LoopCase {
    scheduler: String,
    steps: usize,
    overrides: Value,
    timesteps: Vec<f64>,
    atol: f64,
    rtol: f64,
    tensors: HashMap<String, Tensor>,
}

fn load_loop_case(name: &str) -> LoopCase {
    let cases = read_json("cases.json");
    let case = cases["cases"]
        .as_array()
        .expect("cases array")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("case {name} in cases.json"))
        .clone();
    let file = fixture_dir().join(case["file"].as_str().expect("file"));
    let tensors = candle_core::safetensors::load(&file, &Device::Cpu).expect("case tensors load");
    LoopCase {
        scheduler: case["params"]["scheduler"]
            .as_str()
            .expect("name")
            .to_string(),
        steps: case["params"]["steps"].as_u64().expect("steps") as usize,
        overrides: case["params"]["config_overrides"].clone(),
        timesteps: floats(&case["params"]["timesteps"]),
        atol: case["tolerance"]["atol"].as_f64().expect("atol"),
        rtol: case["tolerance"]["rtol"].as_f64().expect("rtol"),
        tensors,
    }
}

fn flat(tensor: &Tensor) -> Vec<f32> {
    tensor
        .flatten_all()
        .expect("flatten")
        .to_vec1()
        .expect("f32 values")
}

fn assert_tensor_close(what: &str, ours: &Tensor, expected: &Tensor, atol: f64, rtol: f64) {
    assert_eq!(ours.dims(), expected.dims(), "{what}: shape");
    let (ours, expected) = (flat(ours), flat(expected));
    let mut worst = 0.0f64;
    for (o, e) in ours.iter().zip(&expected) {
        let excess = (f64::from(*o) - f64::from(*e)).abs() - (atol + rtol * f64::from(*e).abs());
        worst = worst.max(excess);
    }
    assert!(worst <= 0.0, "{what}: exceeds tolerance by {worst}");
}

/// The fixture's synthetic model: tanh(scaled input) * 0.5 + 0.001 * t.
fn synthetic_model(scaled: &Tensor, timestep: f64) -> Tensor {
    scaled
        .tanh()
        .expect("tanh")
        .affine(0.5, 0.001 * timestep)
        .expect("affine")
}

fn run_loop_case(name: &str) {
    let case = load_loop_case(name);
    let kind = SchedulerKind::from_name(&case.scheduler).expect("known scheduler");
    // The case's overrides are the solver choices our kinds already encode; karras is checked.
    let karras = case.overrides["use_karras_sigmas"]
        .as_bool()
        .unwrap_or(false);
    assert_eq!(
        karras,
        kind == SchedulerKind::DpmSolverPp2mKarras,
        "{name}: karras flag"
    );
    let mut scheduler: Box<dyn Scheduler> =
        build_scheduler(kind, &model_config(), case.steps).expect("scheduler builds");
    assert_close_slice(name, scheduler.timesteps(), &case.timesteps, 1e-4, 0.0);

    let mut sample = case.tensors["in.initial_sample"].clone();
    let mut draws = 0;
    let timesteps = scheduler.timesteps().to_vec();
    for (index, &timestep) in timesteps.iter().enumerate() {
        let scaled = scheduler
            .scale_model_input(&sample, index)
            .expect("scale input");
        let output = synthetic_model(&scaled, timestep);
        let noise = if scheduler.needs_noise(index) {
            let key = format!("in.noise_{draws}");
            draws += 1;
            Some(
                case.tensors
                    .get(&key)
                    .unwrap_or_else(|| panic!("{name}: {key}"))
                    .clone(),
            )
        } else {
            None
        };
        sample = scheduler
            .step(&output, index, &sample, noise.as_ref())
            .expect("step");
        let expected = &case.tensors[&format!("out.after_step_{index}")];
        assert_tensor_close(
            &format!("{name} after step {index}"),
            &sample,
            expected,
            case.atol,
            case.rtol,
        );
    }
    let offered = case
        .tensors
        .keys()
        .filter(|k| k.starts_with("in.noise_"))
        .count();
    assert_eq!(
        draws, offered,
        "{name}: every recorded noise draw is consumed"
    );
}

macro_rules! loop_cases {
    ($($test:ident => $case:literal),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                run_loop_case($case);
            }
        )*
    };
}

loop_cases! {
    sched_euler_4steps => "sched_euler_4steps",
    sched_euler_20steps => "sched_euler_20steps",
    sched_euler_ancestral_4steps => "sched_euler_ancestral_4steps",
    sched_euler_ancestral_20steps => "sched_euler_ancestral_20steps",
    sched_ddim_4steps => "sched_ddim_4steps",
    sched_ddim_20steps => "sched_ddim_20steps",
    sched_dpmpp_2m_4steps => "sched_dpmpp_2m_4steps",
    sched_dpmpp_2m_20steps => "sched_dpmpp_2m_20steps",
    sched_dpmpp_2m_karras_4steps => "sched_dpmpp_2m_karras_4steps",
    sched_dpmpp_2m_karras_20steps => "sched_dpmpp_2m_karras_20steps",
    sched_lcm_4steps => "sched_lcm_4steps",
    sched_lcm_20steps => "sched_lcm_20steps",
}

#[test]
fn missing_noise_for_a_stochastic_step_is_an_error() {
    let mut scheduler =
        build_scheduler(SchedulerKind::EulerAncestral, &model_config(), 4).expect("builds");
    let sample = Tensor::zeros((1, 4, 2, 2), candle_core::DType::F32, &Device::Cpu).expect("zeros");
    let result = scheduler.step(&sample, 0, &sample, None);
    assert!(result.is_err(), "a stochastic step without noise must fail");
}

#[test]
fn step_index_past_the_schedule_is_an_error() {
    let scheduler = build_scheduler(SchedulerKind::Euler, &model_config(), 4).expect("builds");
    let sample = Tensor::zeros((1, 4, 2, 2), candle_core::DType::F32, &Device::Cpu).expect("zeros");
    assert!(scheduler.scale_model_input(&sample, 4).is_err());
}
