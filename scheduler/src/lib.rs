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
pub use reverie_prompt as prompt;
pub mod provenance;
pub mod records;
pub mod replies;
pub mod reply_to;
pub mod request;
pub mod routes;
pub mod runtime;
pub mod scheduler;
pub mod service;
pub mod shards;
pub mod tenants;
pub mod views;
pub mod web;

pub use error::SchedulerError;
pub use options::SchedulerOptions;
pub use scheduler::Scheduler;
pub use service::Core;

/// Locks one of the scheduler's in-memory maps. Every critical section is a single insert, remove or
/// take, so a panic while one is held leaves consistent data: a poisoned lock is used as it is.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
