//! Keys issued or revoked after provisioning, and verification of a presented
//! key. The api-keys secret always holds exactly the project's active keys.

use crate::error::StageError;
use crate::keys::{self, ApiKey};
use crate::pipeline::Pipeline;
use crate::secrets::{secret_name, StoredKeys, API_KEYS_SECRET};
use crate::status::ProjectStatus;
use chrono::{DateTime, Utc};
use deadpool_postgres::{GenericClient, Object};
use secrecy::SecretString;
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

/// A key row to insert: the hash of a key whose plaintext is in `secret_name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKeyRow {
    pub id: String,
    pub prefix: String,
    pub hash: String,
    pub scopes: Vec<String>,
    pub secret_name: String,
}

/// Inserts key rows (a key already present is left as it is), in one statement.
pub async fn insert_keys(
    db: &impl GenericClient,
    project_id: Uuid,
    rows: &[NewKeyRow],
) -> Result<(), StageError> {
    if rows.is_empty() {
        return Ok(());
    }
    let column = |f: fn(&NewKeyRow) -> String| rows.iter().map(f).collect::<Vec<_>>();
    db.execute(
        "INSERT INTO control_plane.api_keys (id, project_id, key_prefix, key_hash, scopes, secret_name)
         SELECT t.id, $1, t.prefix, t.hash, string_to_array(t.scopes, ','), t.secret_name
           FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
                AS t(id, prefix, hash, scopes, secret_name)
         ON CONFLICT (id) DO NOTHING",
        &[
            &project_id,
            &column(|r| r.id.clone()),
            &column(|r| r.prefix.clone()),
            &column(|r| r.hash.clone()),
            &column(|r| r.scopes.join(",")),
            &column(|r| r.secret_name.clone()),
        ],
    )
    .await?;
    Ok(())
}

async fn project_status(
    db: &impl GenericClient,
    project_id: Uuid,
) -> Result<(ProjectStatus, String), KeyError> {
    let row = db
        .query_opt(
            "SELECT status, api_key_prefix FROM control_plane.projects WHERE id = $1",
            &[&project_id],
        )
        .await
        .map_err(StageError::from)?
        .ok_or(KeyError::ProjectNotFound)?;
    Ok((crate::store::parse_status(row.get(0))?, row.get(1)))
}

/// Issues one more key to a ready project (quota: 10 active keys). The work
/// runs on the one connection holding the project's lock.
pub async fn issue_key(
    p: &Pipeline,
    project_id: Uuid,
    scopes: Vec<String>,
    actor: &str,
) -> Result<IssuedKey, KeyError> {
    p.with_project_lock(project_id, async |db: &mut Object| {
        let (status, prefix) = project_status(&*db, project_id).await?;
        if status != ProjectStatus::Ready {
            return Err(KeyError::Conflict(format!(
                "project is {status}: keys are issued to ready projects"
            )));
        }
        let active: i64 = db
            .query_one(
                "SELECT count(*) FROM control_plane.api_keys WHERE project_id = $1 AND revoked_at IS NULL",
                &[&project_id],
            )
            .await
            .map_err(StageError::from)?
            .get(0);
        if active >= crate::domain::quota::API_KEYS {
            return Err(KeyError::Conflict(format!(
                "quota exceeded: api_keys (limit {})",
                crate::domain::quota::API_KEYS
            )));
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
                "WITH k AS (
                    INSERT INTO control_plane.api_keys (id, project_id, key_prefix, key_hash, scopes, secret_name)
                    VALUES ($1, $2, $3, $4, $5, $6) RETURNING created_at),
                 a AS (
                    INSERT INTO control_plane.audit_log (project_id, action, actor, details)
                    VALUES ($2, 'api_key.issued', set_config('provisioning.actor', $7, true), jsonb_build_object('key_id', $1::text, 'scopes', $5::text[])))
                 SELECT created_at FROM k",
                &[&id, &project_id, &prefix, &hash, &scopes, &name, &actor],
            )
            .await
            .map_err(StageError::from)?;
        p.relay_events(db, project_id).await;
        Ok(IssuedKey {
            id,
            prefix,
            scopes,
            created_at: row.get(0),
            key: plaintext,
            secret_name: name,
        })
    })
    .await
}

/// Revokes a key: the row is marked revoked and the key leaves the secret.
/// Revoking a revoked key changes nothing.
pub async fn revoke_key(
    p: &Pipeline,
    project_id: Uuid,
    key_id: &str,
    actor: &str,
) -> Result<(), KeyError> {
    p.with_project_lock(project_id, async |db: &mut Object| {
        project_status(&*db, project_id).await?;
        let Some(row) = db
            .query_opt(
                "SELECT revoked_at IS NOT NULL FROM control_plane.api_keys WHERE id = $1 AND project_id = $2",
                &[&key_id, &project_id],
            )
            .await
            .map_err(StageError::from)?
        else {
            return Err(KeyError::KeyNotFound);
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
            db.execute(
                "WITH k AS (UPDATE control_plane.api_keys SET revoked_at = now() WHERE id = $1)
                 INSERT INTO control_plane.audit_log (project_id, action, actor, details)
                 VALUES ($2, 'api_key.revoked', set_config('provisioning.actor', $3, true), jsonb_build_object('key_id', $1::text))",
                &[&key_id, &project_id, &actor],
            )
            .await
            .map_err(StageError::from)?;
            p.relay_events(db, project_id).await;
        }
        Ok(())
    })
    .await
}

/// A key that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedKey {
    pub id: String,
    pub project_id: Uuid,
    pub scopes: Vec<String>,
}

/// Verifies a presented key: checksum first (no database hit for a typo), then
/// the active (not revoked, not suspended), unexpired row's scrypt hash,
/// compared in constant time.
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
              WHERE id = $1 AND revoked_at IS NULL AND suspended_at IS NULL
                AND (expires_at IS NULL OR expires_at > now())",
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
