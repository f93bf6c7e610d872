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

    async fn delete(&self, name: &str, recovery_days: u32) -> Result<(), StageError> {
        let request = self.client.delete_secret().secret_id(name);
        let request = if recovery_days == 0 {
            request.force_delete_without_recovery(true)
        } else {
            request.recovery_window_in_days(i64::from(recovery_days))
        };
        match request.send().await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ResourceNotFoundException") => Ok(()),
            // Already scheduled for deletion by an earlier attempt.
            Err(e)
                if e.code() == Some("InvalidRequestException")
                    && e.message().is_some_and(|m| m.contains("deletion")) =>
            {
                Ok(())
            }
            Err(e) => Err(classify_sdk_error(&format!("deleting secret {name}"), e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StageError> {
        use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
        let filter = Filter::builder()
            .key(FilterNameStringType::Name)
            .values(prefix)
            .build();
        let mut names = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_secrets()
                .filters(filter.clone())
                .max_results(100)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| classify_sdk_error(&format!("listing secrets under {prefix}"), e))?;
            names.extend(
                page.secret_list()
                    .iter()
                    .filter(|s| s.deleted_date().is_none())
                    .filter_map(|s| s.name())
                    // The name filter matches prefixes of words too: keep exact prefixes.
                    .filter(|n| n.starts_with(prefix))
                    .map(str::to_owned),
            );
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                return Ok(names);
            }
        }
    }
}
