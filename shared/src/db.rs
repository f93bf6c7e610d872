//! Postgres plumbing: the control-plane pool, tenant connections and the
//! migration runner shared by the control-plane and tenant schemas.

use crate::error::StageError;
use crate::tls::MakeRustlsConnect;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;
use tokio_postgres::Client;

/// One versioned SQL file, embedded in the binaries that apply it.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

macro_rules! migration {
    ($version:expr, $dir:literal, $file:literal) => {
        Migration {
            version: $version,
            name: $file,
            sql: include_str!(concat!("../../migrations/", $dir, "/", $file)),
        }
    };
}

/// Control-plane schema, applied to the control-plane database.
pub const CONTROL_PLANE_MIGRATIONS: &[Migration] = &[
    migration!(1, "control_plane", "0001_init.sql"),
    migration!(2, "control_plane", "0002_outbox.sql"),
    migration!(3, "control_plane", "0003_clusters.sql"),
    migration!(4, "control_plane", "0004_lifecycle.sql"),
    migration!(5, "control_plane", "0005_callers.sql"),
    migration!(6, "control_plane", "0006_events.sql"),
];

/// Tenant schema, applied to each tenant database by create-schema.
pub const TENANT_MIGRATIONS: &[Migration] = &[migration!(1, "tenant", "0001_init.sql")];

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The control-plane pool. Connections are made lazily, so building it costs
/// nothing at cold start and a broken connection is replaced on next use.
pub fn pool(mut config: tokio_postgres::Config, tls: MakeRustlsConnect, max_size: usize) -> Pool {
    config.connect_timeout(CONNECT_TIMEOUT);
    config.application_name("provisioning");
    let manager = Manager::from_config(
        config,
        tls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(max_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(30)))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .build()
        .expect("pool configuration is valid")
}

/// Credentials of one database login, as kept in Secrets Manager.
pub struct DbLogin<'a> {
    pub ssl_mode: tokio_postgres::config::SslMode,
    pub tls: &'a MakeRustlsConnect,
    pub host: &'a str,
    pub port: u16,
    pub dbname: &'a str,
    pub user: &'a str,
    pub password: &'a SecretString,
}

/// Opens a dedicated connection (used for tenant databases).
pub async fn connect(login: &DbLogin<'_>) -> Result<Client, StageError> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(login.host)
        .port(login.port)
        .dbname(login.dbname)
        .user(login.user)
        .password(login.password.expose_secret())
        .connect_timeout(CONNECT_TIMEOUT)
        .ssl_mode(login.ssl_mode)
        .application_name("provisioning");
    let (client, connection) = config.connect(login.tls.clone()).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "postgres connection closed");
        }
    });
    Ok(client)
}

/// Applies the migrations of `schema` not yet recorded in
/// `{schema}.schema_migrations`, all in one transaction under an advisory lock,
/// so concurrent or repeated runs apply each file exactly once. An applied file
/// whose checksum changed is an error. Returns the schema's version.
pub async fn migrate(
    client: &mut Client,
    schema: &str,
    migrations: &[Migration],
) -> Result<i32, StageError> {
    let tx = client.transaction().await?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1)",
        &[&lock_key("migrate", schema)],
    )
    .await?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {schema};
         CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
             version integer PRIMARY KEY,
             name text NOT NULL,
             checksum text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );",
        schema = quote_ident(schema)
    ))
    .await?;
    let applied = tx
        .query(
            &format!(
                "SELECT version, checksum FROM {}.schema_migrations",
                quote_ident(schema)
            ),
            &[],
        )
        .await?;
    let mut version = 0;
    for m in migrations {
        let checksum = format!("{:08x}", crc32fast::hash(m.sql.as_bytes()));
        match applied.iter().find(|row| row.get::<_, i32>(0) == m.version) {
            Some(row) if row.get::<_, String>(1) != checksum => {
                return Err(StageError::permanent(format!(
                    "migration {} ({}) was changed after it was applied to {schema}",
                    m.version, m.name
                )));
            }
            Some(_) => {}
            None => {
                tx.batch_execute(m.sql)
                    .await
                    .map_err(|e| StageError::from(e).context(format!("migration {}", m.name)))?;
                tx.execute(
                    &format!("INSERT INTO {}.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)", quote_ident(schema)),
                    &[&m.version, &m.name, &checksum],
                )
                .await?;
            }
        }
        version = version.max(m.version);
    }
    tx.commit().await?;
    Ok(version)
}

/// Quotes an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes an SQL string literal (for the few statements that take no parameters).
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// A stable advisory-lock key for a purpose and a name.
pub fn lock_key(purpose: &str, name: &str) -> i64 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(purpose.as_bytes());
    let high = hasher.finalize() as i64;
    let low = crc32fast::hash(name.as_bytes()) as i64;
    (high << 32) | low
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_file_is_embedded_in_order() {
        for (dir, list) in [
            ("control_plane", CONTROL_PLANE_MIGRATIONS),
            ("tenant", TENANT_MIGRATIONS),
        ] {
            let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations/");
            let mut files: Vec<String> = std::fs::read_dir(format!("{root}{dir}"))
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|f| f.ends_with(".sql"))
                .collect();
            files.sort();
            let embedded: Vec<&str> = list.iter().map(|m| m.name).collect();
            assert_eq!(
                files, embedded,
                "migrations/{dir} and the embedded list differ"
            );
            for (i, m) in list.iter().enumerate() {
                assert_eq!(m.version, i as i32 + 1);
                assert!(m.name.starts_with(&format!("{:04}_", m.version)));
            }
        }
    }

    #[test]
    fn quoting_escapes_quotes() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }

    #[test]
    fn lock_keys_differ_by_purpose_and_name() {
        assert_ne!(lock_key("migrate", "a"), lock_key("migrate", "b"));
        assert_ne!(lock_key("stage", "a"), lock_key("migrate", "a"));
        assert_eq!(lock_key("x", "y"), lock_key("x", "y"));
    }
}
