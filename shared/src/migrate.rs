//! The migrate function: applies the control-plane migrations on deploy, as a
//! CloudFormation custom resource (Create/Update migrate, Delete keeps the data),
//! or when invoked directly with any other event (`{}`).

use crate::config::Settings;
use crate::db::{migrate, CONTROL_PLANE_MIGRATIONS};
use crate::pipeline::resolve_database;
use lambda_runtime::LambdaEvent;
use serde_json::{json, Value};

pub type Error = lambda_runtime::Error;

pub struct MigrateFunction {
    settings: Settings,
}

impl MigrateFunction {
    pub async fn from_env() -> Result<MigrateFunction, Error> {
        let mut settings = Settings::from_env()?;
        let aws = crate::adapters::aws_config().await;
        resolve_database(&mut settings, &aws_sdk_secretsmanager::Client::new(&aws)).await?;
        MigrateFunction::new(settings)
    }

    /// With settings whose database source is already a connection config.
    pub fn new(settings: Settings) -> Result<MigrateFunction, Error> {
        Ok(MigrateFunction { settings })
    }

    /// Applies the migrations; returns the control-plane schema version.
    pub async fn apply(&self) -> Result<i32, Error> {
        let (mut client, connection) = self
            .settings
            .database_config()
            .connect(self.settings.tls()?)
            .await?;
        tokio::spawn(connection);
        Ok(migrate(&mut client, "control_plane", CONTROL_PLANE_MIGRATIONS).await?)
    }

    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, Error> {
        let request = event.payload;
        let Some(request_type) = request.get("RequestType").and_then(Value::as_str) else {
            let version = self.apply().await?;
            return Ok(json!({ "version": version }));
        };
        let (status, reason, data) = match request_type {
            "Delete" => (
                "SUCCESS",
                "migrations are never rolled back on delete".to_owned(),
                json!({}),
            ),
            _ => match self.apply().await {
                Ok(version) => (
                    "SUCCESS",
                    format!("control plane at version {version}"),
                    json!({ "Version": version }),
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
