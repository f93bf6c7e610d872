//! Faults at the edges, for real: the API's process killed between its commit
//! and its send, Postgres restarted under a burst of creates, Postgres away for
//! fifteen seconds. These take the local stack's Postgres away, so they run one
//! at a time (and cargo runs test binaries one at a time).

use pipeline_tests::*;
use provisioning::domain::Stage;
use provisioning::project::AFTER_CREATE_COMMIT;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use uuid::Uuid;

async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    SERIAL.lock().await
}

/// Takes Postgres away for `outage`, then brings it back (blocking calls, off
/// the async threads).
async fn postgres_away_for(outage: Duration) {
    tokio::task::spawn_blocking(|| stack_control("pg-stop"))
        .await
        .unwrap();
    tokio::time::sleep(outage).await;
    tokio::task::spawn_blocking(|| stack_control("pg-start"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_killed_between_its_commit_and_its_send_loses_nothing_and_a_repeat_answers_with_the_same_project(
) {
    let _serial = one_at_a_time().await;
    let env = TestEnv::with(EnvOptions {
        scrypt_log_n: Some(10),
        extra: vec![("OUTBOX_RESEND_AFTER_MS", "500".into())],
        ..Default::default()
    })
    .await;
    let body = serde_json::to_value(project("killed")).unwrap();
    let key = [("idempotency-key", "kill-me-once")];

    // The request runs until its transaction has committed, then dies there.
    let reached = provisioning::fault::arm(Uuid::nil(), AFTER_CREATE_COMMIT);
    let mut request = Box::pin(env.post_json("/projects", &body, &key));
    tokio::select! {
        response = &mut request => panic!("answered without reaching the point: {response:?}"),
        hit = reached => hit.unwrap(),
    }
    drop(request); // the process is gone: its connection closes
    let project_id: Uuid = env
        .db()
        .await
        .query_one("SELECT id FROM control_plane.projects", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        env.queue_depth("validate").await,
        0,
        "killed before it could send"
    );
    assert_eq!(
        env.count(
            "SELECT count(*) FROM control_plane.outbox WHERE project_id = $1 AND sent_at IS NULL",
            project_id
        )
        .await,
        2,
        "its message and its event wait in the outbox"
    );
    assert!(env.delivered_events().await.is_empty(), "nothing told yet");

    // The sweeper re-sends both: the event reaches the bus, with the id it was
    // written with.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let swept = provisioning::sweeper::Sweeper::new(env.pipeline.clone())
        .sweep()
        .await
        .unwrap();
    assert_eq!(swept.outbox_resent, 2, "{swept:?}");
    let delivered = env.delivered_events().await;
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert_eq!(delivered[0].event.detail_type, "Project Requested");
    let written: serde_json::Value = env
        .db()
        .await
        .query_one(
            "SELECT payload FROM control_plane.outbox WHERE project_id = $1 AND destination = 'event'",
            &[&project_id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(delivered[0].event.detail, written["detail"]);

    // The caller saw no answer and repeats the request: the same project.
    let repeat = env.post_json("/projects", &body, &key).await;
    assert_eq!(repeat.status, 202, "{repeat:?}");
    assert_eq!(repeat.header("idempotent-replayed"), Some("true"));
    assert_eq!(
        repeat.body.as_ref().unwrap()["project_id"],
        project_id.to_string()
    );

    // The sweeper sends what the dead process did not; the project provisions.
    let report = env.settle(project_id).await;
    assert_ready(&report);
    assert_eq!(
        env.count(
            "SELECT count(*) FROM control_plane.outbox
              WHERE project_id = $1 AND sent_at IS NULL AND destination = 'stage'",
            project_id
        )
        .await,
        0
    );
    assert_eq!(
        env.count(
            "SELECT count(*) FROM control_plane.projects WHERE id <> $1",
            project_id
        )
        .await,
        0,
        "one request, one project"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_during_a_burst_of_creates_leaves_every_key_with_one_project_none_stuck()
{
    let _serial = one_at_a_time().await;
    let env = TestEnv::with(EnvOptions {
        scrypt_log_n: Some(10),
        ..Default::default()
    })
    .await;
    let running = env.runner.spawn(1);
    let answers_5xx = std::sync::atomic::AtomicUsize::new(0);
    let creates = (0..30).map(|i| {
        let env = &env;
        let answers_5xx = &answers_5xx;
        async move {
            let body = serde_json::to_value(project(&format!("burst-{i}"))).unwrap();
            let key = format!("burst-{i}");
            let started = Instant::now();
            loop {
                let r = env
                    .post_json("/projects", &body, &[("idempotency-key", &key)])
                    .await;
                if r.status == 202 {
                    let id: Uuid = r.body.as_ref().unwrap()["project_id"]
                        .as_str()
                        .unwrap()
                        .parse()
                        .unwrap();
                    return (key, id);
                }
                assert!(r.status >= 500, "{r:?}");
                answers_5xx.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "{key}: no 202 in 60 s: {r:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    });
    let restart = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        postgres_away_for(Duration::from_millis(500)).await;
    };
    let (created, ()) = tokio::join!(futures::future::join_all(creates), restart);
    eprintln!(
        "{} 5xx answers during the restart, each retried with its key",
        answers_5xx.into_inner()
    );

    // Every project ends ready or failed with its reason; none is stuck.
    let ids: HashSet<Uuid> = created.iter().map(|(_, id)| *id).collect();
    assert_eq!(ids.len(), 30, "thirty keys, thirty projects");
    let started = Instant::now();
    let statuses = loop {
        let rows = env
            .try_rows("SELECT id, status, last_error FROM control_plane.projects")
            .await;
        let done = rows.as_ref().is_some_and(|rows| {
            rows.iter()
                .all(|r| matches!(r.get::<_, &str>(1), "ready" | "failed"))
        });
        if done {
            break rows.unwrap();
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "projects still moving: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    running.stop().await;
    assert_eq!(statuses.len(), 30, "no project without its key");
    for row in &statuses {
        let (id, status, error): (Uuid, &str, Option<&str>) = (row.get(0), row.get(1), row.get(2));
        assert!(ids.contains(&id));
        if status == "failed" {
            assert!(
                error.is_some_and(|e| !e.is_empty()),
                "{id} failed without a reason"
            );
        }
    }
    let bound: HashMap<String, Uuid> = env
        .db()
        .await
        .query(
            "SELECT key, project_id FROM control_plane.idempotency_keys",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let expected: HashMap<String, Uuid> = created.into_iter().collect();
    assert_eq!(
        bound, expected,
        "each key is bound to the project it answered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_fifteen_second_outage_the_failure_says_postgres_was_unreachable_and_why() {
    let _serial = one_at_a_time().await;
    let env = TestEnv::new().await;
    let created = env.create(&project("outage")).await;
    tokio::task::spawn_blocking(|| stack_control("pg-stop"))
        .await
        .unwrap();
    let running = env.runner.spawn(1);
    tokio::time::sleep(Duration::from_secs(15)).await;
    tokio::task::spawn_blocking(|| stack_control("pg-start"))
        .await
        .unwrap();

    let started = Instant::now();
    let report = loop {
        if let Some(report) = env.try_report(created.project_id).await {
            if matches!(report.status.as_str(), "ready" | "failed") {
                break report;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(60), "not settled");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    running.stop().await;
    // Every receive of the validate message fell in the outage: its three
    // receives ran out and the project failed. The failure says why.
    assert_eq!(report.status, "failed", "{report:#?}");
    assert_eq!(
        report.failed_stage.as_deref(),
        Some(Stage::Validate.as_str())
    );
    let error = report.last_error.clone().unwrap();
    assert!(
        error.starts_with("gave up after 3 attempts: postgres unreachable"),
        "{error}"
    );
    assert!(error.contains("Connection refused"), "{error}");
    assert!(!error.contains("no error recorded"), "{error}");
    let validate = &report.timeline[0];
    assert_eq!(
        (validate.attempts, validate.last_error.as_deref()),
        (3, Some(error.as_str()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_cluster_stopped_mid_burst_fails_only_its_projects_naming_it_and_they_are_retried_to_ready(
) {
    let _serial = one_at_a_time().await;
    let env = TestEnv::with(EnvOptions {
        scrypt_log_n: Some(10),
        ..Default::default()
    })
    .await;
    // The stack's two clusters share us-east-1: the burst alternates between them.
    let mut created = Vec::new();
    for i in 0..4 {
        created.push(env.create(&project(&format!("before-{i}"))).await);
    }
    let running = env.runner.spawn(2);
    tokio::task::spawn_blocking(|| stack_control("pg-stop 2"))
        .await
        .unwrap();
    for i in 0..6 {
        created.push(env.create(&project(&format!("during-{i}"))).await);
    }
    let mut reports = Vec::new();
    for c in &created {
        reports.push(
            env.wait_for_status(c.project_id, &["ready", "failed"], Duration::from_secs(120))
                .await,
        );
    }
    running.stop().await;

    let mut on_stopped = Vec::new();
    for report in &reports {
        match report.cluster.as_deref() {
            Some("local-1") => {
                // Untouched: ready, every stage done at its first attempt.
                assert_eq!(report.status, "ready", "{report:#?}");
                assert!(
                    report.timeline.iter().all(|s| s.attempts == 1),
                    "{report:#?}"
                );
            }
            Some("local-2") if report.status == "ready" => {} // done before the stop
            Some("local-2") => {
                assert_eq!(report.status, "failed");
                let error = report.last_error.clone().unwrap();
                assert!(
                    error.starts_with("gave up after 3 attempts: cluster local-2 (127.0.0.1:"),
                    "{error}"
                );
                assert!(error.contains("unreachable"), "{error}");
                on_stopped.push(report.id);
            }
            other => panic!("placed on {other:?}: {report:#?}"),
        }
    }
    assert!(
        on_stopped.len() >= 2,
        "the projects created after the stop include some for local-2: {reports:#?}"
    );

    tokio::task::spawn_blocking(|| stack_control("pg-start 2"))
        .await
        .unwrap();
    for id in &on_stopped {
        let response = env.retry(id).await;
        assert_eq!(response.status, 202, "{response:?}");
    }
    let running = env.runner.spawn(2);
    for id in &on_stopped {
        let report = env
            .wait_for_status(*id, &["ready", "failed"], Duration::from_secs(120))
            .await;
        assert_eq!(report.status, "ready", "{report:#?}");
        assert_eq!(report.cluster.as_deref(), Some("local-2"));
        assert_exactly_one_of_everything(&env, *id, 2).await;
    }
    running.stop().await;
}
