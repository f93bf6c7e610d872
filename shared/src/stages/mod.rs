//! The stage executor and each stage's logic.
//!
//! For every stage message the executor, on one pooled connection holding the
//! project's lock (`lock::ProjectLock`):
//! 1. decides from Postgres whether the message is current (a message of another
//!    project's run, an older or finished run, a project not being provisioned,
//!    a finished stage or a stage not yet reached is acknowledged and changes
//!    nothing; a finished stage whose successor never started re-sends the
//!    successor's message);
//! 2. records the attempt (committed before any side effect);
//! 3. runs the stage's idempotent logic, which returns its ledger (resources,
//!    key rows) instead of writing it;
//! 4. commits, in one transaction, the ledger, the stage's success, the
//!    project's status change and the outbox row of the next stage's message,
//!    then relays that message; or records a retryable error (the message comes
//!    back after the visibility timeout); or fails the run and project on a
//!    permanent error (the message is acknowledged).

mod access;
mod create_database;
mod create_schema;
mod finalize;
mod generate_api_keys;
mod purge;
mod register_services;
mod validate;

pub use register_services::AFTER_REGISTRATION;

pub use crate::pipeline::Pipeline;

use crate::api_keys::NewKeyRow;
use crate::domain::{message_group, RunKind, Stage, StageMessage};
use crate::error::StageError;
use crate::lock::ProjectLock;
use crate::status::{ProjectStatus, RunStatus, StageStatus};
use crate::store::{self, ProjectRecord, Resource, RunView};
use crate::{fault, metrics, outbox};
use deadpool_postgres::Object;
use uuid::Uuid;

/// What happened to a message that did not need a retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The stage ran and the next stage's message was sent (None after finalize).
    Completed { attempt: i32, next: Option<Stage> },
    /// The stage was already done; its successor had not started, so its message was re-sent.
    Resent { next: Stage },
    /// Nothing to do, nothing changed: the reason says why (older run, finished stage, ...).
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
}

/// Decides what a message for `stage` should do given the run's state. Only
/// the current stage of the project's current, running run may run (or fail),
/// and only while the project is in a status the run's kind acts on.
pub fn decide(view: &RunView, msg: &StageMessage) -> Decision {
    if view.run_project_id != msg.project_id {
        return Decision::Ignore("the run belongs to another project");
    }
    if view.project.current_run_id != Some(msg.run_id) {
        return Decision::Ignore("message of an older run");
    }
    if view.run_status != RunStatus::Running {
        return Decision::Ignore("run already finished");
    }
    if !view.run_kind.acts_on(view.project.status) {
        return Decision::Ignore("project is in a status its run does not act on");
    }
    let Some(row) = view.stage(msg.stage) else {
        return Decision::Ignore("stage is not part of the run");
    };
    match row.status {
        StageStatus::Succeeded => {
            return match view.next_stage(msg.stage).and_then(|next| view.stage(next)) {
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
    match view.current_stage() {
        Some(current) if current.stage == msg.stage => Decision::Run,
        _ => Decision::Ignore("previous stage has not finished"),
    }
}

/// What a stage's logic gets.
pub struct StageContext<'a> {
    pub pipeline: &'a Pipeline,
    /// The connection holding the project's lock: all of the stage's SQL on the
    /// control-plane database goes through it.
    pub db: &'a Object,
    pub message: StageMessage,
    pub project: ProjectRecord,
    pub attempt: i32,
}

/// What a stage leaves to be committed with its success, in one transaction.
#[derive(Debug, Default)]
pub struct Ledger {
    pub resources: Vec<Resource>,
    pub api_keys: Vec<NewKeyRow>,
    /// The access stage: the project's keys and service rows on or off.
    pub access: Option<bool>,
    /// The purge stage: the project's rows go and it becomes purged.
    pub forget: bool,
}

impl StageContext<'_> {
    pub fn secret_name(&self, kind: &str) -> String {
        crate::secrets::secret_name(&self.pipeline.settings, self.project.id, kind)
    }

    /// A token for Secrets Manager that is the same for every attempt at the same write.
    pub fn request_token(&self, purpose: &str) -> Uuid {
        Uuid::new_v5(&self.project.id, purpose.as_bytes())
    }
}

/// The metric of a run that failed: a failed project for provisioning, a
/// failed operation otherwise.
fn run_failed(kind: RunKind, msg: &StageMessage) {
    match kind {
        RunKind::Provision => metrics::project_failed(msg.stage.as_str(), msg.into()),
        kind => metrics::operation_ended(kind.as_str(), None, msg.into()),
    }
}

/// The fault point between a stage's side effects and its commit.
pub fn before_commit(stage: Stage) -> &'static str {
    match stage {
        Stage::Validate => "validate:before-commit",
        Stage::CreateDatabase => "create-database:before-commit",
        Stage::CreateSchema => "create-schema:before-commit",
        Stage::RegisterServices => "register-services:before-commit",
        Stage::GenerateApiKeys => "generate-api-keys:before-commit",
        Stage::Finalize => "finalize:before-commit",
        Stage::Access => "access:before-commit",
        Stage::Purge => "purge:before-commit",
    }
}

impl Pipeline {
    /// Handles one stage message. `Err` means "retry later" (always retryable);
    /// permanent errors are recorded and come back as `Outcome::Failed`.
    pub async fn run_stage(&self, msg: &StageMessage) -> Result<Outcome, StageError> {
        self.run_received(msg, None).await
    }

    /// As `run_stage`, with SQS's receive count of the message.
    pub async fn run_received(
        &self,
        msg: &StageMessage,
        receive_count: Option<u32>,
    ) -> Result<Outcome, StageError> {
        self.with_project_lock(msg.project_id, async |db: &mut Object| {
            self.run_locked(db, msg, receive_count).await
        })
        .await
    }

    /// Handles a message that exhausted its receives: the project becomes failed
    /// with the stage, the attempts and the last error known. Only the current
    /// stage of the current, running run can be failed this way.
    pub async fn dead_letter(
        &self,
        msg: &StageMessage,
        receive_count: Option<u32>,
    ) -> Result<Outcome, StageError> {
        self.with_project_lock(msg.project_id, async |db: &mut Object| {
            self.flush_journal(db).await?;
            let Some(view) = store::load_run_view(&*db, msg).await? else {
                return Ok(Outcome::Ignored("project or run not found"));
            };
            match decide(&view, msg) {
                Decision::Run => {}
                Decision::Ignore(why) => return Ok(Outcome::Ignored(why)),
                Decision::ResendNext(_) => return Ok(Outcome::Ignored("stage already succeeded")),
            }
            let row = view.stage(msg.stage).expect("decide found the stage");
            // The queue gave the message all its receives before redriving it;
            // those the stage could not write are counted from the policy.
            let receives = self.settings.max_receive_count as i32;
            let attempts = row.attempts.max(receives);
            tracing::info!(
                attempts,
                recorded_attempts = row.attempts,
                receive_count,
                "dead-lettered after its receives ran out"
            );
            let last = match &row.last_error {
                Some(error) => error.clone(),
                None if row.attempts < receives => format!(
                    "{} of {receives} receives left no record: the control-plane database was out of reach or the function timed out before writing",
                    receives - row.attempts
                ),
                None => "no error recorded (the function crashed or timed out)".to_owned(),
            };
            let error = format!("gave up after {attempts} attempts: {last}");
            match store::record_failure(&*db, msg, &error, "dead-letter", attempts).await? {
                Some(_) => {
                    self.relay_events(db, msg.project_id).await;
                    metrics::dead_lettered(msg.stage.as_str(), msg.into());
                    run_failed(view.run_kind, msg);
                    Ok(Outcome::Failed(error))
                }
                None => Ok(Outcome::Ignored("stage no longer open")),
            }
        })
        .await
    }

    /// Runs `work` on one pooled connection holding the project's lock, so all
    /// work on a project is serialised across workers without any of them
    /// holding a connection while waiting for another.
    pub async fn with_project_lock<T, E>(
        &self,
        project_id: Uuid,
        work: impl AsyncFnOnce(&mut Object) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<StageError>,
    {
        let mut lock = ProjectLock::acquire(&self.db, project_id).await?;
        let result = work(&mut lock).await;
        lock.release().await;
        result
    }

    /// Relays the project's committed events; one left unsent is the
    /// sweeper's (the change they tell of is already committed).
    pub async fn relay_events(&self, db: &Object, project_id: Uuid) {
        outbox::relay_or_leave(db, self.destinations(), project_id, None).await;
    }

    async fn flush_journal(&self, db: &Object) -> Result<(), StageError> {
        if !self.journal.is_empty() {
            self.journal.flush(db).await?;
        }
        Ok(())
    }

    async fn run_locked(
        &self,
        db: &mut Object,
        msg: &StageMessage,
        receive_count: Option<u32>,
    ) -> Result<Outcome, StageError> {
        self.flush_journal(db).await?;
        let Some(view) = store::load_run_view(&*db, msg).await? else {
            return Ok(Outcome::Ignored("project or run not found"));
        };
        match decide(&view, msg) {
            Decision::Ignore(why) => return Ok(Outcome::Ignored(why)),
            Decision::ResendNext(next) => {
                let group = message_group(view.project.id, view.project.organization_id);
                self.queue.send(&msg.for_stage(next), &group).await?;
                return Ok(Outcome::Resent { next });
            }
            Decision::Run => {}
        }
        let Some(attempt) = store::record_attempt(&*db, msg, receive_count).await? else {
            return Ok(Outcome::Ignored("stage may not run"));
        };
        let was_requested = view.project.status == ProjectStatus::Requested;
        let next = view.next_stage(msg.stage);
        let kind = view.run_kind;
        let region = view.project.region.clone();
        let cluster = view.project.cluster.as_ref().map(|c| c.id.clone());
        let started = std::time::Instant::now();
        let ctx = StageContext {
            pipeline: self,
            db,
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
            Stage::Access => access::run(&ctx).await,
            Stage::Purge => purge::run(&ctx).await,
        };
        match result {
            Ok(ledger) => {
                fault::point(msg.project_id, before_commit(msg.stage)).await;
                let tx = db.transaction().await?;
                store::record_resources(&tx, msg.project_id, &ledger.resources).await?;
                crate::api_keys::insert_keys(&tx, msg.project_id, &ledger.api_keys).await?;
                if let Some(on) = ledger.access {
                    store::set_access(&tx, msg.project_id, on).await?;
                }
                if ledger.forget {
                    store::forget_project(&tx, msg.project_id).await?;
                }
                if !store::record_success(&tx, msg).await? {
                    return Ok(Outcome::Ignored("stage no longer open"));
                }
                if msg.stage == Stage::Validate && was_requested {
                    store::transition_project(
                        &tx,
                        msg.project_id,
                        msg.run_id,
                        ProjectStatus::Provisioning,
                    )
                    .await?;
                }
                let finished = match (next, kind) {
                    (Some(_), _) => None,
                    (None, RunKind::Provision) => store::finish_run_ready(&tx, msg).await?,
                    (None, kind) => store::finish_run(&tx, msg, kind).await?,
                };
                let handoff = match next {
                    Some(next) => Some(outbox::enqueue(&tx, &msg.for_stage(next)).await?),
                    None => None,
                };
                tx.commit().await?;
                let elapsed = started.elapsed();
                metrics::stage_attempt(
                    msg.stage.as_str(),
                    kind.as_str(),
                    attempt,
                    elapsed,
                    "succeeded",
                    msg.into(),
                );
                match (finished, kind) {
                    (None, _) => {}
                    (Some(ms), RunKind::Provision) => metrics::project_ready(
                        &region,
                        cluster.as_deref().unwrap_or("-"),
                        ms,
                        msg.into(),
                    ),
                    (Some(ms), kind) => {
                        metrics::operation_ended(kind.as_str(), Some(ms), msg.into())
                    }
                }
                outbox::relay(&*db, self.destinations(), msg.project_id, handoff).await?;
                Ok(Outcome::Completed { attempt, next })
            }
            Err(e) if e.is_retryable() => {
                metrics::stage_attempt(
                    msg.stage.as_str(),
                    kind.as_str(),
                    attempt,
                    started.elapsed(),
                    "retrying",
                    msg.into(),
                );
                match store::record_retryable_error(&*db, msg, &e).await {
                    Ok(()) => self.relay_events(db, msg.project_id).await,
                    Err(unwritten) => {
                        self.journal.note(msg, &e, receive_count);
                        tracing::warn!(error = %unwritten, "could not record the retryable error");
                    }
                }
                Err(e)
            }
            Err(e) => {
                metrics::stage_attempt(
                    msg.stage.as_str(),
                    kind.as_str(),
                    attempt,
                    started.elapsed(),
                    "failed",
                    msg.into(),
                );
                let error = e.to_string();
                match store::record_failure(&*db, msg, &error, msg.stage.as_str(), 0).await? {
                    Some(_) => {
                        self.relay_events(db, msg.project_id).await;
                        run_failed(kind, msg);
                        Ok(Outcome::Failed(error))
                    }
                    None => Ok(Outcome::Ignored("stage no longer open")),
                }
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
            status: ProjectStatus::Provisioning,
            current_run_id: Some(run_id),
            cluster: None,
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
                run_kind: RunKind::Provision,
                run_status: RunStatus::Running,
                stages,
            },
            msg,
        )
    }

    use StageStatus::*;

    fn fresh_run() -> Vec<(Stage, StageStatus, i32)> {
        Stage::PROVISION.iter().map(|s| (*s, Pending, 0)).collect()
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
    fn a_run_of_another_project_is_ignored() {
        let (mut v, m) = view(&fresh_run());
        v.run_project_id = Uuid::new_v4();
        assert_eq!(
            decide(&v, &m),
            Decision::Ignore("the run belongs to another project")
        );
    }

    #[test]
    fn no_message_runs_on_a_project_that_is_not_being_provisioned() {
        for status in [
            ProjectStatus::Ready,
            ProjectStatus::Failed,
            ProjectStatus::Suspended,
            ProjectStatus::Deleted,
        ] {
            let (mut v, m) = view(&fresh_run());
            v.project.status = status;
            assert_eq!(
                decide(&v, &m),
                Decision::Ignore("project is in a status its run does not act on"),
                "{status}"
            );
        }
    }

    #[test]
    fn a_lifecycle_run_acts_only_on_the_status_its_start_set_and_ends_at_its_last_stage() {
        let (mut v, m) = view(&[(Stage::Access, Pending, 0), (Stage::Purge, Pending, 0)]);
        v.run_kind = RunKind::Delete;
        v.project.status = ProjectStatus::Deleted;
        assert_eq!(decide(&v, &m.for_stage(Stage::Access)), Decision::Run);
        assert_eq!(
            decide(&v, &m.for_stage(Stage::Purge)),
            Decision::Ignore("previous stage has not finished")
        );
        assert_eq!(v.next_stage(Stage::Access), Some(Stage::Purge));
        assert_eq!(v.next_stage(Stage::Purge), None);
        // restored meanwhile: the delete run's messages change nothing
        v.project.status = ProjectStatus::Ready;
        assert_eq!(
            decide(&v, &m.for_stage(Stage::Access)),
            Decision::Ignore("project is in a status its run does not act on")
        );
        // a provisioning stage's message names a stage this run does not have
        v.project.status = ProjectStatus::Deleted;
        assert_eq!(
            decide(&v, &m.for_stage(Stage::CreateDatabase)),
            Decision::Ignore("stage is not part of the run")
        );
    }

    #[test]
    fn a_finished_run_and_a_stage_ahead_of_the_current_one_are_ignored() {
        let (mut v, m) = view(&fresh_run());
        v.run_status = RunStatus::Succeeded;
        assert_eq!(decide(&v, &m), Decision::Ignore("run already finished"));
        let mut stages = fresh_run();
        stages[0] = (Stage::Validate, Succeeded, 1);
        stages[1] = (Stage::CreateDatabase, Retrying, 1);
        let (v, m) = view(&stages);
        assert_eq!(
            decide(&v, &m.for_stage(Stage::Finalize)),
            Decision::Ignore("previous stage has not finished")
        );
        assert_eq!(
            decide(&v, &m.for_stage(Stage::CreateDatabase)),
            Decision::Run
        );
    }
}
