//! create-database: an isolated database owned by a per-project role, on the
//! cluster validate placed the project on (through that cluster's admin pool).
//!
//! The password is created once, in Secrets Manager (deterministic request
//! token), and the role is always brought to it, so a crash anywhere leaves
//! nothing the next attempt cannot finish. `CREATE DATABASE` cannot run in a
//! transaction: the project lock serialises workers, `pg_database` is checked
//! first, and "already exists" is accepted only when this project's role owns it.

use super::{Ledger, StageContext};
use crate::db::{quote_ident, quote_literal};
use crate::domain::TenantNames;
use crate::error::StageError;
use crate::ports::get_or_create_secret;
use crate::secrets::{DatabaseCredentials, DATABASE_SECRET};
use crate::store::Resource;
use rand::distr::{Alphanumeric, SampleString};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use tokio_postgres::error::SqlState;

/// Tenant connection limit (DESIGN: CONNECTION LIMIT 20).
pub const CONNECTION_LIMIT: i32 = 20;

pub async fn run(ctx: &StageContext<'_>) -> Result<Ledger, StageError> {
    let cluster = ctx.project.placed_cluster()?;
    let names = TenantNames::for_project(ctx.project.id);
    let (tenant_host, tenant_port) = (cluster.host.clone(), cluster.port);
    let secret_name = ctx.secret_name(DATABASE_SECRET);
    let secret = get_or_create_secret(
        &*ctx.pipeline.secrets,
        &secret_name,
        ctx.request_token("database-credentials"),
        || {
            DatabaseCredentials {
                host: tenant_host,
                port: tenant_port,
                username: names.role.clone(),
                dbname: names.database.clone(),
                password: SecretString::from(Alphanumeric.sample_string(&mut rand::rng(), 40)),
            }
            .to_secret()
        },
    )
    .await?;
    let credentials = DatabaseCredentials::parse(&secret)?;
    if credentials.username != names.role || credentials.dbname != names.database {
        return Err(StageError::permanent(format!(
            "secret {secret_name} names another database or role"
        )));
    }

    // The secret names the cluster the project was placed on: a secret written
    // for another one (never expected) is refused rather than followed.
    if (credentials.host.as_str(), credentials.port) != (cluster.host.as_str(), cluster.port) {
        return Err(StageError::permanent(format!(
            "secret {secret_name} names {}:{}, not cluster {}",
            credentials.host, credentials.port, cluster.id
        )));
    }
    let admin = ctx.pipeline.clusters.connection(cluster).await?;
    let marker =
        TenantNames::ownership_marker(ctx.project.id, &ctx.pipeline.settings.secret_prefix);
    create_on_cluster(&admin, &marker, &names, &credentials.password)
        .await
        .map_err(|e| cluster.blame(e))?;

    Ok(Ledger {
        resources: vec![
            Resource::new("database_role", &names.role, json!({})),
            Resource::new(
                "database",
                &names.database,
                json!({ "cluster": cluster.id, "host": credentials.host, "port": credentials.port, "connection_limit": CONNECTION_LIMIT }),
            ),
            Resource::new("secret", &secret_name, json!({ "kind": DATABASE_SECRET })),
        ],
        ..Ledger::default()
    })
}

/// The role, the database and their grants, on the cluster's admin connection.
async fn create_on_cluster(
    db: &tokio_postgres::Client,
    marker: &str,
    names: &TenantNames,
    password: &SecretString,
) -> Result<(), StageError> {
    ensure_role(db, marker, &names.role, password).await?;
    ensure_database(db, names).await?;
    let database = quote_ident(&names.database);
    let role = quote_ident(&names.role);
    db.batch_execute(&format!(
        "REVOKE CONNECT, TEMPORARY ON DATABASE {database} FROM PUBLIC;
         GRANT CONNECT, TEMPORARY ON DATABASE {database} TO {role};
         COMMENT ON DATABASE {database} IS {};",
        quote_literal(marker)
    ))
    .await?;
    Ok(())
}

/// Creates the tenant role, or brings an existing one of this project to the
/// stored password. A role of the same name that is not this project's is an error.
async fn ensure_role(
    db: &tokio_postgres::Client,
    marker: &str,
    role: &str,
    password: &SecretString,
) -> Result<(), StageError> {
    // The server only ever sees a SCRAM verifier, never the password itself, so
    // no server log or error can reveal it.
    let verifier = postgres_protocol::password::scram_sha_256(password.expose_secret().as_bytes());
    let quoted = quote_ident(role);
    for _ in 0..2 {
        let existing = db
            .query_opt(
                "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1",
                &[&role],
            )
            .await?;
        if let Some(row) = existing {
            let comment: Option<String> = row.get(0);
            if comment.as_deref() != Some(marker) {
                return Err(StageError::permanent(format!(
                    "role {role} exists and does not belong to this project"
                )));
            }
            db.batch_execute(&format!(
                "ALTER ROLE {quoted} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
                 CONNECTION LIMIT {CONNECTION_LIMIT} PASSWORD {}",
                quote_literal(&verifier)
            ))
            .await?;
            return grant_membership_if_needed(db, &quoted).await;
        }
        // Role and its ownership comment are created atomically.
        let created = db
            .batch_execute(&format!(
                "BEGIN;
                 CREATE ROLE {quoted} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
                   CONNECTION LIMIT {CONNECTION_LIMIT} PASSWORD {};
                 COMMENT ON ROLE {quoted} IS {};
                 COMMIT;",
                quote_literal(&verifier),
                quote_literal(marker)
            ))
            .await;
        match created {
            Ok(()) => return grant_membership_if_needed(db, &quoted).await,
            Err(e) if e.code() == Some(&SqlState::DUPLICATE_OBJECT) => {
                db.batch_execute("ROLLBACK").await.ok();
                continue; // created meanwhile: check that it is ours
            }
            Err(e) => {
                db.batch_execute("ROLLBACK").await.ok();
                return Err(e.into());
            }
        }
    }
    Err(StageError::retryable(format!(
        "role {role} is being created concurrently"
    )))
}

/// A non-superuser admin (RDS) must be a member of the role to make it a
/// database owner.
async fn grant_membership_if_needed(
    db: &tokio_postgres::Client,
    quoted_role: &str,
) -> Result<(), StageError> {
    let row = db
        .query_one(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await?;
    if !row.get::<_, bool>(0) {
        db.batch_execute(&format!("GRANT {quoted_role} TO CURRENT_USER"))
            .await?;
    }
    Ok(())
}

async fn ensure_database(
    db: &tokio_postgres::Client,
    names: &TenantNames,
) -> Result<(), StageError> {
    if database_owner(db, &names.database).await?.is_none() {
        let created = db
            .batch_execute(&format!(
                "CREATE DATABASE {} OWNER {} TEMPLATE template0 ENCODING 'UTF8' CONNECTION LIMIT {CONNECTION_LIMIT}",
                quote_ident(&names.database),
                quote_ident(&names.role)
            ))
            .await;
        match created {
            Ok(()) => return Ok(()),
            Err(e) if e.code() == Some(&SqlState::DUPLICATE_DATABASE) => {} // check whose it is below
            Err(e) => return Err(e.into()),
        }
    }
    match database_owner(db, &names.database).await? {
        Some(owner) if owner == names.role => Ok(()),
        Some(_) => Err(StageError::permanent(format!(
            "database {} exists and does not belong to this project",
            names.database
        ))),
        None => Err(StageError::retryable(format!(
            "database {} vanished while being created",
            names.database
        ))),
    }
}

async fn database_owner(
    db: &tokio_postgres::Client,
    database: &str,
) -> Result<Option<String>, StageError> {
    let row = db
        .query_opt(
            "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1",
            &[&database],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}
