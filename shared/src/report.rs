//! A project's provisioning status as operators see it: status, the current
//! run's per-stage timeline and the resources made. Never a key or password.

use crate::error::StageError;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use serde::Serialize;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize)]
pub struct ProjectReport {
    pub id: Uuid,
    pub name: String,
    pub region: String,
    pub status: String,
    pub current_stage: Option<String>,
    pub failed_stage: Option<String>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub ready_at: Option<DateTime<Utc>>,
    pub provisioning_ms: Option<i64>,
    pub run: Option<RunReport>,
    pub timeline: Vec<StageReport>,
    pub resources: Resources,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub id: Uuid,
    pub number: i32,
    pub status: String,
    pub start_stage: String,
    pub correlation_id: Uuid,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StageReport {
    pub stage: String,
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Resources {
    pub database: Option<String>,
    pub schema: Option<String>,
    pub schema_version: Option<i64>,
    pub services: Vec<ServiceReport>,
    pub api_keys: Vec<KeyReport>,
    pub secrets: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceReport {
    pub service: String,
    pub status: String,
    pub endpoint: Option<String>,
    pub registered_remotely: bool,
}

#[derive(Debug, Clone, Serialize)]
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
                    provisioning_ms, current_run_id
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
                "SELECT id, run_number, status, start_stage, correlation_id FROM control_plane.provisioning_runs WHERE id = $1",
                &[&run_id],
            )
            .await?
            .map(|r| RunReport { id: r.get(0), number: r.get(1), status: r.get(2), start_stage: r.get(3), correlation_id: r.get(4) }),
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
        status: p.get(3),
        current_stage: p.get(4),
        failed_stage: p.get(5),
        last_error: p.get(6),
        created_at: p.get(7),
        ready_at: p.get(8),
        provisioning_ms: p.get(9),
        run,
        timeline,
        resources,
    }))
}
