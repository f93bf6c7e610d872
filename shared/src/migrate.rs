//! The migrate function: applies the control-plane migrations on deploy, as a
//! CloudFormation custom resource (Create/Update migrate, Delete keeps the data),
//! or when invoked directly with any other event (`{}`); then registers the
//! clusters of `REGISTER_CLUSTERS` not registered yet (the stack's tenant
//! cluster, the local stack's clusters), each once its credentials are proven.

use crate::adapters::secrets_manager::SecretsManagerStore;
use crate::config::Settings;
use crate::db::{migrate, CONTROL_PLANE_MIGRATIONS};
use crate::pipeline::resolve_database;
use crate::ports::SecretStore;
use lambda_runtime::LambdaEvent;
use serde_json::{json, Value};
use std::sync::Arc;

pub type Error = lambda_runtime::Error;

pub struct MigrateFunction {
    settings: Settings,
    secrets: Arc<dyn SecretStore>,
}

/// What a migration run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The control-plane schema version.
    pub version: i32,
    /// Clusters registered by this run (those already registered are left as they are).
    pub registered: Vec<String>,
}

impl MigrateFunction {
    pub async fn from_env() -> Result<MigrateFunction, Error> {
        let mut settings = Settings::from_env()?;
        let aws = crate::adapters::aws_config().await;
        let client = aws_sdk_secretsmanager::Client::new(&aws);
        resolve_database(&mut settings, &client).await?;
        MigrateFunction::new(settings, Arc::new(SecretsManagerStore::new(client)))
    }

    /// With settings whose database source is already a connection config.
    pub fn new(
        settings: Settings,
        secrets: Arc<dyn SecretStore>,
    ) -> Result<MigrateFunction, Error> {
        Ok(MigrateFunction { settings, secrets })
    }

    /// Applies the migrations, then registers the listed clusters.
    pub async fn apply(&self) -> Result<Applied, Error> {
        let (mut client, connection) = self
            .settings
            .database_config()
            .connect(self.settings.tls()?)
            .await?;
        tokio::spawn(connection);
        let version = migrate(&mut client, "control_plane", CONTROL_PLANE_MIGRATIONS).await?;
        let registered = crate::cluster::register_listed(
            &client,
            &*self.secrets,
            self.settings.tls_root_cert.as_deref(),
            &self.settings.register_clusters,
        )
        .await?;
        Ok(Applied {
            version,
            registered,
        })
    }

    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, Error> {
        let request = event.payload;
        let Some(request_type) = request.get("RequestType").and_then(Value::as_str) else {
            let applied = self.apply().await?;
            return Ok(json!({ "version": applied.version, "registered": applied.registered }));
        };
        let (status, reason, data) = match request_type {
            "Delete" => (
                "SUCCESS",
                "migrations are never rolled back on delete".to_owned(),
                json!({}),
            ),
            _ => match self.apply().await {
                Ok(applied) => (
                    "SUCCESS",
                    format!(
                        "control plane at version {}; clusters registered: {}",
                        applied.version,
                        if applied.registered.is_empty() {
                            "none".to_owned()
                        } else {
                            applied.registered.join(", ")
                        }
                    ),
                    json!({ "Version": applied.version }),
                ),
                Err(e) => ("FAILED", format!("migration failed: {e}"), json!({})),
            },
        };
        tracing::info!(request_type, status, reason, "custom resource handled");
        let response = json!({
            "Status": status,
            "Reason": reason,
            "PhysicalResourceId": request.get("PhysicalResourceId").and_then(Value::as_str).unwrap_or("control-plane-migrations"),
            "StackId": request["StackId"],
            "RequestId": request["RequestId"],
            "LogicalResourceId": request["LogicalResourceId"],
            "Data": data,
        });
        let url = request
            .get("ResponseURL")
            .and_then(Value::as_str)
            .ok_or("custom resource event without ResponseURL")?;
        // Built here rather than at cold start: one answer per invocation, and
        // the trust store it loads is not needed before.
        let http = crate::tls::http_client()?
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        // CloudFormation expects an empty content type on the pre-signed URL.
        http.put(url)
            .header("content-type", "")
            .body(response.to_string())
            .send()
            .await?
            .error_for_status()?;
        Ok(response)
    }
}
