//! Creating a project and starting (or resuming) its provisioning: the one
//! function the HTTP API and the local demo both call.

use crate::domain::{NewProject, RunKind, Stage, StageMessage};
use crate::error::StageError;
use crate::idempotency::{self, Binding};
use crate::keys;
use crate::outbox::Destinations;
use crate::pipeline::Pipeline;
use crate::status::ProjectStatus;
use crate::{fault, outbox};
use deadpool_postgres::{Object, Pool};
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
    /// The Idempotency-Key was bound to another request body.
    #[error("Idempotency-Key was already used with a different request body")]
    KeyReused,
    /// Nothing was stored (or, when the commit's answer was lost, the project
    /// and its key were: repeating the request with the key answers with it).
    #[error("{0}")]
    Unavailable(#[from] StageError),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CreatedProject {
    pub project_id: Uuid,
    pub run_id: Uuid,
    pub correlation_id: Uuid,
    pub status: &'static str,
}

impl CreatedProject {
    pub fn location(&self) -> String {
        format!("/projects/{}", self.project_id)
    }

    /// The API's 202 answer, which an Idempotency-Key replays.
    pub fn response_body(&self) -> serde_json::Value {
        serde_json::json!({
            "project_id": self.project_id,
            "run_id": self.run_id,
            "correlation_id": self.correlation_id,
            "status": self.status,
            "location": self.location(),
        })
    }
}

/// A request's Idempotency-Key, the caller it belongs to (keys are scoped to
/// their caller: two callers never share one) and the hash of what it asked for.
#[derive(Debug, Clone)]
pub struct RequestKey {
    pub caller: String,
    pub key: String,
    pub request_hash: String,
}

/// What a create with an Idempotency-Key did.
#[derive(Debug, Clone, PartialEq)]
pub enum Creation {
    Created(CreatedProject),
    /// The key was bound before: its answer, again.
    Replayed {
        status: u16,
        body: serde_json::Value,
    },
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

/// Validates the request and creates the project (see `create_project_keyed`).
pub async fn create_project(
    db: &Pool,
    to: Destinations<'_>,
    request: &NewProject,
    correlation_id: Option<Uuid>,
) -> Result<CreatedProject, CreateProjectError> {
    match create_project_keyed(
        db,
        to,
        request,
        correlation_id,
        None,
        crate::api::caller::LOCAL,
    )
    .await?
    {
        Creation::Created(created) => Ok(created),
        Creation::Replayed { .. } => unreachable!("no key, no replay"),
    }
}

/// Validates the request, then commits in one transaction, on one connection:
/// the Idempotency-Key bound to the project, the project, its first run and
/// stage rows, the audit entry and the outbox row of the validate message.
/// After the commit the message is relayed; if that fails the sweeper sends
/// it, so a stored project is always started and a key always has its project.
pub async fn create_project_keyed(
    db: &Pool,
    to: Destinations<'_>,
    request: &NewProject,
    correlation_id: Option<Uuid>,
    key: Option<&RequestKey>,
    actor: &str,
) -> Result<Creation, CreateProjectError> {
    validate_new_project(request)?;
    let created = CreatedProject {
        project_id: Uuid::new_v4(),
        run_id: Uuid::new_v4(),
        correlation_id: correlation_id.unwrap_or_else(Uuid::new_v4),
        status: ProjectStatus::Requested.as_str(),
    };
    let CreatedProject {
        project_id,
        run_id,
        correlation_id,
        ..
    } = created;
    let mut conn = db.get().await.map_err(StageError::from)?;
    let tx = conn.transaction().await.map_err(StageError::from)?;
    if let Some(key) = key {
        let body = created.response_body();
        match idempotency::bind(
            &tx,
            &key.caller,
            &key.key,
            &key.request_hash,
            202,
            &body,
            project_id,
        )
        .await?
        {
            Binding::Bound => {}
            Binding::Replay { status, body } => return Ok(Creation::Replayed { status, body }),
            Binding::Mismatch => return Err(CreateProjectError::KeyReused),
        }
    }
    crate::store::audit(
        &tx,
        project_id,
        Some(run_id),
        "project.created",
        actor,
        serde_json::json!({ "name": request.name.trim(), "region": request.region }),
    )
    .await?;
    let services = serde_json::to_value(request.services).expect("serialisable");
    let inserted = tx
        .execute(
            "INSERT INTO control_plane.projects
                (id, name, region, owner_id, organization_id, services, api_key_count, api_key_prefix, status, current_run_id)
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, 'requested', $9
              WHERE EXISTS (SELECT 1 FROM control_plane.regions WHERE code = $3)",
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
    if inserted == 0 {
        // Dropping the transaction rolls the key back too: nothing is written.
        return Err(ValidationError {
            field: "region",
            rule: format!("unknown region '{}'", request.region),
        }
        .into());
    }
    insert_run(
        &tx,
        NewRun {
            project_id,
            run_id,
            run_number: 1,
            kind: RunKind::Provision,
            stages: &Stage::PROVISION,
            start: Stage::Validate,
            correlation_id,
        },
    )
    .await?;
    let first = StageMessage {
        project_id,
        run_id,
        stage: Stage::Validate,
        correlation_id,
    };
    let handoff = outbox::enqueue(&tx, &first).await?;
    tx.commit().await.map_err(StageError::from)?;
    fault::point(project_id, AFTER_CREATE_COMMIT).await;
    outbox::relay_or_leave(&conn, to, project_id, Some(handoff)).await;
    Ok(Creation::Created(created))
}

/// The fault point between a create's commit and the send of its message.
pub const AFTER_CREATE_COMMIT: &str = "create:after-commit";

/// A run to insert: its kind, stages and the stage it starts at.
#[derive(Debug, Clone, Copy)]
pub struct NewRun<'a> {
    pub project_id: Uuid,
    pub run_id: Uuid,
    pub run_number: i32,
    pub kind: RunKind,
    pub stages: &'a [Stage],
    /// Stages before this one are skipped (an operator's retry).
    pub start: Stage,
    pub correlation_id: Uuid,
}

/// Inserts a run and its stage rows in one statement.
pub async fn insert_run(
    tx: &impl deadpool_postgres::GenericClient,
    run: NewRun<'_>,
) -> Result<(), StageError> {
    let stages: Vec<&str> = run.stages.iter().map(|s| s.as_str()).collect();
    let start = run.stages.iter().position(|s| *s == run.start).unwrap_or(0) as i64 + 1;
    tx.execute(
        "WITH r AS (
            INSERT INTO control_plane.provisioning_runs
                   (id, project_id, run_number, status, start_stage, correlation_id, kind)
            VALUES ($1, $2, $3, 'running', $4, $5, $8))
         INSERT INTO control_plane.provisioning_stages (run_id, stage, position, status)
         SELECT $1, s.stage, s.position, CASE WHEN s.position < $6 THEN 'skipped' ELSE 'pending' END
           FROM unnest($7::text[]) WITH ORDINALITY AS s(stage, position)",
        &[
            &run.run_id,
            &run.project_id,
            &run.run_number,
            &run.start.as_str(),
            &run.correlation_id,
            &start,
            &stages,
            &run.kind.as_str(),
        ],
    )
    .await?;
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
    /// The project is not failed, nor stuck: a run is moving, or it is done.
    #[error("{0}")]
    Refused(String),
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
    pub kind: RunKind,
    pub resume_from: Stage,
}

/// Retries a project's last run as a new run of the same kind, from the stage
/// where it stopped: a failed provisioning from its failed stage (the project
/// becomes provisioning again), a failed lifecycle run from its failed stage
/// (the project keeps its status), and a stuck run of any kind (running, no
/// progress for longer than the visibility timeout plus a margin) from its
/// current stage. Stages before it are skipped; messages of the old run are
/// ignored from now on. A project whose run is moving, or whose last run
/// succeeded, is refused.
pub async fn resume_project(
    pipeline: &Pipeline,
    project_id: Uuid,
    correlation_id: Option<Uuid>,
    actor: &str,
) -> Result<ResumedProject, ResumeError> {
    let stalled_after = pipeline.settings.stalled_after().as_secs_f64();
    pipeline
        .with_project_lock(project_id, async |db: &mut Object| {
            let tx = db.transaction().await.map_err(StageError::from)?;
            let Some(row) = tx
                .query_opt(
                    "SELECT p.status, p.failed_stage, r.status,
                            greatest(r.created_at, r.kicked_at,
                                     (SELECT max(updated_at) FROM control_plane.provisioning_stages WHERE run_id = r.id))
                              < now() - make_interval(secs => $2),
                            (SELECT stage FROM control_plane.provisioning_stages
                              WHERE run_id = r.id AND status NOT IN ('succeeded', 'skipped')
                              ORDER BY position LIMIT 1),
                            (SELECT coalesce(max(run_number), 0) + 1 FROM control_plane.provisioning_runs
                              WHERE project_id = p.id),
                            coalesce(r.kind, 'provision'),
                            (SELECT array_agg(stage ORDER BY position) FROM control_plane.provisioning_stages
                              WHERE run_id = r.id)
                       FROM control_plane.projects p
                       LEFT JOIN control_plane.provisioning_runs r ON r.id = p.current_run_id
                      WHERE p.id = $1",
                    &[&project_id, &stalled_after],
                )
                .await
                .map_err(StageError::from)?
            else {
                return Err(ResumeError::NotFound);
            };
            let status: ProjectStatus = crate::store::parse_status(row.get(0))?;
            let run_status: Option<&str> = row.get(2);
            let stalled = row.get::<_, Option<bool>>(3) == Some(true);
            let stopped = run_status != Some("running") || stalled;
            let kind: RunKind = row
                .get::<_, &str>(6)
                .parse()
                .map_err(|e: crate::domain::UnknownRunKind| StageError::permanent(e.to_string()))?;
            let stage_named = |column: usize, default: Stage| {
                row.get::<_, Option<String>>(column)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(default)
            };
            let (start, to) = match (kind, status) {
                (RunKind::Provision, ProjectStatus::Failed) => {
                    (stage_named(1, Stage::Validate), ProjectStatus::Provisioning)
                }
                (RunKind::Provision, s) if s.is_provisioning() && stopped => {
                    (stage_named(4, Stage::Validate), s)
                }
                (k, s)
                    if k != RunKind::Provision
                        && k.acts_on(s)
                        && (run_status == Some("failed") || (run_status == Some("running") && stalled)) =>
                {
                    (stage_named(4, k.stages(false)[0]), s)
                }
                (k, s) if run_status == Some("running") => {
                    return Err(ResumeError::Refused(format!(
                        "project is {s} and its {k} run is moving: only failed or stuck runs can be retried"
                    )))
                }
                (_, s) => {
                    return Err(ResumeError::Refused(format!(
                        "project is {s}: only failed or stuck runs can be retried"
                    )))
                }
            };
            debug_assert!(to == status || status.can_become(to));
            let stages: Vec<Stage> = match kind {
                RunKind::Provision => Stage::PROVISION.to_vec(),
                _ => row
                    .get::<_, Option<Vec<String>>>(7)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|s| s.parse().ok())
                    .collect(),
            };
            let run_number: i32 = row.get(5);
            let run_id = Uuid::new_v4();
            let correlation_id = correlation_id.unwrap_or_else(Uuid::new_v4);
            // First, as it names the actor of the events this transaction writes.
            let action = match kind {
                RunKind::Provision => "provisioning.retried".to_owned(),
                k => format!("{k}.retried"),
            };
            crate::store::audit(
                &tx,
                project_id,
                Some(run_id),
                &action,
                actor,
                serde_json::json!({ "resume_from": start, "run_number": run_number, "was": status }),
            )
            .await?;
            // A stuck run is closed: its late messages change nothing.
            tx.execute(
                "UPDATE control_plane.provisioning_runs SET status = 'failed', finished_at = now()
                  WHERE id = (SELECT current_run_id FROM control_plane.projects WHERE id = $1) AND status = 'running'",
                &[&project_id],
            )
            .await
            .map_err(StageError::from)?;
            insert_run(
                &tx,
                NewRun {
                    project_id,
                    run_id,
                    run_number,
                    kind,
                    stages: &stages,
                    start,
                    correlation_id,
                },
            )
            .await?;
            let (failed_stage, last_error) = if kind == RunKind::Provision {
                ("NULL", "NULL")
            } else {
                ("failed_stage", "last_error")
            };
            tx.execute(
                &format!(
                    "UPDATE control_plane.projects
                        SET status = $3, current_run_id = $2, current_stage = $4, failed_stage = {failed_stage},
                            last_error = {last_error}, updated_at = now()
                      WHERE id = $1 AND status = $5"
                ),
                &[&project_id, &run_id, &to.as_str(), &start.as_str(), &status.as_str()],
            )
            .await
            .map_err(StageError::from)?;
            let message = StageMessage {
                project_id,
                run_id,
                stage: start,
                correlation_id,
            };
            let handoff = outbox::enqueue(&tx, &message).await?;
            tx.commit().await.map_err(StageError::from)?;
            outbox::relay_or_leave(&*db, pipeline.destinations(), project_id, Some(handoff))
                .await;
            Ok(ResumedProject {
                project_id,
                run_id,
                run_number,
                correlation_id,
                status: to.as_str(),
                kind,
                resume_from: start,
            })
        })
        .await
}
