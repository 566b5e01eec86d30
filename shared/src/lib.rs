//! reverie-shared: what every Reverie role agrees on — identifiers and the storage layout, job messages
//! and their versioned envelope, configuration, telemetry and metrics, and the three ports (queue, cache,
//! object store) with their real and embedded adapters.

pub mod backends;
pub mod config;
pub mod consume;
pub mod destinations;
pub mod envelope;
pub mod http;
pub mod ids;
pub mod jobs;
pub mod keys;
pub mod metrics;
pub mod ports;
pub mod queues;
pub mod retry;
pub mod telemetry;
pub mod tenant_loras;
pub mod testing;

pub use backends::Backends;
pub use config::Config;
