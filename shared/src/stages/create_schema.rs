//! create-schema: the tenant schema, applied from the versioned tenant
//! migrations as the tenant's own role (so the tenant owns its objects and the
//! stored credentials are proven to work); the version is recorded.

use super::{Ledger, StageContext};
use crate::db::{self, DbLogin, TENANT_MIGRATIONS};
use crate::domain::TENANT_SCHEMA;
use crate::error::StageError;
use crate::secrets::{DatabaseCredentials, DATABASE_SECRET};
use crate::store::Resource;
use serde_json::json;

pub async fn run(ctx: &StageContext<'_>) -> Result<Ledger, StageError> {
    let secret_name = ctx.secret_name(DATABASE_SECRET);
    let secret = ctx
        .pipeline
        .secrets
        .get(&secret_name)
        .await?
        .ok_or_else(|| StageError::permanent(format!("secret {secret_name} is missing")))?;
    let credentials = DatabaseCredentials::parse(&secret)?;
    let cluster = ctx.project.placed_cluster()?;
    cluster.ensure_online()?;
    let tls = ctx.pipeline.clusters.connector(cluster.tls_mode)?;
    let mut tenant = db::connect(&DbLogin {
        ssl_mode: cluster.tls_mode.ssl_mode(),
        tls: &tls,
        host: &credentials.host,
        port: credentials.port,
        dbname: &credentials.dbname,
        user: &credentials.username,
        password: &credentials.password,
    })
    .await
    .map_err(|e| {
        cluster.blame(e.context(format!(
            "connecting to {} as {}",
            credentials.dbname, credentials.username
        )))
    })?;
    let version = db::migrate(&mut tenant, TENANT_SCHEMA, TENANT_MIGRATIONS)
        .await
        .map_err(|e| cluster.blame(e))?;

    Ok(Ledger {
        resources: vec![Resource::new(
            "schema",
            TENANT_SCHEMA,
            json!({ "database": credentials.dbname, "version": version }),
        )],
        ..Ledger::default()
    })
}
