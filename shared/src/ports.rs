//! The narrow interfaces the stages use to reach the outside world. Adapters for
//! SQS, Secrets Manager and HTTP live in `adapters`; stage logic sees only these.

use crate::domain::{Service, StageMessage};
use crate::error::StageError;
use async_trait::async_trait;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Sends a stage message to that stage's queue, in a message group
/// (`domain::message_group`).
#[async_trait]
pub trait MessageQueue: Send + Sync {
    async fn send(&self, message: &StageMessage, group: &str) -> Result<(), StageError>;
}

/// Publishes lifecycle events (`events::Event`) to the bus.
#[async_trait]
pub trait EventBus: Send + Sync {
    /// Puts the events, in order; one result per event (a batch can be partly
    /// refused).
    async fn publish(&self, events: &[crate::events::Event]) -> Vec<Result<(), StageError>>;
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
    /// Deletes the secret: at once when `recovery_days` is 0, else after that
    /// many days (Secrets Manager allows 7 to 30). A secret that is already
    /// gone or scheduled for deletion counts as deleted.
    async fn delete(&self, name: &str, recovery_days: u32) -> Result<(), StageError>;
    /// The names of every secret whose name starts with `prefix` (secrets
    /// scheduled for deletion are not listed).
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StageError>;
}

/// Creates the secret from `make`, or reads it back when it already exists.
/// Whoever wins a race to create it, every caller ends up with the one stored
/// value. Creating first costs one call on the common path (a first attempt);
/// a redelivery pays a failed create and a read.
pub async fn get_or_create_secret(
    store: &dyn SecretStore,
    name: &str,
    request_token: Uuid,
    make: impl FnOnce() -> SecretString,
) -> Result<SecretString, StageError> {
    let value = make();
    let refused = match store.create(name, request_token, &value).await {
        Ok(true) => return Ok(value),
        Ok(false) => None,
        // A redelivery's create carries the first attempt's request token with
        // a different value; whatever the service calls that refusal, the
        // stored value, if there is one, is the answer.
        Err(e) => Some(e),
    };
    match (store.get(name).await?, refused) {
        (Some(existing), _) => Ok(existing),
        (None, Some(e)) => Err(e),
        (None, None) => Err(StageError::retryable(format!(
            "secret {name} exists but cannot be read yet"
        ))),
    }
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
    /// Enables (resume) or disables (suspend) the project's registration.
    async fn set_enabled(
        &self,
        service: Service,
        project_id: Uuid,
        enabled: bool,
        correlation_id: Uuid,
    ) -> Result<(), StageError>;
    /// Removes the project's registration; one already gone counts as removed.
    async fn deregister(
        &self,
        service: Service,
        project_id: Uuid,
        correlation_id: Uuid,
    ) -> Result<(), StageError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::sync::Mutex;

    /// A store that already holds `stored` (if any) and answers create with `refusal`.
    struct Store {
        stored: Option<&'static str>,
        refusal: fn() -> Result<bool, StageError>,
        calls: Mutex<Vec<&'static str>>,
    }

    #[async_trait]
    impl SecretStore for Store {
        async fn get(&self, _name: &str) -> Result<Option<SecretString>, StageError> {
            self.calls.lock().unwrap().push("get");
            Ok(self.stored.map(|s| SecretString::from(s.to_owned())))
        }
        async fn create(&self, _: &str, _: Uuid, _: &SecretString) -> Result<bool, StageError> {
            self.calls.lock().unwrap().push("create");
            match self.stored {
                None => Ok(true),
                Some(_) => (self.refusal)(),
            }
        }
        async fn put(&self, _: &str, _: Uuid, _: &SecretString) -> Result<(), StageError> {
            unreachable!("get_or_create_secret never overwrites")
        }
        async fn delete(&self, _: &str, _: u32) -> Result<(), StageError> {
            unreachable!("get_or_create_secret never deletes")
        }
        async fn list(&self, _: &str) -> Result<Vec<String>, StageError> {
            unreachable!("get_or_create_secret never lists")
        }
    }

    fn store(stored: Option<&'static str>, refusal: fn() -> Result<bool, StageError>) -> Store {
        Store {
            stored,
            refusal,
            calls: Mutex::new(Vec::new()),
        }
    }

    async fn run(store: &Store) -> Result<String, StageError> {
        let value = get_or_create_secret(store, "s", Uuid::nil(), || {
            SecretString::from("fresh".to_owned())
        })
        .await?;
        Ok(value.expose_secret().to_owned())
    }

    #[tokio::test]
    async fn a_first_attempt_creates_with_one_call() {
        let s = store(None, || Ok(false));
        assert_eq!(run(&s).await.unwrap(), "fresh");
        assert_eq!(*s.calls.lock().unwrap(), ["create"]);
    }

    #[tokio::test]
    async fn a_redelivery_gets_the_stored_value_whatever_the_refusal_is_called() {
        let exists = store(Some("first"), || Ok(false));
        assert_eq!(run(&exists).await.unwrap(), "first");
        assert_eq!(*exists.calls.lock().unwrap(), ["create", "get"]);
        let token_clash = store(Some("first"), || {
            Err(StageError::permanent("InvalidRequestException".to_owned()))
        });
        assert_eq!(run(&token_clash).await.unwrap(), "first");
    }

    #[tokio::test]
    async fn a_refused_create_with_nothing_stored_reports_the_refusal() {
        struct Refusing;
        #[async_trait]
        impl SecretStore for Refusing {
            async fn get(&self, _: &str) -> Result<Option<SecretString>, StageError> {
                Ok(None)
            }
            async fn create(&self, _: &str, _: Uuid, _: &SecretString) -> Result<bool, StageError> {
                Err(StageError::permanent("AccessDeniedException".to_owned()))
            }
            async fn put(&self, _: &str, _: Uuid, _: &SecretString) -> Result<(), StageError> {
                Ok(())
            }
            async fn delete(&self, _: &str, _: u32) -> Result<(), StageError> {
                Ok(())
            }
            async fn list(&self, _: &str) -> Result<Vec<String>, StageError> {
                Ok(Vec::new())
            }
        }
        let error = get_or_create_secret(&Refusing, "s", Uuid::nil(), || {
            SecretString::from("fresh".to_owned())
        })
        .await
        .unwrap_err();
        assert!(error.to_string().contains("AccessDenied"), "{error}");
    }
}
