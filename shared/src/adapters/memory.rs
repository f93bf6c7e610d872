//! In-memory adapters: the benchmark's floor uses them to run the same stages
//! with no queue and no Secrets Manager. Never used by a deployed function.

use crate::domain::StageMessage;
use crate::error::StageError;
use crate::events::Event;
use crate::ports::{EventBus, MessageQueue, SecretStore};
use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashMap;
use std::sync::Mutex;
use uuid::Uuid;

/// A queue that sends nothing: the floor runs every stage inline instead.
pub struct NoQueue;

#[async_trait]
impl MessageQueue for NoQueue {
    async fn send(&self, _message: &StageMessage, _group: &str) -> Result<(), StageError> {
        Ok(())
    }
}

/// A bus that publishes nothing: the floor tells no one.
pub struct NoEvents;

#[async_trait]
impl EventBus for NoEvents {
    async fn publish(&self, events: &[Event]) -> Vec<Result<(), StageError>> {
        events.iter().map(|_| Ok(())).collect()
    }
}

/// Secrets kept in memory: the floor's stand-in for Secrets Manager.
#[derive(Default)]
pub struct MemorySecrets(Mutex<HashMap<String, String>>);

#[async_trait]
impl SecretStore for MemorySecrets {
    async fn get(&self, name: &str) -> Result<Option<SecretString>, StageError> {
        Ok(self
            .0
            .lock()
            .unwrap()
            .get(name)
            .cloned()
            .map(SecretString::from))
    }

    async fn create(
        &self,
        name: &str,
        _token: Uuid,
        value: &SecretString,
    ) -> Result<bool, StageError> {
        let mut map = self.0.lock().unwrap();
        if map.contains_key(name) {
            return Ok(false);
        }
        map.insert(name.to_owned(), value.expose_secret().to_owned());
        Ok(true)
    }

    async fn put(&self, name: &str, _token: Uuid, value: &SecretString) -> Result<(), StageError> {
        self.0
            .lock()
            .unwrap()
            .insert(name.to_owned(), value.expose_secret().to_owned());
        Ok(())
    }

    async fn delete(&self, name: &str, _recovery_days: u32) -> Result<(), StageError> {
        self.0.lock().unwrap().remove(name);
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StageError> {
        let map = self.0.lock().unwrap();
        Ok(map
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_secrets_create_once() {
        let store = MemorySecrets::default();
        let token = Uuid::new_v4();
        assert!(store
            .create("a", token, &SecretString::from("1".to_owned()))
            .await
            .unwrap());
        assert!(!store
            .create("a", token, &SecretString::from("2".to_owned()))
            .await
            .unwrap());
        assert_eq!(store.get("a").await.unwrap().unwrap().expose_secret(), "1");
    }
}
