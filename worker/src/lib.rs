//! reverie-worker: turns jobs into images. Consumes the job queues, batches compatible jobs, pulls photos
//! from the object store, renders through the [`render::Renderer`] port, writes results with provenance,
//! reports to the scheduler, and acknowledges only after all of that is durable.

pub mod analysis;
pub mod analysis_jobs;
pub mod batcher;
pub mod context;
pub mod cutout;
pub mod event_routes;
pub mod identity;
pub mod inputs;
pub mod library_analysis;
pub mod lifecycle;
pub mod outputs;
pub mod palettes;
pub mod people;
pub mod pets;
pub mod previews;
pub mod render;
pub mod runner;

pub use context::{Renderers, WorkerContext};
pub use lifecycle::{run_worker, WorkerError};
