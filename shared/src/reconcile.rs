//! The reconciler: compares the control plane with what exists and reports
//! what does not match. Run on its own schedule (`functions/reconciler`).
//!
//! It looks at the tenant databases and roles on every registered cluster that
//! is not offline (recognised by their ownership comment,
//! `TenantNames::ownership_marker`), and at the secrets under the secret
//! prefix (`{prefix}/{project}/{kind}`), and finds:
//! - **orphans**: an object whose project is purged or never existed, or that
//!   sits on another cluster than its project's;
//! - **missing**: a ready or suspended project lacking its database, role or
//!   one of its two secrets;
//! - **drift**: a role whose `LOGIN` does not match its project's status (a
//!   suspended or deleted project's role that can log in, a ready one's that
//!   cannot), for projects with no run moving.
//!
//! Orphans whose project is purged or never existed and that have been seen
//! for longer than the grace period are purged automatically (unless switched
//! off) by a purge run, the one way anything is removed: a project that never
//! existed first gets a `purged` tombstone row on the cluster it was found on,
//! so the purge has a project, a run and an audit trail. Everything else is
//! reported and never touched. Service registrations are not compared: no
//! registration endpoint documents a lookup (the report says so).
//!
//! Each pass stores its report (`GET /admin/reconciliation`), logs it, and
//! prints its counts as one CloudWatch embedded-metric-format line.

use crate::cluster;
use crate::domain::TenantNames;
use crate::error::StageError;
use crate::lifecycle::{self, LifecycleError, Operation};
use crate::pipeline::Pipeline;
use crate::Settings;
use lambda_runtime::LambdaEvent;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use uuid::Uuid;

/// Findings listed per category, at most.
const LISTED: usize = 100;

/// One object that does not match the control plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
pub struct Finding {
    /// `database`, `role` or `secret`.
    pub kind: String,
    /// The cluster of a database or role; null for a secret.
    pub cluster: Option<String>,
    pub name: String,
    pub project_id: Uuid,
    /// Why it is listed (`purged`, `never existed`, `wrong cluster`, `missing`,
    /// `can log in while suspended`, ...).
    pub reason: String,
}

/// Counts per kind of object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub databases: usize,
    pub roles: usize,
    pub secrets: usize,
}

impl Counts {
    fn of(findings: &[Finding]) -> Counts {
        let n = |kind: &str| findings.iter().filter(|f| f.kind == kind).count();
        Counts {
            databases: n("database"),
            roles: n("role"),
            secrets: n("secret"),
        }
    }
}

/// What one pass found and did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReconciliationReport {
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub duration_ms: u64,
    pub clusters_checked: Vec<String>,
    /// Clusters not looked at (offline, or unreachable: the cause).
    pub clusters_skipped: BTreeMap<String, String>,
    pub orphans: Counts,
    pub missing: Counts,
    pub drift: usize,
    /// Orphans past the grace period whose purge this pass started.
    pub purges_started: usize,
    /// Service registrations are not compared (no endpoint offers a lookup).
    pub services_checked: bool,
    /// The findings themselves (at most 100 of each category).
    pub orphan_list: Vec<Finding>,
    pub missing_list: Vec<Finding>,
    pub drift_list: Vec<Finding>,
}

/// What the control plane says about a project.
#[derive(Debug, Clone)]
struct Known {
    status: String,
    cluster_id: Option<String>,
    run_moving: bool,
}

/// An object found on a cluster.
#[derive(Debug, Clone)]
struct Observed {
    kind: &'static str,
    cluster: String,
    name: String,
    project_id: Uuid,
    can_login: bool,
}

#[derive(Clone)]
pub struct Reconciler {
    pipeline: Pipeline,
}

impl Reconciler {
    pub async fn from_env() -> Result<Reconciler, lambda_runtime::Error> {
        let settings = Settings::from_env()?;
        Ok(Reconciler::new(
            Pipeline::without_service_calls(settings).await?,
        ))
    }

    pub fn new(pipeline: Pipeline) -> Reconciler {
        Reconciler { pipeline }
    }

    /// The Lambda handler: one pass; the schedule's event carries nothing needed.
    pub async fn handle(
        &self,
        _event: LambdaEvent<serde_json::Value>,
    ) -> Result<ReconciliationReport, lambda_runtime::Error> {
        Ok(self.reconcile().await?)
    }

    /// One pass. Each database read takes a pooled connection and gives it
    /// back before the next (no connection is held while another is awaited).
    pub async fn reconcile(&self) -> Result<ReconciliationReport, StageError> {
        let started = std::time::Instant::now();
        let mut report = ReconciliationReport {
            started_at: chrono::Utc::now(),
            ..Default::default()
        };
        let clusters = {
            let db = self.pipeline.db.get().await?;
            cluster::list(&db).await?
        };
        let mut observed = Vec::new();
        for c in &clusters {
            match self.observe_cluster(c).await {
                Ok(found) => {
                    observed.extend(found);
                    report.clusters_checked.push(c.id.clone());
                }
                Err(why) => {
                    report.clusters_skipped.insert(c.id.clone(), why);
                }
            }
        }
        let prefix = format!("{}/", self.pipeline.settings.secret_prefix);
        let secrets: Vec<(Uuid, String)> = self
            .pipeline
            .secrets
            .list(&prefix)
            .await?
            .into_iter()
            .filter_map(|name| {
                let (project, kind) = name.strip_prefix(&prefix)?.split_once('/')?;
                let known_kind = [
                    crate::secrets::DATABASE_SECRET,
                    crate::secrets::API_KEYS_SECRET,
                ];
                known_kind
                    .contains(&kind)
                    .then(|| Some((project.parse().ok()?, name.clone())))?
            })
            .collect();

        let mentioned: Vec<Uuid> = observed
            .iter()
            .map(|o| o.project_id)
            .chain(secrets.iter().map(|(id, _)| *id))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let (known, served) = {
            let db = self.pipeline.db.get().await?;
            known_projects(&db, &mentioned).await?
        };

        let mut orphans = Vec::new();
        let mut drift = Vec::new();
        for o in &observed {
            let finding = |reason: &str| Finding {
                kind: o.kind.to_owned(),
                cluster: Some(o.cluster.clone()),
                name: o.name.clone(),
                project_id: o.project_id,
                reason: reason.to_owned(),
            };
            match known.get(&o.project_id) {
                None => orphans.push(finding("never existed")),
                Some(p) if p.status == "purged" => orphans.push(finding("purged")),
                Some(p) if p.cluster_id.as_deref() != Some(o.cluster.as_str()) => {
                    orphans.push(finding("wrong cluster"))
                }
                Some(p) if o.kind == "role" && !p.run_moving => {
                    let should_login = p.status == "ready";
                    let off = matches!(p.status.as_str(), "suspended" | "deleted");
                    if o.can_login && off {
                        drift.push(finding(&format!("can log in while {}", p.status)));
                    } else if !o.can_login && should_login {
                        drift.push(finding("cannot log in while ready"));
                    }
                }
                Some(_) => {}
            }
        }
        for (project_id, name) in &secrets {
            let reason = match known.get(project_id) {
                None => "never existed",
                Some(p) if p.status == "purged" => "purged",
                Some(_) => continue,
            };
            orphans.push(Finding {
                kind: "secret".into(),
                cluster: None,
                name: name.clone(),
                project_id: *project_id,
                reason: reason.into(),
            });
        }

        // Missing: every ready or suspended project on a cluster that was checked.
        let mut missing = Vec::new();
        let present: BTreeSet<(&str, &str)> = observed
            .iter()
            .map(|o| (o.kind, o.name.as_str()))
            .chain(secrets.iter().map(|(_, n)| ("secret", n.as_str())))
            .collect();
        for (project_id, cluster_id) in &served {
            if !report.clusters_checked.contains(cluster_id) {
                continue;
            }
            let names = TenantNames::for_project(*project_id);
            let expected = [
                ("database", names.database.clone(), Some(cluster_id.clone())),
                ("role", names.role.clone(), Some(cluster_id.clone())),
                (
                    "secret",
                    crate::secrets::secret_name(
                        &self.pipeline.settings,
                        *project_id,
                        crate::secrets::DATABASE_SECRET,
                    ),
                    None,
                ),
                (
                    "secret",
                    crate::secrets::secret_name(
                        &self.pipeline.settings,
                        *project_id,
                        crate::secrets::API_KEYS_SECRET,
                    ),
                    None,
                ),
            ];
            for (kind, name, cluster) in expected {
                if !present.contains(&(kind, name.as_str())) {
                    missing.push(Finding {
                        kind: kind.into(),
                        cluster,
                        name,
                        project_id: *project_id,
                        reason: "missing".into(),
                    });
                }
            }
        }

        report.purges_started = self.track_and_purge(&orphans, &clusters).await?;
        orphans.sort();
        missing.sort();
        drift.sort();
        report.orphans = Counts::of(&orphans);
        report.missing = Counts::of(&missing);
        report.drift = drift.len();
        report.orphan_list = orphans.into_iter().take(LISTED).collect();
        report.missing_list = missing.into_iter().take(LISTED).collect();
        report.drift_list = drift.into_iter().take(LISTED).collect();
        report.duration_ms = started.elapsed().as_millis() as u64;
        {
            let db = self.pipeline.db.get().await?;
            db.execute(
                "WITH old AS (DELETE FROM control_plane.reconciliation_reports
                               WHERE created_at < now() - interval '30 days')
                 INSERT INTO control_plane.reconciliation_reports (report) VALUES ($1)",
                &[&serde_json::to_value(&report).expect("a report serialises")],
            )
            .await?;
        }
        tracing::info!(
            orphan_databases = report.orphans.databases,
            orphan_roles = report.orphans.roles,
            orphan_secrets = report.orphans.secrets,
            missing_databases = report.missing.databases,
            missing_roles = report.missing.roles,
            missing_secrets = report.missing.secrets,
            drift = report.drift,
            purges_started = report.purges_started,
            clusters_checked = report.clusters_checked.len(),
            clusters_skipped = report.clusters_skipped.len(),
            "reconciliation"
        );
        crate::metrics::emit(&emf_document(&report));
        Ok(report)
    }

    /// Tenant databases and roles on one cluster, by their ownership comment.
    async fn observe_cluster(&self, c: &cluster::Cluster) -> Result<Vec<Observed>, String> {
        if c.status == crate::status::ClusterStatus::Offline {
            return Err("offline".to_owned());
        }
        let reference = c.to_ref().map_err(|e| e.to_string())?;
        let admin = self
            .pipeline
            .clusters
            .connection(&reference)
            .await
            .map_err(|e| e.to_string())?;
        let rows = admin
            .query(
                "SELECT 'database', datname::text, shobj_description(oid, 'pg_database'), false
                   FROM pg_database WHERE datname LIKE 'tenant\\_%'
                 UNION ALL
                 SELECT 'role', rolname::text, shobj_description(oid, 'pg_authid'), rolcanlogin
                   FROM pg_roles WHERE rolname LIKE 'tenant\\_%'",
                &[],
            )
            .await
            .map_err(|e| reference.blame(e.into()).to_string())?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let comment: Option<String> = r.get(2);
                let project_id = TenantNames::owner_in_marker(
                    comment.as_deref()?,
                    &self.pipeline.settings.secret_prefix,
                )?;
                let kind = if r.get::<_, &str>(0) == "database" {
                    "database"
                } else {
                    "role"
                };
                Some(Observed {
                    kind,
                    cluster: c.id.clone(),
                    name: r.get(1),
                    project_id,
                    can_login: r.get(3),
                })
            })
            .collect())
    }

    /// Records the orphans seen (first and last seen), forgets those gone,
    /// and starts a purge for each project with an orphan past the grace
    /// period whose project is purged or never existed.
    async fn track_and_purge(
        &self,
        orphans: &[Finding],
        clusters: &[cluster::Cluster],
    ) -> Result<usize, StageError> {
        let settings = &self.pipeline.settings;
        let kinds: Vec<&str> = orphans.iter().map(|o| o.kind.as_str()).collect();
        let on: Vec<&str> = orphans
            .iter()
            .map(|o| o.cluster.as_deref().unwrap_or(""))
            .collect();
        let names: Vec<&str> = orphans.iter().map(|o| o.name.as_str()).collect();
        let projects: Vec<Uuid> = orphans.iter().map(|o| o.project_id).collect();
        let reasons: Vec<&str> = orphans.iter().map(|o| o.reason.as_str()).collect();
        let due: Vec<(Uuid, String, Option<String>)> = {
            let db = self.pipeline.db.get().await?;
            db.query(
                "WITH seen AS (
                    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::uuid[], $5::text[])
                           AS t(kind, cluster_id, name, project_id, reason)),
                 gone AS (
                    DELETE FROM control_plane.orphans o
                     WHERE NOT EXISTS (SELECT 1 FROM seen s WHERE (s.kind, s.cluster_id, s.name)
                                                               = (o.kind, o.cluster_id, o.name))),
                 upserted AS (
                    INSERT INTO control_plane.orphans (kind, cluster_id, name, project_id, reason)
                    SELECT kind, cluster_id, name, project_id, reason FROM seen
                    ON CONFLICT (kind, cluster_id, name)
                    DO UPDATE SET last_seen = now(), reason = EXCLUDED.reason, project_id = EXCLUDED.project_id
                    RETURNING project_id, reason, cluster_id, first_seen)
                 SELECT project_id, min(reason), max(nullif(cluster_id, ''))
                   FROM upserted
                  WHERE reason IN ('purged', 'never existed')
                    AND first_seen <= now() - make_interval(secs => $6)
                  GROUP BY project_id",
                &[&kinds, &on, &names, &projects, &reasons, &settings.orphan_grace.as_secs_f64()],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
        };
        if !settings.auto_purge_orphans {
            return Ok(0);
        }
        let regions: HashMap<&str, &str> = clusters
            .iter()
            .map(|c| (c.id.as_str(), c.region.as_str()))
            .collect();
        let mut started = 0;
        for (project_id, reason, cluster_id) in due {
            if reason == "never existed" {
                let region = cluster_id
                    .as_deref()
                    .and_then(|c| regions.get(c).copied())
                    .unwrap_or("us-east-1");
                let db = self.pipeline.db.get().await?;
                adopt(&db, project_id, region, cluster_id.as_deref()).await?;
            }
            match lifecycle::start(
                &self.pipeline,
                project_id,
                Operation::PurgeLeftovers,
                None,
                "reconciler",
            )
            .await
            {
                Ok(_) => started += 1,
                Err(LifecycleError::Refused(why)) => {
                    tracing::info!(%project_id, why, "orphan purge not started")
                }
                Err(LifecycleError::NotFound) => {}
                Err(LifecycleError::Unavailable(e)) => return Err(e),
            }
        }
        Ok(started)
    }
}

/// Whether each project named exists (status, cluster, whether a run of it
/// is moving), and every ready or suspended project with its cluster.
async fn known_projects(
    db: &impl deadpool_postgres::GenericClient,
    mentioned: &[Uuid],
) -> Result<(HashMap<Uuid, Known>, Vec<(Uuid, String)>), StageError> {
    let rows = db
        .query(
            "SELECT p.id, p.status, p.cluster_id, coalesce(r.status = 'running', false),
                    p.status IN ('ready', 'suspended') AND p.cluster_id IS NOT NULL
               FROM control_plane.projects p
               LEFT JOIN control_plane.provisioning_runs r ON r.id = p.current_run_id
              WHERE p.id = ANY($1) OR p.status IN ('ready', 'suspended')",
            &[&mentioned],
        )
        .await?;
    let mut known = HashMap::new();
    let mut served = Vec::new();
    for r in &rows {
        let id: Uuid = r.get(0);
        let cluster_id: Option<String> = r.get(2);
        if r.get::<_, bool>(4) {
            if let Some(c) = &cluster_id {
                served.push((id, c.clone()));
            }
        }
        known.insert(
            id,
            Known {
                status: r.get(1),
                cluster_id,
                run_moving: r.get(3),
            },
        );
    }
    Ok((known, served))
}

/// A tombstone for objects of a project the control plane never knew: a
/// `purged` project on the cluster they were found on, so that a purge run can
/// remove them with the usual audit trail.
async fn adopt(
    db: &impl deadpool_postgres::GenericClient,
    project_id: Uuid,
    region: &str,
    cluster_id: Option<&str>,
) -> Result<(), StageError> {
    db.execute(
        "WITH p AS (
            INSERT INTO control_plane.projects
                   (id, name, region, services, api_key_count, api_key_prefix, status, cluster_id, purged_at)
            SELECT $1, $4, $2,
                   '{\"auth\": false, \"realtime\": false, \"storage\": false}', 0, 'orphan', 'purged', $3, now()
             WHERE EXISTS (SELECT 1 FROM control_plane.regions WHERE code = $2)
            ON CONFLICT (id) DO NOTHING
            RETURNING id)
         INSERT INTO control_plane.audit_log (project_id, action, actor, details)
         SELECT id, 'orphan.adopted', 'reconciler', jsonb_build_object('cluster', $3::text) FROM p",
        &[&project_id, &region, &cluster_id, &format!("orphan {project_id}")],
    )
    .await?;
    Ok(())
}

/// The report's counts as one CloudWatch embedded-metric-format document
/// (namespace `Provisioning`, no dimensions).
pub fn emf_document(report: &ReconciliationReport) -> serde_json::Value {
    use crate::metrics::Unit::Count;
    let count = |n: usize| n as f64;
    crate::metrics::document(
        &[&[]],
        &[],
        &[
            ("OrphanDatabases", Count, count(report.orphans.databases)),
            ("OrphanRoles", Count, count(report.orphans.roles)),
            ("OrphanSecrets", Count, count(report.orphans.secrets)),
            ("MissingDatabases", Count, count(report.missing.databases)),
            ("MissingRoles", Count, count(report.missing.roles)),
            ("MissingSecrets", Count, count(report.missing.secrets)),
            ("RoleDrift", Count, count(report.drift)),
            ("OrphanPurgesStarted", Count, count(report.purges_started)),
        ],
        &[("event", "reconciliation".into())],
    )
}

/// The latest report, if a pass has run.
pub async fn latest(
    db: &impl deadpool_postgres::GenericClient,
) -> Result<Option<ReconciliationReport>, StageError> {
    let Some(row) = db
        .query_opt(
            "SELECT report FROM control_plane.reconciliation_reports ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await?
    else {
        return Ok(None);
    };
    serde_json::from_value(row.get(0))
        .map(Some)
        .map_err(|e| StageError::permanent(format!("stored reconciliation report: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_emf_line_declares_every_count_it_carries() {
        let report = ReconciliationReport {
            orphans: Counts {
                databases: 1,
                roles: 2,
                secrets: 3,
            },
            drift: 4,
            ..Default::default()
        };
        let line = emf_document(&report);
        let declared = line["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap();
        assert_eq!(declared.len(), 8);
        for metric in declared {
            let name = metric["Name"].as_str().unwrap();
            assert!(line[name].is_number(), "{name} has no value");
        }
        assert_eq!(
            (line["OrphanRoles"].as_f64(), line["RoleDrift"].as_f64()),
            (Some(2.0), Some(4.0))
        );
    }
}
