//! finalize: the project becomes ready, with its total provisioning time, the
//! run is closed and an audit entry written (once, however often this runs).

use super::StageContext;
use crate::error::StageError;
use serde_json::json;

pub async fn run(ctx: &StageContext<'_>) -> Result<(), StageError> {
    let msg = &ctx.message;
    let mut db = ctx.pipeline.db.get().await?;
    let tx = db.transaction().await?;
    let became_ready = tx
        .query_opt(
            "UPDATE control_plane.projects p
                SET status = 'ready', ready_at = now(), updated_at = now(), current_stage = 'finalize',
                    failed_stage = NULL, last_error = NULL,
                    provisioning_ms = (extract(epoch FROM now() - r.created_at) * 1000)::bigint
               FROM control_plane.provisioning_runs r
              WHERE p.id = $1 AND r.id = $2 AND p.current_run_id = r.id AND p.status <> 'ready'
          RETURNING p.provisioning_ms",
            &[&msg.project_id, &msg.run_id],
        )
        .await?;
    tx.execute(
        "UPDATE control_plane.provisioning_runs SET status = 'succeeded', finished_at = coalesce(finished_at, now())
          WHERE id = $1",
        &[&msg.run_id],
    )
    .await?;
    if let Some(row) = became_ready {
        let resources = tx
            .query(
                "SELECT resource_type, resource_id FROM control_plane.project_resources WHERE project_id = $1
                  ORDER BY resource_type, resource_id",
                &[&msg.project_id],
            )
            .await?
            .iter()
            .map(|r| json!({ "type": r.get::<_, String>(0), "id": r.get::<_, String>(1) }))
            .collect::<Vec<_>>();
        let provisioning_ms: Option<i64> = row.get(0);
        crate::store::audit(
            &tx,
            msg.project_id,
            Some(msg.run_id),
            "provisioning.ready",
            "finalize",
            json!({ "provisioning_ms": provisioning_ms, "resources": resources, "correlation_id": msg.correlation_id }),
        )
        .await?;
    }
    // Closed in the same transaction, so a crash after it cannot leave the
    // run finished with its last stage still "running".
    crate::store::record_success(&tx, msg).await?;
    tx.commit().await?;
    Ok(())
}
