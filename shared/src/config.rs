//! Settings read once per cold start from the environment, failing fast with the
//! variable's name when one is missing or malformed.

use crate::domain::Service;
use crate::tls::TlsMode;
use std::collections::HashMap;
use std::time::Duration;

/// Where the control-plane database's credentials come from.
#[derive(Debug, Clone)]
pub enum DatabaseSource {
    /// `DATABASE_URL` (its password is redacted from Debug by tokio-postgres).
    Config(Box<tokio_postgres::Config>),
    /// `DATABASE_SECRET_ARN`: an RDS-style JSON secret, read once per cold start.
    Secret(String),
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub database: DatabaseSource,
    /// `DATABASE_SSLMODE` (disable, prefer, require, verify-full; default prefer).
    pub tls_mode: TlsMode,
    /// `DATABASE_SSLROOTCERT`: PEM bundle for verify-full.
    pub tls_root_cert: Option<String>,
    /// `REGISTER_CLUSTERS`: clusters the migrate function registers after
    /// migrating (a JSON array of registrations; empty: none). Tenant databases
    /// go to registered clusters only (`cluster`).
    pub register_clusters: String,
    /// Stage queue URLs are this prefix followed by the stage's queue name.
    pub queue_url_prefix: String,
    /// Secrets are named `{secret_prefix}/{project_id}/{database|api-keys}`.
    pub secret_prefix: String,
    /// `EVENT_BUS_NAME`: the EventBridge bus the lifecycle events go to
    /// (required by every function that writes to the control plane).
    pub event_bus_name: Option<String>,
    /// Registration endpoint per service, where one is configured.
    pub registration_urls: HashMap<Service, String>,
    pub registration_timeout: Duration,
    /// scrypt cost as log2(N); r = 8, p = 1.
    pub scrypt_log_n: u8,
    pub db_pool_size: usize,
    /// Messages of one batch processed at once.
    pub batch_concurrency: usize,
    /// How long a stage waits for another worker holding the same project's
    /// stage; also the `lock_timeout` of every control-plane connection, so no
    /// statement waits on a lock for longer.
    pub stage_lock_timeout: Duration,
    /// `VISIBILITY_TIMEOUT` of the stage queues (seconds, default 300): a run
    /// whose current stage has not moved for this plus `stall_margin` is stalled.
    pub visibility_timeout: Duration,
    /// `STALL_MARGIN_SECONDS` (default 60).
    pub stall_margin: Duration,
    /// `MAX_RECEIVE_COUNT` of the stage queues' redrive policy (default 3).
    pub max_receive_count: u32,
    /// `OUTBOX_RESEND_AFTER_MS` (default 5000): an outbox row unsent for this
    /// long is re-sent by the sweeper.
    pub outbox_resend_after: Duration,
    /// `RECOVERY_WINDOW_SECONDS` (default 7 days): how long a deleted project
    /// can be restored before the sweeper purges it; 0 purges at once.
    pub recovery_window: Duration,
    /// `SECRET_RECOVERY_DAYS` (default 0): the purge deletes a project's
    /// secrets at once (0) or with this Secrets Manager recovery window (7 to 30).
    pub secret_recovery_days: u32,
    /// `ORPHAN_GRACE_SECONDS` (default 1 day): how long the reconciler leaves an
    /// orphan alone before purging it.
    pub orphan_grace: Duration,
    /// `AUTO_PURGE_ORPHANS` (default true): whether the reconciler purges orphans
    /// (of purged or never-existing projects) past their grace period.
    pub auto_purge_orphans: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {var}: {problem}")]
pub struct ConfigError {
    pub var: &'static str,
    pub problem: String,
}

pub const DEFAULT_SECRET_PREFIX: &str = "provisioning/projects";

impl Settings {
    pub fn from_env() -> Result<Settings, ConfigError> {
        Settings::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`, so tests can supply their own values.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
        let get = |var: &'static str| lookup(var).filter(|v| !v.trim().is_empty());
        let required = |var: &'static str| {
            get(var).ok_or(ConfigError {
                var,
                problem: "must be set".into(),
            })
        };
        let database = match (get("DATABASE_URL"), get("DATABASE_SECRET_ARN")) {
            (Some(url), _) => {
                DatabaseSource::Config(Box::new(url.parse().map_err(|_| ConfigError {
                    var: "DATABASE_URL",
                    problem: "is not a valid postgres URL".into(),
                })?))
            }
            (None, Some(arn)) => DatabaseSource::Secret(arn),
            (None, None) => {
                return Err(ConfigError {
                    var: "DATABASE_URL",
                    problem: "DATABASE_URL or DATABASE_SECRET_ARN must be set".into(),
                })
            }
        };
        let tls_mode = match get("DATABASE_SSLMODE") {
            None => TlsMode::Prefer,
            Some(mode) => TlsMode::parse(&mode).ok_or(ConfigError {
                var: "DATABASE_SSLMODE",
                problem: format!("'{mode}' is not one of disable, prefer, require, verify-full"),
            })?,
        };

        let mut registration_urls = HashMap::new();
        for service in Service::ALL {
            let var = registration_var(service);
            if let Some(url) = get(var) {
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(ConfigError {
                        var,
                        problem: "must be an http(s) URL".into(),
                    });
                }
                registration_urls.insert(service, url);
            }
        }

        let queue_url_prefix = required("QUEUE_URL_PREFIX")?;
        Ok(Settings {
            database,
            tls_mode,
            tls_root_cert: get("DATABASE_SSLROOTCERT"),
            register_clusters: get("REGISTER_CLUSTERS").unwrap_or_default(),
            queue_url_prefix,
            event_bus_name: get("EVENT_BUS_NAME").filter(|name| !name.is_empty()),
            secret_prefix: get("SECRET_PREFIX")
                .unwrap_or_else(|| DEFAULT_SECRET_PREFIX.to_owned())
                .trim_end_matches('/')
                .to_owned(),
            registration_urls,
            registration_timeout: Duration::from_millis(parse_or(
                &get,
                "REGISTRATION_TIMEOUT_MS",
                5_000,
            )?),
            scrypt_log_n: parse_or(&get, "API_KEY_SCRYPT_LOG_N", 14)?,
            db_pool_size: parse_or(&get, "DB_POOL_SIZE", 4)?,
            batch_concurrency: parse_or(&get, "BATCH_CONCURRENCY", 4)?.max(1),
            stage_lock_timeout: Duration::from_millis(parse_or(
                &get,
                "STAGE_LOCK_TIMEOUT_MS",
                20_000,
            )?),
            visibility_timeout: Duration::from_secs(parse_or(&get, "VISIBILITY_TIMEOUT", 300)?),
            stall_margin: Duration::from_secs(parse_or(&get, "STALL_MARGIN_SECONDS", 60)?),
            max_receive_count: parse_or(&get, "MAX_RECEIVE_COUNT", 3)?,
            outbox_resend_after: Duration::from_millis(parse_or(
                &get,
                "OUTBOX_RESEND_AFTER_MS",
                5_000,
            )?),
            recovery_window: Duration::from_secs(parse_or(
                &get,
                "RECOVERY_WINDOW_SECONDS",
                7 * 24 * 3600,
            )?),
            secret_recovery_days: match parse_or(&get, "SECRET_RECOVERY_DAYS", 0)? {
                days @ (0 | 7..=30) => days,
                _ => {
                    return Err(ConfigError {
                        var: "SECRET_RECOVERY_DAYS",
                        problem: "must be 0 (delete at once) or from 7 to 30".into(),
                    })
                }
            },
            orphan_grace: Duration::from_secs(parse_or(&get, "ORPHAN_GRACE_SECONDS", 24 * 3600)?),
            auto_purge_orphans: match get("AUTO_PURGE_ORPHANS").as_deref() {
                None | Some("true") => true,
                Some("false") => false,
                Some(other) => {
                    return Err(ConfigError {
                        var: "AUTO_PURGE_ORPHANS",
                        problem: format!("'{other}' is not true or false"),
                    })
                }
            },
        })
    }

    /// The control-plane connection settings, with the TLS mode applied.
    /// Panics if the source is a secret not yet read (`function::resolve_database`).
    pub fn database_config(&self) -> tokio_postgres::Config {
        match &self.database {
            DatabaseSource::Config(config) => {
                let mut config = (**config).clone();
                config.ssl_mode(self.tls_mode.ssl_mode());
                config.options(format!(
                    "-c lock_timeout={}",
                    self.stage_lock_timeout.as_millis()
                ));
                config
            }
            DatabaseSource::Secret(arn) => panic!("the database secret {arn} was not read yet"),
        }
    }

    pub fn tls(&self) -> Result<crate::tls::MakeRustlsConnect, ConfigError> {
        crate::tls::connector(self.tls_mode, self.tls_root_cert.as_deref()).map_err(|problem| {
            ConfigError {
                var: "DATABASE_SSLROOTCERT",
                problem,
            }
        })
    }

    /// How long a run's current stage may go without progress before the
    /// sweeper re-kicks it and the admin view calls it stuck.
    pub fn stalled_after(&self) -> Duration {
        self.visibility_timeout + self.stall_margin
    }

    pub fn queue_url(&self, queue_name: &str) -> String {
        format!("{}{}", self.queue_url_prefix, queue_name)
    }
}

pub fn registration_var(service: Service) -> &'static str {
    match service {
        Service::Auth => "AUTH_REGISTRATION_URL",
        Service::Realtime => "REALTIME_REGISTRATION_URL",
        Service::Storage => "STORAGE_REGISTRATION_URL",
    }
}

fn parse_or<T: std::str::FromStr>(
    get: &impl Fn(&'static str) -> Option<String>,
    var: &'static str,
    default: T,
) -> Result<T, ConfigError> {
    match get(var) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| ConfigError {
            var,
            problem: format!("'{v}' is not a valid number"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    const BASE: [(&str, &str); 2] = [
        (
            "DATABASE_URL",
            "postgres://admin:hunter2@db.internal:6543/control_plane",
        ),
        ("QUEUE_URL_PREFIX", "http://sqs/123/p-"),
    ];

    #[test]
    fn missing_database_url_names_the_variable() {
        let err = settings(&[("QUEUE_URL_PREFIX", "x")]).unwrap_err();
        assert_eq!(err.var, "DATABASE_URL");
        let from_secret = settings(&[
            ("QUEUE_URL_PREFIX", "x"),
            ("DATABASE_SECRET_ARN", "arn:aws:secretsmanager:x"),
        ])
        .unwrap();
        assert!(matches!(from_secret.database, DatabaseSource::Secret(_)));
    }

    #[test]
    fn the_tls_mode_is_applied_to_the_connection() {
        let mut pairs = BASE.to_vec();
        pairs.push(("DATABASE_SSLMODE", "require"));
        let s = settings(&pairs).unwrap();
        assert_eq!(
            s.database_config().get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
        pairs.pop();
        pairs.push(("DATABASE_SSLMODE", "sometimes"));
        assert_eq!(settings(&pairs).unwrap_err().var, "DATABASE_SSLMODE");
    }

    #[test]
    fn the_password_is_not_printed() {
        let s = settings(&BASE).unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.queue_url("validate"), "http://sqs/123/p-validate");
    }

    #[test]
    fn malformed_numbers_and_urls_are_rejected_by_name() {
        let mut pairs = BASE.to_vec();
        pairs.push(("REGISTRATION_TIMEOUT_MS", "soon"));
        assert_eq!(settings(&pairs).unwrap_err().var, "REGISTRATION_TIMEOUT_MS");
        let mut pairs = BASE.to_vec();
        pairs.push(("AUTH_REGISTRATION_URL", "ftp://x"));
        assert_eq!(settings(&pairs).unwrap_err().var, "AUTH_REGISTRATION_URL");
    }
}
