//! The narrow interfaces the stages use to reach the outside world. Adapters for
//! SQS, Secrets Manager and HTTP live in `adapters`; stage logic sees only these.

use crate::domain::{Service, StageMessage};
use crate::error::StageError;
use async_trait::async_trait;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Sends a stage message to that stage's queue.
#[async_trait]
pub trait MessageQueue: Send + Sync {
    async fn send(&self, message: &StageMessage) -> Result<(), StageError>;
}

/// Stores secret values by name.
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// The current value, or None when no secret has that name.
    async fn get(&self, name: &str) -> Result<Option<SecretString>, StageError>;
    /// Creates the secret. `request_token` makes a repeated call idempotent.
    /// Returns false when a secret with that name already exists.
    async fn create(
        &self,
        name: &str,
        request_token: Uuid,
        value: &SecretString,
    ) -> Result<bool, StageError>;
    /// Replaces the value of an existing secret with a new version.
    async fn put(
        &self,
        name: &str,
        request_token: Uuid,
        value: &SecretString,
    ) -> Result<(), StageError>;
}

/// Reads the secret, creating it from `make` the first time. Whoever wins a race
/// to create it, every caller ends up with the one stored value.
pub async fn get_or_create_secret(
    store: &dyn SecretStore,
    name: &str,
    request_token: Uuid,
    make: impl FnOnce() -> SecretString,
) -> Result<SecretString, StageError> {
    if let Some(existing) = store.get(name).await? {
        return Ok(existing);
    }
    let value = make();
    if store.create(name, request_token, &value).await? {
        return Ok(value);
    }
    store.get(name).await?.ok_or_else(|| {
        StageError::retryable(format!("secret {name} exists but cannot be read yet"))
    })
}

/// What a platform service is told about a new project.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RegistrationRequest {
    pub project_id: Uuid,
    pub service: Service,
    pub region: String,
    pub database: String,
    pub correlation_id: Uuid,
}

/// What a platform service answered.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Registration {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub endpoint: Option<String>,
}

/// Registers a project with a platform service over its registration endpoint.
#[async_trait]
pub trait ServiceRegistrar: Send + Sync {
    /// Whether the service has a registration endpoint configured.
    fn is_configured(&self, service: Service) -> bool;
    async fn register(&self, request: &RegistrationRequest) -> Result<Registration, StageError>;
}
