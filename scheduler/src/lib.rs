//! reverie-scheduler: turns requests (AMQP and HTTP) into plans and plans into jobs, follows every job
//! through its lifecycle from worker events, and enforces tenants, consent, quotas and fairness.
//!
//! Entry points: [`Scheduler::run`] (the `reverie scheduler` role), [`client::ApiClient`] (the CLI's
//! `submit`, `status`, `cancel`, `refine` over HTTP) and [`Core`] (in-process administration: tenants,
//! tokens, consent, forget).

pub mod album;
pub mod api;
pub mod client;
pub mod error;
pub mod fairness;
pub mod group_commit;
pub mod ingress;
pub mod library;
pub mod library_manifest;
pub mod open_log;
pub mod options;
pub mod plan;
pub mod prompt;
pub mod records;
pub mod replies;
pub mod request;
pub mod runtime;
pub mod scheduler;
pub mod service;
pub mod tenants;

pub use error::SchedulerError;
pub use options::SchedulerOptions;
pub use scheduler::Scheduler;
pub use service::Core;
