use super::classify_sdk_error;
use crate::error::StageError;
use crate::ports::SecretStore;
use async_trait::async_trait;
use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

/// Secrets Manager behind the `SecretStore` port.
#[derive(Clone, Debug)]
pub struct SecretsManagerStore {
    client: aws_sdk_secretsmanager::Client,
}

impl SecretsManagerStore {
    pub fn new(client: aws_sdk_secretsmanager::Client) -> SecretsManagerStore {
        SecretsManagerStore { client }
    }
}

#[async_trait]
impl SecretStore for SecretsManagerStore {
    async fn get(&self, name: &str) -> Result<Option<SecretString>, StageError> {
        match self.client.get_secret_value().secret_id(name).send().await {
            Ok(out) => Ok(out.secret_string.map(SecretString::from)),
            Err(e) if e.code() == Some("ResourceNotFoundException") => Ok(None),
            Err(e) => Err(classify_sdk_error(&format!("reading secret {name}"), e)),
        }
    }

    async fn create(
        &self,
        name: &str,
        request_token: Uuid,
        value: &SecretString,
    ) -> Result<bool, StageError> {
        let result = self
            .client
            .create_secret()
            .name(name)
            .client_request_token(request_token.to_string())
            .secret_string(value.expose_secret())
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("ResourceExistsException") => Ok(false),
            Err(e) => Err(classify_sdk_error(&format!("creating secret {name}"), e)),
        }
    }

    async fn put(
        &self,
        name: &str,
        request_token: Uuid,
        value: &SecretString,
    ) -> Result<(), StageError> {
        self.client
            .put_secret_value()
            .secret_id(name)
            .client_request_token(request_token.to_string())
            .secret_string(value.expose_secret())
            .send()
            .await
            .map_err(|e| classify_sdk_error(&format!("updating secret {name}"), e))?;
        Ok(())
    }
}
