//! The per-project lock, taken on the one connection that does the work.
//!
//! Work on a project (a stage, a key issue or revoke, a dead-letter report) is
//! serialised by a session advisory lock held on the pooled connection that
//! then does all of that work's SQL: nothing holds a connection while it waits
//! for another one, and a lock holder never needs a second pool slot, so
//! waiters (bounded by `lock_timeout`) cannot starve it.
//!
//! The lock is released with `pg_advisory_unlock` before the connection goes
//! back to the pool. If that cannot happen (the future was dropped mid-way, the
//! unlock failed) the connection is taken out of the pool and closed, so the
//! server releases the lock and no pooled connection ever carries one.

use crate::db::lock_key;
use crate::error::StageError;
use deadpool_postgres::{Object, Pool};
use std::ops::{Deref, DerefMut};
use uuid::Uuid;

/// A pooled connection holding a project's lock.
pub struct ProjectLock {
    conn: Option<Object>,
    key: i64,
}

impl ProjectLock {
    /// Takes a connection and, on it, the project's lock (waiting at most the
    /// connection's `lock_timeout`; a timeout is a retryable `55P03`).
    pub async fn acquire(pool: &Pool, project_id: Uuid) -> Result<ProjectLock, StageError> {
        let key = lock_key("project", &project_id.to_string());
        let lock = ProjectLock {
            conn: Some(pool.get().await?),
            key,
        };
        // Should this fail or be cancelled, `lock` is dropped and its
        // connection closed: the lock may have been granted meanwhile.
        lock.execute("SELECT pg_advisory_lock($1)", &[&key]).await?;
        Ok(lock)
    }

    /// Releases the lock and returns the connection to the pool.
    pub async fn release(mut self) {
        let unlocked = self
            .execute("SELECT pg_advisory_unlock($1)", &[&self.key])
            .await;
        match unlocked {
            Ok(_) => drop(self.conn.take()),
            Err(e) => tracing::warn!(error = %e, "unlock failed: the connection is closed instead"),
        }
    }
}

impl Deref for ProjectLock {
    type Target = Object;
    fn deref(&self) -> &Object {
        self.conn.as_ref().expect("held until released")
    }
}

impl DerefMut for ProjectLock {
    fn deref_mut(&mut self) -> &mut Object {
        self.conn.as_mut().expect("held until released")
    }
}

impl Drop for ProjectLock {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            // Detached from the pool: dropping the client closes the session.
            drop(Object::take(conn));
        }
    }
}
