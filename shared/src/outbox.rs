//! The outbox: a state change and the message it starts commit together.
//!
//! `enqueue` writes the message as a row in the caller's transaction. After the
//! commit, `relay` sends the rows and marks them sent. A crash or a failed send
//! between the two leaves the row unsent, and the sweeper's `resend_unsent`
//! sends it later; receivers are idempotent, so a second send is harmless.
//! Every stage message goes this way: the API's first message, each stage's
//! hand-off to the next, and an operator's retry.

use crate::domain::StageMessage;
use crate::error::StageError;
use crate::ports::MessageQueue;
use deadpool_postgres::GenericClient;
use std::time::Duration;

/// A message written to the outbox and not yet known to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub id: i64,
    pub message: StageMessage,
    /// Its SQS message group (`domain::message_group`).
    pub group: String,
}

/// `domain::message_group` in SQL, over a `control_plane.projects` row.
pub const MESSAGE_GROUP_SQL: &str = "coalesce(organization_id, id)::text";

/// Writes `message` to the outbox in the caller's transaction.
pub async fn enqueue(
    tx: &impl GenericClient,
    message: &StageMessage,
) -> Result<Pending, StageError> {
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO control_plane.outbox (project_id, run_id, destination, payload, message_group)
                 VALUES ($1, $2, 'stage', $3,
                         (SELECT {MESSAGE_GROUP_SQL} FROM control_plane.projects WHERE id = $1))
                 RETURNING id, message_group"
            ),
            &[
                &message.project_id,
                &message.run_id,
                &serde_json::to_value(message).expect("a stage message serialises"),
            ],
        )
        .await?;
    Ok(Pending {
        id: row.get(0),
        message: *message,
        group: row
            .get::<_, Option<String>>(1)
            .unwrap_or_else(|| message.project_id.to_string()),
    })
}

/// Sends committed outbox rows and marks those sent. A failed send is noted on
/// its row and left for the sweeper; the count of rows sent is returned.
pub async fn relay(
    db: &impl GenericClient,
    queue: &dyn MessageQueue,
    pending: &[Pending],
) -> Result<usize, StageError> {
    let mut sent = Vec::with_capacity(pending.len());
    for row in pending {
        match queue.send(&row.message, &row.group).await {
            Ok(()) => sent.push(row.id),
            Err(error) => {
                tracing::warn!(outbox_id = row.id, %error, "outbox send failed; the sweeper will re-send it");
                db.execute(
                    "UPDATE control_plane.outbox SET send_attempts = send_attempts + 1, last_error = $2
                      WHERE id = $1",
                    &[&row.id, &error.to_string()],
                )
                .await?;
            }
        }
    }
    if !sent.is_empty() {
        db.execute(
            "UPDATE control_plane.outbox SET sent_at = now(), send_attempts = send_attempts + 1
              WHERE id = ANY($1) AND sent_at IS NULL",
            &[&sent],
        )
        .await?;
    }
    Ok(sent.len())
}

/// Rows left unsent for longer than `older_than`, oldest first.
pub async fn unsent(
    db: &impl GenericClient,
    older_than: Duration,
    limit: i64,
) -> Result<Vec<Pending>, StageError> {
    let rows = db
        .query(
            "SELECT id, payload, message_group FROM control_plane.outbox
              WHERE sent_at IS NULL AND created_at < now() - make_interval(secs => $1)
              ORDER BY id LIMIT $2",
            &[&older_than.as_secs_f64(), &limit],
        )
        .await?;
    Ok(pending_rows(&rows))
}

/// Outbox rows read back as `(id, payload, message_group)`. A payload that is
/// not a stage message (written by this code, so never expected) is logged and
/// left unsent.
pub fn pending_rows(rows: &[tokio_postgres::Row]) -> Vec<Pending> {
    rows.iter()
        .filter_map(|row| {
            let id: i64 = row.get(0);
            let payload: serde_json::Value = row.get(1);
            let group: Option<String> = row.get(2);
            serde_json::from_value(payload)
                .map(|message: StageMessage| Pending {
                    id,
                    group: group.unwrap_or_else(|| message.project_id.to_string()),
                    message,
                })
                .map_err(|e| {
                    tracing::error!(outbox_id = id, error = %e, "outbox row is not a stage message")
                })
                .ok()
        })
        .collect()
}

/// Deletes rows sent longer ago than `older_than`; returns how many.
pub async fn prune_sent(db: &impl GenericClient, older_than: Duration) -> Result<u64, StageError> {
    Ok(db
        .execute(
            "DELETE FROM control_plane.outbox WHERE sent_at < now() - make_interval(secs => $1)",
            &[&older_than.as_secs_f64()],
        )
        .await?)
}
