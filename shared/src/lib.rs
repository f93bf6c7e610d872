//! The provisioning pipeline: domain, stage logic, ports and adapters, and the
//! Lambda glue shared by every function binary.

pub mod adapters;
pub mod api;
pub mod api_keys;
pub mod batch;
pub mod cluster;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod events;
pub mod fault;
pub mod function;
pub mod idempotency;
pub mod journal;
pub mod keys;
pub mod lifecycle;
pub mod lock;
pub mod metrics;
pub mod migrate;
pub mod outbox;
pub mod pipeline;
pub mod ports;
pub mod project;
pub mod reconcile;
pub mod report;
pub mod secrets;
pub mod stages;
pub mod status;
pub mod store;
pub mod sweeper;
pub mod telemetry;
pub mod tls;

pub use config::Settings;
pub use domain::{NewProject, RunKind, Stage, StageMessage};
pub use error::StageError;
pub use function::{Role, StageFunction};
pub use pipeline::Pipeline;
pub use stages::Outcome;
