//! A project's provisioning status as operators see it: status, the current
//! run's per-stage timeline and the resources made. Never a key or password.

use crate::error::StageError;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProjectReport {
    pub id: Uuid,
    pub name: String,
    pub region: String,
    /// The cluster its database was placed on (none before validate placed it).
    pub cluster: Option<String>,
    pub status: String,
    pub current_stage: Option<String>,
    pub failed_stage: Option<String>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub ready_at: Option<DateTime<Utc>>,
    pub provisioning_ms: Option<i64>,
    /// A deleted project: when it was deleted and when it is purged.
    pub deleted_at: Option<DateTime<Utc>>,
    pub purge_after: Option<DateTime<Utc>>,
    pub purged_at: Option<DateTime<Utc>>,
    pub run: Option<RunReport>,
    pub timeline: Vec<StageReport>,
    pub resources: Resources,
}

impl ProjectReport {
    /// Still moving: being provisioned, or a run of it is under way. A client
    /// looking at it is asked to come back (`Retry-After`).
    pub fn is_moving(&self) -> bool {
        matches!(self.status.as_str(), "requested" | "provisioning")
            || self.run.as_ref().is_some_and(|r| r.status == "running")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    pub id: Uuid,
    pub number: i32,
    pub kind: String,
    pub status: String,
    pub start_stage: String,
    pub correlation_id: Uuid,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StageReport {
    pub stage: String,
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Resources {
    pub database: Option<String>,
    pub schema: Option<String>,
    pub schema_version: Option<i64>,
    pub services: Vec<ServiceReport>,
    pub api_keys: Vec<KeyReport>,
    pub secrets: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceReport {
    pub service: String,
    pub status: String,
    pub endpoint: Option<String>,
    pub registered_remotely: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyReport {
    pub id: String,
    pub prefix: String,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

pub async fn load_project_report(
    db: &impl GenericClient,
    id: Uuid,
) -> Result<Option<ProjectReport>, StageError> {
    let Some(p) = db
        .query_opt(
            "SELECT id, name, region, status, current_stage, failed_stage, last_error, created_at, ready_at,
                    provisioning_ms, current_run_id, cluster_id, deleted_at, purge_after, purged_at
               FROM control_plane.projects WHERE id = $1",
            &[&id],
        )
        .await?
    else {
        return Ok(None);
    };
    let run_id: Option<Uuid> = p.get(10);
    let run = match run_id {
        Some(run_id) => db
            .query_opt(
                "SELECT id, run_number, status, start_stage, correlation_id, kind FROM control_plane.provisioning_runs WHERE id = $1",
                &[&run_id],
            )
            .await?
            .map(|r| RunReport { id: r.get(0), number: r.get(1), kind: r.get(5), status: r.get(2), start_stage: r.get(3), correlation_id: r.get(4) }),
        None => None,
    };
    let timeline = db
        .query(
            "SELECT stage, status, attempts, last_error, started_at, finished_at, duration_ms
               FROM control_plane.provisioning_stages WHERE run_id = $1 ORDER BY position",
            &[&run_id],
        )
        .await?
        .iter()
        .map(|r| StageReport {
            stage: r.get(0),
            status: r.get(1),
            attempts: r.get(2),
            last_error: r.get(3),
            started_at: r.get(4),
            finished_at: r.get(5),
            duration_ms: r.get(6),
        })
        .collect();

    let mut resources = Resources::default();
    for r in db
        .query(
            "SELECT resource_type, resource_id, metadata FROM control_plane.project_resources
              WHERE project_id = $1 ORDER BY resource_type, resource_id",
            &[&id],
        )
        .await?
    {
        let (kind, name, meta): (String, String, serde_json::Value) =
            (r.get(0), r.get(1), r.get(2));
        match kind.as_str() {
            "database" => resources.database = Some(name),
            "schema" => {
                resources.schema_version = meta.get("version").and_then(|v| v.as_i64());
                resources.schema = Some(name);
            }
            "secret" => resources.secrets.push(name),
            _ => {}
        }
    }
    resources.services = db
        .query(
            "SELECT service, status, endpoint, registered_remotely FROM control_plane.project_services
              WHERE project_id = $1 ORDER BY service",
            &[&id],
        )
        .await?
        .iter()
        .map(|r| ServiceReport { service: r.get(0), status: r.get(1), endpoint: r.get(2), registered_remotely: r.get(3) })
        .collect();
    resources.api_keys = db
        .query(
            "SELECT id, key_prefix, scopes, created_at, expires_at, revoked_at FROM control_plane.api_keys
              WHERE project_id = $1 ORDER BY created_at, id",
            &[&id],
        )
        .await?
        .iter()
        .map(|r| KeyReport {
            id: r.get(0),
            prefix: r.get(1),
            scopes: r.get(2),
            created_at: r.get(3),
            expires_at: r.get(4),
            revoked_at: r.get(5),
        })
        .collect();

    Ok(Some(ProjectReport {
        id: p.get(0),
        name: p.get(1),
        region: p.get(2),
        cluster: p.get(11),
        status: p.get(3),
        current_stage: p.get(4),
        failed_stage: p.get(5),
        last_error: p.get(6),
        created_at: p.get(7),
        ready_at: p.get(8),
        provisioning_ms: p.get(9),
        deleted_at: p.get(12),
        purge_after: p.get(13),
        purged_at: p.get(14),
        run,
        timeline,
        resources,
    }))
}

/// One audit entry of a project: what happened, who did it, when.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: i64,
    pub action: String,
    /// The caller's IAM principal for API changes, else the function (a stage
    /// name, `dead-letter`, `sweeper`, `reconciler`) or `local`.
    pub actor: String,
    pub run_id: Option<Uuid>,
    pub details: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    pub next_cursor: Option<String>,
}

/// A project's audit entries newest first, at most `limit`, older than the
/// entry `before` when given; None when the project does not exist.
pub async fn audit_page(
    db: &impl GenericClient,
    project_id: Uuid,
    limit: i64,
    before: Option<i64>,
) -> Result<Option<AuditPage>, StageError> {
    let rows = db
        .query(
            "SELECT a.id, a.action, a.actor, a.run_id, a.details, a.created_at
               FROM control_plane.projects p
               LEFT JOIN LATERAL (
                    SELECT * FROM control_plane.audit_log a
                     WHERE a.project_id = p.id AND ($2::bigint IS NULL OR a.id < $2)
                     ORDER BY a.id DESC LIMIT $3) a ON true
              WHERE p.id = $1
              ORDER BY a.id DESC",
            &[&project_id, &before, &(limit + 1)],
        )
        .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let mut entries: Vec<AuditEntry> = rows
        .iter()
        .filter(|r| r.get::<_, Option<i64>>(0).is_some())
        .map(|r| AuditEntry {
            id: r.get(0),
            action: r.get(1),
            actor: r.get(2),
            run_id: r.get(3),
            details: r.get(4),
            created_at: r.get(5),
        })
        .collect();
    let more = entries.len() as i64 > limit;
    entries.truncate(limit as usize);
    let next_cursor = more
        .then(|| entries.last().map(|e| e.id.to_string()))
        .flatten();
    Ok(Some(AuditPage {
        entries,
        next_cursor,
    }))
}

/// One provisioning run, as listed by `GET /provisioning/jobs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobSummary {
    pub run_id: Uuid,
    pub project_id: Uuid,
    pub project_name: String,
    pub run_number: i32,
    pub kind: String,
    pub status: String,
    pub start_stage: String,
    pub current_stage: Option<String>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobPage {
    pub jobs: Vec<JobSummary>,
    pub next_cursor: Option<String>,
}

/// A position in the newest-first job list: (created_at in µs, run id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobCursor {
    pub created_at_micros: i64,
    pub run_id: Uuid,
}

impl JobCursor {
    pub fn encode(&self) -> String {
        hex::encode(format!("{}:{}", self.created_at_micros, self.run_id))
    }

    pub fn decode(s: &str) -> Option<JobCursor> {
        let text = String::from_utf8(hex::decode(s).ok()?).ok()?;
        let (micros, id) = text.split_once(':')?;
        Some(JobCursor {
            created_at_micros: micros.parse().ok()?,
            run_id: id.parse().ok()?,
        })
    }
}

/// Runs newest first, keyset-paged so pages stay stable while runs are added,
/// optionally only those of one status and one kind.
pub async fn list_jobs(
    db: &impl GenericClient,
    status: Option<&str>,
    kind: Option<&str>,
    limit: i64,
    after: Option<JobCursor>,
) -> Result<JobPage, StageError> {
    let after_micros = after.map(|c| c.created_at_micros);
    let after_id = after.map(|c| c.run_id);
    let rows = db
        .query(
            "SELECT r.id, r.project_id, p.name, r.run_number, r.status, r.start_stage,
                    (SELECT s.stage FROM control_plane.provisioning_stages s
                      WHERE s.run_id = r.id AND s.status NOT IN ('pending', 'skipped')
                      ORDER BY s.position DESC LIMIT 1),
                    r.created_at, r.finished_at,
                    (extract(epoch FROM r.created_at) * 1000000)::bigint AS micros, r.kind
               FROM control_plane.provisioning_runs r
               JOIN control_plane.projects p ON p.id = r.project_id
              WHERE ($1::text IS NULL OR r.status = $1)
                AND ($5::text IS NULL OR r.kind = $5)
                AND ($2::bigint IS NULL
                     OR (extract(epoch FROM r.created_at) * 1000000)::bigint < $2
                     OR ((extract(epoch FROM r.created_at) * 1000000)::bigint = $2 AND r.id < $3))
              ORDER BY micros DESC, r.id DESC
              LIMIT $4",
            &[&status, &after_micros, &after_id, &(limit + 1), &kind],
        )
        .await?;
    let more = rows.len() as i64 > limit;
    let rows = &rows[..rows.len().min(limit as usize)];
    let next_cursor = if more {
        rows.last().map(|r| {
            JobCursor {
                created_at_micros: r.get(9),
                run_id: r.get(0),
            }
            .encode()
        })
    } else {
        None
    };
    let jobs = rows
        .iter()
        .map(|r| JobSummary {
            run_id: r.get(0),
            project_id: r.get(1),
            project_name: r.get(2),
            run_number: r.get(3),
            kind: r.get(10),
            status: r.get(4),
            start_stage: r.get(5),
            current_stage: r.get(6),
            created_at: r.get(7),
            finished_at: r.get(8),
        })
        .collect();
    Ok(JobPage { jobs, next_cursor })
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailedProject {
    pub project_id: Uuid,
    pub name: String,
    pub failed_stage: Option<String>,
    pub last_error: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// A project whose run has made no progress for longer than the threshold.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StuckProject {
    pub project_id: Uuid,
    pub name: String,
    pub status: String,
    pub run_id: Uuid,
    /// The run's current stage (the first not finished).
    pub stage: Option<String>,
    /// Seconds since the run's last progress.
    pub idle_seconds: f64,
    /// How often the sweeper re-sent the stage's message.
    pub kicks: i32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdminSummary {
    pub projects_by_status: std::collections::BTreeMap<String, i64>,
    pub runs_by_status: std::collections::BTreeMap<String, i64>,
    pub oldest_queued_age_seconds: Option<f64>,
    pub failed: Vec<FailedProject>,
    /// The threshold `stuck` was listed with, in seconds.
    pub stuck_after_seconds: f64,
    /// Projects without progress for longer than that (oldest first, at most 100).
    pub stuck: Vec<StuckProject>,
}

/// Counts by status, the age of the oldest project still being provisioned,
/// the failed projects (newest first, at most 100) with their last error, and
/// the projects stuck for longer than `stuck_after`.
pub async fn admin_summary(
    db: &impl GenericClient,
    stuck_after: std::time::Duration,
) -> Result<AdminSummary, StageError> {
    let count = |sql: &'static str| async move {
        Ok::<_, StageError>(
            db.query(sql, &[])
                .await?
                .iter()
                .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
                .collect(),
        )
    };
    let projects_by_status =
        count("SELECT status, count(*) FROM control_plane.projects GROUP BY status").await?;
    let runs_by_status =
        count("SELECT status, count(*) FROM control_plane.provisioning_runs GROUP BY status")
            .await?;
    let oldest_queued_age_seconds = db
        .query_one(
            "SELECT extract(epoch FROM now() - min(created_at))::float8 FROM control_plane.projects
              WHERE status IN ('requested', 'provisioning')",
            &[],
        )
        .await?
        .get(0);
    let failed = db
        .query(
            "SELECT id, name, failed_stage, last_error, updated_at FROM control_plane.projects
              WHERE status = 'failed' ORDER BY updated_at DESC LIMIT 100",
            &[],
        )
        .await?
        .iter()
        .map(|r| FailedProject {
            project_id: r.get(0),
            name: r.get(1),
            failed_stage: r.get(2),
            last_error: r.get(3),
            updated_at: r.get(4),
        })
        .collect();
    let stuck_after_seconds = stuck_after.as_secs_f64();
    let stuck = db
        .query(
            &crate::store::stalled_runs_sql(false),
            &[&stuck_after_seconds, &100_i64],
        )
        .await?
        .iter()
        .map(|r| StuckProject {
            run_id: r.get(0),
            project_id: r.get(1),
            name: r.get(2),
            status: r.get(3),
            stage: r.get(4),
            idle_seconds: r.get(5),
            kicks: r.get(6),
        })
        .collect();
    Ok(AdminSummary {
        projects_by_status,
        runs_by_status,
        oldest_queued_age_seconds,
        failed,
        stuck_after_seconds,
        stuck,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_rejected() {
        let c = JobCursor {
            created_at_micros: 1_700_000_000_123_456,
            run_id: Uuid::new_v4(),
        };
        assert_eq!(JobCursor::decode(&c.encode()), Some(c));
        for bad in ["", "zz", "deadbeef", &hex::encode("12:nope")] {
            assert_eq!(JobCursor::decode(bad), None, "{bad}");
        }
    }
}
