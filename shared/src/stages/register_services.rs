//! register-services: for each enabled service, a row in project_services and,
//! where the service has a registration URL, an HTTP registration call.
//! Services already active are not called again.

use super::StageContext;
use crate::domain::TenantNames;
use crate::error::StageError;
use crate::ports::RegistrationRequest;
use serde_json::json;

pub async fn run(ctx: &StageContext<'_>) -> Result<(), StageError> {
    let project = &ctx.project;
    let database = TenantNames::for_project(project.id).database;
    let db = ctx.pipeline.db.get().await?;
    for service in project.services.enabled() {
        let active = db
            .query_opt(
                "SELECT 1 FROM control_plane.project_services WHERE project_id = $1 AND service = $2 AND status = 'active'",
                &[&project.id, &service.as_str()],
            )
            .await?
            .is_some();
        if active {
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
        db.execute(
            "INSERT INTO control_plane.project_services (project_id, service, status, external_id, endpoint, registered_remotely)
             VALUES ($1, $2, 'active', $3, $4, $5)
             ON CONFLICT (project_id, service) DO UPDATE
                SET status = 'active', external_id = EXCLUDED.external_id, endpoint = EXCLUDED.endpoint,
                    registered_remotely = EXCLUDED.registered_remotely, updated_at = now()",
            &[&project.id, &service.as_str(), &registration.id, &registration.endpoint, &remote],
        )
        .await?;
        crate::store::record_resource(
            &db,
            project.id,
            "service",
            service.as_str(),
            json!({ "endpoint": registration.endpoint, "registered_remotely": remote }),
        )
        .await?;
    }
    Ok(())
}
