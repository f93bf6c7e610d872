//! The API's `Idempotency-Key`. A key is bound to its project in the very
//! transaction that stores the project, with the answer the request got: the
//! same key with the same body then always answers with that project, whatever
//! happened to the first answer (lost, a 5xx, the process killed mid-request);
//! with a different body it is refused. A request with a key still being
//! handled waits for it on the key's unique index (no pooled connection waits
//! on another) and then replays its answer. A refused request binds nothing.

use crate::error::StageError;
use deadpool_postgres::GenericClient;
use sha2::{Digest, Sha256};

/// What binding a key in a transaction found.
#[derive(Debug, Clone, PartialEq)]
pub enum Binding {
    /// The key is now this request's: commit it with the project.
    Bound,
    /// The key was used for this body before: send this answer again.
    Replay {
        status: u16,
        body: serde_json::Value,
    },
    /// The key was used with another body.
    Mismatch,
}

/// SHA-256 of what identifies a request: method, path and body.
pub fn request_hash(method: &str, path: &str, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(method.as_bytes());
    hasher.update([0]);
    hasher.update(path.as_bytes());
    hasher.update([0]);
    hasher.update(body);
    hex::encode(hasher.finalize())
}

/// Key rule: 1 to 255 visible ASCII characters.
pub fn is_valid_key(key: &str) -> bool {
    (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

/// Binds `key` to the answer `body` (naming the project being created) in the
/// caller's transaction, or reports what the key was bound to before.
pub async fn bind(
    tx: &impl GenericClient,
    caller: &str,
    key: &str,
    hash: &str,
    status: u16,
    body: &serde_json::Value,
    project_id: uuid::Uuid,
) -> Result<Binding, StageError> {
    let inserted = tx
        .execute(
            "INSERT INTO control_plane.idempotency_keys
                    (key, request_hash, status, response_status, response_body, project_id, completed_at, caller)
             VALUES ($1, $2, 'completed', $3, $4, $5, now(), $6)
             ON CONFLICT (caller, key) DO NOTHING",
            &[&key, &hash, &i32::from(status), body, &project_id, &caller],
        )
        .await?;
    if inserted == 1 {
        return Ok(Binding::Bound);
    }
    let row = tx
        .query_one(
            "SELECT request_hash, response_status, response_body FROM control_plane.idempotency_keys
              WHERE caller = $1 AND key = $2",
            &[&caller, &key],
        )
        .await?;
    let stored_hash: String = row.get(0);
    Ok(if stored_hash != hash {
        Binding::Mismatch
    } else {
        let code: i32 = row.get(1);
        Binding::Replay {
            status: code as u16,
            body: row.get(2),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_depends_on_method_path_and_body() {
        let base = request_hash("POST", "/projects", b"{}");
        assert_eq!(base, request_hash("POST", "/projects", b"{}"));
        assert_ne!(base, request_hash("POST", "/projects", b"{ }"));
        assert_ne!(base, request_hash("PUT", "/projects", b"{}"));
        assert_ne!(
            request_hash("POST", "/a", b"b/c"),
            request_hash("POST", "/a/b", b"c")
        );
    }

    #[test]
    fn keys_are_visible_ascii_of_bounded_length() {
        assert!(is_valid_key("order-1234"));
        assert!(!is_valid_key(""));
        assert!(!is_valid_key("has space"));
        assert!(!is_valid_key("tab\there"));
        assert!(!is_valid_key(&"k".repeat(256)));
        assert!(!is_valid_key("ключ"));
    }
}
