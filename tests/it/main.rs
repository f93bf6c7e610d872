//! The integration tests, in one binary (one link of the whole SDK graph):
//! each module is one concern, every test against the real local stack.
//! The fault tests, which take the stack's Postgres away, are the one other
//! binary (`tests/faults.rs`): nothing else may run while they do.

mod api;
mod connections;
mod event_bus;
mod events;
mod failures;
mod idempotency;
mod lifecycle;
mod metrics;
mod placement;
mod provision;
mod reconcile;
mod security;
mod template;
