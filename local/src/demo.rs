//! The demo: create a sample project and follow it stage by stage to `ready`.

use crate::runner::Runner;
use provisioning::report::{load_project_report, ProjectReport};
use provisioning::Pipeline;
use std::collections::HashSet;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Follows a project, printing each stage as it completes, until it is ready or
/// failed or `timeout` passes. Returns the last report.
pub async fn follow(
    pipeline: &Pipeline,
    project_id: Uuid,
    timeout: Duration,
    out: &mut impl Write,
) -> Result<ProjectReport, String> {
    let started = Instant::now();
    let mut shown: HashSet<(String, String, i32)> = HashSet::new();
    loop {
        let db = pipeline.db.get().await.map_err(|e| e.to_string())?;
        let report = load_project_report(&db, project_id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("project {project_id} not found"))?;
        drop(db);
        for stage in &report.timeline {
            let key = (stage.stage.clone(), stage.status.clone(), stage.attempts);
            if shown.contains(&key) {
                continue;
            }
            let line = match stage.status.as_str() {
                "succeeded" => format!(
                    "  ✔ {:<18} attempt {}  {:>6} ms",
                    stage.stage,
                    stage.attempts,
                    stage.duration_ms.unwrap_or_default()
                ),
                "failed" => format!(
                    "  ✘ {:<18} attempt {}  {}",
                    stage.stage,
                    stage.attempts,
                    stage.last_error.as_deref().unwrap_or("")
                ),
                "retrying" => format!(
                    "  ↻ {:<18} attempt {} failed, will retry: {}",
                    stage.stage,
                    stage.attempts,
                    stage.last_error.as_deref().unwrap_or("")
                ),
                _ => continue,
            };
            shown.insert(key);
            let _ = writeln!(out, "{line}");
        }
        if report.status == "ready" || report.status == "failed" {
            return Ok(report);
        }
        if started.elapsed() > timeout {
            return Err(format!(
                "project {project_id} still {} after {timeout:?}",
                report.status
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Prints what the operator gets: never a key or password, only names and ids.
pub fn print_summary(report: &ProjectReport, out: &mut impl Write) {
    let r = &report.resources;
    let _ = writeln!(out, "\nproject      {} ({})", report.id, report.name);
    let _ = writeln!(out, "status       {}", report.status);
    if let Some(ms) = report.provisioning_ms {
        let _ = writeln!(out, "provisioned  in {ms} ms");
    }
    if let (Some(stage), Some(error)) = (&report.failed_stage, &report.last_error) {
        let _ = writeln!(out, "failed at    {stage}: {error}");
    }
    let _ = writeln!(out, "region       {}", report.region);
    let _ = writeln!(out, "database     {}", r.database.as_deref().unwrap_or("-"));
    let _ = writeln!(
        out,
        "schema       {} (version {})",
        r.schema.as_deref().unwrap_or("-"),
        r.schema_version
            .map(|v| v.to_string())
            .unwrap_or_else(|| "-".into())
    );
    let services: Vec<String> = r
        .services
        .iter()
        .map(|s| match &s.endpoint {
            Some(endpoint) => format!("{} ({}, {endpoint})", s.service, s.status),
            None => format!("{} ({})", s.service, s.status),
        })
        .collect();
    let _ = writeln!(
        out,
        "services     {}",
        if services.is_empty() {
            "none".into()
        } else {
            services.join(", ")
        }
    );
    for key in &r.api_keys {
        let _ = writeln!(
            out,
            "api key      {} (prefix {}, scopes {})",
            key.id,
            key.prefix,
            key.scopes.join(",")
        );
    }
    for secret in &r.secrets {
        let _ = writeln!(out, "secret       {secret}");
    }
}

/// Runs the pipeline in the background while `follow` watches one project.
pub async fn run_and_follow(
    runner: Arc<Runner>,
    pipeline: &Pipeline,
    project_id: Uuid,
    timeout: Duration,
    out: &mut impl Write,
) -> Result<ProjectReport, String> {
    let running = runner.spawn(1);
    let result = follow(pipeline, project_id, timeout, out).await;
    running.stop().await;
    result
}
