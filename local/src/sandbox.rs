//! A sandbox on the shared local stack: a control-plane database (migrated,
//! with the stack's clusters registered), a set of stage queues and a secret
//! prefix of its own, so tests and benchmark
//! series run side by side without meeting.

use crate::{create_queues, QueueSettings};
use provisioning::db::{migrate, CONTROL_PLANE_MIGRATIONS};
use provisioning::error::with_causes;
use provisioning::{Pipeline, Settings};
use std::collections::HashMap;
use uuid::Uuid;

/// Where the local stack is (`.local/env` written by `scripts/stack.sh up`).
#[derive(Debug, Clone)]
pub struct StackAddress {
    /// `PG_ADMIN_URL`: a superuser URL ending in `/<database>`.
    pub admin_url: String,
    /// `AWS_ENDPOINT_URL`: moto.
    pub aws_endpoint: String,
    /// `REGISTER_CLUSTERS`: the stack's Postgres clusters, registered in every
    /// sandbox's control plane.
    pub clusters: String,
}

impl StackAddress {
    /// From the stack variables, read through `lookup`; the error names the missing one.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<StackAddress, String> {
        let get = |name: &str| lookup(name).ok_or_else(|| format!("{name} is not set"));
        Ok(StackAddress {
            admin_url: get("PG_ADMIN_URL")?,
            aws_endpoint: get("AWS_ENDPOINT_URL")?,
            clusters: get("REGISTER_CLUSTERS")?,
        })
    }
}

/// The stack's clusters as (id, port): `local-<n>` on `PG_PORT_<n>`, for
/// n in 1..=`PG_CLUSTERS` (read through `lookup`).
pub fn stack_clusters(
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Vec<(String, u16)>, String> {
    let get = |name: &str| lookup(name).ok_or_else(|| format!("{name} is not set"));
    let count: usize = get("PG_CLUSTERS")?
        .parse()
        .map_err(|_| "PG_CLUSTERS is not a number".to_owned())?;
    (1..=count)
        .map(|n| {
            let var = format!("PG_PORT_{n}");
            let port = get(&var)?
                .parse()
                .map_err(|_| format!("{var} is not a port"))?;
            Ok((format!("local-{n}"), port))
        })
        .collect()
}

/// `PG_ADMIN_URL` pointed at another port and database of the stack.
pub fn admin_url_at(admin_url: &str, port: u16, database: &str) -> String {
    let base = admin_url
        .rsplit_once(':')
        .map_or(admin_url, |(base, _)| base);
    format!("{base}:{port}/{database}")
}

/// Why a sandbox could not be set up; each says which step failed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The error's text with its causes ("error connecting to server" alone does not say why).
    #[error("connecting to Postgres as admin: {0}")]
    Connect(String),
    #[error("creating control-plane database {0}: {1}")]
    CreateDatabase(String, String),
    #[error("control-plane migrations: {0}")]
    Migrate(String),
    #[error("settings: {0}")]
    Settings(String),
    #[error("creating queues in moto: {0}")]
    Queues(#[source] aws_sdk_sqs::Error),
    #[error("creating the event bus in moto: {0}")]
    EventTap(String),
    #[error("building the pipeline: {0}")]
    Pipeline(String),
    #[error("registering the stack's clusters: {0}")]
    Clusters(String),
}

/// What a sandbox is made of. `vars` are the settings as environment
/// variables, for running a function binary against the same sandbox.
pub struct Sandbox {
    pub id: String,
    pub database_name: String,
    pub vars: HashMap<&'static str, String>,
    pub settings: Settings,
    pub sqs: aws_sdk_sqs::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub pipeline: Pipeline,
}

impl Sandbox {
    /// A fresh sandbox named `{tag}_{id}`; `extra` settings are added to (or
    /// replace) the sandbox's own.
    pub async fn create(
        stack: &StackAddress,
        tag: &str,
        extra: impl IntoIterator<Item = (&'static str, String)>,
        queues: QueueSettings,
    ) -> Result<Sandbox, SandboxError> {
        let id = Uuid::new_v4().simple().to_string()[..10].to_owned();
        let database_name = format!("{tag}_{id}");
        let admin = admin_client(&stack.admin_url).await?;
        admin
            .batch_execute(&format!("CREATE DATABASE {database_name}"))
            .await
            .map_err(|e| SandboxError::CreateDatabase(database_name.clone(), with_causes(&e)))?;
        let base = stack
            .admin_url
            .rsplit_once('/')
            .map_or("", |(base, _)| base);
        let database_url = format!("{base}/{database_name}");
        let mut control_plane = admin_client(&database_url).await?;
        migrate(
            &mut control_plane,
            "control_plane",
            CONTROL_PLANE_MIGRATIONS,
        )
        .await
        .map_err(|e| SandboxError::Migrate(e.to_string()))?;

        let mut vars: HashMap<&'static str, String> = HashMap::from([
            ("DATABASE_URL", database_url),
            (
                "QUEUE_URL_PREFIX",
                format!("{}/123456789012/{tag}{id}-", stack.aws_endpoint),
            ),
            ("SECRET_PREFIX", format!("{tag}-{id}/projects")),
            ("EVENT_BUS_NAME", format!("{tag}{id}-events")),
            ("REGISTER_CLUSTERS", stack.clusters.clone()),
        ]);
        vars.extend(extra);
        let settings = Settings::from_lookup(|k| vars.get(k).cloned())
            .map_err(|e| SandboxError::Settings(e.to_string()))?;
        let aws = provisioning::adapters::aws_config().await;
        let sqs = aws_sdk_sqs::Client::new(&aws);
        let secrets = aws_sdk_secretsmanager::Client::new(&aws);
        create_queues(&sqs, &settings.queue_url_prefix, queues)
            .await
            .map_err(SandboxError::Queues)?;
        let bus = settings.event_bus_name.clone().unwrap_or_default();
        crate::events::create_bus(&aws, &bus)
            .await
            .map_err(SandboxError::EventTap)?;
        let pipeline = Pipeline::from_settings(settings.clone())
            .await
            .map_err(|e| SandboxError::Pipeline(e.to_string()))?;
        provisioning::cluster::register_listed(
            &control_plane,
            &*pipeline.secrets,
            settings.tls_root_cert.as_deref(),
            &settings.register_clusters,
        )
        .await
        .map_err(|e| SandboxError::Clusters(e.to_string()))?;
        Ok(Sandbox {
            id,
            database_name,
            vars,
            settings,
            sqs,
            secrets,
            pipeline,
        })
    }
}

/// A plain (no TLS) admin connection, its driver spawned.
pub async fn admin_client(url: &str) -> Result<tokio_postgres::Client, SandboxError> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| SandboxError::Connect(with_causes(&e)))?;
    tokio::spawn(connection);
    Ok(client)
}
