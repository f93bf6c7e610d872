//! Errors that say whether trying again can help.
//!
//! DESIGN: retryable errors (network, timeouts, Postgres connection or
//! serialization failures, throttling, 5xx) go back to the queue as batch item
//! failures; permanent ones (validation, quota, not found, 4xx) fail the project
//! at once and acknowledge the message.

use std::fmt;
use std::sync::Arc;

/// The error underneath, kept with its type for `source()` (logged through
/// `Display` only: the message above is what is stored and shown).
pub type Source = Arc<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    Retryable,
    Permanent,
}

/// The crate's one error type: a failure with its class (retryable or
/// permanent) and, where there is one, its typed source. The message is safe to
/// store and show: it never carries a secret (adapters build it from error
/// codes and context). Operation-level errors (`CreateProjectError`,
/// `ResumeError`, `KeyError`) wrap it with `From`.
#[derive(Clone)]
pub struct StageError {
    pub class: ErrorClass,
    pub message: String,
    /// The control-plane database could not be reached (or the connection
    /// broke): nothing about the attempt could be written, so the caller keeps
    /// it to record once the database is back.
    pub database_unreachable: bool,
    pub source: Option<Source>,
}

impl PartialEq for StageError {
    fn eq(&self, other: &Self) -> bool {
        (self.class, &self.message, self.database_unreachable)
            == (other.class, &other.message, other.database_unreachable)
    }
}

impl Eq for StageError {}

impl fmt::Debug for StageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StageError")
            .field("class", &self.class)
            .field("message", &self.message)
            .field("database_unreachable", &self.database_unreachable)
            .field("source", &self.source.as_ref().map(|s| s.to_string()))
            .finish()
    }
}

impl StageError {
    pub fn retryable(message: impl Into<String>) -> StageError {
        StageError {
            class: ErrorClass::Retryable,
            message: message.into(),
            database_unreachable: false,
            source: None,
        }
    }

    pub fn permanent(message: impl Into<String>) -> StageError {
        StageError {
            class: ErrorClass::Permanent,
            message: message.into(),
            database_unreachable: false,
            source: None,
        }
    }

    pub fn is_retryable(&self) -> bool {
        self.class == ErrorClass::Retryable
    }

    /// Adds what was being done to the message, keeping the class.
    pub fn context(self, what: impl fmt::Display) -> StageError {
        StageError {
            message: format!("{what}: {}", self.message),
            ..self
        }
    }

    /// Keeps the error underneath, typed.
    pub fn with_source(self, source: impl std::error::Error + Send + Sync + 'static) -> StageError {
        StageError {
            source: Some(Arc::new(source)),
            ..self
        }
    }

    /// A retryable error saying the control-plane database is out of reach.
    pub fn unreachable(message: impl Into<String>) -> StageError {
        StageError {
            database_unreachable: true,
            ..StageError::retryable(message)
        }
    }
}

impl fmt::Display for StageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let class = match self.class {
            ErrorClass::Retryable => "retryable",
            ErrorClass::Permanent => "permanent",
        };
        write!(f, "{} ({class})", self.message)
    }
}

impl std::error::Error for StageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

/// SQLSTATE classes and codes that a later attempt can get past.
pub fn sqlstate_is_retryable(code: &str) -> bool {
    matches!(
        code,
        "40001" // serialization_failure
            | "40P01" // deadlock_detected
            | "55P03" // lock_not_available (lock_timeout)
            | "57014" // query_canceled (statement_timeout)
            | "55006" // object_in_use (e.g. template database busy)
    ) || code.starts_with("08") // connection exceptions
        || code.starts_with("53") // insufficient resources (too many connections, disk full)
        || code.starts_with("57P") // operator intervention: shutdown, crash recovery
        || code.starts_with("58") // system errors (I/O)
}

impl From<tokio_postgres::Error> for StageError {
    fn from(e: tokio_postgres::Error) -> StageError {
        let error = classify_postgres(&e);
        error.with_source(e)
    }
}

fn classify_postgres(e: &tokio_postgres::Error) -> StageError {
    {
        match e.code() {
            Some(code) => {
                let message = format!("postgres {}: {}", code.code(), db_message(e));
                if sqlstate_is_retryable(code.code()) {
                    StageError::retryable(message)
                } else {
                    StageError::permanent(message)
                }
            }
            // No SQLSTATE: the connection broke, timed out or could not be made.
            // The causes say why (e.g. "Connection refused", "invalid peer
            // certificate: ..."); they are I/O and TLS errors, which carry no
            // credentials.
            None if e.is_closed() => {
                StageError::unreachable(format!("postgres connection lost: {}", with_causes(e)))
            }
            None => StageError::unreachable(format!("postgres unreachable: {}", with_causes(e))),
        }
    }
}

/// An error's text followed by that of each of its sources, joined by ": ",
/// skipping a source whose text the previous one already ends with.
pub fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text = format!("{text}: {cause_text}");
        }
        source = cause.source();
    }
    text
}

fn db_message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_else(|| e.to_string())
}

impl From<deadpool_postgres::PoolError> for StageError {
    fn from(e: deadpool_postgres::PoolError) -> StageError {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            deadpool_postgres::PoolError::Timeout(deadpool_postgres::TimeoutType::Create) => {
                StageError::unreachable("postgres unreachable: connecting timed out")
            }
            other => StageError::retryable(format!("postgres pool: {other}")).with_source(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);
    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn with_causes_names_every_source_once() {
        let inner = Layer("invalid peer certificate: UnknownIssuer", None);
        let middle = Layer(
            "invalid peer certificate: UnknownIssuer",
            Some(Box::new(inner)),
        );
        let outer = Layer("error performing TLS handshake", Some(Box::new(middle)));
        assert_eq!(
            with_causes(&outer),
            "error performing TLS handshake: invalid peer certificate: UnknownIssuer"
        );
        assert_eq!(with_causes(&Layer("alone", None)), "alone");
    }

    #[test]
    fn transient_sqlstates_are_retryable_and_logic_errors_are_not() {
        for code in [
            "40001", "40P01", "55P03", "08006", "53300", "57P01", "58030",
        ] {
            assert!(sqlstate_is_retryable(code), "{code}");
        }
        for code in ["23505", "42P04", "42601", "22P02", "28P01"] {
            assert!(!sqlstate_is_retryable(code), "{code}");
        }
    }

    #[test]
    fn the_typed_source_is_kept_through_context_and_never_printed_by_debug_as_more_than_its_text() {
        use std::error::Error as _;
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = StageError::unreachable("postgres unreachable: refused")
            .with_source(io)
            .context("validate");
        let source = e.source().expect("a source");
        assert_eq!(
            source.downcast_ref::<std::io::Error>().map(|s| s.kind()),
            Some(std::io::ErrorKind::ConnectionRefused)
        );
        assert!(e.database_unreachable && e.is_retryable());
        let pool: StageError = deadpool_postgres::PoolError::Closed.into();
        assert!(pool
            .source()
            .and_then(|s| s.downcast_ref::<deadpool_postgres::PoolError>())
            .is_some());
    }

    #[test]
    fn context_keeps_the_class() {
        let e = StageError::retryable("timeout").context("registering auth");
        assert!(e.is_retryable());
        assert_eq!(e.to_string(), "registering auth: timeout (retryable)");
    }
}
