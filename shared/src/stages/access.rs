//! access: makes a project's access match its status. A ready project is
//! served: its role may log in, its keys verify and its services are enabled.
//! A suspended or deleted one is not: its role becomes `NOLOGIN`, its open
//! sessions are ended, its keys are marked suspended (not revoked) and each
//! service with a registration endpoint is told to disable it. The run's kind
//! does not matter, only the status its start set, so every attempt,
//! redelivery and retry converges on the same end state.
//!
//! The only code that alters tenant roles after create-database made them.

use super::{Ledger, StageContext};
use crate::db::quote_ident;
use crate::domain::{Service, TenantNames};
use crate::error::StageError;
use crate::status::ProjectStatus;
use uuid::Uuid;

pub async fn run(ctx: &StageContext<'_>) -> Result<Ledger, StageError> {
    let project = &ctx.project;
    let on = project.status == ProjectStatus::Ready;
    // Not placed: deleted before validate placed it, nothing exists on a cluster.
    if let Some(cluster) = &project.cluster {
        let admin = ctx.pipeline.clusters.connection(cluster).await?;
        let marker =
            TenantNames::ownership_marker(project.id, &ctx.pipeline.settings.secret_prefix);
        set_login(&admin, project.id, &marker, on)
            .await
            .map_err(|e| cluster.blame(e))?;
    }
    for service in remote_services(ctx).await? {
        ctx.pipeline
            .registrar
            .set_enabled(service, project.id, on, ctx.message.correlation_id)
            .await?;
    }
    Ok(Ledger {
        access: Some(on),
        ..Ledger::default()
    })
}

/// The services the project was registered with over HTTP and whose
/// endpoint is still configured.
pub(super) async fn remote_services(ctx: &StageContext<'_>) -> Result<Vec<Service>, StageError> {
    Ok(ctx
        .db
        .query(
            "SELECT service FROM control_plane.project_services
              WHERE project_id = $1 AND registered_remotely ORDER BY service",
            &[&ctx.project.id],
        )
        .await?
        .iter()
        .filter_map(|r| {
            let name: &str = r.get(0);
            Service::ALL.into_iter().find(|s| s.as_str() == name)
        })
        .filter(|s| ctx.pipeline.registrar.is_configured(*s))
        .collect())
}

/// `LOGIN` or `NOLOGIN` on the project's role, and with `NOLOGIN` its open
/// sessions ended. A role that is not there yet (deleted while provisioning)
/// has nothing to turn off; one that must log in and is missing, or that is
/// not this project's, is a permanent error.
async fn set_login(
    db: &tokio_postgres::Client,
    project_id: Uuid,
    marker: &str,
    on: bool,
) -> Result<(), StageError> {
    let role = TenantNames::for_project(project_id).role;
    let row = db
        .query_opt(
            "SELECT shobj_description(oid, 'pg_authid'), rolcanlogin FROM pg_roles WHERE rolname = $1",
            &[&role],
        )
        .await?;
    let Some(row) = row else {
        return if on {
            Err(StageError::permanent(format!(
                "role {role} is missing: the project cannot be served"
            )))
        } else {
            Ok(())
        };
    };
    let comment: Option<String> = row.get(0);
    if comment.as_deref() != Some(marker) {
        return Err(StageError::permanent(format!(
            "role {role} exists and does not belong to this project"
        )));
    }
    let can_login: bool = row.get(1);
    if can_login != on {
        let login = if on { "LOGIN" } else { "NOLOGIN" };
        db.batch_execute(&format!("ALTER ROLE {} {login}", quote_ident(&role)))
            .await?;
    }
    if !on {
        // After NOLOGIN, so no new session can start behind the sweep.
        db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
            &[&role],
        )
        .await?;
    }
    Ok(())
}
