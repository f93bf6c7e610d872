//! register-services: for each enabled service, a row in project_services and,
//! where the service has a registration URL, an HTTP registration call (with an
//! `Idempotency-Key` of project and service, so a call repeated after a crash
//! registers once). Each service's row and its ledger row are written by one
//! statement right after its call; services already active are not called again.

use super::{Ledger, StageContext};
use crate::domain::TenantNames;
use crate::error::StageError;
use crate::fault;
use crate::ports::RegistrationRequest;
use serde_json::json;

/// The fault point between a service's registration call and its rows.
pub const AFTER_REGISTRATION: &str = "register-services:after-registration";

pub async fn run(ctx: &StageContext<'_>) -> Result<Ledger, StageError> {
    let project = &ctx.project;
    let database = TenantNames::for_project(project.id).database;
    let db = ctx.db;
    let active: Vec<String> = db
        .query(
            "SELECT service FROM control_plane.project_services WHERE project_id = $1 AND status = 'active'",
            &[&project.id],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for service in project.services.enabled() {
        if active.iter().any(|s| s == service.as_str()) {
            continue;
        }
        let remote = ctx.pipeline.registrar.is_configured(service);
        let registration = if remote {
            let request = RegistrationRequest {
                project_id: project.id,
                service,
                region: project.region.clone(),
                database: database.clone(),
                correlation_id: ctx.message.correlation_id,
            };
            ctx.pipeline.registrar.register(&request).await?
        } else {
            Default::default()
        };
        fault::point(project.id, AFTER_REGISTRATION).await;
        db.execute(
            "WITH s AS (
                INSERT INTO control_plane.project_services
                       (project_id, service, status, external_id, endpoint, registered_remotely)
                VALUES ($1, $2, 'active', $3, $4, $5)
                ON CONFLICT (project_id, service) DO UPDATE
                   SET status = 'active', external_id = EXCLUDED.external_id, endpoint = EXCLUDED.endpoint,
                       registered_remotely = EXCLUDED.registered_remotely, updated_at = now())
             INSERT INTO control_plane.project_resources (project_id, resource_type, resource_id, metadata)
             VALUES ($1, 'service', $2, $6)
             ON CONFLICT (project_id, resource_type, resource_id)
             DO UPDATE SET metadata = EXCLUDED.metadata, updated_at = now()",
            &[
                &project.id,
                &service.as_str(),
                &registration.id,
                &registration.endpoint,
                &remote,
                &json!({ "endpoint": registration.endpoint, "registered_remotely": remote }),
            ],
        )
        .await?;
    }
    Ok(Ledger::default())
}
