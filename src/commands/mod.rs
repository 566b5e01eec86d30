//! One module per command group; each maps its flags onto a library's plain options and calls it.

pub(crate) mod analyse;
mod client;
mod config;
pub(crate) mod demo;
mod faces;
mod generate;
mod library;
pub(crate) mod loras;
mod paint;
pub(crate) mod people;
pub(crate) mod pets;
mod scheduler;
mod serve;
mod tenant;
mod worker;

use clap::Subcommand;
use reverie_shared::ports::store::SharedStore;
use reverie_shared::Config;
use reverie_worker::render::diffusion::{parse_device, parse_dtype};
use reverie_worker::render::{DiffusionRenderer, ModelSource, PainterlyRenderer, RendererOptions};
use reverie_worker::Renderers;

use crate::app::GlobalArgs;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The whole path in one process on the bundled sample library; images under ./out.
    Demo(demo::DemoArgs),
    /// Reverie for a person: scheduler, workers and the web app in one process (open the printed URL).
    Serve(serve::ServeArgs),
    /// Run the scheduler: requests over AMQP and HTTP, plans, jobs, replies.
    Scheduler,
    /// Run a worker: consume jobs, render, store results.
    Worker(worker::WorkerArgs),
    /// Submit a prompt to a running scheduler.
    Submit(client::SubmitArgs),
    /// Show a request's state, plan and outputs.
    Status(client::IdArgs),
    /// Cancel a request.
    Cancel(client::IdArgs),
    /// Refine a finished request with a new prompt (keeps its seed and references unless changed).
    Refine(client::RefineArgs),
    /// Turn every photo of an album into art (resumable: the same command resumes the same run).
    Batch(client::BatchArgs),
    /// Tenants and their tokens; forgetting a tenant.
    #[command(subcommand)]
    Tenant(tenant::TenantCommand),
    /// Grant, revoke or show a tenant's consent.
    #[command(subcommand)]
    Consent(tenant::ConsentCommand),
    /// Model files workers load: `models fetch`.
    #[command(subcommand)]
    Models(faces::ModelsCommand),
    /// Face detection and descriptors on image files.
    #[command(subcommand)]
    Faces(faces::FacesCommand),
    /// Import a photo library, or show what one holds.
    #[command(subcommand)]
    Library(library::LibraryCommand),
    /// Analyse a tenant's library: faces, palettes, style fingerprints; then group faces into people.
    Analyse {
        #[arg(long)]
        tenant: String,
    },
    /// A tenant's people: list, show, name ("me" marks yourself), merge, split.
    #[command(subcommand)]
    People(people::PeopleCommand),
    /// A tenant's pets (cats and dogs found by analysis): list, show, name, merge, split.
    #[command(subcommand)]
    Pets(pets::PetsCommand),
    /// A tenant's LoRAs: add, list, bind to a person or pet, remove.
    #[command(subcommand)]
    Loras(loras::LorasCommand),
    /// Stable Diffusion text-to-image, img2img and masked img2img into a PNG.
    Generate(Box<generate::GenerateArgs>),
    /// Paint one photo in a style (no model weights needed).
    Paint(paint::PaintArgs),
    /// Show the configuration in effect, or every key with its default.
    #[command(subcommand)]
    Config(config::ConfigCommand),
}

pub async fn run(global: &GlobalArgs, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Demo(args) => demo::run(global, args).await,
        Command::Serve(args) => serve::run(global, args).await,
        Command::Scheduler => scheduler::run(global).await,
        Command::Worker(args) => worker::run(global, args).await,
        Command::Submit(args) => client::submit(global, args).await,
        Command::Status(args) => client::status(global, args).await,
        Command::Cancel(args) => client::cancel(global, args).await,
        Command::Refine(args) => client::refine(global, args).await,
        Command::Batch(args) => client::batch(global, args).await,
        Command::Tenant(command) => tenant::run(global, command).await,
        Command::Consent(command) => tenant::consent(global, command).await,
        Command::Models(command) => faces::models(global, command).await,
        Command::Faces(command) => faces::detect(global, command).await,
        Command::Library(command) => library::run(global, command).await,
        Command::Analyse { tenant } => analyse::analyse(global, tenant).await,
        Command::People(command) => people::run(global, command).await,
        Command::Pets(command) => pets::run(global, command).await,
        Command::Loras(command) => loras::run(global, command).await,
        Command::Generate(args) => generate::run(global, *args).await,
        Command::Paint(args) => paint::run(global, args),
        Command::Config(command) => config::run(global, command),
    }
}

/// The renderers a worker of this build can run with this configuration: always the painterly one,
/// and diffusion when `diffusion.model` names a model (resolved, verified and loaded here, once, so a
/// missing or corrupt model stops the worker at start with the reason instead of failing every job).
pub async fn renderers(config: &Config, store: &SharedStore) -> anyhow::Result<Renderers> {
    let renderers = Renderers::default().with(std::sync::Arc::new(PainterlyRenderer));
    let Some(model) = config.diffusion.model.clone() else {
        return Ok(renderers);
    };
    let chosen = parse_device(&config.diffusion.device).map_err(anyhow::Error::msg)?;
    if let Some(line) = &chosen.fallback {
        tracing::warn!("{line}");
    }
    let device = chosen.device;
    let dtype = parse_dtype(&config.diffusion.dtype).map_err(anyhow::Error::msg)?;
    let source = ModelSource {
        registry: config.diffusion_registry(),
        cache_dir: config.models_dir().join("diffusion").join("cache"),
        store: Some(store.clone()),
        runtime: tokio::runtime::Handle::current(),
    };
    let models_dir = config.models_dir();
    let ip_adapter = config.diffusion.ip_adapter.clone();
    let lora_models = config.diffusion.lora_models;
    let renderer = tokio::task::spawn_blocking(move || {
        // Identity guidance needs the face models; without them jobs render unguided (and keep
        // their subjects' pixels), which the worker says once here. They load on the pipeline's
        // device: guidance runs the descriptor on the decoded pixels where those are.
        let faces = match reverie_faces::FaceModels::load_on(&models_dir, &device) {
            Ok(models) => Some(models),
            Err(error) => {
                tracing::warn!(%error, "identity guidance disabled: face models unavailable");
                None
            }
        };
        let options = RendererOptions {
            ip_adapter: ip_adapter.clone(),
            lora_models: lora_models as usize,
        };
        DiffusionRenderer::load_with(&source, &model, &device, dtype, options)
            .map(|r| r.with_face_models(faces))
    })
    .await??;
    Ok(renderers.with(std::sync::Arc::new(renderer)))
}
