//! Keys issued or revoked after provisioning, and verification of a presented
//! key. The api-keys secret always holds exactly the project's active keys.

use crate::error::StageError;
use crate::keys::{self, ApiKey};
use crate::stages::{secret_name, Pipeline, StoredKeys, API_KEYS_SECRET};
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use secrecy::SecretString;
use serde_json::json;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("project not found")]
    ProjectNotFound,
    #[error("api key not found")]
    KeyNotFound,
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Failed(#[from] StageError),
}

/// A newly issued key: the plaintext is in `key`, shown to the caller once.
pub struct IssuedKey {
    pub id: String,
    pub prefix: String,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub key: SecretString,
    pub secret_name: String,
}

async fn project_status(
    db: &impl GenericClient,
    project_id: Uuid,
) -> Result<(String, String), KeyError> {
    let row = db
        .query_opt(
            "SELECT status, api_key_prefix FROM control_plane.projects WHERE id = $1",
            &[&project_id],
        )
        .await
        .map_err(StageError::from)?
        .ok_or(KeyError::ProjectNotFound)?;
    Ok((row.get(0), row.get(1)))
}

/// Issues one more key to a ready project (quota: 10 active keys).
pub async fn issue_key(
    p: &Pipeline,
    project_id: Uuid,
    scopes: Vec<String>,
) -> Result<IssuedKey, KeyError> {
    let outcome = p
        .with_project_lock(project_id, || async {
            let db = p.db.get().await?;
            let (status, prefix) = match project_status(&db, project_id).await {
                Ok(found) => found,
                Err(e) => return Ok(Err(e)),
            };
            if status != "ready" {
                return Ok(Err(KeyError::Conflict(format!("project is {status}: keys are issued to ready projects"))));
            }
            let active: i64 = db
                .query_one(
                    "SELECT count(*) FROM control_plane.api_keys WHERE project_id = $1 AND revoked_at IS NULL",
                    &[&project_id],
                )
                .await?
                .get(0);
            if active >= crate::domain::quota::API_KEYS {
                return Ok(Err(KeyError::Conflict(format!("quota exceeded: api_keys (limit {})", crate::domain::quota::API_KEYS))));
            }
            let name = secret_name(&p.settings, project_id, API_KEYS_SECRET);
            let existing = p.secrets.get(&name).await?;
            let mut stored = match &existing {
                Some(secret) => StoredKeys::parse(secret)?,
                None => StoredKeys { keys: Vec::new() },
            };
            let key = ApiKey::generate(&prefix);
            let hash = keys::hash_off_thread(key.secret_part(), p.settings.scrypt_log_n).await?;
            let id = key.id.clone();
            let plaintext = key.plaintext().clone();
            stored.keys.push((key, scopes.clone()));
            let token = Uuid::new_v5(&project_id, format!("issue:{id}").as_bytes());
            if existing.is_some() {
                p.secrets.put(&name, token, &stored.to_secret()).await?;
            } else {
                p.secrets.create(&name, token, &stored.to_secret()).await?;
            }
            let row = db
                .query_one(
                    "INSERT INTO control_plane.api_keys (id, project_id, key_prefix, key_hash, scopes, secret_name)
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING created_at",
                    &[&id, &project_id, &prefix, &hash, &scopes, &name],
                )
                .await?;
            crate::store::audit(&db, project_id, None, "api_key.issued", "api", json!({ "key_id": id, "scopes": scopes })).await?;
            Ok(Ok(IssuedKey { id, prefix, scopes, created_at: row.get(0), key: plaintext, secret_name: name }))
        })
        .await?;
    outcome
}

/// Revokes a key: the row is marked revoked and the key leaves the secret.
/// Revoking a revoked key changes nothing.
pub async fn revoke_key(p: &Pipeline, project_id: Uuid, key_id: &str) -> Result<(), KeyError> {
    p.with_project_lock(project_id, || async {
        let db = p.db.get().await?;
        if let Err(e) = project_status(&db, project_id).await {
            return Ok(Err(e));
        }
        let Some(row) = db
            .query_opt(
                "SELECT revoked_at IS NOT NULL FROM control_plane.api_keys WHERE id = $1 AND project_id = $2",
                &[&key_id, &project_id],
            )
            .await?
        else {
            return Ok(Err(KeyError::KeyNotFound));
        };
        let name = secret_name(&p.settings, project_id, API_KEYS_SECRET);
        if let Some(secret) = p.secrets.get(&name).await? {
            let mut stored = StoredKeys::parse(&secret)?;
            let before = stored.keys.len();
            stored.keys.retain(|(k, _)| k.id != key_id);
            if stored.keys.len() != before {
                let token = Uuid::new_v5(&project_id, format!("revoke:{key_id}").as_bytes());
                p.secrets.put(&name, token, &stored.to_secret()).await?;
            }
        }
        if !row.get::<_, bool>(0) {
            db.execute("UPDATE control_plane.api_keys SET revoked_at = now() WHERE id = $1", &[&key_id]).await?;
            crate::store::audit(&db, project_id, None, "api_key.revoked", "api", json!({ "key_id": key_id })).await?;
        }
        Ok(Ok(()))
    })
    .await?
}

/// A key that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedKey {
    pub id: String,
    pub project_id: Uuid,
    pub scopes: Vec<String>,
}

/// Verifies a presented key: checksum first (no database hit for a typo), then
/// the active, unexpired row's scrypt hash, compared in constant time.
pub async fn verify_key(
    db: &impl GenericClient,
    plaintext: &str,
) -> Result<Option<VerifiedKey>, StageError> {
    let Ok(parsed) = keys::parse(plaintext) else {
        return Ok(None);
    };
    let Some(row) = db
        .query_opt(
            "SELECT project_id, key_hash, scopes FROM control_plane.api_keys
              WHERE id = $1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())",
            &[&parsed.id],
        )
        .await?
    else {
        return Ok(None);
    };
    let hash: String = row.get(1);
    let presented = plaintext.to_owned();
    let ok = tokio::task::spawn_blocking(move || keys::verify(&presented, &hash))
        .await
        .map_err(|e| StageError::retryable(format!("verification task: {e}")))?;
    Ok(ok.then(|| VerifiedKey {
        id: parsed.id.to_owned(),
        project_id: row.get(0),
        scopes: row.get(2),
    }))
}
