//! The lifecycle after provisioning: suspend, resume, delete, restore and
//! purge, each a run of stage functions, on the real local stack.

use pipeline_tests::*;
use provisioning::api_keys::verify_key;
use provisioning::domain::{Service, Stage, StageMessage, TenantNames};
use provisioning::report::ProjectReport;
use std::time::Duration;
use uuid::Uuid;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const WINDOW_ZERO: (&str, &str) = ("RECOVERY_WINDOW_SECONDS", "0");

async fn env_with(extra: &[(&'static str, &str)]) -> TestEnv {
    TestEnv::with(EnvOptions {
        extra: extra.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        ..Default::default()
    })
    .await
}

async fn ready_project(env: &TestEnv, name: &str) -> Uuid {
    let created = env.create(&project(name)).await;
    assert_ready(&env.settle(created.project_id).await);
    created.project_id
}

/// Starts an operation through the API and runs it to its end.
async fn operate(env: &TestEnv, id: Uuid, operation: &str) -> ProjectReport {
    let answer = env.operate(id, operation).await;
    assert_eq!(answer.status, 202, "{operation}: {:?}", answer.body);
    env.settle_run(id).await
}

async fn delete(env: &TestEnv, id: Uuid, query: &str) -> ProjectReport {
    let answer = env.delete(id, query).await;
    assert_eq!(answer.status, 202, "delete{query}: {:?}", answer.body);
    env.settle_run(id).await
}

fn run_of(report: &ProjectReport) -> (String, String) {
    let run = report.run.as_ref().expect("a run");
    (run.kind.clone(), run.status.clone())
}

fn stages(report: &ProjectReport) -> Vec<(String, String)> {
    report
        .timeline
        .iter()
        .map(|s| (s.stage.clone(), s.status.clone()))
        .collect()
}

async fn key_verifies(env: &TestEnv, key: &str) -> bool {
    verify_key(&env.db().await, key).await.unwrap().is_some()
}

async fn audit_actions(env: &TestEnv, id: Uuid) -> Vec<String> {
    strings(
        &**env.db().await,
        &format!(
            "SELECT action FROM control_plane.audit_log WHERE project_id = '{id}' ORDER BY id"
        ),
    )
    .await
}

async fn placed(env: &TestEnv, cluster: &str) -> i32 {
    env.db()
        .await
        .query_one(
            "SELECT placed FROM control_plane.clusters WHERE id = $1",
            &[&cluster],
        )
        .await
        .unwrap()
        .get(0)
}

/// Nothing the project created is left: no database or role on any cluster,
/// no secret, no key, service or resource row. The project row, its runs and
/// its audit trail are kept.
async fn assert_nothing_left(env: &TestEnv, id: Uuid) {
    let names = TenantNames::for_project(id);
    for (cluster, databases, roles) in
        tenant_objects_per_cluster(&names.database, &names.role).await
    {
        assert_eq!(
            (databases, roles),
            (0, 0),
            "{cluster} still has the project's objects"
        );
    }
    let secrets: Vec<_> = env
        .secret_names()
        .await
        .into_iter()
        .filter(|n| n.contains(&id.to_string()))
        .collect();
    assert!(secrets.is_empty(), "secrets left: {secrets:?}");
    for table in ["api_keys", "project_services", "project_resources"] {
        let sql = format!("SELECT count(*) FROM control_plane.{table} WHERE project_id = $1");
        assert_eq!(env.count(&sql, id).await, 0, "{table} rows left");
    }
    let report = env.report(id).await;
    assert_eq!(report.status, "purged", "{report:#?}");
    assert!(report.purged_at.is_some());
    let runs = env
        .count(
            "SELECT count(*) FROM control_plane.provisioning_runs WHERE project_id = $1",
            id,
        )
        .await;
    assert!(runs >= 2, "the runs are kept");
    let audit = audit_actions(env, id).await;
    assert_eq!(
        audit.first().map(String::as_str),
        Some("project.created"),
        "{audit:?}"
    );
    assert!(
        audit
            .iter()
            .any(|a| a == "purge.succeeded" || a == "delete.succeeded"),
        "{audit:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspend_refuses_the_tenant_and_its_keys_and_resume_brings_them_back() {
    let services = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/auth"))
        .respond_with(ResponseTemplate::new(201))
        .mount(&services)
        .await;
    let env = env_with_service(Service::Auth, &services).await;
    let id = ready_project(&env, "suspend-me").await;
    for action in ["suspend", "resume"] {
        Mock::given(method("POST"))
            .and(path(format!("/auth/{id}/{action}")))
            .respond_with(ResponseTemplate::new(204))
            .expect(1)
            .mount(&services)
            .await;
    }
    let session = tenant_login(&env, id)
        .await
        .expect("a ready tenant logs in");
    session.simple_query("SELECT 1").await.unwrap();
    let key = plaintext_keys(&env, id).await.remove(0);
    assert!(key_verifies(&env, &key).await);

    let answer = env.operate(id, "suspend").await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let body = answer.body.unwrap();
    assert_eq!(
        (body["kind"].as_str(), body["status"].as_str()),
        (Some("suspend"), Some("suspended"))
    );
    let report = env.settle_run(id).await;
    assert_eq!(report.status, "suspended");
    assert_eq!(run_of(&report), ("suspend".into(), "succeeded".into()));
    assert_eq!(stages(&report), [("access".into(), "succeeded".into())]);

    // The open session was ended, a new login is refused, keys stop verifying
    // without being revoked, services are disabled.
    assert!(
        session.simple_query("SELECT 1").await.is_err(),
        "the session survived"
    );
    let refused = tenant_login(&env, id).await.unwrap_err();
    assert!(refused.contains("not permitted to log in"), "{refused}");
    assert!(!key_verifies(&env, &key).await);
    let suspended_keys = "SELECT count(*) FROM control_plane.api_keys
                           WHERE project_id = $1 AND suspended_at IS NOT NULL AND revoked_at IS NULL";
    assert_eq!(env.count(suspended_keys, id).await, 2);
    assert!(
        report
            .resources
            .services
            .iter()
            .all(|s| s.status == "disabled"),
        "{:?}",
        report.resources.services
    );
    assert_eq!(env.operate(id, "suspend").await.status, 409);

    let report = operate(&env, id, "resume").await;
    assert_eq!(report.status, "ready");
    assert_eq!(run_of(&report), ("resume".into(), "succeeded".into()));
    tenant_login(&env, id)
        .await
        .expect("a resumed tenant logs in");
    assert!(key_verifies(&env, &key).await);
    assert_eq!(env.count(suspended_keys, id).await, 0);
    assert!(report
        .resources
        .services
        .iter()
        .all(|s| s.status == "active"));
    assert_eq!(env.operate(id, "resume").await.status, 409);
    let audit = audit_actions(&env, id).await;
    for action in [
        "suspend.requested",
        "suspend.succeeded",
        "resume.requested",
        "resume.succeeded",
    ] {
        assert_eq!(
            audit.iter().filter(|a| *a == action).count(),
            1,
            "{action}: {audit:?}"
        );
    }
    services.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_stops_serving_and_restore_within_the_window_brings_back_the_status_before() {
    let env = TestEnv::new().await;
    let id = ready_project(&env, "delete-restore").await;
    let key = plaintext_keys(&env, id).await.remove(0);

    let answer = env.delete(id, "").await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let purge_after: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(answer.body.unwrap()["purge_after"].clone()).unwrap();
    let window = purge_after - chrono::Utc::now();
    assert!(
        (window - chrono::Duration::days(7)).num_seconds().abs() < 60,
        "the default window is 7 days, got {window}"
    );
    let report = env.settle_run(id).await;
    assert_eq!(report.status, "deleted");
    assert_eq!(run_of(&report), ("delete".into(), "succeeded".into()));
    assert!(tenant_login(&env, id).await.is_err());
    assert!(!key_verifies(&env, &key).await);
    assert_eq!(env.delete(id, "").await.status, 409, "deleted twice");
    assert_eq!(
        env.delete(id, "?purge=now").await.status,
        409,
        "a ready project is not purged at once"
    );

    let report = operate(&env, id, "restore").await;
    assert_eq!(
        (report.status.as_str(), report.purge_after),
        ("ready", None)
    );
    assert_eq!(run_of(&report), ("restore".into(), "succeeded".into()));
    tenant_login(&env, id)
        .await
        .expect("a restored tenant logs in");
    assert!(key_verifies(&env, &key).await);
    assert_eq!(env.operate(id, "restore").await.status, 409);

    // Suspended, deleted, restored: suspended again, still refused.
    operate(&env, id, "suspend").await;
    delete(&env, id, "").await;
    let report = operate(&env, id, "restore").await;
    assert_eq!(report.status, "suspended");
    assert!(tenant_login(&env, id).await.is_err());
    assert!(!key_verifies(&env, &key).await);

    // After the window: restore answers 409, and the sweeper purges.
    delete(&env, id, "").await;
    env.exec(
        "UPDATE control_plane.projects SET purge_after = now() - interval '1 second' WHERE id = $1",
        &[&id],
    )
    .await;
    let late = env.operate(id, "restore").await;
    assert_eq!(late.status, 409);
    assert!(late.body.unwrap()["detail"]
        .as_str()
        .unwrap()
        .contains("window"));
    let swept = env.runner.sweeper().sweep().await.unwrap();
    assert_eq!(swept.purges_started, 1);
    let report = env.settle_run(id).await;
    assert_eq!(run_of(&report), ("purge".into(), "succeeded".into()));
    assert_nothing_left(&env, id).await;
    assert_eq!(
        env.runner.sweeper().sweep().await.unwrap().purges_started,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_window_purges_at_once_deregistering_services_and_freeing_the_cluster_slot() {
    let services = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/storage"))
        .respond_with(ResponseTemplate::new(201))
        .mount(&services)
        .await;
    let urls = [(Service::Storage, format!("{}/storage", services.uri()))].into();
    let env = TestEnv::with(EnvOptions {
        registration_urls: urls,
        extra: vec![(WINDOW_ZERO.0, WINDOW_ZERO.1.into())],
        ..Default::default()
    })
    .await;
    let id = ready_project(&env, "purge-at-once").await;
    Mock::given(method("DELETE"))
        .and(path(format!("/storage/{id}")))
        .respond_with(ResponseTemplate::new(404))
        .expect(1)
        .mount(&services)
        .await;
    let (cluster, _) = env.placement(id).await.unwrap();
    let before = placed(&env, &cluster).await;

    let report = delete(&env, id, "").await;
    assert_eq!(run_of(&report), ("delete".into(), "succeeded".into()));
    assert_eq!(
        stages(&report),
        [
            ("access".into(), "succeeded".into()),
            ("purge".into(), "succeeded".into())
        ]
    );
    assert_nothing_left(&env, id).await;
    assert_eq!(
        placed(&env, &cluster).await,
        before - 1,
        "the slot was freed once"
    );
    // The project is still there to be looked at, and nothing more can happen to it.
    let answer = env.call("GET", &format!("/projects/{id}"), &[], b"").await;
    assert_eq!(answer.body.unwrap()["status"], "purged");
    assert_eq!(env.delete(id, "?purge=now").await.status, 409);
    assert_eq!(env.operate(id, "restore").await.status, 409);
    services.verify().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_deleted_while_provisioning_leaves_nothing_behind_after_its_purge() {
    let env = env_with(&[WINDOW_ZERO]).await;
    let created = env.create(&project("deleted-early")).await;
    let id = created.project_id;
    let running = env.runner.spawn(1);
    eventually("create-database to succeed", || async {
        let report = env.report(id).await;
        report
            .timeline
            .iter()
            .any(|s| s.stage == "create-database" && s.status == "succeeded")
            .then_some(())
    })
    .await;
    // The runner keeps going: the delete meets the run in flight.
    let answer = env.delete(id, "").await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    env.wait_for_status(id, &["purged"], Duration::from_secs(60))
        .await;
    running.stop().await;
    env.drain(&env.runner, Duration::from_secs(30)).await;

    assert_nothing_left(&env, id).await;
    let provisioning: String = env
        .db()
        .await
        .query_one(
            "SELECT status FROM control_plane.provisioning_runs WHERE id = $1",
            &[&created.run_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(provisioning, "cancelled");
    // The cancelled run's late messages changed nothing.
    assert_eq!(env.report(id).await.status, "purged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purging_a_failed_project_is_its_rollback() {
    let server = registration_endpoint(Service::Realtime, 400, None).await;
    let env = env_with_service(Service::Realtime, &server).await;
    let created = env.create(&project("rolled-back")).await;
    let id = created.project_id;
    let report = env.settle(id).await;
    assert_eq!(report.status, "failed");
    assert!(
        report.resources.database.is_some(),
        "the failure left a database behind"
    );

    let report = delete(&env, id, "?purge=now").await;
    assert_eq!(
        stages(&report),
        [
            ("access".into(), "succeeded".into()),
            ("purge".into(), "succeeded".into())
        ]
    );
    assert_nothing_left(&env, id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_each_new_stages_side_effects_and_its_commit_is_finished_once() {
    // access: the role is already NOLOGIN, the keys not yet suspended.
    let env = TestEnv::new().await;
    let id = ready_project(&env, "crash-access").await;
    assert_eq!(env.operate(id, "suspend").await.status, 202);
    crash_at(&env, id, provisioning::stages::before_commit(Stage::Access)).await;
    assert!(
        tenant_login(&env, id).await.is_err(),
        "the side effect happened"
    );
    let report = env.report(id).await;
    assert_eq!(stages(&report), [("access".into(), "running".into())]);
    let report = env.settle_run(id).await;
    assert_eq!(report.status, "suspended");
    // Run again (a receive made while the crashed handler still held the
    // project's lock may count too): done once, whatever the count.
    assert!(report.timeline[0].attempts >= 2, "{report:#?}");
    let suspended = "SELECT count(*) FROM control_plane.api_keys WHERE project_id = $1 AND suspended_at IS NOT NULL";
    assert_eq!(env.count(suspended, id).await, 2);
    let audit = audit_actions(&env, id).await;
    assert_eq!(
        audit.iter().filter(|a| *a == "suspend.succeeded").count(),
        1
    );

    // purge: the database is dropped, the project not yet purged.
    let env = env_with(&[WINDOW_ZERO]).await;
    let id = ready_project(&env, "crash-purge").await;
    let (cluster, _) = env.placement(id).await.unwrap();
    let before = placed(&env, &cluster).await;
    assert_eq!(env.delete(id, "").await.status, 202);
    crash_at(&env, id, provisioning::stages::before_commit(Stage::Purge)).await;
    let names = TenantNames::for_project(id);
    assert!(tenant_objects_per_cluster(&names.database, &names.role)
        .await
        .iter()
        .all(|(_, d, r)| (*d, *r) == (0, 0)));
    assert_eq!(env.report(id).await.status, "deleted", "not committed");
    let report = env.settle_run(id).await;
    assert!(report.timeline[1].attempts >= 2, "{report:#?}");
    assert_nothing_left(&env, id).await;
    assert_eq!(placed(&env, &cluster).await, before - 1, "freed once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_messages_of_every_new_stage_do_their_work_once() {
    let env = env_with(&[WINDOW_ZERO]).await;
    let id = ready_project(&env, "duplicates").await;
    let (cluster, _) = env.placement(id).await.unwrap();
    let before = placed(&env, &cluster).await;

    let suspend = env.operate(id, "suspend").await.body.unwrap();
    let message = |run: &serde_json::Value, stage: Stage| StageMessage {
        project_id: id,
        run_id: run["run_id"].as_str().unwrap().parse().unwrap(),
        stage,
        correlation_id: run["correlation_id"].as_str().unwrap().parse().unwrap(),
    };
    let access = message(&suspend, Stage::Access).to_body();
    env.send_raw("access", &access).await;
    env.send_raw("access", &access).await;
    let report = env.settle_run(id).await;
    env.drain(&env.runner, Duration::from_secs(30)).await;
    assert_eq!(report.status, "suspended");
    assert_eq!(
        env.report(id).await.timeline[0].attempts,
        1,
        "the copies changed nothing"
    );

    let delete = env.delete(id, "").await.body.unwrap();
    for stage in [Stage::Access, Stage::Purge] {
        let body = message(&delete, stage).to_body();
        env.send_raw(stage.queue_name(), &body).await;
        env.send_raw(stage.queue_name(), &body).await;
    }
    env.settle_run(id).await;
    env.drain(&env.runner, Duration::from_secs(30)).await;
    let report = env.report(id).await;
    assert!(
        report.timeline.iter().all(|s| s.attempts == 1),
        "{:#?}",
        report.timeline
    );
    assert_nothing_left(&env, id).await;
    assert_eq!(
        placed(&env, &cluster).await,
        before - 1,
        "the slot was freed once"
    );
    let audit = audit_actions(&env, id).await;
    for action in ["suspend.succeeded", "delete.succeeded"] {
        assert_eq!(
            audit.iter().filter(|a| *a == action).count(),
            1,
            "{action}: {audit:?}"
        );
    }
}

/// What a stray message could change, read back for comparison.
async fn state_of(env: &TestEnv, id: Uuid) -> String {
    let names = TenantNames::for_project(id);
    let db = env.db().await;
    let row = db
        .query_one(
            "SELECT p.status || coalesce(p.purge_after::text, '-'),
                    (SELECT string_agg(r.kind || ':' || r.status, ',' ORDER BY r.run_number)
                       FROM control_plane.provisioning_runs r WHERE r.project_id = p.id),
                    (SELECT string_agg(s.stage || ':' || s.status || ':' || s.attempts, ',' ORDER BY s.run_id, s.position)
                       FROM control_plane.provisioning_stages s
                       JOIN control_plane.provisioning_runs r ON r.id = s.run_id WHERE r.project_id = p.id),
                    (SELECT count(*) FROM control_plane.api_keys k WHERE k.project_id = p.id AND k.suspended_at IS NULL),
                    (SELECT count(*) FROM control_plane.audit_log a WHERE a.project_id = p.id)
               FROM control_plane.projects p WHERE p.id = $1",
            &[&id],
        )
        .await
        .unwrap();
    let mut login = String::new();
    for (_, port) in stack_clusters() {
        let admin = admin_at(port, "postgres").await;
        let rows = admin
            .query(
                "SELECT rolcanlogin::text FROM pg_roles WHERE rolname = $1
                 UNION ALL SELECT datname FROM pg_database WHERE datname = $2",
                &[&names.role, &names.database],
            )
            .await
            .unwrap();
        login += &rows
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
            .join("/");
    }
    let secrets = env
        .secret_names()
        .await
        .iter()
        .filter(|n| n.contains(&id.to_string()))
        .count();
    format!(
        "{} | {} | {} | keys {} | audit {} | {login} | secrets {secrets}",
        row.get::<_, String>(0),
        row.get::<_, String>(1),
        row.get::<_, String>(2),
        row.get::<_, i64>(3),
        row.get::<_, i64>(4),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stray_messages_of_the_new_stages_change_nothing_in_any_other_state() {
    let server = registration_endpoint(Service::Realtime, 400, None).await;
    let failing = env_with_service(Service::Realtime, &server).await;
    let failed = failing.create(&project("stray-failed")).await.project_id;
    assert_eq!(failing.settle(failed).await.status, "failed");

    let env = TestEnv::new().await;
    let ready = ready_project(&env, "stray-ready").await;
    let suspended = ready_project(&env, "stray-suspended").await;
    operate(&env, suspended, "suspend").await;
    let deleted = ready_project(&env, "stray-deleted").await;
    delete(&env, deleted, "").await;
    let purged = ready_project(&env, "stray-purged").await;
    delete(&env, purged, "").await;
    env.exec(
        "UPDATE control_plane.projects SET purge_after = now() WHERE id = $1",
        &[&purged],
    )
    .await;
    let swept = env.runner.sweeper().sweep().await.unwrap();
    let report = env.settle_run(purged).await;
    assert_eq!(report.status, "purged", "{swept:?} {report:#?}");
    // Requested, its first message not yet delivered (the runner is idle).
    let requested = env.create(&project("stray-requested")).await.project_id;
    env.drain_queue("validate").await;

    let cases = [
        (&env, ready),
        (&env, suspended),
        (&env, deleted),
        (&env, purged),
        (&env, requested),
        (&failing, failed),
    ];
    for (env, id) in cases {
        let before = state_of(env, id).await;
        let runs: Vec<Uuid> = env
            .db()
            .await
            .query(
                "SELECT id FROM control_plane.provisioning_runs WHERE project_id = $1",
                &[&id],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .chain([Uuid::new_v4()])
            .collect();
        for run_id in runs {
            for stage in [Stage::Access, Stage::Purge] {
                let stray = StageMessage {
                    project_id: id,
                    run_id,
                    stage,
                    correlation_id: Uuid::new_v4(),
                };
                env.send_raw(stage.queue_name(), &stray.to_body()).await;
            }
        }
        env.drain(&env.runner, Duration::from_secs(30)).await;
        assert_eq!(
            state_of(env, id).await,
            before,
            "a stray message changed {id}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_projects_ten_deleted_and_five_restored_at_once_all_end_where_they_should() {
    let env = TestEnv::with(EnvOptions {
        scrypt_log_n: Some(10),
        ..Default::default()
    })
    .await;
    let env = &env;
    let created: Vec<Uuid> = futures::future::join_all(
        (0..20)
            .map(|i| async move { env.create(&project(&format!("crowd-{i}"))).await.project_id }),
    )
    .await;
    let running = env.runner.spawn(2);
    for id in &created {
        env.wait_for_status(*id, &["ready"], Duration::from_secs(120))
            .await;
    }
    // Delete ten and restore five of them as soon as their delete is accepted,
    // all at once, while the runner works.
    let operations = created[..10].iter().enumerate().map(|(i, id)| async move {
        assert_eq!(env.delete(id, "").await.status, 202);
        if i < 5 {
            let restored = env.operate(id, "restore").await;
            assert_eq!(restored.status, 202, "{:?}", restored.body);
        }
    });
    futures::future::join_all(operations).await;
    for (i, id) in created.iter().enumerate() {
        let expected = if (5..10).contains(&i) {
            "deleted"
        } else {
            "ready"
        };
        let report = eventually("every run to finish", || async {
            let report = env.report(*id).await;
            (report.run.as_ref().unwrap().status != "running").then_some(report)
        })
        .await;
        assert_eq!(report.status, expected, "project {i}");
        assert_eq!(
            report.run.as_ref().unwrap().status,
            "succeeded",
            "project {i}"
        );
        assert_eq!(
            tenant_login(env, *id).await.is_ok(),
            expected == "ready",
            "project {i}"
        );
    }
    running.stop().await;
    let running_runs = env.rows("provisioning_runs WHERE status = 'running'").await;
    assert_eq!(running_runs, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_lifecycle_run_keeps_the_status_and_the_operators_retry_finishes_it() {
    let services = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/auth"))
        .respond_with(ResponseTemplate::new(201))
        .mount(&services)
        .await;
    let env = env_with_service(Service::Auth, &services).await;
    let id = ready_project(&env, "retry-suspend").await;
    Mock::given(method("POST"))
        .and(path(format!("/auth/{id}/resume")))
        .respond_with(ResponseTemplate::new(204))
        .mount(&services)
        .await;
    // The service refuses the suspension (a permanent 4xx) once, then accepts it.
    Mock::given(method("POST"))
        .and(path(format!("/auth/{id}/suspend")))
        .respond_with(ResponseTemplate::new(422))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&services)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/auth/{id}/suspend")))
        .respond_with(ResponseTemplate::new(204))
        .with_priority(2)
        .mount(&services)
        .await;

    let report = operate(&env, id, "suspend").await;
    assert_eq!(
        report.status, "suspended",
        "the status the request set stays"
    );
    assert_eq!(run_of(&report), ("suspend".into(), "failed".into()));
    let error = report.timeline[0].last_error.clone().unwrap_or_default();
    assert!(error.contains("HTTP 422"), "{error}");
    assert!(
        report.last_error.is_none(),
        "a lifecycle failure is the run's, not the project's"
    );
    assert_eq!(
        env.operate(id, "resume").await.status,
        202,
        "resume is allowed: no run is moving"
    );
    // ... which is the operator's way out too; here the retry finishes the suspension.
    let report = env.settle_run(id).await;
    assert_eq!(
        (report.status.as_str(), run_of(&report).1.as_str()),
        ("ready", "succeeded")
    );
    assert_eq!(env.operate(id, "suspend").await.status, 202);
    let report = env.settle_run(id).await;
    assert_eq!(run_of(&report), ("suspend".into(), "succeeded".into()));

    // A failed run is retried as a new run of its kind, from its failed stage.
    Mock::given(method("POST"))
        .and(path(format!("/auth/{id}/resume")))
        .respond_with(ResponseTemplate::new(422))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&services)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/auth/{id}/resume")))
        .respond_with(ResponseTemplate::new(204))
        .with_priority(2)
        .mount(&services)
        .await;
    let report = operate(&env, id, "resume").await;
    assert_eq!(
        (report.status.as_str(), run_of(&report).1.as_str()),
        ("ready", "failed")
    );
    let retried = env.retry(id).await;
    assert_eq!(retried.status, 202, "{:?}", retried.body);
    let body = retried.body.unwrap();
    assert_eq!(
        (
            body["kind"].as_str(),
            body["resume_from"].as_str(),
            body["status"].as_str()
        ),
        (Some("resume"), Some("access"), Some("ready"))
    );
    let report = env.settle_run(id).await;
    assert_eq!(run_of(&report), ("resume".into(), "succeeded".into()));
    tenant_login(&env, id)
        .await
        .expect("resumed after the retry");
    let jobs = env
        .call("GET", "/provisioning/jobs?kind=resume", &[], b"")
        .await
        .body
        .unwrap();
    let statuses: Vec<&str> = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["succeeded", "failed", "succeeded"],
        "newest first: {jobs}"
    );
}
