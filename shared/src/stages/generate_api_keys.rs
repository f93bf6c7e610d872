//! generate-api-keys: N keys with the project's prefix. The plaintext goes only
//! to Secrets Manager (created once, deterministic request token); Postgres gets
//! an scrypt hash of each key, inserted once, together with the ledger row and
//! the stage's success. A retry reads the keys back from the secret instead of
//! minting new ones, so there are always exactly N.

use super::{Ledger, StageContext};
use crate::api_keys::NewKeyRow;
use crate::error::StageError;
use crate::keys::{self, ApiKey};
use crate::ports::get_or_create_secret;
use crate::secrets::{StoredKeys, API_KEYS_SECRET};
use crate::store::Resource;
use serde_json::json;

pub async fn run(ctx: &StageContext<'_>) -> Result<Ledger, StageError> {
    let project = &ctx.project;
    let secret_name = ctx.secret_name(API_KEYS_SECRET);
    let scopes: Vec<String> = keys::SCOPES.iter().map(|s| s.to_string()).collect();
    let secret = get_or_create_secret(
        &*ctx.pipeline.secrets,
        &secret_name,
        ctx.request_token("api-keys"),
        || {
            let keys = (0..project.api_key_count)
                .map(|_| (ApiKey::generate(&project.api_key_prefix), scopes.clone()))
                .collect();
            StoredKeys { keys }.to_secret()
        },
    )
    .await?;
    let stored = StoredKeys::parse(&secret)?;

    let ids: Vec<&str> = stored.keys.iter().map(|(k, _)| k.id.as_str()).collect();
    let existing: Vec<String> = ctx
        .db
        .query(
            "SELECT id FROM control_plane.api_keys WHERE id = ANY($1)",
            &[&ids],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut api_keys = Vec::new();
    for (key, scopes) in &stored.keys {
        if existing.contains(&key.id) {
            continue;
        }
        let hash =
            keys::hash_off_thread(key.secret_part(), ctx.pipeline.settings.scrypt_log_n).await?;
        api_keys.push(NewKeyRow {
            id: key.id.clone(),
            prefix: key.prefix.clone(),
            hash,
            scopes: scopes.clone(),
            secret_name: secret_name.clone(),
        });
    }
    Ok(Ledger {
        resources: vec![Resource::new(
            "secret",
            &secret_name,
            json!({ "kind": API_KEYS_SECRET, "key_ids": ids }),
        )],
        api_keys,
        ..Ledger::default()
    })
}
