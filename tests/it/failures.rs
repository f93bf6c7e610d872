//! Retryable errors are retried by SQS and recorded; permanent ones fail the
//! project at once; a stage that never succeeds ends in the DLQ and the
//! dead-letter function fails the project with stage, attempts and error.

use pipeline_tests::*;
use provisioning::domain::{Service, Stage, StageMessage};
use provisioning::project::CreatedProject;
use std::time::Duration;
use uuid::Uuid;

fn stage<'a>(
    report: &'a provisioning::report::ProjectReport,
    name: &str,
) -> &'a provisioning::report::StageReport {
    report.timeline.iter().find(|s| s.stage == name).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_answering_503_twice_succeeds_on_the_third_receive() {
    let server = registration_endpoint(Service::Auth, 503, Some(2)).await;
    let env = env_with_service(Service::Auth, &server).await;
    let created = env.create(&project("flaky")).await;

    let report = env.settle(created.project_id).await;

    assert_ready(&report);
    let register = stage(&report, "register-services");
    assert_eq!(register.attempts, 3);
    assert!(
        register.last_error.as_deref().unwrap().contains("HTTP 503"),
        "{register:?}"
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
    assert_eq!(env.queue_depth("register-services-dlq").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_that_always_fails_reaches_the_dlq_after_three_receives_and_fails_the_project() {
    let server = registration_endpoint(Service::Storage, 503, None).await;
    let env = env_with_service(Service::Storage, &server).await;
    let created = env.create(&project("doomed")).await;

    let report = env
        .settle_with(&env.runner, created.project_id, Duration::from_secs(60))
        .await;

    assert_eq!(report.status, "failed", "{report:#?}");
    assert_eq!(report.failed_stage.as_deref(), Some("register-services"));
    let error = report.last_error.clone().unwrap();
    assert!(
        error.contains("gave up after 3 attempts") && error.contains("HTTP 503"),
        "{error}"
    );
    let register = stage(&report, "register-services");
    assert_eq!((register.status.as_str(), register.attempts), ("failed", 3));
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        3,
        "exactly three receives called the service"
    );
    assert_eq!(stage(&report, "generate-api-keys").status, "pending");
    assert_eq!(
        env.total_messages().await,
        0,
        "the dead-letter function acknowledged the DLQ message"
    );
    let audit = env.count("SELECT count(*) FROM control_plane.audit_log WHERE project_id = $1 AND action = 'provisioning.failed'", created.project_id).await;
    assert_eq!(audit, 1);
    // Metrics: three retrying attempts, one dead-lettered message, one failed project.
    let metrics = metrics_of(created.project_id);
    let with = |name: &str| -> Vec<&serde_json::Value> {
        metrics.iter().filter(|m| m.get(name).is_some()).collect()
    };
    let dead = with("MessagesDeadLettered");
    assert_eq!(dead.len(), 1, "{metrics:#?}");
    assert_eq!(dead[0]["Stage"], "register-services");
    assert_eq!(with("ProjectsFailed").len(), 1);
    let retrying = with("StageAttempts")
        .into_iter()
        .filter(|m| m["Stage"] == "register-services" && m["outcome"] == "retrying")
        .count();
    assert_eq!(retrying, 3);
}

/// Runs until failed and checks that it failed on the first attempt with no retry.
async fn assert_failed_at_once(
    env: &TestEnv,
    project_id: Uuid,
    failed_stage: &str,
    error_part: &str,
) {
    let report = env.settle(project_id).await;
    assert_eq!(report.status, "failed", "{report:#?}");
    assert_eq!(report.failed_stage.as_deref(), Some(failed_stage));
    let error = report.last_error.clone().unwrap();
    assert!(error.contains(error_part), "{error}");
    let failed = stage(&report, failed_stage);
    assert!(
        failed.attempts <= 1,
        "retried a permanent error: {failed:?}"
    );
    assert_eq!(
        env.queue_depth(failed_stage).await,
        0,
        "the message was acknowledged, not left to retry"
    );
    assert_eq!(
        env.queue_depth(&format!("{failed_stage}-dlq")).await,
        0,
        "nothing was dead-lettered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_region_fails_the_project_at_validation() {
    let env = TestEnv::new().await;
    let created = env.create(&project("closed-region")).await;
    env.exec(
        "UPDATE control_plane.regions SET available = false WHERE code = 'us-east-1'",
        &[],
    )
    .await;

    assert_failed_at_once(
        &env,
        created.project_id,
        "validate",
        "region: 'us-east-1' is not available",
    )
    .await;
    assert!(env.secret_names().await.is_empty(), "nothing was created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_region_fails_the_project_at_validation() {
    let env = TestEnv::new().await;
    let created = env.create(&project("moved")).await;
    env.exec(
        "UPDATE control_plane.projects SET region = 'mars-north-1' WHERE id = $1",
        &[&created.project_id],
    )
    .await;

    assert_failed_at_once(
        &env,
        created.project_id,
        "validate",
        "region: unknown region 'mars-north-1'",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exceeding_the_api_key_quota_fails_the_project_at_validation() {
    let env = TestEnv::new().await;
    let created = env.create(&project("greedy")).await;
    let db = env.db().await;
    for i in 0..9 {
        db.execute(
            "INSERT INTO control_plane.api_keys (id, project_id, key_prefix, key_hash, scopes, secret_name)
             VALUES ($1, $2, 'old', 'x', '{read}', 'elsewhere')",
            &[&format!("old{i}"), &created.project_id],
        )
        .await
        .unwrap();
    }

    assert_failed_at_once(
        &env,
        created.project_id,
        "validate",
        "quota exceeded: api_keys (9 active + 2 requested, limit 10)",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4xx_from_a_service_fails_the_project_without_retry() {
    let server = registration_endpoint(Service::Realtime, 400, None).await;
    let env = env_with_service(Service::Realtime, &server).await;
    let created = env.create(&project("rejected")).await;

    assert_failed_at_once(
        &env,
        created.project_id,
        "register-services",
        "registering with realtime: HTTP 400",
    )
    .await;
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_message_naming_a_project_is_acknowledged_and_changes_nothing() {
    let env = TestEnv::new().await;
    let created = env.create(&project("garbled")).await;
    let before = env.report(created.project_id).await;
    let body = serde_json::json!({ "project_id": created.project_id, "run_id": "not-a-uuid", "stage": "create-database" });
    env.send_raw("create-database", &body.to_string()).await;
    let report = env
        .runner
        .poll_once("create-database", local_dev::Delivery::Normal)
        .await
        .unwrap();
    assert_eq!((report.received, report.failed, report.deleted), (1, 0, 1));
    let after = env.report(created.project_id).await;
    assert_eq!(
        (after.status.as_str(), &after.timeline, &after.last_error),
        (before.status.as_str(), &before.timeline, &before.last_error),
        "a message that owns nothing changes nothing"
    );
    assert!(captured_logs().contains("malformed message acknowledged; nothing changed"));
    // The project's own messages still carry it to the end.
    assert_ready(&env.settle(created.project_id).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_message_naming_nothing_is_acknowledged_without_effect() {
    let env = TestEnv::new().await;
    env.send_raw("validate", "definitely not json").await;
    let wrong_stage = StageMessage {
        project_id: Uuid::new_v4(),
        run_id: Uuid::new_v4(),
        stage: Stage::Finalize,
        correlation_id: Uuid::new_v4(),
    };
    env.send_raw("validate", &wrong_stage.to_body()).await;

    let mut handled = 0;
    while handled < 2 {
        let report = env
            .runner
            .poll_once("validate", local_dev::Delivery::Normal)
            .await
            .unwrap();
        assert_eq!(report.failed, 0);
        handled += report.received;
    }
    assert_eq!(
        env.total_messages().await,
        0,
        "acknowledged, not retried or dead-lettered"
    );
    assert_eq!(env.rows("projects").await, 0);
}

/// Everything the control plane holds about a project, as text.
async fn snapshot(env: &TestEnv, project_id: Uuid) -> Vec<Option<String>> {
    let row = env
        .db()
        .await
        .query_one(
            "SELECT (SELECT row_to_json(p)::text FROM control_plane.projects p WHERE id = $1),
                    (SELECT json_agg(r ORDER BY run_number)::text FROM control_plane.provisioning_runs r
                      WHERE project_id = $1),
                    (SELECT json_agg(s ORDER BY s.run_id, s.position)::text
                       FROM control_plane.provisioning_stages s
                       JOIN control_plane.provisioning_runs r ON r.id = s.run_id WHERE r.project_id = $1),
                    (SELECT json_agg(x ORDER BY service)::text FROM control_plane.project_services x
                      WHERE project_id = $1),
                    (SELECT json_agg(x ORDER BY resource_type, resource_id)::text
                       FROM control_plane.project_resources x WHERE project_id = $1),
                    (SELECT json_agg(x ORDER BY id)::text FROM control_plane.api_keys x WHERE project_id = $1),
                    (SELECT count(*)::text FROM control_plane.audit_log WHERE project_id = $1),
                    (SELECT count(*)::text FROM control_plane.outbox WHERE project_id = $1)",
            &[&project_id],
        )
        .await
        .unwrap();
    (0..8).map(|i| row.get(i)).collect()
}

/// Stray messages for a project: on every stage queue a malformed body naming
/// it, a message of its current run for another stage, one of an unknown run
/// and one of its current run for that queue's stage; on every DLQ a message of
/// its current run. `legit` lists the (queue, stage) pairs left out because
/// they are the project's own next work, not strays.
async fn send_strays(env: &TestEnv, created: &CreatedProject, legit: &[(&str, Stage)]) -> usize {
    let current = StageMessage {
        project_id: created.project_id,
        run_id: created.run_id,
        stage: Stage::Validate,
        correlation_id: created.correlation_id,
    };
    let mut sent = 0;
    for stage in Stage::ALL {
        let queue = stage.queue_name();
        let mut bodies = vec![
            current
                .for_stage(stage)
                .to_body()
                .replace('}', ",\"extra\":1}"),
            current
                .for_stage(stage.next().unwrap_or(Stage::Validate))
                .to_body(),
            StageMessage {
                run_id: Uuid::new_v4(),
                ..current.for_stage(stage)
            }
            .to_body(),
        ];
        if !legit.contains(&(queue, stage)) {
            bodies.push(current.for_stage(stage).to_body());
        }
        let dlq = stage.dead_letter_queue_name();
        for body in &bodies {
            env.send_raw(queue, body).await;
            sent += 1;
        }
        if !legit.contains(&(dlq.as_str(), stage)) {
            env.send_raw(&dlq, &current.for_stage(stage).to_body())
                .await;
            sent += 1;
        }
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stray_messages_on_every_queue_change_nothing_of_a_ready_a_failed_or_a_provisioning_project(
) {
    let env = TestEnv::with(EnvOptions {
        scrypt_log_n: Some(10),
        ..Default::default()
    })
    .await;
    let ready = env.create(&project("stray-ready")).await;
    assert_ready(&env.settle(ready.project_id).await);
    let failed = env.create(&project("stray-failed")).await;
    env.exec(
        "UPDATE control_plane.projects SET region = 'mars-north-1' WHERE id = $1",
        &[&failed.project_id],
    )
    .await;
    assert_eq!(env.settle(failed.project_id).await.status, "failed");
    // Provisioning: validate done, create-database's message taken off its queue.
    let moving = env.create(&project("stray-moving")).await;
    assert_eq!(env.drain_queue("validate").await, 1);
    let first = StageMessage {
        project_id: moving.project_id,
        run_id: moving.run_id,
        stage: Stage::Validate,
        correlation_id: moving.correlation_id,
    };
    env.pipeline.run_stage(&first).await.unwrap();
    assert_eq!(env.drain_queue("create-database").await, 1);
    assert_eq!(env.report(moving.project_id).await.status, "provisioning");
    env.drain(&env.runner, Duration::from_secs(30)).await;

    let projects = [&ready, &failed, &moving];
    let mut before = Vec::new();
    for p in projects {
        before.push(snapshot(&env, p.project_id).await);
    }
    let mut sent = send_strays(&env, &ready, &[]).await;
    sent += send_strays(&env, &failed, &[]).await;
    // The moving project's own work: its current stage, on its queue and DLQ,
    // and a copy of the stage it finished (which re-sends its successor).
    sent += send_strays(
        &env,
        &moving,
        &[
            ("create-database", Stage::CreateDatabase),
            ("create-database-dlq", Stage::CreateDatabase),
            ("validate", Stage::Validate),
        ],
    )
    .await;
    // five per stage and project (four on its queue, one on its DLQ), less the moving one's own work
    assert_eq!(sent, 3 * Stage::ALL.len() * 5 - 3, "strays sent");
    env.drain(&env.runner, Duration::from_secs(60)).await;

    for (p, before) in projects.iter().zip(before) {
        assert_eq!(
            snapshot(&env, p.project_id).await,
            before,
            "a stray message changed project {}",
            p.project_id
        );
    }
    let logs = captured_logs();
    for reason in [
        "run already finished",
        "previous stage has not finished",
        "message on the wrong queue",
        "project or run not found",
        "malformed message acknowledged; nothing changed",
    ] {
        assert!(
            logs.contains(reason),
            "no message was ignored for: {reason}: {}",
            logs.lines()
                .filter(|l| l.contains("reason"))
                .map(|l| l
                    .split("\"reason\":")
                    .nth(1)
                    .unwrap_or("")
                    .split(',')
                    .next()
                    .unwrap_or(""))
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
}
