//! `reverie generate`: Stable Diffusion (1.x, 2.x, XL) text-to-image, img2img and masked img2img
//! from the command line, with LoRAs, identity guidance toward the people of `--identity` images, the generation
//! parameters in the PNG's text chunks and a JSON sidecar (`NAME.json`) with the identity check.

mod identity;

use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use candle_core::{DType, Device, Tensor};
use clap::Args;
use reverie_diffusion::pipeline::guidance::{default_repeats, MAX_IDENTITY_STRENGTH};
use reverie_diffusion::pipeline::images::{mask_to_tensor, rgb_to_tensor, tensor_to_rgb};
use reverie_diffusion::pipeline::{
    Adapters, GenerationRequest, GuidanceSteps, SampleSpec, StableDiffusion,
};
use reverie_faces::identity::check::SeveralFaces;
use reverie_worker::render::identity::IdentityGuide;

use identity::Identities;
use reverie_diffusion::ip_adapter::{ImagePrompt, MAX_IP_SCALE};
use reverie_diffusion::lora::LoraSpec;
use reverie_diffusion::registry::{adapter_weights_at, sha256_file, AdapterKind, ResolvedModel};
use reverie_diffusion::{SchedulerKind, SchedulerOverrides, TimestepSpacing};
use reverie_shared::backends::connect_store;
use reverie_shared::retry::Backoff;
use reverie_shared::Config;
use reverie_worker::render::diffusion::{parse_device, parse_dtype};
use reverie_worker::render::ModelSource;

use crate::app::{self, GlobalArgs};

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// A registered model name, or a diffusers folder (SD 1.x, 2.x, SDXL base or refiner).
    #[arg(long)]
    pub model: String,
    /// A LoRA safetensors file (kohya/A1111 or diffusers/PEFT naming) or a LoRA's name in the
    /// registry, FILE or FILE:WEIGHT (weight 1 by default); repeat to apply several.
    #[arg(long = "lora")]
    pub lora: Vec<String>,
    /// An IP-Adapter: its .safetensors file, or a folder holding one, with the CLIP vision tower
    /// in image_encoder/ beside it; or an adapter's name in the registry.
    #[arg(long)]
    pub ip_adapter: Option<String>,
    /// The image prompt the IP-Adapter reads (needs --ip-adapter).
    #[arg(long)]
    pub ip_image: Option<PathBuf>,
    /// How strongly the image prompt counts, 0 to 5 (default 1, the trained strength).
    #[arg(long)]
    pub ip_scale: Option<f64>,
    /// The model registry (TOML); default: {models_dir}/diffusion/registry.toml.
    #[arg(long, env = "REVERIE_MODEL_REGISTRY")]
    pub registry: Option<PathBuf>,
    #[arg(long)]
    pub prompt: String,
    /// Negative prompt (default: empty, as in diffusers).
    #[arg(long)]
    pub negative: Option<String>,
    #[arg(long, default_value_t = 30)]
    pub steps: usize,
    /// Classifier-free guidance scale; 1 or less runs no unconditional branch.
    #[arg(long, default_value_t = 7.5)]
    pub guidance: f64,
    /// euler, euler_a, ddim, dpmpp_2m, dpmpp_2m_karras, lcm (default: the model's own).
    #[arg(long)]
    pub scheduler: Option<String>,
    /// Timestep spacing override: leading, trailing, linspace.
    #[arg(long)]
    pub spacing: Option<String>,
    /// SD-Turbo settings: 1 step, guidance 0, Euler with trailing spacing.
    #[arg(long)]
    pub turbo: bool,
    /// Seed of the first image; image i of a batch uses seed + i.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// WIDTHxHEIGHT, both multiples of 8 (default: the init image's size, else 512x512).
    #[arg(long)]
    pub size: Option<String>,
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Start from this picture (img2img); the size defaults to its size.
    #[arg(long)]
    pub init_image: Option<PathBuf>,
    /// How much of the schedule img2img runs, above 0 and at most 1.
    #[arg(long)]
    pub strength: Option<f64>,
    /// White = repaint, black = keep; the init image's size.
    #[arg(long)]
    pub mask: Option<PathBuf>,
    /// safetensors with an f32 tensor `latents` [batch, 4, H/8, W/8], before the scheduler's
    /// initial scaling, used instead of the seeds' noise.
    #[arg(long)]
    pub init_latents: Option<PathBuf>,
    /// Writes the final latents (before VAE decoding) as `latents` to this safetensors file.
    #[arg(long)]
    pub output_latents: Option<PathBuf>,
    /// Writes a latent-resolution preview of the first image after every step here.
    #[arg(long)]
    pub previews: Option<PathBuf>,
    /// f32, f16 or bf16 for the UNet and VAE.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// cpu, or cuda / cuda:N (builds with the cuda feature).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// A photo of a person the picture should show (exactly one face); repeat for several people.
    /// They are placed where --init-image's faces are (left to right), else in a centred row.
    #[arg(long = "identity")]
    pub identity: Vec<PathBuf>,
    /// How hard identity guidance pulls toward the --identity people (0: check only; default 1).
    #[arg(long, allow_negative_numbers = true)]
    pub identity_strength: Option<f64>,
    /// Guided steps as the fraction window START:END of the steps run (default 0:1, every step).
    #[arg(long)]
    pub identity_steps: Option<String>,
    /// Gradient updates per guided step (default 1, or 3 for a one-step run such as --turbo).
    #[arg(long)]
    pub identity_repeats: Option<usize>,
    /// Take the largest face of an --identity image that shows several (default: refuse).
    #[arg(long)]
    pub identity_largest_face: bool,
    /// Render N seeds for each image in one batch and keep the one with the best identity.
    #[arg(long, default_value_t = 1)]
    pub best_of: usize,
    /// The PNG to write; a batch writes NAME-0.png, NAME-1.png, ... Each gets a NAME.json sidecar.
    #[arg(long)]
    pub out: PathBuf,
}

/// The most candidates `--best-of` may render per image: the farm's limit.
const MAX_BEST_OF: usize = reverie_shared::jobs::MAX_BEST_OF as usize;

pub async fn run(global: &GlobalArgs, args: GenerateArgs) -> anyhow::Result<()> {
    let config = app::start_quiet(global)?;
    let source = model_source(&config, &args).await?;
    let models_dir = config.models_dir();
    tokio::task::spawn_blocking(move || {
        let model = source.resolve(&args.model)?;
        let adapters = AdapterArgs::resolve(&source, &args)?;
        generate(model, adapters, args, models_dir)
    })
    .await
    .context("generation task")?
}

fn parse_size(size: &str) -> anyhow::Result<(usize, usize)> {
    let parsed = size
        .split_once(['x', 'X'])
        .and_then(|(w, h)| Some((w.trim().parse().ok()?, h.trim().parse().ok()?)));
    match parsed {
        Some((w, h)) => Ok((w, h)),
        None => bail!("--size {size:?} is not WIDTHxHEIGHT"),
    }
}

fn parse_spacing(name: &str) -> anyhow::Result<TimestepSpacing> {
    Ok(match name {
        "leading" => TimestepSpacing::Leading,
        "trailing" => TimestepSpacing::Trailing,
        "linspace" => TimestepSpacing::Linspace,
        other => bail!("--spacing {other:?} is not leading, trailing or linspace"),
    })
}

/// Where `--model`, `--lora` and `--ip-adapter` are found: folders and files as given, registered
/// names through the same registry and object store the workers use (connected only when a name
/// is given).
async fn model_source(config: &Config, args: &GenerateArgs) -> anyhow::Result<ModelSource> {
    let named_lora = args
        .lora
        .iter()
        .any(|arg| !lora_is_file(arg) && !looks_like_a_path(arg));
    let named_ip = args
        .ip_adapter
        .as_deref()
        .is_some_and(|a| !Path::new(a).exists() && !looks_like_a_path(a));
    let store = if Path::new(&args.model).is_dir() && !named_lora && !named_ip {
        None
    } else {
        Some(connect_store(config, Backoff::from(&config.retry)).await?)
    };
    Ok(ModelSource {
        registry: args
            .registry
            .clone()
            .unwrap_or_else(|| config.diffusion_registry()),
        cache_dir: config.models_dir().join("diffusion").join("cache"),
        store,
        runtime: tokio::runtime::Handle::current(),
    })
}

/// The explicit starting latents of `--init-latents`, one `(1, 4, h, w)` tensor per image.
fn read_init_latents(
    path: &Path,
    batch: usize,
    rows: usize,
    cols: usize,
) -> anyhow::Result<Vec<Tensor>> {
    let tensors = candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| {
        anyhow::anyhow!(
            "--init-latents {}: not a readable safetensors file: {e}",
            path.display()
        )
    })?;
    let latents = tensors.get("latents").with_context(|| {
        format!(
            "--init-latents {}: no tensor named `latents`",
            path.display()
        )
    })?;
    let expected = [batch, 4, rows, cols];
    if latents.dims() != expected || latents.dtype() != DType::F32 {
        bail!(
            "--init-latents {}: `latents` is {:?} {:?}, expected F32 {expected:?}",
            path.display(),
            latents.dtype(),
            latents.dims()
        );
    }
    (0..batch).map(|i| Ok(latents.narrow(0, i, 1)?)).collect()
}

/// An image file decoded with its EXIF orientation applied (phone photos are stored sideways), as
/// RGB; `what` names the flag in the error.
fn read_picture(path: &Path, what: &str) -> anyhow::Result<image::RgbImage> {
    read_upright(path).with_context(|| format!("{what} {}: cannot read the image", path.display()))
}

fn read_upright(path: &Path) -> anyhow::Result<image::RgbImage> {
    use image::ImageDecoder;
    let mut decoder = image::ImageReader::open(path)?
        .with_guessed_format()?
        .into_decoder()?;
    let orientation = decoder.orientation()?;
    let mut picture = image::DynamicImage::from_decoder(decoder)?;
    picture.apply_orientation(orientation);
    Ok(picture.to_rgb8())
}

/// Where image `index` of the batch goes.
fn output_path(out: &Path, batch: usize, index: usize) -> PathBuf {
    if batch == 1 {
        return out.to_path_buf();
    }
    let stem = out
        .file_stem()
        .map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned());
    out.with_file_name(format!("{stem}-{index}.png"))
}

/// The init picture of `--init-image`, upright.
fn init_picture(args: &GenerateArgs) -> anyhow::Result<Option<image::RgbImage>> {
    args.init_image
        .as_deref()
        .map(|path| read_picture(path, "--init-image"))
        .transpose()
}

/// The output size: `--size`, else the init picture's, else 512x512.
fn output_size(
    args: &GenerateArgs,
    init_image: Option<&image::RgbImage>,
) -> anyhow::Result<(usize, usize)> {
    Ok(match (init_image, args.size.as_deref()) {
        (_, Some(size)) => parse_size(size)?,
        (Some(image), None) => (image.width() as usize, image.height() as usize),
        (None, None) => (512, 512),
    })
}

fn check_identity_args(args: &GenerateArgs) -> anyhow::Result<()> {
    if args.best_of == 0 || args.best_of > MAX_BEST_OF {
        bail!(
            "--best-of {} must be between 1 and {MAX_BEST_OF}",
            args.best_of
        );
    }
    if args.identity.is_empty() {
        if args.identity_strength.is_some() || args.identity_steps.is_some() {
            bail!("--identity-strength and --identity-steps need at least one --identity image");
        }
        if args.best_of > 1 {
            bail!("--best-of ranks candidates by identity: give at least one --identity image");
        }
    }
    if args.best_of > 1 && args.init_latents.is_some() {
        bail!(
            "--best-of draws its candidates from seeds; it cannot be combined with --init-latents"
        );
    }
    if let Some(strength) = args.identity_strength {
        if !strength.is_finite() || !(0.0..=MAX_IDENTITY_STRENGTH).contains(&strength) {
            bail!(
                "--identity-strength {strength} must be between 0 (check only) and \
                 {MAX_IDENTITY_STRENGTH}"
            );
        }
    }
    Ok(())
}

fn parse_identity_steps(text: &str) -> anyhow::Result<GuidanceSteps> {
    let parsed = text
        .split_once(':')
        .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)));
    let Some((start, end)) = parsed else {
        bail!("--identity-steps {text:?} is not START:END (fractions, e.g. 0:0.6)");
    };
    let steps = GuidanceSteps { start, end };
    steps
        .validate()
        .map_err(|e| anyhow::anyhow!("--identity-steps: {e}"))?;
    Ok(steps)
}

fn build_request(
    args: &GenerateArgs,
    init_image: Option<&image::RgbImage>,
) -> anyhow::Result<GenerationRequest> {
    if args.batch == 0 || args.batch > 64 {
        bail!("--batch {} must be between 1 and 64", args.batch);
    }
    check_identity_args(args)?;
    let (width, height) = output_size(args, init_image)?;
    let candidates = args.batch * args.best_of;
    let mut samples = Vec::with_capacity(candidates);
    for index in 0..candidates {
        let mut sample = SampleSpec::new(
            args.prompt.clone(),
            args.seed.wrapping_add(index as u64),
            args.guidance,
        );
        sample.negative_prompt = args.negative.clone();
        samples.push(sample);
    }
    let mut request = if args.turbo {
        GenerationRequest::turbo(samples)
    } else {
        GenerationRequest::new(samples)
    };
    request.width = width;
    request.height = height;
    if !args.turbo {
        request.steps = args.steps;
    }
    if let Some(name) = &args.scheduler {
        request.scheduler = Some(SchedulerKind::from_name(name)?);
    }
    if let Some(spacing) = &args.spacing {
        request.overrides = SchedulerOverrides {
            timestep_spacing: Some(parse_spacing(spacing)?),
            ..request.overrides
        };
    }
    if let Some(image) = init_image {
        if (image.width() as usize, image.height() as usize) != (width, height) {
            bail!(
                "--init-image is {}x{} but --size is {width}x{height}",
                image.width(),
                image.height()
            );
        }
        request.strength = args.strength.unwrap_or(0.75);
        let tensor = rgb_to_tensor(image, &Device::Cpu)?;
        let mask = match &args.mask {
            Some(path) => {
                let mask = image::DynamicImage::ImageRgb8(read_picture(path, "--mask")?).to_luma8();
                if (mask.width(), mask.height()) != (image.width(), image.height()) {
                    bail!(
                        "--mask {} is {}x{} but the init image is {}x{}",
                        path.display(),
                        mask.width(),
                        mask.height(),
                        image.width(),
                        image.height()
                    );
                }
                Some(mask_to_tensor(&mask, &Device::Cpu)?)
            }
            None => None,
        };
        for sample in &mut request.samples {
            sample.init_image = Some(tensor.clone());
            sample.mask = mask.clone();
        }
    } else if args.mask.is_some() || args.strength.is_some() {
        bail!("--mask and --strength need --init-image");
    }
    request.validate()?;
    if let Some(path) = &args.init_latents {
        if init_image.is_some() {
            bail!("--init-latents is for text-to-image; img2img starts from --init-image");
        }
        let (rows, cols) = request.latent_size();
        let latents = read_init_latents(path, candidates, rows, cols)?;
        for (sample, latents) in request.samples.iter_mut().zip(latents) {
            sample.noise.initial_latents = Some(latents);
        }
    }
    request.validate()?;
    Ok(request)
}

fn generate(
    model: ResolvedModel,
    adapters: AdapterArgs,
    args: GenerateArgs,
    models_dir: PathBuf,
) -> anyhow::Result<()> {
    let dtype = parse_dtype(&args.dtype).map_err(|e| anyhow::anyhow!("--dtype: {e}"))?;
    let chosen = parse_device(&args.device).map_err(|e| anyhow::anyhow!("--device: {e}"))?;
    if let Some(line) = &chosen.fallback {
        eprintln!("warning: {line}");
    }
    let device = chosen.device;
    let init_image = init_picture(&args)?;
    let mut request = build_request(&args, init_image.as_ref())?;
    let identities = if args.identity.is_empty() {
        None
    } else {
        let several = match args.identity_largest_face {
            true => SeveralFaces::Largest,
            false => SeveralFaces::Refuse,
        };
        Some(Identities::load(
            &models_dir,
            &device,
            &args.identity,
            several,
            init_image.as_ref(),
            (request.width, request.height),
        )?)
    };
    if let Some(people) = &identities {
        let targets = vec![people.targets.clone(); request.samples.len()];
        // Anchor on the init picture only where its own faces are the places; a centred row on
        // an init picture without faces takes the landmark model's mean shape instead.
        let anchor = init_image.as_ref().filter(|_| people.places_from_init);
        let inits = vec![anchor; request.samples.len()];
        let size = (request.width, request.height);
        let mut guidance =
            IdentityGuide::anchored(people.face_models(), targets, &inits, size).into_guidance();
        if let Some(steps) = &args.identity_steps {
            guidance.steps = parse_identity_steps(steps)?;
        }
        let run_steps = request.steps - request.first_step()?;
        guidance.repeats = args
            .identity_repeats
            .unwrap_or_else(|| default_repeats(run_steps));
        request.identity = Some(guidance);
        let strength = args.identity_strength.unwrap_or(1.0);
        for sample in &mut request.samples {
            sample.identity_strength = strength;
        }
        request.validate()?;
    }
    if args.prompt.is_empty() {
        eprintln!("note: empty prompt: generating unconditionally");
    }
    let AdapterArgs {
        loras,
        image_prompt,
    } = adapters;
    let specs: Vec<LoraSpec> = loras.iter().map(|l| l.spec.clone()).collect();
    let adapters = Adapters {
        loras: specs,
        ip_adapter: image_prompt.as_ref().map(|p| p.adapter.clone()),
    };
    let pipeline = StableDiffusion::from_dir_with(&model.dir, &device, dtype, &adapters)
        .with_context(|| format!("loading model {} from {}", model.name, model.dir.display()))?;
    if let Some(prompt) = &image_prompt {
        let picture = read_picture(&prompt.image, "--ip-image")?;
        let embeds = pipeline
            .encode_image_prompt(&picture)
            .with_context(|| format!("--ip-image {}", prompt.image.display()))?;
        for sample in &mut request.samples {
            sample.image_prompt = Some(ImagePrompt {
                embeds: embeds.clone(),
                scale: prompt.scale,
            });
        }
        request.validate()?;
    }
    if request.identity.is_some() && !pipeline.supports_identity_guidance() {
        bail!(
            "--identity guides by differentiating the VAE decoder in f32, and this model's VAE runs \
             in {:?} with --dtype {}: use --dtype f32",
            pipeline.vae_dtype(),
            args.dtype
        );
    }
    let scheduler = request.scheduler.unwrap_or(pipeline.default_scheduler());
    if let Some(dir) = &args.previews {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut preview_error = None;
    let generation = pipeline.generate(&request, &mut |progress| {
        eprintln!(
            "step {}/{} (t = {})",
            progress.step, progress.total, progress.timestep
        );
        if let Some(dir) = &args.previews {
            let path = dir.join(format!("step-{:03}.png", progress.step));
            if let Err(e) = progress
                .preview(0)
                .map_err(anyhow::Error::from)
                .and_then(|p| Ok(p.save(&path)?))
            {
                preview_error = Some(e.context(format!("writing preview {}", path.display())));
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    });
    if let Some(error) = preview_error {
        return Err(error);
    }
    let generation = generation?;
    for warning in &generation.warnings {
        eprintln!("warning: {warning}");
    }
    if let Some(path) = &args.output_latents {
        let tensors = HashMap::from([(
            "latents".to_string(),
            generation.latents.to_device(&Device::Cpu)?,
        )]);
        candle_core::safetensors::save(&tensors, path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let images = tensor_to_rgb(&pipeline.decode(&generation.latents)?)?;
    let reports = match &identities {
        Some(people) => images
            .iter()
            .map(|image| people.report(image))
            .collect::<anyhow::Result<Vec<_>>>()?,
        None => vec![Vec::new(); images.len()],
    };
    for index in 0..args.batch {
        let range = index * args.best_of..(index + 1) * args.best_of;
        let chosen = range.start + identity::best_candidate(&reports[range.clone()]);
        let (image, sample) = (&images[chosen], &request.samples[chosen]);
        let mut sidecar = png_text(&request, sample, scheduler, &model);
        if !loras.is_empty() {
            sidecar.insert("loras".to_string(), serde_json::to_string(&loras)?);
        }
        if let Some(prompt) = &image_prompt {
            sidecar.insert("image_prompt".to_string(), serde_json::to_string(prompt)?);
        }
        let identity_json = serde_json::to_string(&reports[chosen])?;
        if identities.is_some() {
            sidecar.insert("identity".to_string(), identity_json);
        }
        let png = reverie_worker::outputs::encode_png(image, &sidecar)?;
        let path = output_path(&args.out, args.batch, index);
        std::fs::write(&path, png).with_context(|| format!("writing {}", path.display()))?;
        let candidates: Vec<Candidate<'_>> = range
            .map(|c| Candidate {
                seed: request.samples[c].seed,
                identity: &reports[c],
            })
            .collect();
        let run = Run {
            request: &request,
            scheduler,
            model: &model,
            loras: &loras,
            image_prompt: image_prompt.as_ref(),
        };
        write_sidecar(&path, &run, sample, &reports[chosen], &candidates)?;
        for person in &reports[chosen] {
            println!(
                "  {}: distance {:.3} ({})",
                person.reference,
                person.distance,
                person.verdict.label()
            );
        }
        println!("{} (seed {})", path.display(), sample.seed);
    }
    Ok(())
}

/// The adapters of a run: `--lora` and `--ip-adapter`, each a file or a registered name.
struct AdapterArgs {
    loras: Vec<LoraRecord>,
    image_prompt: Option<ImagePromptArgs>,
}

impl AdapterArgs {
    /// Checks the flags and resolves registered names (verified, and made for `--model` when it
    /// is registered too). Blocking.
    fn resolve(source: &ModelSource, args: &GenerateArgs) -> anyhow::Result<Self> {
        Ok(Self {
            loras: lora_records(source, args)?,
            image_prompt: ImagePromptArgs::from_args(source, args)?,
        })
    }
}

/// A `--lora` as applied and recorded: the file, its SHA-256 and the weight (and its registered
/// name when it was given by one).
#[derive(serde::Serialize)]
struct LoraRecord {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    file: String,
    sha256: String,
    weight: f64,
    #[serde(skip)]
    spec: LoraSpec,
}

/// Whether a `--lora` argument names a file (else a registered LoRA).
fn lora_is_file(arg: &str) -> bool {
    LoraSpec::parse(arg).is_ok_and(|spec| spec.source.label().is_file())
}

/// Whether `given` can only mean a file (a folder in it, or a file extension): such a name is never
/// looked up in the registry, so a mistyped path says so at once.
fn looks_like_a_path(given: &str) -> bool {
    given.contains(['/', '\\']) || given.ends_with(".safetensors")
}

/// Parses and hashes the `--lora` arguments: files as given, other names through the registry.
fn lora_records(source: &ModelSource, args: &GenerateArgs) -> anyhow::Result<Vec<LoraRecord>> {
    args.lora
        .iter()
        .map(|arg| {
            let mut spec = LoraSpec::parse(arg)?;
            let given = spec.source.label();
            let text = given.to_string_lossy().into_owned();
            let name = match given.is_file() {
                true => None,
                false if looks_like_a_path(&text) => bail!("--lora {text}: no such file"),
                false => {
                    let adapter = source
                        .resolve_adapter(&text, AdapterKind::Lora, &args.model)
                        .map_err(|e| named_adapter_error("--lora", &text, e))?;
                    spec = LoraSpec::file(&adapter.path, spec.weight);
                    Some(text)
                }
            };
            let path = spec.source.label();
            let sha256 =
                sha256_file(&path).with_context(|| format!("--lora {}", path.display()))?;
            Ok(LoraRecord {
                name,
                file: path.display().to_string(),
                sha256,
                weight: spec.weight,
                spec,
            })
        })
        .collect()
}

/// A `--lora` or `--ip-adapter` that is neither a file nor usable by name: says which.
fn named_adapter_error(flag: &str, given: &str, error: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{flag} {given}: not a file, and as a registered name: {error}")
}

/// `--ip-adapter`, `--ip-image` and `--ip-scale`, checked, as applied and recorded.
#[derive(serde::Serialize)]
struct ImagePromptArgs {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    adapter: PathBuf,
    adapter_sha256: String,
    image: PathBuf,
    image_sha256: String,
    scale: f64,
}

impl ImagePromptArgs {
    fn from_args(source: &ModelSource, args: &GenerateArgs) -> anyhow::Result<Option<Self>> {
        let (adapter, image) = match (&args.ip_adapter, &args.ip_image) {
            (None, None) if args.ip_scale.is_some() => {
                bail!("--ip-scale needs --ip-adapter and --ip-image")
            }
            (None, None) => return Ok(None),
            (Some(adapter), Some(image)) => (adapter, image),
            (Some(_), None) => bail!("--ip-adapter needs an --ip-image to read"),
            (None, Some(_)) => bail!("--ip-image needs an --ip-adapter to read it"),
        };
        let scale = args.ip_scale.unwrap_or(1.0);
        if !scale.is_finite() || !(0.0..=MAX_IP_SCALE).contains(&scale) {
            bail!("--ip-scale {scale} must be between 0 and {MAX_IP_SCALE}");
        }
        if !Path::new(adapter).exists() && looks_like_a_path(adapter) {
            bail!("--ip-adapter {adapter}: no such file or folder");
        }
        let (name, adapter) = match Path::new(adapter).exists() {
            true => (
                None,
                adapter_weights_at(Path::new(adapter)).context("--ip-adapter")?,
            ),
            false => {
                let resolved = source
                    .resolve_adapter(adapter, AdapterKind::IpAdapter, &args.model)
                    .map_err(|e| named_adapter_error("--ip-adapter", adapter, e))?;
                (Some(adapter.clone()), resolved.path)
            }
        };
        Ok(Some(Self {
            name,
            adapter_sha256: sha256_file(&adapter)
                .with_context(|| format!("--ip-adapter {}", adapter.display()))?,
            image_sha256: sha256_file(image)
                .with_context(|| format!("--ip-image {}", image.display()))?,
            adapter,
            image: image.clone(),
            scale,
        }))
    }
}

/// What one `reverie generate` ran with, shared by every image it writes.
struct Run<'a> {
    request: &'a GenerationRequest,
    scheduler: SchedulerKind,
    model: &'a ResolvedModel,
    loras: &'a [LoraRecord],
    image_prompt: Option<&'a ImagePromptArgs>,
}

/// One rendered candidate of `--best-of` and its identity reports.
#[derive(serde::Serialize)]
struct Candidate<'a> {
    seed: u64,
    identity: &'a [identity::PersonReport],
}

/// `NAME.json` beside `NAME.png`: the generation's parameters, the identity of the kept picture
/// and, with `--best-of`, every candidate's.
#[derive(serde::Serialize)]
struct Sidecar<'a> {
    software: String,
    prompt: &'a str,
    negative_prompt: &'a str,
    seed: u64,
    steps: usize,
    scheduler: &'static str,
    guidance: f64,
    width: usize,
    height: usize,
    model: &'a str,
    model_hash: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    loras: &'a [LoraRecord],
    #[serde(skip_serializing_if = "Option::is_none")]
    image_prompt: Option<&'a ImagePromptArgs>,
    /// img2img only.
    #[serde(skip_serializing_if = "Option::is_none")]
    strength: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    masked: Option<bool>,
    /// The seed did not make the starting noise (`--init-latents`).
    initial_latents_given: bool,
    identity_strength: f64,
    identity: &'a [identity::PersonReport],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    candidates: &'a [Candidate<'a>],
}

fn write_sidecar(
    png: &Path,
    run: &Run<'_>,
    sample: &SampleSpec,
    identity: &[identity::PersonReport],
    candidates: &[Candidate<'_>],
) -> anyhow::Result<()> {
    let Run {
        request,
        scheduler,
        model,
        loras,
        image_prompt,
    } = *run;
    let img2img = request.is_img2img();
    let sidecar = Sidecar {
        software: format!("Reverie {}", env!("CARGO_PKG_VERSION")),
        prompt: &sample.prompt,
        negative_prompt: sample.negative_prompt.as_deref().unwrap_or(""),
        seed: sample.seed,
        steps: request.steps,
        scheduler: scheduler.name(),
        guidance: sample.guidance_scale,
        width: request.width,
        height: request.height,
        model: &model.name,
        model_hash: &model.identity,
        loras,
        image_prompt,
        strength: img2img.then_some(request.strength),
        masked: img2img.then_some(sample.mask.is_some()),
        initial_latents_given: sample.noise.initial_latents.is_some(),
        identity_strength: sample.identity_strength,
        identity,
        candidates: match candidates.len() {
            0 | 1 => &[],
            _ => candidates,
        },
    };
    let path = png.with_extension("json");
    std::fs::write(&path, serde_json::to_vec_pretty(&sidecar)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// The generation parameters, under the same keys the worker's outputs use.
fn png_text(
    request: &GenerationRequest,
    sample: &SampleSpec,
    scheduler: SchedulerKind,
    model: &ResolvedModel,
) -> BTreeMap<String, String> {
    let mut text = BTreeMap::from([
        (
            "Software".to_string(),
            format!("Reverie {}", env!("CARGO_PKG_VERSION")),
        ),
        ("prompt".to_string(), sample.prompt.clone()),
        (
            "negative_prompt".to_string(),
            sample.negative_prompt.clone().unwrap_or_default(),
        ),
        ("seed".to_string(), sample.seed.to_string()),
        ("steps".to_string(), request.steps.to_string()),
        ("scheduler".to_string(), scheduler.name().to_string()),
        ("guidance".to_string(), sample.guidance_scale.to_string()),
        (
            "size".to_string(),
            format!("{}x{}", request.width, request.height),
        ),
        ("model".to_string(), model.name.clone()),
        ("model_hash".to_string(), model.identity.clone()),
    ]);
    if sample.noise.initial_latents.is_some() {
        // The seed did not make the noise: say so, or the image could not be reproduced from it.
        text.insert("initial_latents".to_string(), "given".to_string());
    }
    if request.is_img2img() {
        text.insert("strength".to_string(), request.strength.to_string());
        text.insert("masked".to_string(), sample.mask.is_some().to_string());
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_batches_number_their_files() {
        assert_eq!(parse_size("768x512").unwrap(), (768, 512));
        assert!(parse_size("768").is_err());
        assert_eq!(
            output_path(Path::new("/o/a.png"), 1, 0),
            PathBuf::from("/o/a.png")
        );
        assert_eq!(
            output_path(Path::new("/o/a.png"), 3, 2),
            PathBuf::from("/o/a-2.png")
        );
    }
}
