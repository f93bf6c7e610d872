//! The API's `Idempotency-Key`: the first request with a key is handled and its
//! response stored; the same key with the same body replays that response; with
//! a different body it is refused; while the first is still being handled a
//! second one is told so. A request that fails writes nothing, key included.

use crate::error::StageError;
use deadpool_postgres::GenericClient;
use sha2::{Digest, Sha256};

/// A claim left `in_progress` longer than this was abandoned (the function died).
const ABANDONED_AFTER_SECS: f64 = 60.0;

#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// This request owns the key: handle it, then `complete` or `release`.
    New,
    /// The key was used for this body before: send this response again.
    Replay {
        status: u16,
        body: serde_json::Value,
    },
    /// The first request with this key is still being handled.
    InProgress,
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

pub async fn claim(db: &impl GenericClient, key: &str, hash: &str) -> Result<Claim, StageError> {
    let inserted = db
        .execute(
            "INSERT INTO control_plane.idempotency_keys (key, request_hash, status) VALUES ($1, $2, 'in_progress')
             ON CONFLICT (key) DO NOTHING",
            &[&key, &hash],
        )
        .await?;
    if inserted == 1 {
        return Ok(Claim::New);
    }
    // Take over a claim whose owner died.
    let taken = db
        .execute(
            "UPDATE control_plane.idempotency_keys SET created_at = now()
              WHERE key = $1 AND request_hash = $2 AND status = 'in_progress'
                AND created_at < now() - make_interval(secs => $3)",
            &[&key, &hash, &ABANDONED_AFTER_SECS],
        )
        .await?;
    if taken == 1 {
        return Ok(Claim::New);
    }
    let Some(row) = db
        .query_opt(
            "SELECT request_hash, status, response_status, response_body FROM control_plane.idempotency_keys WHERE key = $1",
            &[&key],
        )
        .await?
    else {
        // Released between our insert and select: the caller may simply retry.
        return Ok(Claim::InProgress);
    };
    let (stored_hash, status): (String, String) = (row.get(0), row.get(1));
    Ok(if stored_hash != hash {
        Claim::Mismatch
    } else if status == "completed" {
        let code: i32 = row.get(2);
        Claim::Replay {
            status: code as u16,
            body: row.get(3),
        }
    } else {
        Claim::InProgress
    })
}

pub async fn complete(
    db: &impl GenericClient,
    key: &str,
    status: u16,
    body: &serde_json::Value,
    project_id: Option<uuid::Uuid>,
) -> Result<(), StageError> {
    db.execute(
        "UPDATE control_plane.idempotency_keys
            SET status = 'completed', response_status = $2, response_body = $3, project_id = $4, completed_at = now()
          WHERE key = $1",
        &[&key, &i32::from(status), body, &project_id],
    )
    .await?;
    Ok(())
}

/// Forgets a claim whose request failed, so nothing of it remains.
pub async fn release(db: &impl GenericClient, key: &str) -> Result<(), StageError> {
    db.execute(
        "DELETE FROM control_plane.idempotency_keys WHERE key = $1 AND status = 'in_progress'",
        &[&key],
    )
    .await?;
    Ok(())
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
