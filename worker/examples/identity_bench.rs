//! Identity guidance on random weights: how far the face at the planned place is from a person
//! (dlib descriptor distance) unguided and at several `identity_strength`s, and what a guided
//! sampling step costs next to a plain one (docs/performance.md, "Identity guidance").
//!
//! `REVERIE_MODELS_DIR=target/models cargo run -p reverie-worker --example identity_bench --
//!  [--configs tiny,mid] [--mid-size 128] [--{tiny,mid}-seeds N] [--{tiny,mid}-batch N]
//!  [--{tiny,mid}-steps N] [--{tiny,mid}-strengths 1,3,6] [--{tiny,mid}-people 1|2]
//!  [--{tiny,mid}-timing-batch N] [--{tiny,mid}-timing-steps N] [--{tiny,mid}-timing-runs N]`
//! (defaults: sd-tiny 16 seeds in batches of 8, 4 steps, strengths 1, 3, 6, one person, timing on
//! a batch of 4 over 3 steps; mid-size 8 seeds, 1 step, strength 3, one person, timing on one
//! sample over 1 step; 2 timing rounds each).
//!
//! Two configs: (a) the sd-tiny fixture at 64x64; (b) a mid-size model written to a temporary
//! diffusers folder exactly as the diffusion engine's `cpu_bench` writes it (sd-tiny's text side
//! and scheduler, a UNet of channels [128, 256, 256] and a VAE of channels [64, 128, 256, 256],
//! random weights). One fixed prompt, Euler, no classifier-free guidance (scale 1), a centred face
//! place of half the picture's side. People: dlib's own descriptors of two fixture photos
//! (tests/fixtures/faces/ref). Distances are measured on the finished pictures as the identity
//! test does: landmarks predicted inside the planned place, then the descriptor.
//!
//! Timing: per sampling step, from the progress callback (steps 2..N of a run, so prompt encoding
//! and the final decode are excluded; a one-step run times the whole generation before the
//! decode, prompt encoding included), on one batch, plain (strength 0) and guided (every sample
//! guided, every step) with `repeats` 1 and 2 interleaved in each round; the median over rounds.

#[path = "../engines/diffusion/examples/cpu_bench/random_weights.rs"]
mod random_weights;

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device};
use reverie_diffusion::pipeline::images::tensor_to_rgb;
use reverie_diffusion::pipeline::{GenerationRequest, SampleSpec, StableDiffusion};
use reverie_diffusion::SchedulerKind;
use reverie_faces::identity::energy::IdentityEnergy;
use reverie_faces::identity::IdentityTarget;
use reverie_faces::FaceModels;
use reverie_worker::render::identity::IdentityGuide;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const PROMPT: &str = "a portrait photo of a person";
/// The strength of the guided timing runs (the cost does not depend on it).
const TIMING_STRENGTH: f64 = 3.0;
/// The reference people: a label and a fixture whose first face's dlib descriptor is the person.
const PEOPLE: [(&str, &str); 2] = [
    ("Grace Hopper", "facedetect_grace_hopper.json"),
    ("Barack Obama", "frpy_obama.json"),
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tiny_model_dir() -> PathBuf {
    repo().join("tests/fixtures/sd-tiny/model")
}

/// What one config measures.
#[derive(Clone)]
struct Plan {
    /// Seeds 1..=seeds for the distances, run in batches of `batch`.
    seeds: usize,
    batch: usize,
    steps: usize,
    strengths: Vec<f64>,
    /// How many of [`PEOPLE`] the distances are measured for.
    people: usize,
    /// The timing batch and its step count (steps 2..N are timed; with 1 step the whole
    /// generation, prompt encoding included).
    timing_batch: usize,
    timing_steps: usize,
    timing_runs: usize,
}

struct Options {
    tiny: Plan,
    mid: Plan,
    mid_size: usize,
    configs: Vec<String>,
}

fn options() -> Result<Options> {
    let tiny = Plan {
        seeds: 16,
        batch: 8,
        steps: 4,
        strengths: vec![1.0, 3.0, 6.0],
        people: 1,
        timing_batch: 4,
        timing_steps: 3,
        timing_runs: 2,
    };
    // A guided step on the mid-size VAE costs tens of seconds on the 2-core development machine:
    // fewer seeds, one strength, one step (SD-Turbo's count), the timing on one sample.
    let mid = Plan {
        seeds: 8,
        batch: 8,
        steps: 1,
        strengths: vec![3.0],
        people: 1,
        timing_batch: 1,
        timing_steps: 1,
        timing_runs: 2,
    };
    let mut options = Options {
        tiny,
        mid,
        mid_size: 128,
        configs: vec!["tiny".into(), "mid".into()],
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let flag = pair[0].as_str();
        let value = pair.get(1).ok_or_else(|| format!("{flag} needs a value"))?;
        match flag {
            "--mid-size" => options.mid_size = value.parse()?,
            "--configs" => options.configs = value.split(',').map(String::from).collect(),
            _ => {
                let (plan, key) = if let Some(key) = flag.strip_prefix("--tiny-") {
                    (&mut options.tiny, key)
                } else if let Some(key) = flag.strip_prefix("--mid-") {
                    (&mut options.mid, key)
                } else {
                    return Err(format!("unknown argument {flag}").into());
                };
                match key {
                    "seeds" => plan.seeds = value.parse()?,
                    "batch" => plan.batch = value.parse()?,
                    "steps" => plan.steps = value.parse()?,
                    "strengths" => {
                        plan.strengths = value
                            .split(',')
                            .map(str::parse)
                            .collect::<std::result::Result<_, _>>()?
                    }
                    "people" => plan.people = value.parse::<usize>()?.clamp(1, PEOPLE.len()),
                    "timing-batch" => plan.timing_batch = value.parse()?,
                    "timing-steps" => plan.timing_steps = value.parse()?,
                    "timing-runs" => plan.timing_runs = value.parse()?,
                    _ => return Err(format!("unknown argument {flag}").into()),
                }
            }
        }
    }
    for plan in [&options.tiny, &options.mid] {
        let counts = [
            plan.seeds,
            plan.batch,
            plan.steps,
            plan.timing_batch,
            plan.timing_steps,
        ];
        if counts.contains(&0) || plan.timing_runs == 0 {
            return Err("counts must be at least 1".into());
        }
    }
    if !options.mid_size.is_multiple_of(64) {
        return Err("--mid-size must be a multiple of 64 pixels".into());
    }
    Ok(options)
}

/// A person's descriptor: dlib's own for the first face of a fixture photo.
fn reference_descriptor(file: &str) -> Result<[f32; 128]> {
    let path = repo().join("tests/fixtures/faces/ref").join(file);
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path)?)?;
    let values: Vec<f32> = json["faces"][0]["descriptor"]
        .as_array()
        .ok_or("no descriptor")?
        .iter()
        .map(|v| v.as_f64().map(|f| f as f32).ok_or("not a number"))
        .collect::<std::result::Result<_, _>>()?;
    values
        .try_into()
        .map_err(|_| "a descriptor has 128 numbers".into())
}

/// One benchmarked model.
struct Config {
    label: String,
    model: StableDiffusion,
    size: usize,
    plan: Plan,
}

impl Config {
    /// The centred face place: half the side, a little above the middle (the identity test's
    /// place at 64x64, scaled).
    fn place(&self) -> [f32; 4] {
        let s = self.size as f32 / 64.0;
        [16.0 * s, 12.0 * s, 48.0 * s, 44.0 * s]
    }
}

struct Bench<'a> {
    models: &'a FaceModels,
    energy: IdentityEnergy,
    references: Vec<[f32; 128]>,
}

/// One timed generation: final pictures and the seconds per sampling step.
struct Run {
    pictures: Vec<image::RgbImage>,
    step_s: f64,
}

/// One guided (or plain, at strength 0) batch.
struct Ask<'a> {
    seeds: &'a [u64],
    steps: usize,
    person: usize,
    strength: f64,
    repeats: usize,
}

impl Bench<'_> {
    fn target(&self, config: &Config, person: usize) -> IdentityTarget {
        IdentityTarget {
            place: config.place(),
            reference: self.references[person],
        }
    }

    fn request(&self, config: &Config, ask: &Ask<'_>) -> GenerationRequest {
        let samples = ask
            .seeds
            .iter()
            .map(|&seed| {
                let mut sample = SampleSpec::new(PROMPT, seed, 1.0);
                sample.identity_strength = ask.strength;
                sample
            })
            .collect();
        let mut request = GenerationRequest::new(samples);
        request.width = config.size;
        request.height = config.size;
        request.steps = ask.steps;
        request.scheduler = Some(SchedulerKind::Euler);
        let targets = ask
            .seeds
            .iter()
            .map(|_| vec![self.target(config, ask.person)])
            .collect();
        let size = (config.size, config.size);
        let mut guidance = IdentityGuide::new(self.models, targets, size).into_guidance();
        guidance.repeats = ask.repeats;
        request.identity = Some(guidance);
        request
    }

    /// Runs `request`; the step time is over steps 2..N, or the whole generation (prompt
    /// encoding included) for a one-step request.
    fn run(&self, config: &Config, request: &GenerationRequest) -> Result<Run> {
        let mut marks = Vec::with_capacity(request.steps);
        let start = Instant::now();
        let generation = config.model.generate(request, &mut |_| {
            marks.push(Instant::now());
            ControlFlow::Continue(())
        })?;
        let last = *marks.last().ok_or("no steps ran")?;
        let step_s = match marks.len() {
            1 => last.duration_since(start).as_secs_f64(),
            n => last.duration_since(marks[0]).as_secs_f64() / (n - 1) as f64,
        };
        let pictures = tensor_to_rgb(&config.model.decode(&generation.latents)?)?;
        Ok(Run { pictures, step_s })
    }

    fn distances(&self, config: &Config, person: usize, run: &Run) -> Result<Vec<f32>> {
        let target = self.target(config, person);
        run.pictures
            .iter()
            .map(|p| Ok(self.energy.distance_at(p, &target)?))
            .collect()
    }

    /// Distance rows: per person, unguided then each strength, over all seeds in batches.
    fn quality(&self, config: &Config) -> Result<Vec<String>> {
        let plan = &config.plan;
        let seeds: Vec<u64> = (1..=plan.seeds as u64).collect();
        let strengths = &plan.strengths;
        // [person][strength index, 0 = unguided] -> distance per seed.
        let mut table = vec![vec![Vec::new(); strengths.len() + 1]; plan.people];
        for batch in seeds.chunks(plan.batch) {
            let ask = |person, strength| Ask {
                seeds: batch,
                steps: plan.steps,
                person,
                strength,
                repeats: 1,
            };
            let plain = self.run(config, &self.request(config, &ask(0, 0.0)))?;
            for (person, rows) in table.iter_mut().enumerate() {
                rows[0].extend(self.distances(config, person, &plain)?);
                for (k, &strength) in strengths.iter().enumerate() {
                    let guided = self.run(config, &self.request(config, &ask(person, strength)))?;
                    rows[k + 1].extend(self.distances(config, person, &guided)?);
                }
            }
        }
        let label = format!("{}, {} steps", config.label, plan.steps);
        let mut lines = Vec::new();
        for (person, rows) in table.iter().enumerate() {
            let unguided = &rows[0];
            for (k, distances) in rows.iter().enumerate() {
                let (strength, closer) = if k == 0 {
                    ("0 (unguided)".to_string(), "–".to_string())
                } else {
                    let n = distances
                        .iter()
                        .zip(unguided)
                        .filter(|(g, u)| g < u)
                        .count();
                    (
                        format!("{}", strengths[k - 1]),
                        format!("{n}/{}", distances.len()),
                    )
                };
                let s = Stats::of(distances);
                lines.push(format!(
                    "| {label} | {} | {} | {strength} | {:.3} | {:.3} | {:.3} | {:.3} | {closer} |",
                    PEOPLE[person].0,
                    distances.len(),
                    s.mean,
                    s.std,
                    s.min,
                    s.max
                ));
            }
        }
        Ok(lines)
    }

    /// Seconds per step plain, guided with repeats 1 and with repeats 2, on one batch,
    /// interleaved round by round (the order rotates), medians over rounds.
    fn timing(&self, config: &Config) -> Result<String> {
        let plan = &config.plan;
        let batch: Vec<u64> = (1..=plan.timing_batch as u64).collect();
        let ask = |strength, repeats| Ask {
            seeds: &batch,
            steps: plan.timing_steps,
            person: 0,
            strength,
            repeats,
        };
        let requests = [
            self.request(config, &ask(0.0, 1)),
            self.request(config, &ask(TIMING_STRENGTH, 1)),
            self.request(config, &ask(TIMING_STRENGTH, 2)),
        ];
        let mut times = [Vec::new(), Vec::new(), Vec::new()];
        for round in 0..plan.timing_runs {
            for k in 0..requests.len() {
                let which = (k + round) % requests.len();
                times[which].push(self.run(config, &requests[which])?.step_s);
            }
        }
        let [plain, once, twice] = times.map(|mut t| median(&mut t));
        let n = batch.len() as f64;
        let timed = match plan.timing_steps {
            1 => "1 (whole run)".to_string(),
            n => format!("2..{n}"),
        };
        Ok(format!(
            "| {} | {} | {timed} | {} | {plain:.3} | {once:.3} | **{:.1}x** | {:.2} | {twice:.3} | **{:.1}x** | {:.2} |",
            config.label,
            batch.len(),
            plan.timing_runs,
            once / plain,
            (once - plain) / n,
            twice / plain,
            (twice - plain) / n,
        ))
    }
}

struct Stats {
    mean: f64,
    std: f64,
    min: f64,
    max: f64,
}

impl Stats {
    /// Mean, sample standard deviation, min and max.
    fn of(values: &[f32]) -> Self {
        let n = values.len() as f64;
        let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = values
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / (n - 1.0).max(1.0);
        let min = values.iter().copied().fold(f32::INFINITY, f32::min);
        let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        Self {
            mean,
            std: var.sqrt(),
            min: f64::from(min),
            max: f64::from(max),
        }
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

fn main() -> Result<()> {
    let started = Instant::now();
    let options = options()?;
    let models_dir = std::env::var_os("REVERIE_MODELS_DIR")
        .ok_or("REVERIE_MODELS_DIR is not set: point it at the fetched face models")?;
    let models = FaceModels::load(Path::new(&models_dir))?;
    let references = PEOPLE
        .iter()
        .map(|(_, file)| reference_descriptor(file))
        .collect::<Result<Vec<_>>>()?;
    let bench = Bench {
        models: &models,
        energy: IdentityEnergy::new(&models),
        references,
    };
    let device = Device::Cpu;
    let mid_dir =
        std::env::temp_dir().join(format!("reverie-identity-bench-{}", std::process::id()));
    let mut configs = Vec::new();
    for name in &options.configs {
        configs.push(match name.as_str() {
            "tiny" => Config {
                label: "sd-tiny, 64px".into(),
                model: StableDiffusion::from_dir(&tiny_model_dir(), &device, DType::F32)?,
                size: 64,
                plan: options.tiny.clone(),
            },
            "mid" => {
                random_weights::write_mid_model(&tiny_model_dir(), &mid_dir, options.mid_size)?;
                Config {
                    label: format!("mid-size, {}px", options.mid_size),
                    model: StableDiffusion::from_dir(&mid_dir, &device, DType::F32)?,
                    size: options.mid_size,
                    plan: options.mid.clone(),
                }
            }
            other => return Err(format!("unknown config {other} (tiny, mid)").into()),
        });
    }

    println!(
        "CPU, f32, {} threads; prompt {PROMPT:?}, Euler, classifier-free guidance off (scale 1), \
         every step guided (repeats 1 unless said); seeds 1..=N; face place: the centred \
         half-side box ([16, 12, 48, 44] at 64px, scaled).\n",
        candle_core::utils::get_num_threads(),
    );
    println!(
        "Descriptor distance at the planned face place (lower is nearer; std is the sample \
         standard deviation over the seeds; closer = seeds whose guided distance is below the \
         same seed's unguided one):\n"
    );
    println!("| config | person | seeds | identity strength | mean | std | min | max | closer than unguided |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for config in &configs {
        let t = Instant::now();
        for line in bench.quality(config)? {
            println!("{line}");
        }
        eprintln!(
            "{}: distances took {:.0} s",
            config.label,
            t.elapsed().as_secs_f64()
        );
    }
    println!(
        "\nCost per sampling step (median over interleaved rounds; every sample of the batch \
         guided at every step at strength {TIMING_STRENGTH}; extra = (guided - plain) / batch, \
         the added seconds of one guided sample-step):\n"
    );
    println!(
        "| config | batch | steps timed | rounds | plain s/step | guided s/step (repeats 1) | \
         guided / plain | extra s per guided sample-step | guided s/step (repeats 2) | guided / \
         plain | extra s per guided sample-step |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for config in &configs {
        let t = Instant::now();
        println!("{}", bench.timing(config)?);
        eprintln!(
            "{}: timing took {:.0} s",
            config.label,
            t.elapsed().as_secs_f64()
        );
    }
    if mid_dir.exists() {
        std::fs::remove_dir_all(&mid_dir)?;
    }
    println!("\nwhole run: {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}
