//! Local development support: queue setup, the SQS event-source runner and the
//! demo, all against the local stack started by `scripts/stack.sh`.

pub mod bench;
pub mod cpu;
pub mod demo;
pub mod events;
pub mod http;
pub mod queues;
pub mod runner;
pub mod runtime_api;
pub mod sandbox;

pub use queues::{create_queues, QueueSettings, LOCAL_QUEUE_NAME_PREFIX};
pub use runner::{Delivery, PollReport, Runner, RunningRunner};
