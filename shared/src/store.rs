//! Control-plane state in Postgres: the source of truth for every project, run
//! and stage attempt. Keyed by (project, run, stage), never by SQS message id.

use crate::domain::{ServiceSelection, Stage, StageMessage};
use crate::error::StageError;
use deadpool_postgres::GenericClient;
use serde_json::json;
use uuid::Uuid;

/// A project as the stages see it.
#[derive(Debug, Clone)]
pub struct ProjectRecord {
    pub id: Uuid,
    pub name: String,
    pub region: String,
    pub owner_id: Option<Uuid>,
    pub organization_id: Option<Uuid>,
    pub services: ServiceSelection,
    pub api_key_count: i32,
    pub api_key_prefix: String,
    pub status: String,
    pub current_run_id: Option<Uuid>,
}

pub async fn load_project(
    db: &impl GenericClient,
    id: Uuid,
) -> Result<Option<ProjectRecord>, StageError> {
    let row = db
        .query_opt(
            "SELECT id, name, region, owner_id, organization_id, services, api_key_count, api_key_prefix,
                    status, current_run_id
               FROM control_plane.projects WHERE id = $1",
            &[&id],
        )
        .await?;
    row.map(|r| {
        let services: serde_json::Value = r.get(5);
        Ok(ProjectRecord {
            id: r.get(0),
            name: r.get(1),
            region: r.get(2),
            owner_id: r.get(3),
            organization_id: r.get(4),
            services: serde_json::from_value(services)
                .map_err(|e| StageError::permanent(format!("project services column: {e}")))?,
            api_key_count: r.get(6),
            api_key_prefix: r.get(7),
            status: r.get(8),
            current_run_id: r.get(9),
        })
    })
    .transpose()
}

/// Status of one stage row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageStatus {
    Pending,
    Running,
    Retrying,
    Succeeded,
    Failed,
    Skipped,
}

impl StageStatus {
    fn parse(s: &str) -> StageStatus {
        match s {
            "pending" => StageStatus::Pending,
            "running" => StageStatus::Running,
            "retrying" => StageStatus::Retrying,
            "succeeded" => StageStatus::Succeeded,
            "failed" => StageStatus::Failed,
            _ => StageStatus::Skipped,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageRow {
    pub stage: Stage,
    pub status: StageStatus,
    pub attempts: i32,
    pub last_error: Option<String>,
}

/// Everything needed to decide what to do with a stage message.
#[derive(Debug, Clone)]
pub struct RunView {
    pub project: ProjectRecord,
    pub run_project_id: Uuid,
    pub run_status: String,
    pub stages: Vec<StageRow>,
}

impl RunView {
    pub fn stage(&self, stage: Stage) -> Option<&StageRow> {
        self.stages.iter().find(|s| s.stage == stage)
    }
}

/// Loads the project and run a message names; None when either does not exist.
pub async fn load_run_view(
    db: &impl GenericClient,
    msg: &StageMessage,
) -> Result<Option<RunView>, StageError> {
    let Some(project) = load_project(db, msg.project_id).await? else {
        return Ok(None);
    };
    let Some(run) = db
        .query_opt(
            "SELECT project_id, status FROM control_plane.provisioning_runs WHERE id = $1",
            &[&msg.run_id],
        )
        .await?
    else {
        return Ok(None);
    };
    let rows = db
        .query(
            "SELECT stage, status, attempts, last_error FROM control_plane.provisioning_stages
              WHERE run_id = $1 ORDER BY position",
            &[&msg.run_id],
        )
        .await?;
    let stages = rows
        .iter()
        .filter_map(|r| {
            let stage: String = r.get(0);
            Some(StageRow {
                stage: stage.parse().ok()?,
                status: StageStatus::parse(r.get(1)),
                attempts: r.get(2),
                last_error: r.get(3),
            })
        })
        .collect();
    Ok(Some(RunView {
        project,
        run_project_id: run.get(0),
        run_status: run.get(1),
        stages,
    }))
}

/// Records the start of an attempt (committed at once, so a crash still counts it).
pub async fn record_attempt(
    db: &impl GenericClient,
    msg: &StageMessage,
) -> Result<i32, StageError> {
    db.execute(
        "UPDATE control_plane.projects SET current_stage = $2, updated_at = now() WHERE id = $1",
        &[&msg.project_id, &msg.stage.as_str()],
    )
    .await?;
    let row = db
        .query_one(
            "UPDATE control_plane.provisioning_stages
                SET status = 'running', attempts = attempts + 1,
                    started_at = coalesce(started_at, now()), updated_at = now()
              WHERE run_id = $1 AND stage = $2
          RETURNING attempts",
            &[&msg.run_id, &msg.stage.as_str()],
        )
        .await?;
    Ok(row.get(0))
}

pub async fn record_retryable_error(
    db: &impl GenericClient,
    msg: &StageMessage,
    error: &StageError,
) -> Result<(), StageError> {
    db.execute(
        "UPDATE control_plane.provisioning_stages
            SET status = 'retrying', last_error = $3, updated_at = now()
          WHERE run_id = $1 AND stage = $2 AND status IN ('running', 'retrying')",
        &[&msg.run_id, &msg.stage.as_str(), &error.to_string()],
    )
    .await?;
    Ok(())
}

const FINISH_STAGE: &str = "finished_at = now(), updated_at = now(),
     duration_ms = (extract(epoch FROM now() - coalesce(started_at, now())) * 1000)::bigint";

pub async fn record_success(db: &impl GenericClient, msg: &StageMessage) -> Result<(), StageError> {
    db.execute(
        &format!(
            "UPDATE control_plane.provisioning_stages SET status = 'succeeded', {FINISH_STAGE}
              WHERE run_id = $1 AND stage = $2"
        ),
        &[&msg.run_id, &msg.stage.as_str()],
    )
    .await?;
    Ok(())
}

/// Fails the stage, its run and the project, keeping the error for the API and
/// the dead-letter report. Only the project's current run can fail it.
pub async fn record_failure(
    db: &mut deadpool_postgres::Object,
    msg: &StageMessage,
    error: &str,
    actor: &str,
) -> Result<(), StageError> {
    let tx = db.transaction().await?;
    let row = tx
        .query_opt(
            &format!(
                "UPDATE control_plane.provisioning_stages SET status = 'failed', last_error = $3, {FINISH_STAGE}
                  WHERE run_id = $1 AND stage = $2
              RETURNING attempts"
            ),
            &[&msg.run_id, &msg.stage.as_str(), &error],
        )
        .await?;
    let attempts: i32 = row.map(|r| r.get(0)).unwrap_or(0);
    tx.execute(
        "UPDATE control_plane.provisioning_runs SET status = 'failed', finished_at = now()
          WHERE id = $1 AND status = 'running'",
        &[&msg.run_id],
    )
    .await?;
    let changed = tx
        .execute(
            "UPDATE control_plane.projects
                SET status = 'failed', failed_stage = $3, last_error = $4, current_stage = $3, updated_at = now()
              WHERE id = $1 AND current_run_id = $2",
            &[&msg.project_id, &msg.run_id, &msg.stage.as_str(), &error],
        )
        .await?;
    if changed > 0 {
        audit(
            &tx,
            msg.project_id,
            Some(msg.run_id),
            "provisioning.failed",
            actor,
            json!({ "stage": msg.stage, "attempts": attempts, "error": error, "correlation_id": msg.correlation_id }),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub async fn audit(
    db: &impl GenericClient,
    project_id: Uuid,
    run_id: Option<Uuid>,
    action: &str,
    actor: &str,
    details: serde_json::Value,
) -> Result<(), StageError> {
    db.execute(
        "INSERT INTO control_plane.audit_log (project_id, run_id, action, actor, details) VALUES ($1, $2, $3, $4, $5)",
        &[&project_id, &run_id, &action, &actor, &details],
    )
    .await?;
    Ok(())
}

/// Records (or refreshes) a tenant resource of the project.
pub async fn record_resource(
    db: &impl GenericClient,
    project_id: Uuid,
    resource_type: &str,
    resource_id: &str,
    metadata: serde_json::Value,
) -> Result<(), StageError> {
    db.execute(
        "INSERT INTO control_plane.project_resources (project_id, resource_type, resource_id, metadata)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (project_id, resource_type, resource_id)
         DO UPDATE SET metadata = EXCLUDED.metadata, updated_at = now()",
        &[&project_id, &resource_type, &resource_id, &metadata],
    )
    .await?;
    Ok(())
}
