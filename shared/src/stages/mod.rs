//! The stage executor and each stage's logic.
//!
//! For every stage message the executor, under a per-project advisory lock:
//! 1. decides from Postgres whether the message is current (older runs, finished
//!    stages and stages not yet reached are acknowledged and ignored; a finished
//!    stage whose successor never started re-sends the successor's message);
//! 2. records the attempt (committed before any side effect);
//! 3. runs the stage's idempotent logic;
//! 4. marks the stage succeeded and sends the next stage's message, or records a
//!    retryable error (the message comes back after the visibility timeout), or
//!    fails the run and project on a permanent error (the message is acknowledged).

mod create_database;
mod create_schema;
mod finalize;
mod generate_api_keys;
mod register_services;
mod validate;

pub use create_database::DatabaseCredentials;
pub use generate_api_keys::StoredKeys;

use crate::config::Settings;
use crate::db::lock_key;
use crate::domain::{Stage, StageMessage};
use crate::error::StageError;
use crate::ports::{MessageQueue, SecretStore, ServiceRegistrar};
use crate::store::{self, ProjectRecord, RunView, StageStatus};
use deadpool_postgres::Pool;
use std::sync::Arc;
use uuid::Uuid;

/// Everything a stage needs, built once per cold start.
#[derive(Clone)]
pub struct Pipeline {
    pub settings: Arc<Settings>,
    /// TLS for tenant connections (same cluster, same mode as the control plane).
    pub tls: crate::tls::MakeRustlsConnect,
    pub db: Pool,
    pub queue: Arc<dyn MessageQueue>,
    pub secrets: Arc<dyn SecretStore>,
    pub registrar: Arc<dyn ServiceRegistrar>,
}

/// What happened to a message that did not need a retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The stage ran and the next stage's message was sent (None after finalize).
    Completed { attempt: i32, next: Option<Stage> },
    /// The stage was already done; its successor had not started, so its message was re-sent.
    Resent { next: Stage },
    /// Nothing to do: the reason says why (older run, finished stage, ...).
    Ignored(&'static str),
    /// A permanent error failed the project; the message is acknowledged.
    Failed(String),
}

/// The executor's verdict on a message, from the run's state alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Run,
    ResendNext(Stage),
    Ignore(&'static str),
    Reject(String),
}

/// Decides what a message for `stage` should do given the run's state.
pub fn decide(view: &RunView, msg: &StageMessage) -> Decision {
    if view.run_project_id != msg.project_id {
        return Decision::Reject(format!(
            "run {} does not belong to project {}",
            msg.run_id, msg.project_id
        ));
    }
    if view.project.current_run_id != Some(msg.run_id) {
        return Decision::Ignore("message of an older run");
    }
    if view.run_status != "running" {
        return Decision::Ignore("run already finished");
    }
    let Some(row) = view.stage(msg.stage) else {
        return Decision::Reject(format!(
            "stage {} is not part of run {}",
            msg.stage, msg.run_id
        ));
    };
    match row.status {
        StageStatus::Succeeded => {
            return match msg.stage.next().and_then(|next| view.stage(next)) {
                Some(next) if next.status == StageStatus::Pending && next.attempts == 0 => {
                    Decision::ResendNext(next.stage)
                }
                _ => Decision::Ignore("stage already succeeded"),
            };
        }
        StageStatus::Failed | StageStatus::Skipped => {
            return Decision::Ignore("stage already failed or skipped")
        }
        _ => {}
    }
    let previous = view
        .stages
        .iter()
        .take_while(|s| s.stage != msg.stage)
        .filter(|s| s.status != StageStatus::Skipped)
        .last();
    match previous {
        Some(p) if p.status != StageStatus::Succeeded => {
            Decision::Ignore("previous stage has not finished")
        }
        _ => Decision::Run,
    }
}

/// What a stage's logic gets.
pub struct StageContext<'a> {
    pub pipeline: &'a Pipeline,
    pub message: StageMessage,
    pub project: ProjectRecord,
    pub attempt: i32,
}

impl StageContext<'_> {
    pub fn secret_name(&self, kind: &str) -> String {
        secret_name(&self.pipeline.settings, self.project.id, kind)
    }

    /// A token for Secrets Manager that is the same for every attempt at the same write.
    pub fn request_token(&self, purpose: &str) -> Uuid {
        Uuid::new_v5(&self.project.id, purpose.as_bytes())
    }
}

/// `{secret_prefix}/{project_id}/{kind}`.
pub fn secret_name(settings: &Settings, project_id: Uuid, kind: &str) -> String {
    format!("{}/{}/{}", settings.secret_prefix, project_id, kind)
}

pub const DATABASE_SECRET: &str = "database";
pub const API_KEYS_SECRET: &str = "api-keys";

impl Pipeline {
    /// Handles one stage message. `Err` means "retry later" (always retryable);
    /// permanent errors are recorded and come back as `Outcome::Failed`.
    pub async fn run_stage(&self, msg: &StageMessage) -> Result<Outcome, StageError> {
        self.with_project_lock(msg.project_id, || self.run_locked(msg))
            .await
    }

    /// Handles a message that exhausted its receives: the project becomes failed
    /// with the stage, the attempts and the last recorded error.
    pub async fn dead_letter(
        &self,
        msg: &StageMessage,
        receive_count: Option<u32>,
    ) -> Result<Outcome, StageError> {
        self.with_project_lock(msg.project_id, || async {
            let mut db = self.db.get().await?;
            let Some(view) = store::load_run_view(&db, msg).await? else {
                return Ok(Outcome::Ignored("project or run not found"));
            };
            if view.project.current_run_id != Some(msg.run_id) || view.run_status != "running" {
                return Ok(Outcome::Ignored("run no longer current"));
            }
            let Some(row) = view.stage(msg.stage) else {
                return Ok(Outcome::Ignored("stage not in run"));
            };
            if matches!(
                row.status,
                StageStatus::Succeeded | StageStatus::Failed | StageStatus::Skipped
            ) {
                return Ok(Outcome::Ignored("stage already finished"));
            }
            // Attempts are counted by the stage itself: the DLQ copy's receive
            // count also counts receives from the DLQ, so it is only logged.
            let attempts = row.attempts;
            tracing::info!(
                attempts,
                receive_count,
                "dead-lettered after its receives ran out"
            );
            let last = row
                .last_error
                .clone()
                .unwrap_or_else(|| "no error recorded (the function crashed or timed out)".into());
            let error = format!("gave up after {attempts} attempts: {last}");
            store::record_failure(&mut db, msg, &error, "dead-letter").await?;
            Ok(Outcome::Failed(error))
        })
        .await
    }

    /// Fails the current run of a project named by a malformed message.
    pub async fn fail_current_run(
        &self,
        project_id: Uuid,
        stage: Stage,
        error: &str,
    ) -> Result<Outcome, StageError> {
        self.with_project_lock(project_id, || async {
            let mut db = self.db.get().await?;
            let Some(project) = store::load_project(&db, project_id).await? else {
                return Ok(Outcome::Ignored("project not found"));
            };
            let Some(run_id) = project.current_run_id else {
                return Ok(Outcome::Ignored("project has no run"));
            };
            let msg = StageMessage {
                project_id,
                run_id,
                stage,
                correlation_id: Uuid::nil(),
            };
            store::record_failure(&mut db, &msg, error, stage.as_str()).await?;
            Ok(Outcome::Failed(error.to_owned()))
        })
        .await
    }

    /// Serialises all stage work on one project across workers: a transaction
    /// holds `pg_advisory_xact_lock` while `work` runs on other connections.
    pub async fn with_project_lock<T, F, Fut>(
        &self,
        project_id: Uuid,
        work: F,
    ) -> Result<T, StageError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, StageError>>,
    {
        let mut conn = self.db.get().await?;
        let lock = conn.transaction().await?;
        let timeout = format!("{}ms", self.settings.stage_lock_timeout.as_millis());
        lock.execute("SELECT set_config('lock_timeout', $1, true)", &[&timeout])
            .await?;
        lock.execute(
            "SELECT pg_advisory_xact_lock($1)",
            &[&lock_key("project", &project_id.to_string())],
        )
        .await?;
        let result = work().await;
        lock.commit().await?;
        result
    }

    async fn run_locked(&self, msg: &StageMessage) -> Result<Outcome, StageError> {
        let mut db = self.db.get().await?;
        let Some(view) = store::load_run_view(&db, msg).await? else {
            // Nothing to fail: the message names no known project run.
            return Ok(Outcome::Ignored("project or run not found"));
        };
        match decide(&view, msg) {
            Decision::Ignore(why) => return Ok(Outcome::Ignored(why)),
            Decision::ResendNext(next) => {
                self.queue.send(&msg.for_stage(next)).await?;
                return Ok(Outcome::Resent { next });
            }
            Decision::Reject(why) => {
                store::record_failure(&mut db, msg, &why, msg.stage.as_str()).await?;
                return Ok(Outcome::Failed(why));
            }
            Decision::Run => {}
        }
        let attempt = store::record_attempt(&db, msg).await?;
        drop(db); // the logic takes its own connections; keep the pool free
        let ctx = StageContext {
            pipeline: self,
            message: *msg,
            project: view.project,
            attempt,
        };
        let result = match msg.stage {
            Stage::Validate => validate::run(&ctx).await,
            Stage::CreateDatabase => create_database::run(&ctx).await,
            Stage::CreateSchema => create_schema::run(&ctx).await,
            Stage::RegisterServices => register_services::run(&ctx).await,
            Stage::GenerateApiKeys => generate_api_keys::run(&ctx).await,
            Stage::Finalize => finalize::run(&ctx).await,
        };
        let mut db = self.db.get().await?;
        match result {
            Ok(()) => {
                store::record_success(&db, msg).await?;
                let next = msg.stage.next();
                if let Some(next) = next {
                    self.queue.send(&msg.for_stage(next)).await?;
                }
                Ok(Outcome::Completed { attempt, next })
            }
            Err(e) if e.is_retryable() => {
                store::record_retryable_error(&db, msg, &e).await?;
                Err(e)
            }
            Err(e) => {
                let error = e.to_string();
                store::record_failure(&mut db, msg, &error, msg.stage.as_str()).await?;
                Ok(Outcome::Failed(error))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ServiceSelection;
    use crate::store::StageRow;

    fn view(statuses: &[(Stage, StageStatus, i32)]) -> (RunView, StageMessage) {
        let project_id = Uuid::new_v4();
        let run_id = Uuid::new_v4();
        let project = ProjectRecord {
            id: project_id,
            name: "p".into(),
            region: "us-east-1".into(),
            owner_id: None,
            organization_id: None,
            services: ServiceSelection::default(),
            api_key_count: 2,
            api_key_prefix: "pk".into(),
            status: "provisioning".into(),
            current_run_id: Some(run_id),
        };
        let stages = statuses
            .iter()
            .map(|(stage, status, attempts)| StageRow {
                stage: *stage,
                status: *status,
                attempts: *attempts,
                last_error: None,
            })
            .collect();
        let msg = StageMessage {
            project_id,
            run_id,
            stage: Stage::Validate,
            correlation_id: Uuid::new_v4(),
        };
        (
            RunView {
                project,
                run_project_id: project_id,
                run_status: "running".into(),
                stages,
            },
            msg,
        )
    }

    use StageStatus::*;

    fn fresh_run() -> Vec<(Stage, StageStatus, i32)> {
        Stage::ALL.iter().map(|s| (*s, Pending, 0)).collect()
    }

    #[test]
    fn first_stage_of_a_fresh_run_runs() {
        let (v, m) = view(&fresh_run());
        assert_eq!(decide(&v, &m), Decision::Run);
    }

    #[test]
    fn a_stage_whose_predecessor_is_unfinished_is_ignored() {
        let (v, m) = view(&fresh_run());
        assert_eq!(
            decide(&v, &m.for_stage(Stage::CreateSchema)),
            Decision::Ignore("previous stage has not finished")
        );
    }

    #[test]
    fn a_succeeded_stage_resends_its_successor_only_if_that_never_started() {
        let mut stages = fresh_run();
        stages[0] = (Stage::Validate, Succeeded, 1);
        let (v, m) = view(&stages);
        assert_eq!(decide(&v, &m), Decision::ResendNext(Stage::CreateDatabase));
        stages[1] = (Stage::CreateDatabase, Running, 1);
        let (v, m) = view(&stages);
        assert_eq!(decide(&v, &m), Decision::Ignore("stage already succeeded"));
    }

    #[test]
    fn a_message_of_an_older_run_is_ignored() {
        let (mut v, m) = view(&fresh_run());
        v.project.current_run_id = Some(Uuid::new_v4());
        assert_eq!(decide(&v, &m), Decision::Ignore("message of an older run"));
    }

    #[test]
    fn a_resumed_run_starts_after_skipped_stages_and_retries_a_retrying_stage() {
        let mut stages = fresh_run();
        stages[0] = (Stage::Validate, Skipped, 0);
        stages[1] = (Stage::CreateDatabase, Skipped, 0);
        let (v, m) = view(&stages);
        assert_eq!(decide(&v, &m.for_stage(Stage::CreateSchema)), Decision::Run);
        stages[2] = (Stage::CreateSchema, Retrying, 2);
        let (v, m) = view(&stages);
        assert_eq!(decide(&v, &m.for_stage(Stage::CreateSchema)), Decision::Run);
    }

    #[test]
    fn a_run_of_another_project_is_rejected() {
        let (mut v, m) = view(&fresh_run());
        v.run_project_id = Uuid::new_v4();
        assert!(matches!(decide(&v, &m), Decision::Reject(_)));
    }
}
