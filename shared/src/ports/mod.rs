//! The three external systems Reverie depends on, each behind one small trait with two adapters.

pub mod cache;
pub mod queue;
pub mod store;
