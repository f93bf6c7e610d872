//! The outbox: a state change and the message or event it starts commit
//! together.
//!
//! Two destinations share it. A stage message is written by `enqueue` in the
//! caller's transaction; an event row is written by the database's triggers
//! in whichever transaction makes the change (`events`). After the commit,
//! `relay` sends the writer's stage message and every unsent event of its
//! project, and marks them sent. A crash or a failed send between the two
//! leaves rows unsent, and the sweeper re-sends them later; receivers are
//! idempotent (stage messages) or dedupe on the event id (events), so a
//! second send is harmless.

use crate::domain::StageMessage;
use crate::error::StageError;
use crate::events::Event;
use crate::ports::{EventBus, MessageQueue};
use deadpool_postgres::GenericClient;
use std::time::Duration;
use uuid::Uuid;

/// Where committed rows go: stage messages to their queue, events to the bus.
#[derive(Clone, Copy)]
pub struct Destinations<'a> {
    pub queue: &'a dyn MessageQueue,
    pub events: &'a dyn EventBus,
}

/// A row written to the outbox and not yet known to be sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub id: i64,
    pub item: Item,
}

/// What an outbox row carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A stage message, in its SQS message group (`domain::message_group`).
    Stage {
        message: StageMessage,
        group: String,
    },
    Event(Event),
}

impl Pending {
    /// The stage message, when the row carries one.
    pub fn stage_message(&self) -> Option<&StageMessage> {
        match &self.item {
            Item::Stage { message, .. } => Some(message),
            Item::Event(_) => None,
        }
    }
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
        item: Item::Stage {
            message: *message,
            group: row
                .get::<_, Option<String>>(1)
                .unwrap_or_else(|| message.project_id.to_string()),
        },
    })
}

/// After a commit: sends `handoff` (the writer's stage message, if any) and
/// every unsent event of the project, oldest first, and marks what was sent.
/// Returns how many rows were sent.
pub async fn relay(
    db: &impl GenericClient,
    to: Destinations<'_>,
    project_id: Uuid,
    handoff: Option<Pending>,
) -> Result<usize, StageError> {
    let rows = db
        .query(
            "SELECT id, payload, message_group, destination FROM control_plane.outbox
              WHERE project_id = $1 AND destination = 'event' AND sent_at IS NULL
              ORDER BY id LIMIT 100",
            &[&project_id],
        )
        .await?;
    let mut pending = pending_rows(&rows);
    pending.extend(handoff);
    send(db, to, &pending).await
}

/// `relay` for a writer whose change is committed whatever happens next: a
/// failure is logged and the rows are left to the sweeper.
pub async fn relay_or_leave(
    db: &impl GenericClient,
    to: Destinations<'_>,
    project_id: Uuid,
    handoff: Option<Pending>,
) {
    if let Err(error) = relay(db, to, project_id, handoff).await {
        tracing::warn!(%project_id, %error, "outbox rows left to the sweeper");
    }
}

/// Sends committed outbox rows (stage messages one by one, events in batches,
/// both at once) and marks those sent. A failed send is noted on its row and
/// left for the sweeper; the count of rows sent is returned.
pub async fn send(
    db: &impl GenericClient,
    to: Destinations<'_>,
    pending: &[Pending],
) -> Result<usize, StageError> {
    let mut stages = Vec::new();
    let (mut event_ids, mut batch) = (Vec::new(), Vec::new());
    for row in pending {
        match &row.item {
            Item::Stage { message, group } => stages.push((row.id, message, group.as_str())),
            Item::Event(event) => {
                event_ids.push(row.id);
                batch.push(event.clone());
            }
        }
    }
    let send_stages = async {
        let mut results = Vec::with_capacity(stages.len());
        for (_, message, group) in &stages {
            results.push(to.queue.send(message, group).await);
        }
        results
    };
    let (stage_results, event_results) = tokio::join!(send_stages, to.events.publish(&batch));
    let ids = stages.iter().map(|(id, ..)| *id).chain(event_ids);
    let mut sent = Vec::with_capacity(pending.len());
    for (id, result) in ids.zip(stage_results.into_iter().chain(event_results)) {
        match result {
            Ok(()) => sent.push(id),
            Err(error) => {
                tracing::warn!(outbox_id = id, %error, "outbox send failed; the sweeper will re-send it");
                db.execute(
                    "UPDATE control_plane.outbox SET send_attempts = send_attempts + 1, last_error = $2
                      WHERE id = $1",
                    &[&id, &error.to_string()],
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
            "SELECT id, payload, message_group, destination FROM control_plane.outbox
              WHERE sent_at IS NULL AND created_at < now() - make_interval(secs => $1)
              ORDER BY id LIMIT $2",
            &[&older_than.as_secs_f64(), &limit],
        )
        .await?;
    Ok(pending_rows(&rows))
}

/// Outbox rows read back as `(id, payload, message_group, destination)`. A
/// payload that does not parse (written by this code, so never expected) is
/// logged and left unsent.
pub fn pending_rows(rows: &[tokio_postgres::Row]) -> Vec<Pending> {
    rows.iter()
        .filter_map(|row| {
            let id: i64 = row.get(0);
            let payload: serde_json::Value = row.get(1);
            let group: Option<String> = row.get(2);
            let item = match row.get::<_, &str>(3) {
                "event" => serde_json::from_value(payload).map(Item::Event),
                _ => serde_json::from_value(payload).map(|message: StageMessage| Item::Stage {
                    group: group.unwrap_or_else(|| message.project_id.to_string()),
                    message,
                }),
            };
            item.map(|item| Pending { id, item })
                .map_err(
                    |e| tracing::error!(outbox_id = id, error = %e, "outbox row does not parse"),
                )
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
