//! validate: the project exists and is eligible, its identifiers are valid, its
//! region is available and its quotas hold; then the project is placed on a
//! cluster of its region (`cluster::place`).

use super::{Ledger, StageContext};
use crate::cluster;
use crate::domain::{quota, TenantNames};
use crate::error::StageError;
use crate::keys;

/// The executor moves a `requested` project to `provisioning` when this succeeds.
pub async fn run(ctx: &StageContext<'_>) -> Result<Ledger, StageError> {
    let project = &ctx.project;
    if !project.status.is_provisioning() {
        return Err(StageError::permanent(format!(
            "project is {} and cannot be provisioned",
            project.status
        )));
    }
    for (field, id) in [
        ("owner_id", project.owner_id),
        ("organization_id", project.organization_id),
    ] {
        if id.is_some_and(|id| id.is_nil()) {
            return Err(StageError::permanent(format!(
                "{field}: must be a non-nil UUID"
            )));
        }
    }
    if !keys::is_valid_prefix(&project.api_key_prefix) {
        return Err(StageError::permanent(format!(
            "api_keys.prefix: {}",
            keys::PREFIX_RULE
        )));
    }

    let db = ctx.db;
    let region = db
        .query_opt(
            "SELECT available,
                    EXISTS (SELECT 1 FROM control_plane.clusters
                             WHERE region = $1 AND status = 'active')
               FROM control_plane.regions WHERE code = $1",
            &[&project.region],
        )
        .await?;
    match region {
        None => {
            return Err(StageError::permanent(format!(
                "region: unknown region '{}'",
                project.region
            )))
        }
        Some(row) if !row.get::<_, bool>(0) || !row.get::<_, bool>(1) => {
            return Err(StageError::permanent(format!(
                "region: '{}' is not available{}",
                project.region,
                if row.get::<_, bool>(0) {
                    " (no active cluster)"
                } else {
                    ""
                }
            )))
        }
        Some(_) => {}
    }

    // Quotas count what the project already holds plus what this run will add.
    let own_database = TenantNames::for_project(project.id).database;
    let counts = db
        .query_one(
            "SELECT
                (SELECT count(*) FROM control_plane.project_resources
                  WHERE project_id = $1 AND resource_type = 'database' AND resource_id <> $2),
                (SELECT count(*) FROM control_plane.api_keys WHERE project_id = $1 AND revoked_at IS NULL)",
            &[&project.id, &own_database],
        )
        .await?;
    let (other_databases, active_keys): (i64, i64) = (counts.get(0), counts.get(1));
    if other_databases + 1 > quota::DATABASES {
        return Err(StageError::permanent(format!(
            "quota exceeded: databases (limit {})",
            quota::DATABASES
        )));
    }
    let requested_keys = i64::from(project.api_key_count);
    if requested_keys < 1 || active_keys + requested_keys > quota::API_KEYS {
        return Err(StageError::permanent(format!(
            "quota exceeded: api_keys ({active_keys} active + {requested_keys} requested, limit {})",
            quota::API_KEYS
        )));
    }
    if project.services.enabled().len() as i64 > quota::SERVICES {
        return Err(StageError::permanent(format!(
            "quota exceeded: services (limit {})",
            quota::SERVICES
        )));
    }

    // Last, once nothing else can refuse the project: its cluster, chosen once
    // and stored before any tenant object exists (a retry keeps it).
    if project.cluster.is_none() {
        let cluster = cluster::place(db, project.id, &project.region).await?;
        tracing::info!(cluster = %cluster, region = %project.region, "placed");
    }
    Ok(Ledger::default())
}
