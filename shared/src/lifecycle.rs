//! Starting the lifecycle operations: suspend, resume, delete, restore and
//! purge. Each is a run (`RunKind`) of stage functions, like provisioning.
//!
//! Starting one is a single transaction on the connection holding the
//! project's lock: the project's new status (the operation's intent, so a
//! second request sees it at once), the run and its stage rows, the audit
//! entry and the outbox row of the run's first message; the stages then carry
//! it out (`Stage::Access` makes access match the status, `Stage::Purge`
//! removes everything). What is allowed from where is `plan`, a pure function.

use crate::domain::{RunKind, Stage, StageMessage};
use crate::error::StageError;
use crate::outbox;
use crate::pipeline::Pipeline;
use crate::project::{insert_run, NewRun};
use crate::status::ProjectStatus;
use chrono::{DateTime, Utc};
use deadpool_postgres::Object;
use serde::Serialize;
use std::time::Duration;
use uuid::Uuid;

/// What an operator (or the sweeper) asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Suspend,
    Resume,
    /// `purge_now`: `DELETE /projects/{id}?purge=now`.
    Delete {
        purge_now: bool,
    },
    Restore,
    /// The recovery window has passed (the sweeper).
    PurgeDue,
    /// A purged project still has objects (the reconciler found orphans
    /// past their grace period): purge again.
    PurgeLeftovers,
}

/// Where the project stands, as far as starting an operation goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Current {
    pub status: ProjectStatus,
    /// The status a deleted project had.
    pub deleted_from: Option<ProjectStatus>,
    /// Whether a deleted project's recovery window has ended.
    pub purge_due: bool,
    /// The kind of the project's current run, and whether it is running.
    pub run_kind: Option<RunKind>,
    pub run_running: bool,
}

/// What starting an operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub kind: RunKind,
    pub stages: &'static [Stage],
    /// The project's status from now on.
    pub to: ProjectStatus,
    /// The current run is still running and is cancelled.
    pub cancels: bool,
}

/// Decides what an operation does from where the project stands, or why it
/// is refused (a 409). `window` is the recovery window of a delete.
pub fn plan(op: Operation, now: Current, window: Duration) -> Result<Plan, String> {
    use ProjectStatus::*;
    let status = now.status;
    let moving = |what: &str| -> Result<Plan, String> {
        Err(format!(
            "project is {status} and its {} run is still moving: {what} when it has finished",
            now.run_kind.map_or("current", RunKind::as_str)
        ))
    };
    let run = |kind: RunKind, to: ProjectStatus, purge_at_once: bool, cancels: bool| {
        Ok(Plan {
            kind,
            stages: kind.stages(purge_at_once),
            to,
            cancels: cancels && now.run_running,
        })
    };
    let purge_started = now.run_kind == Some(RunKind::Purge);
    match op {
        Operation::Suspend => match status {
            Ready if now.run_running => moving("suspend it"),
            Ready => run(RunKind::Suspend, Suspended, false, false),
            _ => Err(format!(
                "project is {status}: only a ready project can be suspended"
            )),
        },
        Operation::Resume => match status {
            Suspended if now.run_running => moving("resume it"),
            Suspended => run(RunKind::Resume, Ready, false, false),
            _ => Err(format!(
                "project is {status}: only a suspended project can be resumed"
            )),
        },
        Operation::Delete { purge_now } => {
            let at_once = window.is_zero();
            match status {
                Ready | Suspended | Requested | Provisioning | Failed => {
                    if purge_now && !(at_once || status == Failed) {
                        return Err(format!(
                            "purge=now is only for a failed project or when the recovery window is 0; \
                             this project is {status}: delete it, and it is purged when its window ends"
                        ));
                    }
                    run(RunKind::Delete, Deleted, at_once || purge_now, true)
                }
                Deleted if purge_now && (at_once || now.deleted_from == Some(Failed)) => {
                    if purge_started && now.run_running {
                        return Err("project is deleted and its purge is running".to_owned());
                    }
                    run(RunKind::Purge, Deleted, false, true)
                }
                Deleted => Err(
                    "project is already deleted: restore it within its recovery window, or it is purged when the window ends"
                        .to_owned(),
                ),
                Purged => Err("project is purged".to_owned()),
            }
        }
        Operation::Restore => match (status, now.deleted_from) {
            (Deleted, _) if purge_started => {
                Err("project is being purged and can no longer be restored".to_owned())
            }
            (Deleted, _) if now.purge_due => {
                Err("project's recovery window has ended: it can no longer be restored".to_owned())
            }
            (Deleted, Some(from @ (Ready | Suspended))) => run(RunKind::Restore, from, false, true),
            (Deleted, from) => Err(format!(
                "project was {} when deleted: only a ready or suspended project can be restored",
                from.map_or("not ready", ProjectStatus::as_str)
            )),
            _ => Err(format!(
                "project is {status}: only a deleted project can be restored"
            )),
        },
        // A run still moving is left to finish (a delete with a zero window
        // purges in its own run).
        Operation::PurgeDue => match status {
            Deleted if now.purge_due && !purge_started && !now.run_running => {
                run(RunKind::Purge, Deleted, false, false)
            }
            _ => Err(format!("project is {status} and not due for purge")),
        },
        Operation::PurgeLeftovers => match status {
            Purged if !now.run_running => run(RunKind::Purge, Purged, false, false),
            _ => Err(format!(
                "project is {status}: only a purged project's leftovers are purged again"
            )),
        },
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("project not found")]
    NotFound,
    /// Not allowed from where the project stands (409); nothing was written.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Unavailable(#[from] StageError),
}

/// The run an operation started (the API's 202 answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StartedRun {
    pub project_id: Uuid,
    pub run_id: Uuid,
    pub run_number: i32,
    pub kind: RunKind,
    pub correlation_id: Uuid,
    /// The project's status from now on.
    pub status: &'static str,
    /// When a deleted project is purged.
    pub purge_after: Option<DateTime<Utc>>,
}

/// Starts `op` on the project: one transaction under the project's lock, then
/// the run's first message is relayed (or left to the sweeper).
pub async fn start(
    pipeline: &Pipeline,
    project_id: Uuid,
    op: Operation,
    correlation_id: Option<Uuid>,
    actor: &str,
) -> Result<StartedRun, LifecycleError> {
    let window = pipeline.settings.recovery_window;
    pipeline
        .with_project_lock(project_id, async |db: &mut Object| {
            let tx = db.transaction().await.map_err(StageError::from)?;
            let Some(row) = tx
                .query_opt(
                    "SELECT p.status, p.deleted_from, coalesce(p.purge_after <= now(), false),
                            r.kind, coalesce(r.status = 'running', false),
                            (SELECT coalesce(max(run_number), 0) + 1 FROM control_plane.provisioning_runs
                              WHERE project_id = p.id)
                       FROM control_plane.projects p
                       LEFT JOIN control_plane.provisioning_runs r ON r.id = p.current_run_id
                      WHERE p.id = $1",
                    &[&project_id],
                )
                .await
                .map_err(StageError::from)?
            else {
                return Err(LifecycleError::NotFound);
            };
            let parse_kind = |text: &str| {
                text.parse::<RunKind>()
                    .map_err(|e| StageError::permanent(e.to_string()))
            };
            let current = Current {
                status: crate::store::parse_status(row.get(0))?,
                deleted_from: row
                    .get::<_, Option<&str>>(1)
                    .map(crate::store::parse_status)
                    .transpose()?,
                purge_due: row.get(2),
                run_kind: row.get::<_, Option<&str>>(3).map(parse_kind).transpose()?,
                run_running: row.get(4),
            };
            let plan = plan(op, current, window).map_err(LifecycleError::Refused)?;
            debug_assert!(plan.to == current.status || current.status.can_become(plan.to));
            let run_number: i32 = row.get(5);
            let run_id = Uuid::new_v4();
            let correlation_id = correlation_id.unwrap_or_else(Uuid::new_v4);
            // First, as it names the actor of the events this transaction writes.
            crate::store::audit(
                &tx,
                project_id,
                Some(run_id),
                &format!("{}.requested", plan.kind),
                actor,
                serde_json::json!({ "was": current.status, "status": plan.to, "cancelled_run": plan.cancels }),
            )
            .await?;
            if plan.cancels {
                tx.execute(
                    "UPDATE control_plane.provisioning_runs SET status = 'cancelled', finished_at = now()
                      WHERE id = (SELECT current_run_id FROM control_plane.projects WHERE id = $1)
                        AND status = 'running'",
                    &[&project_id],
                )
                .await
                .map_err(StageError::from)?;
            }
            let first = plan.stages[0];
            insert_run(
                &tx,
                NewRun {
                    project_id,
                    run_id,
                    run_number,
                    kind: plan.kind,
                    stages: plan.stages,
                    start: first,
                    correlation_id,
                },
            )
            .await?;
            // A delete keeps where it came from and when its window ends; a
            // restore forgets both. Guarded by the status read above.
            let deleting = plan.kind == RunKind::Delete;
            let restoring = plan.kind == RunKind::Restore;
            let updated = tx
                .query_opt(
                    "UPDATE control_plane.projects
                        SET status = $3, current_run_id = $2, current_stage = $4, updated_at = now(),
                            deleted_from = CASE WHEN $6 THEN status WHEN $7 THEN NULL ELSE deleted_from END,
                            deleted_at = CASE WHEN $6 THEN now() WHEN $7 THEN NULL ELSE deleted_at END,
                            purge_after = CASE WHEN $6 THEN now() + make_interval(secs => $8)
                                               WHEN $7 THEN NULL ELSE purge_after END
                      WHERE id = $1 AND status = $5
                  RETURNING purge_after",
                    &[
                        &project_id,
                        &run_id,
                        &plan.to.as_str(),
                        &first.as_str(),
                        &current.status.as_str(),
                        &deleting,
                        &restoring,
                        &window.as_secs_f64(),
                    ],
                )
                .await
                .map_err(StageError::from)?
                .ok_or_else(|| StageError::retryable("project changed while starting its run"))?;
            let message = StageMessage {
                project_id,
                run_id,
                stage: first,
                correlation_id,
            };
            let handoff = outbox::enqueue(&tx, &message).await?;
            tx.commit().await.map_err(StageError::from)?;
            outbox::relay_or_leave(&*db, pipeline.destinations(), project_id, Some(handoff))
                .await;
            Ok(StartedRun {
                project_id,
                run_id,
                run_number,
                kind: plan.kind,
                correlation_id,
                status: plan.to.as_str(),
                purge_after: updated.get(0),
            })
        })
        .await
}

/// Deleted projects whose recovery window has ended, whose current run has
/// finished and did not include a purge (a failed purge waits for the
/// operator's retry), oldest first, at most `limit`.
pub async fn purges_due(
    db: &impl deadpool_postgres::GenericClient,
    limit: i64,
) -> Result<Vec<Uuid>, StageError> {
    Ok(db
        .query(
            "SELECT p.id FROM control_plane.projects p
               LEFT JOIN control_plane.provisioning_runs r ON r.id = p.current_run_id
              WHERE p.status = 'deleted' AND p.purge_after <= now()
                AND r.status IS DISTINCT FROM 'running'
                AND NOT EXISTS (SELECT 1 FROM control_plane.provisioning_stages s
                                 WHERE s.run_id = r.id AND s.stage = 'purge')
              ORDER BY p.purge_after LIMIT $1",
            &[&limit],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ProjectStatus::*;

    const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);

    fn at(status: ProjectStatus) -> Current {
        Current {
            status,
            deleted_from: None,
            purge_due: false,
            run_kind: Some(RunKind::Provision),
            run_running: false,
        }
    }

    fn deleted_from(from: ProjectStatus) -> Current {
        Current {
            deleted_from: Some(from),
            run_kind: Some(RunKind::Delete),
            ..at(Deleted)
        }
    }

    #[test]
    fn suspend_and_resume_go_between_ready_and_suspended_only() {
        let p = plan(Operation::Suspend, at(Ready), WEEK).unwrap();
        assert_eq!(
            (p.kind, p.to, p.stages),
            (RunKind::Suspend, Suspended, &[Stage::Access][..])
        );
        let p = plan(Operation::Resume, at(Suspended), WEEK).unwrap();
        assert_eq!((p.kind, p.to), (RunKind::Resume, Ready));
        for status in [Requested, Provisioning, Failed, Suspended, Deleted, Purged] {
            let refused = plan(Operation::Suspend, at(status), WEEK).unwrap_err();
            assert!(refused.contains(status.as_str()), "{refused}");
        }
        assert!(plan(Operation::Resume, at(Ready), WEEK).is_err());
        let busy = Current {
            run_kind: Some(RunKind::Resume),
            run_running: true,
            ..at(Ready)
        };
        assert!(plan(Operation::Suspend, busy, WEEK)
            .unwrap_err()
            .contains("resume run"));
    }

    #[test]
    fn delete_cancels_a_moving_provisioning_and_purges_at_once_only_when_allowed() {
        let moving = Current {
            run_running: true,
            ..at(Provisioning)
        };
        let p = plan(Operation::Delete { purge_now: false }, moving, WEEK).unwrap();
        assert_eq!((p.kind, p.to, p.cancels), (RunKind::Delete, Deleted, true));
        assert_eq!(p.stages, [Stage::Access]);
        // window 0: the delete run purges too
        let p = plan(
            Operation::Delete { purge_now: false },
            at(Ready),
            Duration::ZERO,
        )
        .unwrap();
        assert_eq!(p.stages, [Stage::Access, Stage::Purge]);
        assert!(!p.cancels);
        // purge=now: failed projects (their rollback), or window 0
        let p = plan(Operation::Delete { purge_now: true }, at(Failed), WEEK).unwrap();
        assert_eq!(p.stages, [Stage::Access, Stage::Purge]);
        let refused = plan(Operation::Delete { purge_now: true }, at(Ready), WEEK).unwrap_err();
        assert!(refused.contains("purge=now"), "{refused}");
        assert!(plan(
            Operation::Delete { purge_now: false },
            deleted_from(Ready),
            WEEK
        )
        .is_err());
        let p = plan(
            Operation::Delete { purge_now: true },
            deleted_from(Failed),
            WEEK,
        )
        .unwrap();
        assert_eq!((p.kind, p.to), (RunKind::Purge, Deleted));
        assert!(plan(Operation::Delete { purge_now: false }, at(Purged), WEEK).is_err());
    }

    #[test]
    fn restore_brings_back_the_status_before_deletion_within_the_window_only() {
        for from in [Ready, Suspended] {
            let p = plan(Operation::Restore, deleted_from(from), WEEK).unwrap();
            assert_eq!((p.kind, p.to), (RunKind::Restore, from));
        }
        let due = Current {
            purge_due: true,
            ..deleted_from(Ready)
        };
        assert!(plan(Operation::Restore, due, WEEK)
            .unwrap_err()
            .contains("window"));
        let purging = Current {
            run_kind: Some(RunKind::Purge),
            ..deleted_from(Ready)
        };
        assert!(plan(Operation::Restore, purging, WEEK).is_err());
        assert!(plan(Operation::Restore, deleted_from(Failed), WEEK).is_err());
        assert!(plan(Operation::Restore, at(Ready), WEEK).is_err());
        // a restore cancels a delete run still turning access off
        let moving = Current {
            run_running: true,
            ..deleted_from(Ready)
        };
        assert!(plan(Operation::Restore, moving, WEEK).unwrap().cancels);
    }

    #[test]
    fn the_sweeper_purges_a_deleted_project_once_its_window_has_ended() {
        let due = Current {
            purge_due: true,
            ..deleted_from(Ready)
        };
        let p = plan(Operation::PurgeDue, due, WEEK).unwrap();
        assert_eq!((p.kind, p.stages), (RunKind::Purge, &[Stage::Purge][..]));
        assert!(plan(Operation::PurgeDue, deleted_from(Ready), WEEK).is_err());
        let started = Current {
            run_kind: Some(RunKind::Purge),
            ..due
        };
        assert!(plan(Operation::PurgeDue, started, WEEK).is_err());
    }

    #[test]
    fn every_plan_is_a_change_the_transition_table_allows() {
        let ops = [
            Operation::Suspend,
            Operation::Resume,
            Operation::Delete { purge_now: false },
            Operation::Delete { purge_now: true },
            Operation::Restore,
            Operation::PurgeDue,
            Operation::PurgeLeftovers,
        ];
        for status in ProjectStatus::ALL {
            for from in [None, Some(Ready), Some(Suspended), Some(Failed)] {
                for due in [false, true] {
                    let now = Current {
                        deleted_from: from,
                        purge_due: due,
                        ..at(*status)
                    };
                    for op in ops {
                        for window in [WEEK, Duration::ZERO] {
                            if let Ok(p) = plan(op, now, window) {
                                assert!(
                                    p.to == *status || status.can_become(p.to),
                                    "{op:?} from {status} to {}",
                                    p.to
                                );
                                assert!(p.kind.acts_on(p.to), "{op:?}: {} on {}", p.kind, p.to);
                            }
                        }
                    }
                }
            }
        }
    }
}
