//! Lifecycle events: what integrators are told, on the EventBridge bus.
//!
//! The rows are written by the database itself (migration
//! `0006_events.sql`): a trigger on each table whose change is an event writes
//! an outbox row in the changing transaction, so no code path can change a
//! status and forget to tell. The writer relays its project's events right
//! after its commit (`outbox::relay`); the sweeper re-sends what stays unsent.
//! Delivery is at least once: receivers dedupe on `detail.event_id`.
//! `docs/events.md` documents every detail type and its JSON Schema.

use serde::{Deserialize, Serialize};

/// The `source` of every event this system publishes.
pub const SOURCE: &str = "provisioning";

/// Every detail type, in the order `docs/events.md` lists them. Stable: a
/// receiver's rule names them. The key events' detail names the key by its
/// id, prefix and scopes (never the key).
pub const DETAIL_TYPES: [&str; 16] = [
    "Project Requested",
    "Project Provisioning",
    "Project Ready",
    "Project Failed",
    "Project Suspended",
    "Project Resumed",
    "Project Deleted",
    "Project Restored",
    "Project Purged",
    "Operation Started",
    "Operation Failed",
    "Stage Succeeded",
    "Stage Retrying",
    "Stage Failed",
    "Api Key Issued",
    "Api Key Revoked",
];

/// One event as stored in the outbox and put on the bus: the detail is the
/// JSON the trigger built (`detail.event_id`, `project_id`, `run_id`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub detail_type: String,
    pub detail: serde_json::Value,
}

impl Event {
    /// The id receivers dedupe on.
    pub fn event_id(&self) -> Option<&str> {
        self.detail.get("event_id").and_then(|v| v.as_str())
    }
}
