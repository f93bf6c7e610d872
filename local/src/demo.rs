//! The demos: create a sample project through `POST /projects` and follow it
//! through `GET /projects/{id}`, printing each stage as it completes; and
//! (`make demo-lifecycle`) carry it on through suspend, resume, delete,
//! restore, delete and the purge, each run's stages printed the same way.

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
    follow_until(client, base_url, project_id, timeout, None, out, |r| {
        r.status == "ready" || r.status == "failed"
    })
    .await
}

/// Follows a project until `done` holds for its report, printing each stage
/// of its current run as it completes (whichever run that is, except `shown_run`,
/// already printed).
pub async fn follow_until(
    client: &reqwest::Client,
    base_url: &str,
    project_id: Uuid,
    timeout: Duration,
    shown_run: Option<Uuid>,
    out: &mut impl Write,
    done: impl Fn(&ProjectReport) -> bool,
) -> Result<ProjectReport, String> {
    let started = Instant::now();
    let mut shown: HashSet<(Option<Uuid>, String, String, i32)> = HashSet::new();
    loop {
        let report = get_report(client, base_url, project_id).await?;
        let run = report.run.as_ref().map(|r| r.id);
        let timeline = if run.is_some() && run == shown_run {
            &[][..]
        } else {
            &report.timeline[..]
        };
        for stage in timeline {
            let key = (
                run,
                stage.stage.clone(),
                stage.status.clone(),
                stage.attempts,
            );
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
        if done(&report) {
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

async fn get_report(
    client: &reqwest::Client,
    base_url: &str,
    project_id: Uuid,
) -> Result<ProjectReport, String> {
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
    response.json().await.map_err(|e| e.to_string())
}

/// The lifecycle demo's operations, in order, on a ready project: each starts
/// a run, followed to its end. The last delete is purged by the sweeper once
/// the recovery window (set short for the demo) has passed.
pub const LIFECYCLE: [(&str, &str); 5] = [
    ("POST", "suspend"),
    ("POST", "resume"),
    ("DELETE", ""),
    ("POST", "restore"),
    ("DELETE", ""),
];

/// Starts one operation over the API and follows its run to its end.
pub async fn operate(
    client: &reqwest::Client,
    base_url: &str,
    project_id: Uuid,
    (method, operation): (&str, &str),
    out: &mut impl Write,
) -> Result<ProjectReport, String> {
    let target = if operation.is_empty() {
        format!("{base_url}/projects/{project_id}")
    } else {
        format!("{base_url}/projects/{project_id}/{operation}")
    };
    let method: reqwest::Method = method.parse().map_err(|e| format!("{e}"))?;
    let response = client
        .request(method.clone(), &target)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.map_err(|e| e.to_string())?;
    let _ = writeln!(
        out,
        "\n{method} {} -> {status}: {} run {}, project {}{}",
        target.trim_start_matches(base_url),
        body["kind"].as_str().unwrap_or("?"),
        body["run_number"],
        body["status"].as_str().unwrap_or("?"),
        body["purge_after"]
            .as_str()
            .map(|t| format!(", purged after {t}"))
            .unwrap_or_default()
    );
    if !status.is_success() {
        return Err(format!("{method} {target}: {status} {body}"));
    }
    let run_id: Uuid = body["run_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or("no run_id in the answer")?;
    follow_until(
        client,
        base_url,
        project_id,
        Duration::from_secs(60),
        None,
        out,
        |r| {
            r.run
                .as_ref()
                .is_some_and(|run| run.id != run_id || run.status != "running")
        },
    )
    .await
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

/// Prints the project's events as they reached the bus, in the order they
/// were written (`detail.time`), one line each: never a secret (an event
/// carries none).
pub fn print_events(
    delivered: &[crate::events::Delivered],
    project_id: uuid::Uuid,
    out: &mut impl Write,
) {
    let mut ours: Vec<&crate::events::Delivered> = delivered
        .iter()
        .filter(|d| d.event.detail["project_id"] == project_id.to_string())
        .collect();
    let mut seen = std::collections::HashSet::new();
    ours.retain(|d| seen.insert(d.event.event_id()));
    ours.sort_by_key(|d| d.event.detail["time"].as_str());
    let _ = writeln!(out, "\nevents on the bus ({}):", ours.len());
    for delivered in ours {
        let d = &delivered.event.detail;
        let text = |k: &str| d[k].as_str().map(str::to_owned);
        let mut what = Vec::new();
        if let Some(stage) = text("stage") {
            what.push(stage);
        }
        if let Some(attempt) = d["attempt"].as_i64() {
            what.push(format!("attempt {attempt}"));
        }
        if let Some(key) = text("key_id") {
            what.push(format!("key {key}"));
        }
        if let Some(error) = text("error") {
            what.push(format!("error: {error}"));
        }
        let _ = writeln!(
            out,
            "  {}  {:<20} status {:<12} actor {:<18} {}",
            text("time").unwrap_or_default().get(11..23).unwrap_or(""),
            delivered.event.detail_type,
            text("status").unwrap_or_default(),
            text("actor").unwrap_or_default(),
            what.join(", ")
        );
    }
}
