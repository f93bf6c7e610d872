//! Attempts that could not be written when they happened.
//!
//! When the control-plane database is out of reach, a stage cannot record its
//! attempt or its error, and the message goes back to the queue. The function
//! instance keeps what it saw here (per stage of a run: the error and SQS's
//! receive count) and writes it as soon as it next reaches the database, so the
//! stage's `last_error` and a later dead-letter report say what happened
//! ("postgres unreachable: ... Connection refused") instead of nothing.

use crate::domain::{Stage, StageMessage};
use crate::error::StageError;
use deadpool_postgres::GenericClient;
use std::collections::HashMap;
use std::sync::Mutex;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unrecorded {
    pub error: String,
    pub receives: u32,
}

/// One function instance's unwritten attempts.
#[derive(Debug, Default)]
pub struct Journal(Mutex<HashMap<(Uuid, Stage), Unrecorded>>);

impl Journal {
    /// Keeps an error that could not be written.
    pub fn note(&self, msg: &StageMessage, error: &StageError, receive_count: Option<u32>) {
        let mut entries = self.0.lock().expect("journal lock");
        let entry = entries
            .entry((msg.run_id, msg.stage))
            .or_insert_with(|| Unrecorded {
                error: String::new(),
                receives: 0,
            });
        entry.error = error.to_string();
        entry.receives = entry.receives.max(receive_count.unwrap_or(1));
    }

    pub fn is_empty(&self) -> bool {
        self.0.lock().expect("journal lock").is_empty()
    }

    /// Writes every kept entry (stages no longer open are left alone by the
    /// statement) and forgets those written.
    pub async fn flush(&self, db: &impl GenericClient) -> Result<(), StageError> {
        let entries: Vec<_> = self
            .0
            .lock()
            .expect("journal lock")
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        for ((run_id, stage), entry) in entries {
            crate::store::record_unrecorded_attempts(
                db,
                run_id,
                stage,
                &entry.error,
                entry.receives,
            )
            .await?;
            let mut map = self.0.lock().expect("journal lock");
            if map.get(&(run_id, stage)) == Some(&entry) {
                map.remove(&(run_id, stage));
            }
        }
        Ok(())
    }
}
