//! Metrics in CloudWatch embedded metric format (EMF): one JSON document per
//! line on stdout, which CloudWatch Logs turns into metrics; no API call on the
//! hot path. Namespace `Provisioning`. A small module rather than a crate: the
//! format is a dozen lines of JSON, and a crate would add size and init time to
//! every function for it.
//!
//! What is emitted, and where:
//! - every stage attempt that ends (succeeded, retrying, failed): `StageDuration`
//!   (ms, the attempt's wall time) and `StageAttempts` (the attempt's number),
//!   dimension `Stage`;
//! - a project ready: `ProvisioningDuration` (ms, creation to ready, as recorded
//!   on the project), dimensions `Region` and `Cluster`, and with none (for the
//!   p95 alarm), and `ProjectsReady`, dimension `Stage`;
//! - a provisioning run failed: `ProjectsFailed`, dimension `Stage`;
//! - a message dead-lettered: `MessagesDeadLettered`, dimension `Stage`;
//! - a lifecycle run that ends: `OperationDuration` (ms, start to end) and
//!   `OperationsSucceeded` or `OperationsFailed`, dimension `Operation`;
//! - each reconciliation pass: its counts (`reconcile::emf_document`).
//!
//! Every document also carries `project_id`, `run_id` and the like as plain
//! properties (searchable in the logs, not dimensions: no cardinality cost).

use std::sync::OnceLock;

pub const NAMESPACE: &str = "Provisioning";

/// A metric's unit, as EMF names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Milliseconds,
    Count,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Milliseconds => "Milliseconds",
            Unit::Count => "Count",
        }
    }
}

/// One EMF document: `metrics` (name, unit, value) under each of the
/// `dimension_sets` (names whose values are in `dimensions`), with
/// `properties` alongside.
pub fn document(
    dimension_sets: &[&[&str]],
    dimensions: &[(&str, &str)],
    metrics: &[(&str, Unit, f64)],
    properties: &[(&str, serde_json::Value)],
) -> serde_json::Value {
    let mut doc = serde_json::json!({
        "_aws": {
            "Timestamp": chrono::Utc::now().timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": dimension_sets,
                "Metrics": metrics
                    .iter()
                    .map(|(name, unit, _)| serde_json::json!({"Name": name, "Unit": unit.as_str()}))
                    .collect::<Vec<_>>(),
            }],
        },
    });
    for (name, value) in dimensions {
        doc[*name] = (*value).into();
    }
    for (name, _, value) in metrics {
        doc[*name] = (*value).into();
    }
    for (name, value) in properties {
        doc[*name] = value.clone();
    }
    doc
}

type Sink = Box<dyn Fn(&str) + Send + Sync>;

static SINK: OnceLock<Sink> = OnceLock::new();

/// Sends EMF lines somewhere else than stdout (the tests' capture); once.
pub fn set_sink(sink: impl Fn(&str) + Send + Sync + 'static) {
    let _ = SINK.set(Box::new(sink));
}

/// Writes one document as one line.
pub fn emit(document: &serde_json::Value) {
    let line = document.to_string();
    match SINK.get() {
        Some(sink) => sink(&line),
        None => println!("{line}"),
    }
}

/// A stage attempt ended (`outcome`: succeeded, retrying, failed).
pub fn stage_attempt(
    stage: &str,
    kind: &str,
    attempt: i32,
    elapsed: std::time::Duration,
    outcome: &str,
    ids: Ids,
) {
    emit(&document(
        &[&["Stage"]],
        &[("Stage", stage)],
        &[
            (
                "StageDuration",
                Unit::Milliseconds,
                elapsed.as_secs_f64() * 1000.0,
            ),
            ("StageAttempts", Unit::Count, f64::from(attempt)),
        ],
        &ids.with(&[("kind", kind.into()), ("outcome", outcome.into())]),
    ));
}

/// A project became ready, `provisioning_ms` after its creation.
pub fn project_ready(region: &str, cluster: &str, provisioning_ms: i64, ids: Ids) {
    emit(&document(
        &[&["Region", "Cluster"], &[]],
        &[("Region", region), ("Cluster", cluster)],
        &[(
            "ProvisioningDuration",
            Unit::Milliseconds,
            provisioning_ms as f64,
        )],
        &ids.with(&[]),
    ));
    emit(&document(
        &[&["Stage"]],
        &[("Stage", "finalize")],
        &[("ProjectsReady", Unit::Count, 1.0)],
        &ids.with(&[]),
    ));
}

/// A provisioning run failed at `stage` (permanently, or dead-lettered).
pub fn project_failed(stage: &str, ids: Ids) {
    emit(&document(
        &[&["Stage"]],
        &[("Stage", stage)],
        &[("ProjectsFailed", Unit::Count, 1.0)],
        &ids.with(&[]),
    ));
}

/// A message of `stage` exhausted its receives.
pub fn dead_lettered(stage: &str, ids: Ids) {
    emit(&document(
        &[&["Stage"]],
        &[("Stage", stage)],
        &[("MessagesDeadLettered", Unit::Count, 1.0)],
        &ids.with(&[]),
    ));
}

/// A lifecycle run ended, `duration_ms` after its start (None: failed).
pub fn operation_ended(operation: &str, duration_ms: Option<i64>, ids: Ids) {
    let mut metrics = vec![match duration_ms {
        Some(_) => ("OperationsSucceeded", Unit::Count, 1.0),
        None => ("OperationsFailed", Unit::Count, 1.0),
    }];
    if let Some(ms) = duration_ms {
        metrics.push(("OperationDuration", Unit::Milliseconds, ms as f64));
    }
    emit(&document(
        &[&["Operation"]],
        &[("Operation", operation)],
        &metrics,
        &ids.with(&[]),
    ));
}

/// The identifiers every document carries as properties.
#[derive(Debug, Clone, Copy)]
pub struct Ids {
    pub project_id: uuid::Uuid,
    pub run_id: uuid::Uuid,
    pub correlation_id: uuid::Uuid,
}

impl Ids {
    fn with(
        self,
        more: &[(&'static str, serde_json::Value)],
    ) -> Vec<(&'static str, serde_json::Value)> {
        let mut all = vec![
            ("project_id", self.project_id.to_string().into()),
            ("run_id", self.run_id.to_string().into()),
            ("correlation_id", self.correlation_id.to_string().into()),
        ];
        all.extend(more.iter().cloned());
        all
    }
}

impl From<&crate::domain::StageMessage> for Ids {
    fn from(m: &crate::domain::StageMessage) -> Ids {
        Ids {
            project_id: m.project_id,
            run_id: m.run_id,
            correlation_id: m.correlation_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_declares_what_it_carries() {
        let doc = document(
            &[&["Region", "Cluster"], &[]],
            &[("Region", "us-east-1"), ("Cluster", "a")],
            &[("ProvisioningDuration", Unit::Milliseconds, 512.0)],
            &[("project_id", "p".into())],
        );
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], NAMESPACE);
        assert_eq!(
            directive["Dimensions"],
            serde_json::json!([["Region", "Cluster"], []])
        );
        assert_eq!(directive["Metrics"][0]["Unit"], "Milliseconds");
        assert_eq!(doc["ProvisioningDuration"], 512.0);
        assert_eq!(
            (doc["Region"].as_str(), doc["project_id"].as_str()),
            (Some("us-east-1"), Some("p"))
        );
        assert!(doc["_aws"]["Timestamp"].as_i64().unwrap() > 1_700_000_000_000);
    }
}
