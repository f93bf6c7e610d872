//! Creating a project and starting (or resuming) its provisioning: the one
//! function the HTTP API and the local demo both call.

use crate::domain::{NewProject, Stage, StageMessage};
use crate::error::StageError;
use crate::keys;
use crate::ports::MessageQueue;
use deadpool_postgres::Pool;
use serde::Serialize;
use uuid::Uuid;

/// A request that breaks a rule: names the field and the rule. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("{field}: {rule}")]
pub struct ValidationError {
    pub field: &'static str,
    pub rule: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateProjectError {
    #[error("invalid request: {0}")]
    Invalid(#[from] ValidationError),
    /// The project was not created, or was created but its first message could
    /// not be queued (then `project_id` is set and a retry of the run resends it).
    #[error("{error}")]
    Unavailable {
        error: StageError,
        project_id: Option<Uuid>,
    },
}

impl From<StageError> for CreateProjectError {
    fn from(error: StageError) -> Self {
        CreateProjectError::Unavailable {
            error,
            project_id: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreatedProject {
    pub project_id: Uuid,
    pub run_id: Uuid,
    pub correlation_id: Uuid,
    pub status: &'static str,
}

pub const NAME_MAX_CHARS: usize = 100;

/// Checks the rules that need no database.
pub fn validate_new_project(p: &NewProject) -> Result<(), ValidationError> {
    let invalid = |field, rule: &str| {
        Err(ValidationError {
            field,
            rule: rule.to_owned(),
        })
    };
    let name = p.name.trim();
    if name.is_empty() {
        return invalid("name", "must not be empty");
    }
    if p.name.chars().count() > NAME_MAX_CHARS {
        return invalid("name", "must be at most 100 characters");
    }
    if p.name.chars().any(char::is_control) {
        return invalid("name", "must not contain control characters");
    }
    if p.region.is_empty()
        || p.region.len() > 32
        || !p
            .region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return invalid("region", "must be a region code such as us-east-1");
    }
    if p.owner_id.is_some_and(|id| id.is_nil()) {
        return invalid("owner_id", "must be a non-nil UUID");
    }
    if p.organization_id.is_some_and(|id| id.is_nil()) {
        return invalid("organization_id", "must be a non-nil UUID");
    }
    if !(1..=crate::domain::quota::API_KEYS as i32).contains(&p.api_keys.count) {
        return invalid("api_keys.count", "must be between 1 and 10");
    }
    if !keys::is_valid_prefix(&p.api_keys.prefix) {
        return invalid("api_keys.prefix", keys::PREFIX_RULE);
    }
    Ok(())
}

/// Validates the request, stores the project with its first run and stage rows
/// in one transaction, then queues the validate stage.
pub async fn create_project(
    db: &Pool,
    queue: &dyn MessageQueue,
    request: &NewProject,
    correlation_id: Option<Uuid>,
) -> Result<CreatedProject, CreateProjectError> {
    validate_new_project(request)?;
    let mut conn = db.get().await.map_err(StageError::from)?;
    let known = conn
        .query_opt(
            "SELECT 1 FROM control_plane.regions WHERE code = $1",
            &[&request.region],
        )
        .await
        .map_err(StageError::from)?;
    if known.is_none() {
        return Err(ValidationError {
            field: "region",
            rule: format!("unknown region '{}'", request.region),
        }
        .into());
    }
    let project_id = Uuid::new_v4();
    let run_id = Uuid::new_v4();
    let correlation_id = correlation_id.unwrap_or_else(Uuid::new_v4);
    let services = serde_json::to_value(request.services).expect("serialisable");
    let tx = conn.transaction().await.map_err(StageError::from)?;
    tx.execute(
        "INSERT INTO control_plane.projects
            (id, name, region, owner_id, organization_id, services, api_key_count, api_key_prefix, status, current_run_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'requested', $9)",
        &[
            &project_id,
            &request.name.trim(),
            &request.region,
            &request.owner_id,
            &request.organization_id,
            &services,
            &request.api_keys.count,
            &request.api_keys.prefix,
            &run_id,
        ],
    )
    .await
    .map_err(StageError::from)?;
    insert_run(&tx, project_id, run_id, 1, Stage::Validate, correlation_id).await?;
    crate::store::audit(
        &tx,
        project_id,
        Some(run_id),
        "project.created",
        "api",
        serde_json::json!({ "name": request.name.trim(), "region": request.region }),
    )
    .await?;
    tx.commit().await.map_err(StageError::from)?;

    let first = StageMessage {
        project_id,
        run_id,
        stage: Stage::Validate,
        correlation_id,
    };
    queue
        .send(&first)
        .await
        .map_err(|error| CreateProjectError::Unavailable {
            error,
            project_id: Some(project_id),
        })?;
    Ok(CreatedProject {
        project_id,
        run_id,
        correlation_id,
        status: "requested",
    })
}

/// Inserts a run and its stage rows; stages before `start` are skipped.
pub async fn insert_run(
    tx: &impl deadpool_postgres::GenericClient,
    project_id: Uuid,
    run_id: Uuid,
    run_number: i32,
    start: Stage,
    correlation_id: Uuid,
) -> Result<(), StageError> {
    tx.execute(
        "INSERT INTO control_plane.provisioning_runs (id, project_id, run_number, status, start_stage, correlation_id)
         VALUES ($1, $2, $3, 'running', $4, $5)",
        &[&run_id, &project_id, &run_number, &start.as_str(), &correlation_id],
    )
    .await?;
    for stage in Stage::ALL {
        let status = if stage < start { "skipped" } else { "pending" };
        tx.execute(
            "INSERT INTO control_plane.provisioning_stages (run_id, stage, position, status) VALUES ($1, $2, $3, $4)",
            &[&run_id, &stage.as_str(), &stage.position(), &status],
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ApiKeySpec, ServiceSelection};

    fn request() -> NewProject {
        NewProject {
            name: "Acme".into(),
            region: "us-east-1".into(),
            owner_id: Some(Uuid::new_v4()),
            organization_id: None,
            services: ServiceSelection::default(),
            api_keys: ApiKeySpec::default(),
        }
    }

    #[test]
    fn a_well_formed_request_passes() {
        assert_eq!(validate_new_project(&request()), Ok(()));
    }

    #[test]
    fn each_rule_names_its_field() {
        type Mutation = Box<dyn Fn(&mut NewProject)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("name", Box::new(|p| p.name = "  ".into())),
            ("name", Box::new(|p| p.name = "x".repeat(101))),
            ("name", Box::new(|p| p.name = "a\u{0}b".into())),
            ("region", Box::new(|p| p.region = "US EAST".into())),
            ("owner_id", Box::new(|p| p.owner_id = Some(Uuid::nil()))),
            ("api_keys.count", Box::new(|p| p.api_keys.count = 0)),
            ("api_keys.count", Box::new(|p| p.api_keys.count = 11)),
            (
                "api_keys.prefix",
                Box::new(|p| p.api_keys.prefix = "x'; DROP TABLE y;--".into()),
            ),
        ];
        for (field, mutate) in cases {
            let mut p = request();
            mutate(&mut p);
            assert_eq!(validate_new_project(&p).unwrap_err().field, field);
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    #[error("project not found")]
    NotFound,
    #[error("project is {0}: only failed projects can be retried")]
    NotFailed(String),
    #[error("{0}")]
    Unavailable(#[from] StageError),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResumedProject {
    pub project_id: Uuid,
    pub run_id: Uuid,
    pub run_number: i32,
    pub correlation_id: Uuid,
    pub status: &'static str,
    pub resume_from: Stage,
}

/// Resumes a failed project from the stage that failed, as a new run: stages
/// before it are skipped, and messages of the old run are ignored from now on.
pub async fn resume_project(
    db: &Pool,
    queue: &dyn MessageQueue,
    project_id: Uuid,
    correlation_id: Option<Uuid>,
) -> Result<ResumedProject, ResumeError> {
    let mut conn = db.get().await.map_err(StageError::from)?;
    let tx = conn.transaction().await.map_err(StageError::from)?;
    let Some(row) = tx
        .query_opt(
            "SELECT status, failed_stage FROM control_plane.projects WHERE id = $1 FOR UPDATE",
            &[&project_id],
        )
        .await
        .map_err(StageError::from)?
    else {
        return Err(ResumeError::NotFound);
    };
    let status: String = row.get(0);
    if status != "failed" {
        return Err(ResumeError::NotFailed(status));
    }
    let failed_stage: Option<String> = row.get(1);
    let start = failed_stage
        .and_then(|s| s.parse().ok())
        .unwrap_or(Stage::Validate);
    let run_number: i32 = tx
        .query_one(
            "SELECT coalesce(max(run_number), 0) + 1 FROM control_plane.provisioning_runs WHERE project_id = $1",
            &[&project_id],
        )
        .await
        .map_err(StageError::from)?
        .get(0);
    let run_id = Uuid::new_v4();
    let correlation_id = correlation_id.unwrap_or_else(Uuid::new_v4);
    insert_run(&tx, project_id, run_id, run_number, start, correlation_id).await?;
    tx.execute(
        "UPDATE control_plane.projects
            SET status = 'provisioning', current_run_id = $2, current_stage = $3, failed_stage = NULL,
                last_error = NULL, updated_at = now()
          WHERE id = $1",
        &[&project_id, &run_id, &start.as_str()],
    )
    .await
    .map_err(StageError::from)?;
    crate::store::audit(
        &tx,
        project_id,
        Some(run_id),
        "provisioning.retried",
        "api",
        serde_json::json!({ "resume_from": start, "run_number": run_number }),
    )
    .await?;
    tx.commit().await.map_err(StageError::from)?;
    queue
        .send(&StageMessage {
            project_id,
            run_id,
            stage: start,
            correlation_id,
        })
        .await?;
    Ok(ResumedProject {
        project_id,
        run_id,
        run_number,
        correlation_id,
        status: "provisioning",
        resume_from: start,
    })
}
