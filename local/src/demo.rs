//! The demo: create a sample project through `POST /projects` and follow it
//! through `GET /projects/{id}`, printing each stage as it completes.

use provisioning::report::ProjectReport;
use std::collections::HashSet;
use std::io::Write;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Follows a project over the API, printing each stage as it completes, until
/// it is ready or failed or `timeout` passes. Returns the last report.
pub async fn follow(
    client: &reqwest::Client,
    base_url: &str,
    project_id: Uuid,
    timeout: Duration,
    out: &mut impl Write,
) -> Result<ProjectReport, String> {
    let started = Instant::now();
    let mut shown: HashSet<(String, String, i32)> = HashSet::new();
    loop {
        let response = client
            .get(format!("{base_url}/projects/{project_id}"))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!(
                "GET /projects/{project_id}: HTTP {}",
                response.status()
            ));
        }
        let report: ProjectReport = response.json().await.map_err(|e| e.to_string())?;
        for stage in &report.timeline {
            let key = (stage.stage.clone(), stage.status.clone(), stage.attempts);
            if shown.contains(&key) {
                continue;
            }
            let error = stage.last_error.as_deref().unwrap_or("");
            let line = match stage.status.as_str() {
                "succeeded" => format!(
                    "  ✔ {:<18} attempt {}  {:>6} ms",
                    stage.stage,
                    stage.attempts,
                    stage.duration_ms.unwrap_or_default()
                ),
                "failed" => format!(
                    "  ✘ {:<18} attempt {}  {error}",
                    stage.stage, stage.attempts
                ),
                "retrying" => format!(
                    "  ↻ {:<18} attempt {} failed, will retry: {error}",
                    stage.stage, stage.attempts
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
    let _ = writeln!(
        out,
        "region       {} (cluster {})",
        report.region,
        report.cluster.as_deref().unwrap_or("-")
    );
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
