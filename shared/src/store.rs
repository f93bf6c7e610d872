//! Control-plane state in Postgres: the source of truth for every project, run
//! and stage attempt. Keyed by (project, run, stage), never by SQS message id.
//! Every status written here is guarded by the transition table in `status`:
//! an update whose row is not in an allowed source status changes nothing.

use crate::cluster::ClusterRef;
use crate::domain::{RunKind, ServiceSelection, Stage, StageMessage};
use crate::error::StageError;
use crate::status::{ProjectStatus, RunStatus, StageStatus};
use deadpool_postgres::GenericClient;
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
    pub status: ProjectStatus,
    pub current_run_id: Option<Uuid>,
    /// Where its database lives, once placed (validate places it).
    pub cluster: Option<ClusterRef>,
}

impl ProjectRecord {
    /// The cluster the project was placed on; a stage past validate without
    /// one is a bug in the order of stages, never a guess.
    pub fn placed_cluster(&self) -> Result<&ClusterRef, StageError> {
        self.cluster
            .as_ref()
            .ok_or_else(|| StageError::permanent("project has not been placed on a cluster"))
    }
}

/// The project's columns and its cluster's (`FROM {PROJECT_FROM}`).
const PROJECT_COLUMNS: &str = "p.id, p.name, p.region, p.owner_id, p.organization_id, p.services,
     p.api_key_count, p.api_key_prefix, p.status, p.current_run_id,
     c.id AS cluster_id, c.host AS cluster_host, c.port AS cluster_port,
     c.tls_mode AS cluster_tls_mode, c.admin_secret_arn AS cluster_secret,
     c.status AS cluster_status";
const PROJECT_FROM: &str = "control_plane.projects p
     LEFT JOIN control_plane.clusters c ON c.id = p.cluster_id";

fn project_from_row(r: &tokio_postgres::Row) -> Result<ProjectRecord, StageError> {
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
        status: parse_status(r.get(8))?,
        current_run_id: r.get(9),
        cluster: cluster_from_row(r)?,
    })
}

fn cluster_from_row(r: &tokio_postgres::Row) -> Result<Option<ClusterRef>, StageError> {
    let Some(id) = r.get::<_, Option<String>>("cluster_id") else {
        return Ok(None);
    };
    let tls: String = r.get("cluster_tls_mode");
    Ok(Some(ClusterRef {
        id,
        host: r.get("cluster_host"),
        port: u16::try_from(r.get::<_, i32>("cluster_port")).unwrap_or_default(),
        tls_mode: crate::tls::TlsMode::parse(&tls)
            .ok_or_else(|| StageError::permanent(format!("cluster tls_mode '{tls}'")))?,
        admin_secret_arn: r.get("cluster_secret"),
        status: parse_status(r.get("cluster_status"))?,
    }))
}

/// Parses a status column; unknown text is a permanent error, never a guess.
pub fn parse_status<T>(text: &str) -> Result<T, StageError>
where
    T: std::str::FromStr<Err = crate::status::UnknownStatus>,
{
    text.parse()
        .map_err(|e: crate::status::UnknownStatus| StageError::permanent(e.to_string()))
}

pub async fn load_project(
    db: &impl GenericClient,
    id: Uuid,
) -> Result<Option<ProjectRecord>, StageError> {
    let row = db
        .query_opt(
            &format!("SELECT {PROJECT_COLUMNS} FROM {PROJECT_FROM} WHERE p.id = $1"),
            &[&id],
        )
        .await?;
    row.as_ref().map(project_from_row).transpose()
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
    pub run_kind: RunKind,
    pub run_status: RunStatus,
    pub stages: Vec<StageRow>,
}

impl RunView {
    pub fn stage(&self, stage: Stage) -> Option<&StageRow> {
        self.stages.iter().find(|s| s.stage == stage)
    }

    /// The stage after `stage` in this run; None after its last.
    pub fn next_stage(&self, stage: Stage) -> Option<Stage> {
        let i = self.stages.iter().position(|s| s.stage == stage)?;
        self.stages.get(i + 1).map(|s| s.stage)
    }

    /// The first stage of the run that has not finished.
    pub fn current_stage(&self) -> Option<&StageRow> {
        self.stages.iter().find(|s| !s.status.is_finished())
    }
}

/// Loads the project and run a message names, with the run's stages, in one
/// statement; None when either does not exist.
pub async fn load_run_view(
    db: &impl GenericClient,
    msg: &StageMessage,
) -> Result<Option<RunView>, StageError> {
    let Some(row) = db
        .query_opt(
            &format!(
                "SELECT {PROJECT_COLUMNS}, r.project_id AS run_project_id, r.status AS run_status,
                        r.kind AS run_kind,
                        (SELECT json_agg(json_build_array(s.stage, s.status, s.attempts, s.last_error)
                                         ORDER BY s.position)
                           FROM control_plane.provisioning_stages s WHERE s.run_id = r.id) AS stages
                   FROM {PROJECT_FROM}
                   JOIN control_plane.provisioning_runs r ON r.id = $2
                  WHERE p.id = $1"
            ),
            &[&msg.project_id, &msg.run_id],
        )
        .await?
    else {
        return Ok(None);
    };
    let stages: Option<serde_json::Value> = row.get("stages");
    let stages = stages
        .as_ref()
        .and_then(|v| v.as_array())
        .map(|rows| rows.iter().map(stage_from_json).collect())
        .transpose()?
        .unwrap_or_default();
    Ok(Some(RunView {
        project: project_from_row(&row)?,
        run_project_id: row.get("run_project_id"),
        run_kind: row
            .get::<_, &str>("run_kind")
            .parse()
            .map_err(|e: crate::domain::UnknownRunKind| StageError::permanent(e.to_string()))?,
        run_status: parse_status(row.get("run_status"))?,
        stages,
    }))
}

fn stage_from_json(v: &serde_json::Value) -> Result<StageRow, StageError> {
    let bad = || StageError::permanent(format!("malformed stage row {v}"));
    let text = |i: usize| v.get(i).and_then(|x| x.as_str()).ok_or_else(bad);
    Ok(StageRow {
        stage: text(0)?.parse().map_err(|_| bad())?,
        status: parse_status(text(1)?)?,
        attempts: v.get(2).and_then(|x| x.as_i64()).ok_or_else(bad)? as i32,
        last_error: v.get(3).and_then(|x| x.as_str()).map(str::to_owned),
    })
}

/// Records the start of an attempt (committed at once, so a crash still counts
/// it). SQS's receive count raises the count when earlier receives could not be
/// recorded (the database was out of reach). None when the stage may not run.
pub async fn record_attempt(
    db: &impl GenericClient,
    msg: &StageMessage,
    receive_count: Option<u32>,
) -> Result<Option<i32>, StageError> {
    let received = receive_count.map_or(0, |c| c as i32);
    let row = db
        .query_opt(
            "WITH s AS (
                UPDATE control_plane.provisioning_stages
                   SET status = 'running', attempts = greatest(attempts + 1, $3),
                       started_at = coalesce(started_at, now()), updated_at = now()
                 WHERE run_id = $1 AND stage = $2 AND status = ANY($4)
             RETURNING attempts),
             p AS (
                UPDATE control_plane.projects SET current_stage = $2, updated_at = now()
                 WHERE id = $5 AND EXISTS (SELECT 1 FROM s))
             SELECT attempts FROM s",
            &[
                &msg.run_id,
                &msg.stage.as_str(),
                &received,
                &StageStatus::Running.sources(),
                &msg.project_id,
            ],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

pub async fn record_retryable_error(
    db: &impl GenericClient,
    msg: &StageMessage,
    error: &StageError,
) -> Result<(), StageError> {
    refused_if_zero(
        db.execute(
            "UPDATE control_plane.provisioning_stages
                SET status = 'retrying', last_error = $3, updated_at = now()
              WHERE run_id = $1 AND stage = $2 AND status = ANY($4)",
            &[
                &msg.run_id,
                &msg.stage.as_str(),
                &error.to_string(),
                &StageStatus::Retrying.sources(),
            ],
        )
        .await?,
        msg,
        StageStatus::Retrying.as_str(),
    );
    Ok(())
}

/// Records attempts that could not be written when they happened (the database
/// was out of reach), once it is back: the error and the receive count. Only a
/// stage still open in a running run is touched.
pub async fn record_unrecorded_attempts(
    db: &impl GenericClient,
    run_id: Uuid,
    stage: Stage,
    error: &str,
    receives: u32,
) -> Result<(), StageError> {
    db.execute(
        "UPDATE control_plane.provisioning_stages s
            SET status = CASE WHEN s.status = 'pending' THEN 'retrying' ELSE s.status END,
                last_error = $3, attempts = greatest(s.attempts, $4), updated_at = now()
           FROM control_plane.provisioning_runs r
          WHERE s.run_id = $1 AND s.stage = $2 AND r.id = s.run_id AND r.status = 'running'
            AND s.status = ANY($5)",
        &[
            &run_id,
            &stage.as_str(),
            &error,
            &(receives as i32),
            &StageStatus::Retrying.sources(),
        ],
    )
    .await?;
    Ok(())
}

const FINISH_STAGE: &str = "finished_at = now(), updated_at = now(),
     duration_ms = (extract(epoch FROM now() - coalesce(started_at, now())) * 1000)::bigint";

/// Marks the stage succeeded; false when it was not in a status that may succeed.
pub async fn record_success(
    db: &impl GenericClient,
    msg: &StageMessage,
) -> Result<bool, StageError> {
    let changed = db
        .execute(
            &format!(
                "UPDATE control_plane.provisioning_stages SET status = 'succeeded', {FINISH_STAGE}
                  WHERE run_id = $1 AND stage = $2 AND status = ANY($3)"
            ),
            &[
                &msg.run_id,
                &msg.stage.as_str(),
                &StageStatus::Succeeded.sources(),
            ],
        )
        .await?;
    refused_if_zero(changed, msg, StageStatus::Succeeded.as_str());
    Ok(changed > 0)
}

/// Moves a project to `to` if the transition table allows it from its current
/// status and it is still on `run_id`; false (and logged) otherwise.
pub async fn transition_project(
    db: &impl GenericClient,
    project_id: Uuid,
    run_id: Uuid,
    to: ProjectStatus,
) -> Result<bool, StageError> {
    let changed = db
        .execute(
            "UPDATE control_plane.projects SET status = $3, updated_at = now()
              WHERE id = $1 AND current_run_id = $2 AND status = ANY($4)",
            &[&project_id, &run_id, &to.as_str(), &to.sources()],
        )
        .await?;
    if changed == 0 {
        tracing::warn!(%project_id, %run_id, to = to.as_str(), "status change refused by the transition table");
    }
    Ok(changed > 0)
}

/// Fails the stage and its run in one statement, keeping the error for the
/// API and the dead-letter report; a provisioning run fails its project too
/// (a failed lifecycle run leaves the project's status as its start set it,
/// and the operator retries the run). Only an open stage of the project's
/// current, running run can be failed; anything else changes nothing and
/// returns None. `attempts` raises the recorded count (receives that could not
/// be written). Returns the stage's attempts.
pub async fn record_failure(
    db: &impl GenericClient,
    msg: &StageMessage,
    error: &str,
    actor: &str,
    attempts: i32,
) -> Result<Option<i32>, StageError> {
    let row = db
        .query_opt(
            &format!(
                "WITH s AS (
                    UPDATE control_plane.provisioning_stages st
                       SET status = 'failed', last_error = $3, attempts = greatest(st.attempts, $5), {FINISH_STAGE}
                      FROM control_plane.provisioning_runs r, control_plane.projects p
                     WHERE st.run_id = $1 AND st.stage = $2 AND st.status = ANY($6)
                       AND r.id = st.run_id AND r.status = 'running'
                       AND p.id = $4 AND p.current_run_id = r.id
                       AND (r.kind <> 'provision' OR p.status = ANY($7))
                 RETURNING st.attempts, r.kind),
                 r AS (
                    UPDATE control_plane.provisioning_runs SET status = 'failed', finished_at = now()
                     WHERE id = $1 AND EXISTS (SELECT 1 FROM s)),
                 p AS (
                    UPDATE control_plane.projects
                       SET status = 'failed', failed_stage = $2, last_error = $3, current_stage = $2, updated_at = now()
                     WHERE id = $4 AND EXISTS (SELECT 1 FROM s WHERE kind = 'provision')),
                 a AS (
                    INSERT INTO control_plane.audit_log (project_id, run_id, action, actor, details)
                    SELECT $4, $1, CASE WHEN s.kind = 'provision' THEN 'provisioning' ELSE s.kind END || '.failed',
                           set_config('provisioning.actor', $8::text, true),
                           jsonb_build_object('stage', $2::text, 'attempts', s.attempts, 'error', $3::text,
                                              'correlation_id', $9::uuid)
                      FROM s)
                 SELECT attempts FROM s"
            ),
            &[
                &msg.run_id,
                &msg.stage.as_str(),
                &error,
                &msg.project_id,
                &attempts,
                &StageStatus::Failed.sources(),
                &ProjectStatus::Failed.sources(),
                &actor,
                &msg.correlation_id,
            ],
        )
        .await?;
    if row.is_none() {
        refused_if_zero(0, msg, "failed");
    }
    Ok(row.map(|r| r.get(0)))
}

fn refused_if_zero(changed: u64, msg: &StageMessage, to: &str) {
    if changed == 0 {
        tracing::warn!(
            project_id = %msg.project_id,
            run_id = %msg.run_id,
            stage = msg.stage.as_str(),
            to,
            "status change refused: the stage is not in a status the transition table allows"
        );
    }
}

/// Closes a run that reached its end, and the project becomes ready with its
/// total provisioning time and an audit entry (once, however often this runs).
pub async fn finish_run_ready(
    db: &impl GenericClient,
    msg: &StageMessage,
) -> Result<Option<i64>, StageError> {
    let row = db.query_opt(
        "WITH p AS (
            UPDATE control_plane.projects p
               SET status = 'ready', ready_at = now(), updated_at = now(), current_stage = 'finalize',
                   failed_stage = NULL, last_error = NULL,
                   provisioning_ms = (extract(epoch FROM now() - r.created_at) * 1000)::bigint
              FROM control_plane.provisioning_runs r
             WHERE p.id = $1 AND r.id = $2 AND p.current_run_id = r.id AND p.status = ANY($3)
                   AND r.status = 'running'
         RETURNING p.provisioning_ms),
         r AS (
            UPDATE control_plane.provisioning_runs SET status = 'succeeded', finished_at = now()
             WHERE id = $2 AND status = ANY($4) AND EXISTS (SELECT 1 FROM p))
         INSERT INTO control_plane.audit_log (project_id, run_id, action, actor, details)
         SELECT $1, $2, 'provisioning.ready', 'finalize',
                jsonb_build_object(
                    'provisioning_ms', p.provisioning_ms,
                    'correlation_id', $5::uuid,
                    'resources', (SELECT coalesce(jsonb_agg(jsonb_build_object('type', resource_type, 'id', resource_id)
                                                            ORDER BY resource_type, resource_id), '[]')
                                    FROM control_plane.project_resources WHERE project_id = $1))
           FROM p
         RETURNING (details ->> 'provisioning_ms')::bigint",
        &[
            &msg.project_id,
            &msg.run_id,
            &ProjectStatus::Ready.sources(),
            &RunStatus::Succeeded.sources(),
            &msg.correlation_id,
        ],
    )
    .await?;
    Ok(row.and_then(|r| r.get(0)))
}

/// Closes a lifecycle run that reached its end, with an audit entry
/// (`<kind>.succeeded`), once however often this runs; its duration when
/// this call closed it.
pub async fn finish_run(
    db: &impl GenericClient,
    msg: &StageMessage,
    kind: RunKind,
) -> Result<Option<i64>, StageError> {
    let row = db
        .query_opt(
            "WITH r AS (
            UPDATE control_plane.provisioning_runs r SET status = 'succeeded', finished_at = now()
              FROM control_plane.projects p
             WHERE r.id = $2 AND r.status = ANY($3) AND p.id = $1 AND p.current_run_id = r.id
         RETURNING extract(epoch FROM now() - r.created_at) * 1000 AS ms)
         INSERT INTO control_plane.audit_log (project_id, run_id, action, actor, details)
         SELECT $1, $2, $4 || '.succeeded', $5::text,
                jsonb_build_object('duration_ms', r.ms::bigint, 'correlation_id', $6::uuid)
           FROM r
         RETURNING (details ->> 'duration_ms')::bigint",
            &[
                &msg.project_id,
                &msg.run_id,
                &RunStatus::Succeeded.sources(),
                &kind.as_str(),
                &msg.stage.as_str(),
                &msg.correlation_id,
            ],
        )
        .await?;
    Ok(row.and_then(|r| r.get(0)))
}

/// Turns the project's keys and service rows on or off (the access stage's
/// commit): a suspended key stops verifying without being revoked.
pub async fn set_access(
    db: &impl GenericClient,
    project_id: Uuid,
    on: bool,
) -> Result<(), StageError> {
    db.execute(
        "WITH k AS (
            UPDATE control_plane.api_keys
               SET suspended_at = CASE WHEN $2 THEN NULL ELSE coalesce(suspended_at, now()) END
             WHERE project_id = $1 AND (suspended_at IS NULL) = NOT $2)
         UPDATE control_plane.project_services
            SET status = CASE WHEN $2 THEN 'active' ELSE 'disabled' END, updated_at = now()
          WHERE project_id = $1 AND status <> CASE WHEN $2 THEN 'active' ELSE 'disabled' END",
        &[&project_id, &on],
    )
    .await?;
    Ok(())
}

/// The purge stage's commit: the key rows, service rows and resource ledger
/// go, the project becomes purged and its cluster slot is freed (once: only
/// the change from deleted frees it). The project row, runs and audit stay.
pub async fn forget_project(db: &impl GenericClient, project_id: Uuid) -> Result<(), StageError> {
    db.execute(
        "WITH k AS (DELETE FROM control_plane.api_keys WHERE project_id = $1),
              s AS (DELETE FROM control_plane.project_services WHERE project_id = $1),
              r AS (DELETE FROM control_plane.project_resources WHERE project_id = $1),
              p AS (
                UPDATE control_plane.projects
                   SET status = 'purged', purged_at = now(), updated_at = now()
                 WHERE id = $1 AND status = ANY($2)
             RETURNING cluster_id)
         UPDATE control_plane.clusters c SET placed = greatest(c.placed - 1, 0), updated_at = now()
           FROM p WHERE c.id = p.cluster_id",
        &[&project_id, &ProjectStatus::Purged.sources()],
    )
    .await?;
    Ok(())
}

/// Writes an audit entry. Its actor also becomes the actor of every event the
/// transaction writes from then on (the `provisioning.actor` setting the event
/// triggers read), so an entry comes before the changes it accounts for.
pub async fn audit(
    db: &impl GenericClient,
    project_id: Uuid,
    run_id: Option<Uuid>,
    action: &str,
    actor: &str,
    details: serde_json::Value,
) -> Result<(), StageError> {
    db.execute(
        "INSERT INTO control_plane.audit_log (project_id, run_id, action, actor, details)
         VALUES ($1, $2, $3, set_config('provisioning.actor', $4, true), $5)",
        &[&project_id, &run_id, &action, &actor, &details],
    )
    .await?;
    Ok(())
}

/// A tenant resource of the project, for the ledger.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub kind: &'static str,
    pub id: String,
    pub metadata: serde_json::Value,
}

impl Resource {
    pub fn new(kind: &'static str, id: impl Into<String>, metadata: serde_json::Value) -> Resource {
        Resource {
            kind,
            id: id.into(),
            metadata,
        }
    }
}

/// Records (or refreshes) tenant resources of the project, all in one statement.
pub async fn record_resources(
    db: &impl GenericClient,
    project_id: Uuid,
    resources: &[Resource],
) -> Result<(), StageError> {
    if resources.is_empty() {
        return Ok(());
    }
    let kinds: Vec<&str> = resources.iter().map(|r| r.kind).collect();
    let ids: Vec<&str> = resources.iter().map(|r| r.id.as_str()).collect();
    let metadata = serde_json::Value::Array(resources.iter().map(|r| r.metadata.clone()).collect());
    db.execute(
        "INSERT INTO control_plane.project_resources (project_id, resource_type, resource_id, metadata)
         SELECT $1, t.kind, t.id, $4::jsonb -> (t.n::int - 1)
           FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS t(kind, id, n)
         ON CONFLICT (project_id, resource_type, resource_id)
         DO UPDATE SET metadata = EXCLUDED.metadata, updated_at = now()",
        &[&project_id, &kinds, &ids, &metadata],
    )
    .await?;
    Ok(())
}

/// Runs still running (of any kind) that are their project's current run, whose last progress (the
/// run's start or any stage row's update) is older than `$1` seconds, oldest
/// first, at most `$2`: their current stage, idle time and kicks. With
/// `skip_recently_kicked`, runs the sweeper kicked within `$1` are left out.
pub fn stalled_runs_sql(skip_recently_kicked: bool) -> String {
    let kicked = if skip_recently_kicked {
        "AND (r.kicked_at IS NULL OR r.kicked_at < now() - make_interval(secs => $1))"
    } else {
        ""
    };
    format!(
        "SELECT r.id AS run_id, r.project_id, p.name, p.status,
                (SELECT s.stage FROM control_plane.provisioning_stages s
                  WHERE s.run_id = r.id AND s.status NOT IN ('succeeded', 'failed', 'skipped')
                  ORDER BY s.position LIMIT 1) AS stage,
                extract(epoch FROM now() - greatest(r.created_at,
                    (SELECT max(s.updated_at) FROM control_plane.provisioning_stages s WHERE s.run_id = r.id)))::float8
                    AS idle_seconds,
                r.kicks
           FROM control_plane.provisioning_runs r
           JOIN control_plane.projects p ON p.current_run_id = r.id
          WHERE r.status = 'running'
            AND greatest(r.created_at,
                    (SELECT max(s.updated_at) FROM control_plane.provisioning_stages s WHERE s.run_id = r.id))
                < now() - make_interval(secs => $1)
            {kicked}
          ORDER BY r.created_at LIMIT $2"
    )
}
