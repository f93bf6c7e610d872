//! purge: removes everything the project created and marks it purged. Each
//! service it was registered with is deregistered; on its cluster, its
//! database is dropped (its connections forced closed) and its role dropped;
//! both of its secrets are deleted; then, in the stage's commit, its key rows,
//! service rows and resource ledger go, its cluster slot is freed and it
//! becomes `purged`. The project row, its runs and the audit log stay.
//!
//! Whatever is already gone counts as done, so a purge after a crash, a
//! redelivery or a purge of a project that never got that far all end the
//! same. An object with the project's name that is not the project's (no
//! ownership comment naming it) is never touched: a permanent error.
//! The only code that deletes secrets.

use super::access::remote_services;
use super::{Ledger, StageContext};
use crate::db::quote_ident;
use crate::domain::TenantNames;
use crate::error::StageError;
use crate::secrets::{API_KEYS_SECRET, DATABASE_SECRET};
use uuid::Uuid;

pub async fn run(ctx: &StageContext<'_>) -> Result<Ledger, StageError> {
    let project = &ctx.project;
    for service in remote_services(ctx).await? {
        ctx.pipeline
            .registrar
            .deregister(service, project.id, ctx.message.correlation_id)
            .await?;
    }
    if let Some(cluster) = &project.cluster {
        let admin = ctx.pipeline.clusters.connection(cluster).await?;
        let marker =
            TenantNames::ownership_marker(project.id, &ctx.pipeline.settings.secret_prefix);
        drop_tenant_objects(&admin, project.id, &marker)
            .await
            .map_err(|e| cluster.blame(e))?;
    }
    let recovery_days = ctx.pipeline.settings.secret_recovery_days;
    for kind in [DATABASE_SECRET, API_KEYS_SECRET] {
        ctx.pipeline
            .secrets
            .delete(&ctx.secret_name(kind), recovery_days)
            .await?;
    }
    Ok(Ledger {
        forget: true,
        ..Ledger::default()
    })
}

/// Drops the project's database (closing its connections) and role on a
/// cluster's admin connection; either may already be gone.
pub async fn drop_tenant_objects(
    db: &tokio_postgres::Client,
    project_id: Uuid,
    marker: &str,
) -> Result<(), StageError> {
    let names = TenantNames::for_project(project_id);
    if let Some(row) = db
        .query_opt(
            "SELECT pg_get_userbyid(datdba)::text, shobj_description(oid, 'pg_database')
               FROM pg_database WHERE datname = $1",
            &[&names.database],
        )
        .await?
    {
        let owner: String = row.get(0);
        let comment: Option<String> = row.get(1);
        // The comment is written after the database is created: a crash in
        // between leaves it owned by the project's role and not yet commented.
        if owner != names.role && comment.as_deref() != Some(marker) {
            return Err(StageError::permanent(format!(
                "database {} exists and does not belong to this project",
                names.database
            )));
        }
        db.batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(&names.database)
        ))
        .await?;
    }
    if let Some(row) = db
        .query_opt(
            "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1",
            &[&names.role],
        )
        .await?
    {
        let comment: Option<String> = row.get(0);
        if comment.as_deref() != Some(marker) {
            return Err(StageError::permanent(format!(
                "role {} exists and does not belong to this project",
                names.role
            )));
        }
        db.batch_execute(&format!("DROP ROLE IF EXISTS {}", quote_ident(&names.role)))
            .await?;
    }
    Ok(())
}
