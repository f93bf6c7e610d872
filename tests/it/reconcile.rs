//! The reconciler against the real stack: hand-made orphans on the clusters
//! and in Secrets Manager, a database dropped behind the control plane's
//! back, a role whose LOGIN drifted; then the automatic purge of the orphans.

use pipeline_tests::api::assert_response_documented;
use pipeline_tests::*;
use provisioning::domain::TenantNames;
use provisioning::reconcile::{Finding, Reconciler, ReconciliationReport};
use std::time::Duration;
use uuid::Uuid;

fn has(list: &[Finding], kind: &str, project_id: Uuid, reason: &str) -> bool {
    list.iter()
        .any(|f| f.kind == kind && f.project_id == project_id && f.reason == reason)
}

async fn reconcile(env: &TestEnv, grace: Duration) -> ReconciliationReport {
    let mut pipeline = env.pipeline.clone();
    let mut settings = (*pipeline.settings).clone();
    settings.orphan_grace = grace;
    pipeline.settings = std::sync::Arc::new(settings);
    Reconciler::new(pipeline)
        .reconcile()
        .await
        .expect("a reconciliation pass")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reconciler_finds_orphans_missing_objects_and_drift_and_purges_only_the_orphans() {
    let env = TestEnv::new().await;
    let deployment = env.settings.secret_prefix.clone();
    // A ready project whose database is dropped behind the control plane's back.
    let robbed = env.create(&project("robbed")).await.project_id;
    assert_ready(&env.settle(robbed).await);
    let robbed_names = TenantNames::for_project(robbed);
    env.project_admin(robbed)
        .await
        .batch_execute(&format!(
            "DROP DATABASE {} WITH (FORCE)",
            robbed_names.database
        ))
        .await
        .unwrap();
    // A suspended project whose role was given LOGIN back by hand.
    let drifted = env.create(&project("drifted")).await.project_id;
    assert_ready(&env.settle(drifted).await);
    assert_eq!(env.operate(drifted, "suspend").await.status, 202);
    assert_eq!(env.settle_run(drifted).await.status, "suspended");
    let drifted_role = TenantNames::for_project(drifted).role;
    env.project_admin(drifted)
        .await
        .batch_execute(&format!("ALTER ROLE {drifted_role} LOGIN"))
        .await
        .unwrap();
    // Orphans of projects this control plane never had: a database on the
    // second cluster, a role on the first, a secret.
    let (ghost_db, ghost_role, ghost_secret) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let clusters = stack_clusters();
    let marker = |id| TenantNames::ownership_marker(id, &deployment);
    let on_second = admin_at(clusters[1].1, "postgres").await;
    let db_name = TenantNames::for_project(ghost_db).database;
    on_second
        .batch_execute(&format!("CREATE DATABASE {db_name}"))
        .await
        .unwrap();
    on_second
        .batch_execute(&format!(
            "COMMENT ON DATABASE {db_name} IS '{}'",
            marker(ghost_db)
        ))
        .await
        .unwrap();
    let on_first = admin_at(clusters[0].1, "postgres").await;
    let role_name = TenantNames::for_project(ghost_role).role;
    on_first
        .batch_execute(&format!(
            "CREATE ROLE {role_name} NOLOGIN; COMMENT ON ROLE {role_name} IS '{}'",
            marker(ghost_role)
        ))
        .await
        .unwrap();
    let secret_name = env.secret_name(ghost_secret, "database");
    env.secrets
        .create_secret()
        .name(&secret_name)
        .secret_string("{}")
        .send()
        .await
        .unwrap();

    // A pass within the grace period reports everything and touches nothing.
    let report = reconcile(&env, Duration::from_secs(3600)).await;
    assert_eq!(report.clusters_checked.len(), clusters.len(), "{report:#?}");
    assert!(
        has(&report.orphan_list, "database", ghost_db, "never existed"),
        "{report:#?}"
    );
    assert!(
        has(&report.orphan_list, "role", ghost_role, "never existed"),
        "{report:#?}"
    );
    assert!(
        has(&report.orphan_list, "secret", ghost_secret, "never existed"),
        "{report:#?}"
    );
    assert_eq!(
        (
            report.orphans.databases,
            report.orphans.roles,
            report.orphans.secrets
        ),
        (1, 1, 1),
        "only this deployment's objects count: {report:#?}"
    );
    assert!(
        has(&report.missing_list, "database", robbed, "missing"),
        "{report:#?}"
    );
    assert_eq!(report.missing.databases, 1);
    assert!(
        has(
            &report.drift_list,
            "role",
            drifted,
            "can log in while suspended"
        ),
        "{report:#?}"
    );
    assert_eq!(report.drift, 1);
    assert_eq!(report.purges_started, 0);
    // The same report, from the API.
    let answer = env.call("GET", "/admin/reconciliation", &[], b"").await;
    assert_eq!(answer.status, 200);
    assert_response_documented("/admin/reconciliation", "get", &answer);
    assert_eq!(answer.body.unwrap()["drift"], 1);

    // Past the grace period the orphans are purged, each by a purge run of a
    // tombstone project; the missing database and the drift are left alone.
    let report = reconcile(&env, Duration::ZERO).await;
    assert_eq!(report.purges_started, 3, "{report:#?}");
    for ghost in [ghost_db, ghost_role, ghost_secret] {
        let report = env.settle_run(ghost).await;
        assert_eq!(report.status, "purged");
        assert_eq!(report.run.as_ref().unwrap().kind, "purge");
        assert_eq!(
            report.run.as_ref().unwrap().status,
            "succeeded",
            "{report:#?}"
        );
    }
    env.drain(&env.runner, Duration::from_secs(30)).await;
    let gone = |sql: &'static str, name: String, port: u16| async move {
        admin_at(port, "postgres")
            .await
            .query_one(sql, &[&name])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    assert_eq!(
        gone(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            db_name,
            clusters[1].1
        )
        .await,
        0
    );
    assert_eq!(
        gone(
            "SELECT count(*) FROM pg_roles WHERE rolname = $1",
            role_name,
            clusters[0].1
        )
        .await,
        0
    );
    assert!(
        env.secret(&secret_name).await.is_none(),
        "the orphan secret is gone"
    );

    let report = reconcile(&env, Duration::ZERO).await;
    assert_eq!(
        (
            report.orphans.databases,
            report.orphans.roles,
            report.orphans.secrets
        ),
        (0, 0, 0),
        "{report:#?}"
    );
    assert_eq!(
        (
            report.missing.databases,
            report.drift,
            report.purges_started
        ),
        (1, 1, 0)
    );
    // Untouched: the drifted role can still log in, the robbed project is still ready.
    let can_login: bool = env
        .project_admin(drifted)
        .await
        .query_one(
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1",
            &[&drifted_role],
        )
        .await
        .unwrap()
        .get(0);
    assert!(can_login);
    assert_eq!(env.report(robbed).await.status, "ready");
    let audit = env
        .count(
            "SELECT count(*) FROM control_plane.audit_log WHERE project_id = $1 AND action = 'orphan.adopted'",
            ghost_db,
        )
        .await;
    assert_eq!(audit, 1);
}
