//! The gain from batching: the same jobs rendered in batches of 1, 4 and 16 by the diffusion renderer
//! on the sd-tiny fixture (CPU), images per second and the speed-up over batch 1. This is the
//! measurement behind `worker.batch_max` and `worker.batch_wait_ms` (docs/performance.md).
//!
//! `cargo run --release -p reverie-worker --example batching_bench -- [--jobs 16] [--steps 10] [--size 64]
//!  [--model DIR]`

use std::path::PathBuf;
use std::time::Instant;

use candle_core::{DType, Device};
use reverie_shared::jobs::{RenderSpec, RendererKind};
use reverie_worker::render::{DiffusionRenderer, ModelSource, RenderRequest, Renderer};

struct Options {
    jobs: usize,
    steps: u32,
    size: u32,
    model: PathBuf,
}

fn options() -> Options {
    let mut options = Options {
        jobs: 16,
        steps: 10,
        size: 64,
        model: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/sd-tiny/model"),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let value = pair.get(1).map(String::as_str).unwrap_or("");
        match pair[0].as_str() {
            "--jobs" => options.jobs = value.parse().expect("--jobs N"),
            "--steps" => options.steps = value.parse().expect("--steps N"),
            "--size" => options.size = value.parse().expect("--size PIXELS"),
            "--model" => options.model = PathBuf::from(value),
            other => panic!("unknown argument {other}"),
        }
    }
    options
}

fn job(options: &Options, index: usize) -> RenderRequest {
    RenderRequest {
        spec: RenderSpec {
            renderer: RendererKind::Diffusion,
            prompt: format!("a lighthouse at dusk, variation {index}"),
            negative_prompt: String::new(),
            style: String::new(),
            model: None,
            width: options.size,
            height: options.size,
            steps: options.steps,
            guidance: 7.5,
            scheduler: Some("euler".to_string()),
            seed: index as u64,
            strength: 1.0,
            palette_transfer: false,
            identity_strength: 0.0,
            best_of: 1,
            adapters: Default::default(),
        },
        photos: vec![],
        identity: Vec::new(),
        loras: Vec::new(),
        cached_image_prompt: None,
        pet_boxes: Vec::new(),
    }
}

fn main() {
    let options = options();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let source = ModelSource {
        registry: PathBuf::from("registry.toml"),
        cache_dir: std::env::temp_dir(),
        store: None,
        runtime: runtime.handle().clone(),
    };
    let renderer = DiffusionRenderer::load(
        &source,
        &options.model.display().to_string(),
        &Device::Cpu,
        DType::F32,
    )
    .expect("model loads");
    let jobs: Vec<RenderRequest> = (0..options.jobs).map(|i| job(&options, i)).collect();
    // One warm-up batch so that allocation and page-in of the weights do not count.
    let _ = renderer.render_batch(&jobs[..1], &reverie_worker::render::NoProgress);

    println!(
        "diffusion renderer, {} jobs of {}x{} px, {} steps, CFG 7.5, {} CPU threads",
        options.jobs,
        options.size,
        options.size,
        options.steps,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("| batch size | seconds | images/s | speed-up vs batch 1 |");
    println!("|---|---|---|---|");
    let mut baseline = None;
    for batch in [1usize, 4, 16] {
        let started = Instant::now();
        for chunk in jobs.chunks(batch) {
            for result in renderer.render_batch(chunk, &reverie_worker::render::NoProgress) {
                result.expect("renders");
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        let rate = options.jobs as f64 / seconds;
        let base = *baseline.get_or_insert(rate);
        println!(
            "| {batch} | {seconds:.2} | {rate:.2} | {:.2}x |",
            rate / base
        );
    }
}
