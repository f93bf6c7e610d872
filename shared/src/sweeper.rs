//! The sweeper: run on a schedule (every minute by default), it keeps the
//! hand-off contract when a sender died or a message was lost:
//! - re-sends outbox rows left unsent for longer than `OUTBOX_RESEND_AFTER_MS`;
//! - re-kicks every run whose current stage has made no progress for longer
//!   than the visibility timeout plus a margin, by writing that stage's message
//!   to the outbox (with the kick, in one statement) and relaying it; stages
//!   treat a duplicate as harmless;
//! - starts the purge of every deleted project whose recovery window has ended
//!   (`lifecycle::Operation::PurgeDue`, one transaction per project);
//! - deletes outbox rows sent more than a week ago.
//!
//! Each sweep logs one JSON line with its counts, and one per run re-kicked.
//! Two sweeps at once are harmless: the kick skips runs another sweep holds,
//! and a row sent twice is a duplicate the stages ignore.

use crate::error::StageError;
use crate::lifecycle::{self, LifecycleError, Operation};
use crate::outbox::{self, Pending};
use crate::pipeline::Pipeline;
use crate::store;
use crate::Settings;
use lambda_runtime::LambdaEvent;
use serde::Serialize;
use std::time::Duration;

/// How long sent outbox rows are kept.
pub const KEEP_SENT: Duration = Duration::from_secs(7 * 24 * 3600);
/// Rows and runs handled per sweep at most.
const BATCH: i64 = 500;

/// What one sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    /// Unsent outbox rows found and sent.
    pub outbox_resent: usize,
    /// Unsent outbox rows whose send failed again.
    pub outbox_failed: usize,
    /// Runs whose current stage's message was sent again.
    pub runs_rekicked: usize,
    /// Sent outbox rows deleted.
    pub outbox_pruned: u64,
    /// Deleted projects whose purge was started.
    pub purges_started: usize,
}

#[derive(Clone)]
pub struct Sweeper {
    pipeline: Pipeline,
}

impl Sweeper {
    pub async fn from_env() -> Result<Sweeper, lambda_runtime::Error> {
        let settings = Settings::from_env()?;
        Ok(Sweeper::new(
            Pipeline::without_service_calls(settings).await?,
        ))
    }

    pub fn new(pipeline: Pipeline) -> Sweeper {
        Sweeper { pipeline }
    }

    /// The Lambda handler: one sweep; the schedule's event carries nothing needed.
    pub async fn handle(
        &self,
        _event: LambdaEvent<serde_json::Value>,
    ) -> Result<SweepReport, lambda_runtime::Error> {
        Ok(self.sweep().await?)
    }

    /// One sweep, on one connection.
    pub async fn sweep(&self) -> Result<SweepReport, StageError> {
        let settings = &self.pipeline.settings;
        let db = self.pipeline.db.get().await?;
        let unsent = outbox::unsent(&db, settings.outbox_resend_after, BATCH).await?;
        let to = self.pipeline.destinations();
        let resent = outbox::send(&db, to, &unsent).await?;
        let kicked = kick_stalled_runs(&db, settings.stalled_after()).await?;
        let rekicked = outbox::send(&db, to, &kicked).await?;
        let due = lifecycle::purges_due(&db, BATCH).await?;
        // Starting a purge takes the project's lock on a connection of its
        // own: this one is given back first (no hold-and-wait).
        let outbox_pruned = outbox::prune_sent(&db, KEEP_SENT).await?;
        drop(db);
        let mut purges_started = 0;
        for project_id in due {
            match lifecycle::start(
                &self.pipeline,
                project_id,
                Operation::PurgeDue,
                None,
                "sweeper",
            )
            .await
            {
                Ok(_) => purges_started += 1,
                // Restored or purged meanwhile.
                Err(LifecycleError::Refused(why)) => {
                    tracing::info!(%project_id, why, "purge not started")
                }
                Err(LifecycleError::NotFound) => {}
                Err(LifecycleError::Unavailable(e)) => return Err(e),
            }
        }
        let report = SweepReport {
            outbox_resent: resent,
            outbox_failed: unsent.len() - resent,
            runs_rekicked: rekicked,
            outbox_pruned,
            purges_started,
        };
        tracing::info!(
            outbox_resent = report.outbox_resent,
            outbox_failed = report.outbox_failed,
            runs_rekicked = report.runs_rekicked,
            outbox_pruned = report.outbox_pruned,
            purges_started = report.purges_started,
            "sweep"
        );
        Ok(report)
    }
}

/// Marks every stalled run kicked and writes its current stage's message to the
/// outbox, in one statement; returns the rows to relay.
async fn kick_stalled_runs(
    db: &impl deadpool_postgres::GenericClient,
    stalled_after: Duration,
) -> Result<Vec<Pending>, StageError> {
    let rows = db
        .query(
            &format!(
                "WITH stalled AS ({}
                    FOR UPDATE OF r SKIP LOCKED),
                 kicked AS (
                    UPDATE control_plane.provisioning_runs r SET kicked_at = now(), kicks = r.kicks + 1
                      FROM stalled WHERE r.id = stalled.run_id AND stalled.stage IS NOT NULL
                  RETURNING r.id, r.project_id, r.correlation_id, stalled.stage, stalled.idle_seconds)
                 INSERT INTO control_plane.outbox (project_id, run_id, destination, payload, message_group)
                 SELECT k.project_id, k.id, 'stage',
                        jsonb_build_object('project_id', k.project_id, 'run_id', k.id, 'stage', k.stage,
                                           'correlation_id', k.correlation_id),
                        (SELECT {} FROM control_plane.projects WHERE id = k.project_id)
                   FROM kicked k
                 RETURNING id, payload, message_group, destination",
                store::stalled_runs_sql(true),
                outbox::MESSAGE_GROUP_SQL
            ),
            &[&stalled_after.as_secs_f64(), &BATCH],
        )
        .await?;
    let pending = outbox::pending_rows(&rows);
    for m in pending.iter().filter_map(Pending::stage_message) {
        tracing::info!(
            project_id = %m.project_id,
            run_id = %m.run_id,
            stage = m.stage.as_str(),
            "run stalled: current stage's message re-sent"
        );
    }
    Ok(pending)
}
