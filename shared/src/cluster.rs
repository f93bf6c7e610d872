//! The cluster registry and placement: which Postgres clusters hold tenant
//! databases, which one a project lives on, and the admin connections to them.
//!
//! - A cluster is registered only once its admin credentials were proven
//!   (`verify`): the secret is read, one connection is made, and its user must
//!   have CREATEDB and CREATEROLE (or be a superuser).
//! - A project is placed once (`place`), by the validate stage, before any
//!   tenant object exists: on the `active` cluster of its region with the most
//!   free capacity, ties broken by id. One statement reserves the slot and
//!   stores the choice on the project; every later stage and retry reads it.
//! - Each function instance keeps one admin pool per cluster (`AdminPools`),
//!   built on first use with the credentials read once from the cluster's secret.

use crate::db::DbLogin;
use crate::error::{with_causes, StageError};
use crate::ports::SecretStore;
use crate::project::ValidationError;
use crate::secrets::AdminCredentials;
use crate::status::ClusterStatus;
use crate::tls::TlsMode;
use deadpool_postgres::{Object, Pool};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;
use uuid::Uuid;

/// The most tenant databases one cluster may be given.
pub const MAX_CAPACITY: i32 = 1_000_000;

/// A registered cluster, as the admin API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Cluster {
    pub id: String,
    pub region: String,
    pub host: String,
    pub port: u16,
    pub admin_secret_arn: String,
    pub tls_mode: String,
    pub capacity: i32,
    /// Projects placed on it (slots taken).
    pub placed: i32,
    pub status: ClusterStatus,
    pub verified_at: String,
    pub updated_at: String,
}

impl Cluster {
    /// What the stages and the reconciler connect with.
    pub fn to_ref(&self) -> Result<ClusterRef, StageError> {
        Ok(ClusterRef {
            id: self.id.clone(),
            host: self.host.clone(),
            port: self.port,
            tls_mode: TlsMode::parse(&self.tls_mode).ok_or_else(|| {
                StageError::permanent(format!("cluster tls_mode '{}'", self.tls_mode))
            })?,
            admin_secret_arn: self.admin_secret_arn.clone(),
            status: self.status,
        })
    }
}

const CLUSTER_COLUMNS: &str = "id, region, host, port, admin_secret_arn, tls_mode, capacity,
     placed, status, to_char(verified_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
     to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')";

fn cluster_from_row(r: &tokio_postgres::Row) -> Result<Cluster, StageError> {
    Ok(Cluster {
        id: r.get(0),
        region: r.get(1),
        host: r.get(2),
        port: u16::try_from(r.get::<_, i32>(3)).unwrap_or_default(),
        admin_secret_arn: r.get(4),
        tls_mode: r.get(5),
        capacity: r.get(6),
        placed: r.get(7),
        status: crate::store::parse_status(r.get(8))?,
        verified_at: r.get(9),
        updated_at: r.get(10),
    })
}

/// Where a project's database lives, as the stages need it (read with the
/// project, in the same statement).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterRef {
    pub id: String,
    pub host: String,
    pub port: u16,
    pub tls_mode: TlsMode,
    pub admin_secret_arn: String,
    pub status: ClusterStatus,
}

impl ClusterRef {
    /// A cluster taken offline by an operator: its projects' stages retry
    /// (and, past their receives, dead-letter) until it is back.
    pub fn ensure_online(&self) -> Result<(), StageError> {
        match self.status {
            ClusterStatus::Offline => Err(StageError::retryable(format!(
                "cluster {} is offline",
                self.id
            ))),
            _ => Ok(()),
        }
    }

    /// An error met on this cluster, naming it. A broken connection here is
    /// the cluster's and retryable; it says nothing about the control plane.
    pub fn blame(&self, e: StageError) -> StageError {
        let unreachable = e.database_unreachable;
        let e = e.context(format!("cluster {} ({}:{})", self.id, self.host, self.port));
        if unreachable {
            StageError::retryable(e.message)
        } else {
            e
        }
    }

    /// A failure to reach the cluster, naming it and the cause; retryable.
    pub fn unreachable(&self, cause: &dyn std::error::Error) -> StageError {
        StageError::retryable(format!(
            "cluster {} ({}:{}) unreachable: {}",
            self.id,
            self.host,
            self.port,
            with_causes(cause)
        ))
    }
}

/// A registration request (`POST /admin/clusters`, or `REGISTER_CLUSTERS` on
/// deploy). Host and port default to the secret's.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCluster {
    pub id: String,
    pub region: String,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default, deserialize_with = "lenient_u32")]
    pub port: Option<u32>,
    pub admin_secret_arn: String,
    #[serde(deserialize_with = "lenient_i64_required")]
    pub capacity: i64,
    #[serde(default)]
    pub tls_mode: Option<String>,
}

/// A number, or a string holding one ("" = absent): CloudFormation's `!Sub`
/// can only write strings.
fn lenient_u32<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(serde_json::Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom("must be a port number")),
        Some(serde_json::Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom("must be a port number")),
        Some(_) => Err(serde::de::Error::custom("must be a port number")),
    }
}

fn lenient_i64_required<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| serde::de::Error::custom("must be an integer")),
        serde_json::Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom("must be an integer")),
        _ => Err(serde::de::Error::custom("must be an integer")),
    }
}

fn refused(field: &'static str, detail: impl Into<String>) -> RegisterError {
    RegisterError::Refused {
        field,
        detail: detail.into(),
    }
}

fn invalid(field: &'static str, rule: impl Into<String>) -> ValidationError {
    ValidationError {
        field,
        rule: rule.into(),
    }
}

/// A cluster id: 1 to 63 lower-case letters, digits and '-', not starting with '-'.
pub fn is_valid_id(id: &str) -> bool {
    (1..=63).contains(&id.len())
        && !id.starts_with('-')
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

pub fn check_capacity(capacity: i64) -> Result<i32, ValidationError> {
    i32::try_from(capacity)
        .ok()
        .filter(|c| (0..=MAX_CAPACITY).contains(c))
        .ok_or_else(|| invalid("capacity", format!("must be 0 to {MAX_CAPACITY}")))
}

impl NewCluster {
    /// The field-level rules (no I/O).
    pub fn validate(&self) -> Result<(), ValidationError> {
        if !is_valid_id(&self.id) {
            return Err(invalid(
                "id",
                "must be 1 to 63 lower-case letters, digits and '-', not starting with '-'",
            ));
        }
        if self.region.trim().is_empty() {
            return Err(invalid("region", "must not be empty"));
        }
        if self
            .host
            .as_deref()
            .is_some_and(|h| h.contains(['/', ' ', '@']))
        {
            return Err(invalid("host", "must be a host name or IP address"));
        }
        if self.port.is_some_and(|p| !(1..=65535).contains(&p)) {
            return Err(invalid("port", "must be 1 to 65535"));
        }
        if self.admin_secret_arn.trim().is_empty() {
            return Err(invalid(
                "admin_secret_arn",
                "must name a Secrets Manager secret",
            ));
        }
        check_capacity(self.capacity)?;
        if let Some(mode) = &self.tls_mode {
            if TlsMode::parse(mode).is_none() {
                return Err(invalid(
                    "tls_mode",
                    "must be one of disable, prefer, require, verify-full",
                ));
            }
        }
        Ok(())
    }
}

/// Why a cluster could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("{}: {}", .0.field, .0.rule)]
    Invalid(ValidationError),
    /// The credentials were not proven: the secret, the connection or the
    /// privileges (`field` says which, the detail never holds the password).
    #[error("{detail}")]
    Refused { field: &'static str, detail: String },
    #[error("cluster {0} is already registered")]
    Exists(String),
    #[error(transparent)]
    Unavailable(#[from] StageError),
}

/// Where a cluster whose credentials were proven is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub host: String,
    pub port: u16,
    pub tls_mode: TlsMode,
}

/// Proves a cluster's admin credentials: reads the secret, connects once and
/// checks the user may create databases and roles.
pub async fn verify(
    secrets: &dyn SecretStore,
    root_cert: Option<&str>,
    new: &NewCluster,
) -> Result<Verified, RegisterError> {
    new.validate().map_err(RegisterError::Invalid)?;
    let id = &new.id;
    let secret = secrets
        .get(&new.admin_secret_arn)
        .await
        .map_err(|e| {
            refused(
                "admin_secret_arn",
                format!("cluster {id}: reading its admin secret: {e}"),
            )
        })?
        .ok_or_else(|| {
            refused(
                "admin_secret_arn",
                format!(
                    "cluster {id}: admin secret {} not found",
                    new.admin_secret_arn
                ),
            )
        })?;
    let admin = AdminCredentials::parse(&secret)
        .map_err(|e| refused("admin_secret_arn", format!("cluster {id}: {e}")))?;
    let host = new
        .host
        .clone()
        .filter(|h| !h.trim().is_empty())
        .or(admin.host.clone())
        .ok_or_else(|| {
            refused(
                "host",
                format!("cluster {id}: no host given and the admin secret names none"),
            )
        })?;
    let port = new
        .port
        .and_then(|p| u16::try_from(p).ok())
        .or(admin.port)
        .unwrap_or(5432);
    let tls_mode = new
        .tls_mode
        .as_deref()
        .and_then(TlsMode::parse)
        .unwrap_or(TlsMode::Prefer);
    let tls = crate::tls::connector(tls_mode, root_cert).map_err(|e| refused("tls_mode", e))?;
    let client = crate::db::connect(&DbLogin {
        ssl_mode: tls_mode.ssl_mode(),
        tls: &tls,
        host: &host,
        port,
        dbname: admin.dbname.as_deref().unwrap_or("postgres"),
        user: &admin.username,
        password: &admin.password,
    })
    .await
    .map_err(|e| {
        refused(
            "host",
            format!("cluster {id} ({host}:{port}) unreachable: {e}"),
        )
    })?;
    let row = client
        .query_one(
            "SELECT rolsuper OR (rolcreatedb AND rolcreaterole) FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .map_err(|e| refused("admin_secret_arn", format!("cluster {id}: checking privileges: {e}")))?;
    if !row.get::<_, bool>(0) {
        return Err(refused(
            "admin_secret_arn",
            format!(
                "cluster {id}: user {} lacks CREATEDB or CREATEROLE",
                admin.username
            ),
        ));
    }
    Ok(Verified {
        host,
        port,
        tls_mode,
    })
}

/// The registration's region must be a known one.
pub async fn check_region(
    db: &tokio_postgres::Client,
    new: &NewCluster,
) -> Result<(), RegisterError> {
    let known = db
        .query_opt(
            "SELECT 1 FROM control_plane.regions WHERE code = $1",
            &[&new.region],
        )
        .await
        .map_err(StageError::from)?;
    match known {
        Some(_) => Ok(()),
        None => Err(RegisterError::Invalid(invalid(
            "region",
            format!("unknown region '{}'", new.region),
        ))),
    }
}

/// Stores a cluster whose credentials `verify` proved. An id already
/// registered is refused (`Exists`) and left as it is.
pub async fn insert(
    db: &tokio_postgres::Client,
    new: &NewCluster,
    verified: &Verified,
) -> Result<Cluster, RegisterError> {
    let capacity = check_capacity(new.capacity).map_err(RegisterError::Invalid)?;
    let row = db
        .query_opt(
            &format!(
                "INSERT INTO control_plane.clusters
                     (id, region, host, port, admin_secret_arn, tls_mode, capacity, verified_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, now())
                 ON CONFLICT (id) DO NOTHING
                 RETURNING {CLUSTER_COLUMNS}"
            ),
            &[
                &new.id,
                &new.region,
                &verified.host,
                &i32::from(verified.port),
                &new.admin_secret_arn,
                &tls_mode_name(verified.tls_mode),
                &capacity,
            ],
        )
        .await
        .map_err(StageError::from)?;
    match row {
        Some(row) => Ok(cluster_from_row(&row)?),
        None => Err(RegisterError::Exists(new.id.clone())),
    }
}

/// Registers each cluster of `REGISTER_CLUSTERS` (a JSON array of
/// registrations) not registered yet: the deploy's first cluster, the local
/// stack's clusters. Returns the ids registered now.
pub async fn register_listed(
    db: &tokio_postgres::Client,
    secrets: &dyn SecretStore,
    root_cert: Option<&str>,
    listed: &str,
) -> Result<Vec<String>, RegisterError> {
    if listed.trim().is_empty() {
        return Ok(Vec::new());
    }
    let clusters: Vec<NewCluster> = serde_json::from_str(listed).map_err(|e| {
        refused(
            "REGISTER_CLUSTERS",
            format!("REGISTER_CLUSTERS is not a list of clusters: {e}"),
        )
    })?;
    let mut registered = Vec::new();
    for new in &clusters {
        new.validate().map_err(RegisterError::Invalid)?;
        if get(db, &new.id).await?.is_some() {
            continue;
        }
        check_region(db, new).await?;
        let verified = verify(secrets, root_cert, new).await?;
        match insert(db, new, &verified).await {
            Ok(cluster) => registered.push(cluster.id),
            Err(RegisterError::Exists(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(registered)
}

fn tls_mode_name(mode: TlsMode) -> &'static str {
    match mode {
        TlsMode::Disable => "disable",
        TlsMode::Prefer => "prefer",
        TlsMode::Require => "require",
        TlsMode::VerifyFull => "verify-full",
    }
}

pub async fn get(db: &tokio_postgres::Client, id: &str) -> Result<Option<Cluster>, StageError> {
    let row = db
        .query_opt(
            &format!("SELECT {CLUSTER_COLUMNS} FROM control_plane.clusters WHERE id = $1"),
            &[&id],
        )
        .await?;
    row.as_ref().map(cluster_from_row).transpose()
}

pub async fn list(db: &tokio_postgres::Client) -> Result<Vec<Cluster>, StageError> {
    db.query(
        &format!("SELECT {CLUSTER_COLUMNS} FROM control_plane.clusters ORDER BY region, id"),
        &[],
    )
    .await?
    .iter()
    .map(cluster_from_row)
    .collect()
}

/// What `PATCH /admin/clusters/{id}` may change.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterChange {
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "lenient_i64")]
    pub capacity: Option<i64>,
}

fn lenient_i64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    lenient_i64_required(d).map(Some)
}

impl ClusterChange {
    pub fn validate(&self) -> Result<(Option<ClusterStatus>, Option<i32>), ValidationError> {
        if self.status.is_none() && self.capacity.is_none() {
            return Err(invalid("body", "must change status or capacity"));
        }
        let status = self
            .status
            .as_deref()
            .map(|s| {
                s.parse::<ClusterStatus>()
                    .map_err(|_| invalid("status", "must be one of active, draining, offline"))
            })
            .transpose()?;
        let capacity = self.capacity.map(check_capacity).transpose()?;
        Ok((status, capacity))
    }
}

/// Changes a cluster's status or capacity; None when it does not exist.
/// A capacity below `placed` is allowed: the cluster takes no new project.
pub async fn change(
    db: &tokio_postgres::Client,
    id: &str,
    status: Option<ClusterStatus>,
    capacity: Option<i32>,
) -> Result<Option<Cluster>, StageError> {
    let row = db
        .query_opt(
            &format!(
                "UPDATE control_plane.clusters
                    SET status = coalesce($2, status), capacity = coalesce($3, capacity),
                        updated_at = now()
                  WHERE id = $1
                 RETURNING {CLUSTER_COLUMNS}"
            ),
            &[&id, &status.map(ClusterStatus::as_str), &capacity],
        )
        .await?;
    row.as_ref().map(cluster_from_row).transpose()
}

/// Reserves a slot and stores the cluster on the project, in one statement:
/// the active cluster of the region with the most free capacity, ties broken
/// by id. The slot is taken only if, once the row is locked, the cluster
/// still has room and still has the most room (a concurrent placement that
/// got there first makes this one try again with fresh figures), so two
/// workers never both take a last slot and a burst spreads evenly. A project
/// already placed keeps its cluster.
pub async fn place(
    db: &tokio_postgres::Client,
    project_id: Uuid,
    region: &str,
) -> Result<String, StageError> {
    const ATTEMPTS: usize = 32;
    for _ in 0..ATTEMPTS {
        let row = db
            .query_one(
                "WITH pick AS (
                     SELECT id FROM control_plane.clusters
                      WHERE region = $2 AND status = 'active' AND placed < capacity
                      ORDER BY capacity - placed DESC, id
                      LIMIT 1),
                 slot AS (
                     UPDATE control_plane.clusters c
                        SET placed = c.placed + 1, updated_at = now()
                      WHERE c.id = (SELECT id FROM pick)
                        AND c.status = 'active' AND c.placed < c.capacity
                        AND NOT EXISTS (
                            SELECT 1 FROM control_plane.clusters o
                             WHERE o.region = c.region AND o.status = 'active' AND o.id <> c.id
                               AND (o.capacity - o.placed > c.capacity - c.placed
                                    OR (o.capacity - o.placed = c.capacity - c.placed AND o.id < c.id)))
                        AND EXISTS (SELECT 1 FROM control_plane.projects
                                     WHERE id = $1 AND cluster_id IS NULL)
                     RETURNING c.id),
                 placed AS (
                     UPDATE control_plane.projects p SET cluster_id = slot.id, updated_at = now()
                       FROM slot
                      WHERE p.id = $1 AND p.cluster_id IS NULL
                     RETURNING p.cluster_id)
                 SELECT (SELECT id FROM pick),
                        (SELECT cluster_id FROM placed),
                        (SELECT cluster_id FROM control_plane.projects WHERE id = $1)",
                &[&project_id, &region],
            )
            .await?;
        let (candidate, placed, existing): (Option<String>, Option<String>, Option<String>) =
            (row.get(0), row.get(1), row.get(2));
        if let Some(cluster) = placed.or(existing) {
            return Ok(cluster);
        }
        if candidate.is_none() {
            return Err(StageError::permanent(format!(
                "no active cluster with capacity in {region}"
            )));
        }
        // Another placement took the slot first: look again.
    }
    Err(StageError::retryable(format!(
        "placement in {region} lost {ATTEMPTS} races in a row"
    )))
}

/// A cluster's admin pool once built, with the registration it was built for.
type PoolCell = OnceCell<(ClusterRef, Pool)>;

/// One admin pool per cluster, built on first use with the credentials read
/// once from the cluster's secret (per function instance). A pool serves one
/// connection per message in flight, like the control-plane pool, so taking
/// one never waits for another message to give one back.
pub struct AdminPools {
    secrets: Arc<dyn SecretStore>,
    root_cert: Option<String>,
    size: usize,
    pools: Mutex<HashMap<String, Arc<PoolCell>>>,
    /// One TLS connector per mode, built once per cold start.
    connectors: Mutex<HashMap<TlsMode, crate::tls::MakeRustlsConnect>>,
}

impl AdminPools {
    pub fn new(
        secrets: Arc<dyn SecretStore>,
        root_cert: Option<String>,
        size: usize,
    ) -> AdminPools {
        AdminPools {
            secrets,
            root_cert,
            size,
            pools: Mutex::new(HashMap::new()),
            connectors: Mutex::new(HashMap::new()),
        }
    }

    /// The TLS connector for a cluster's mode (tenant and admin connections).
    pub fn connector(&self, mode: TlsMode) -> Result<crate::tls::MakeRustlsConnect, StageError> {
        let mut connectors = self.connectors.lock().expect("connectors lock");
        if let Some(tls) = connectors.get(&mode) {
            return Ok(tls.clone());
        }
        let tls = crate::tls::connector(mode, self.root_cert.as_deref())
            .map_err(StageError::permanent)?;
        connectors.insert(mode, tls.clone());
        Ok(tls)
    }

    /// An admin connection to `cluster`. An offline or unreachable cluster is
    /// a retryable error naming it and the cause.
    pub async fn connection(&self, cluster: &ClusterRef) -> Result<Object, StageError> {
        cluster.ensure_online()?;
        let cell = {
            let mut pools = self.pools.lock().expect("admin pools lock");
            let cell = pools.entry(cluster.id.clone()).or_default();
            // Re-registered elsewhere (another host, port or secret): start over.
            if cell.get().is_some_and(|(known, _)| {
                (
                    &known.host,
                    known.port,
                    &known.admin_secret_arn,
                    known.tls_mode,
                ) != (
                    &cluster.host,
                    cluster.port,
                    &cluster.admin_secret_arn,
                    cluster.tls_mode,
                )
            }) {
                *cell = Arc::default();
            }
            cell.clone()
        };
        let (_, pool) = cell
            .get_or_try_init(|| async {
                Ok::<_, StageError>((cluster.clone(), self.build(cluster).await?))
            })
            .await?;
        pool.get().await.map_err(|e| cluster.unreachable(&e))
    }

    async fn build(&self, cluster: &ClusterRef) -> Result<Pool, StageError> {
        let secret = self
            .secrets
            .get(&cluster.admin_secret_arn)
            .await
            .map_err(|e| e.context(format!("cluster {}: admin secret", cluster.id)))?
            .ok_or_else(|| {
                StageError::retryable(format!(
                    "cluster {}: admin secret {} not found",
                    cluster.id, cluster.admin_secret_arn
                ))
            })?;
        let admin = AdminCredentials::parse(&secret)
            .map_err(|e| e.context(format!("cluster {}", cluster.id)))?;
        let tls = self.connector(cluster.tls_mode)?;
        let mut config = tokio_postgres::Config::new();
        config
            .host(&cluster.host)
            .port(cluster.port)
            .user(&admin.username)
            .password(secrecy::ExposeSecret::expose_secret(&admin.password))
            .dbname(admin.dbname.as_deref().unwrap_or("postgres"))
            .ssl_mode(cluster.tls_mode.ssl_mode());
        Ok(crate::db::pool(config, tls, self.size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(json: &str) -> Result<NewCluster, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn registrations_accept_strings_where_cloudformation_writes_them() {
        let c = new(r#"{"id":"us-east-1-1","region":"us-east-1","admin_secret_arn":"arn","capacity":"500","host":"","port":""}"#).unwrap();
        assert_eq!((c.capacity, c.port), (500, None));
        assert!(c.validate().is_ok());
        let c = new(r#"{"id":"a","region":"r","admin_secret_arn":"arn","capacity":5,"port":6432}"#)
            .unwrap();
        assert_eq!(c.port, Some(6432));
    }

    #[test]
    fn each_bad_field_is_named() {
        let base = |field: &str, value: &str| {
            let mut v: serde_json::Value = serde_json::from_str(
                r#"{"id":"c1","region":"us-east-1","admin_secret_arn":"arn","capacity":10}"#,
            )
            .unwrap();
            v[field] = serde_json::from_str(value).unwrap();
            new(&v.to_string()).unwrap().validate().unwrap_err().field
        };
        assert_eq!(base("id", r#""Bad_Id""#), "id");
        assert_eq!(base("id", r#""-x""#), "id");
        assert_eq!(base("capacity", "-1"), "capacity");
        assert_eq!(base("capacity", "2000000"), "capacity");
        assert_eq!(base("port", "70000"), "port");
        assert_eq!(base("tls_mode", r#""sometimes""#), "tls_mode");
        assert_eq!(base("admin_secret_arn", r#""""#), "admin_secret_arn");
    }

    #[test]
    fn a_change_needs_something_valid_to_change() {
        assert_eq!(
            ClusterChange::default().validate().unwrap_err().field,
            "body"
        );
        let bad = ClusterChange {
            status: Some("retired".into()),
            capacity: None,
        };
        assert_eq!(bad.validate().unwrap_err().field, "status");
        let ok = ClusterChange {
            status: Some("draining".into()),
            capacity: Some(3),
        };
        assert_eq!(
            ok.validate().unwrap(),
            (Some(ClusterStatus::Draining), Some(3))
        );
    }

    #[test]
    fn an_offline_cluster_is_a_retryable_error_naming_it() {
        let c = ClusterRef {
            id: "eu-1".into(),
            host: "h".into(),
            port: 5432,
            tls_mode: TlsMode::Prefer,
            admin_secret_arn: "arn".into(),
            status: ClusterStatus::Offline,
        };
        let e = c.ensure_online().unwrap_err();
        assert!(e.is_retryable());
        assert_eq!(e.message, "cluster eu-1 is offline");
    }
}
