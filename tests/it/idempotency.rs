//! Nothing lost, nothing doubled: duplicate, out-of-order, crashed and
//! concurrent deliveries all end in exactly one of everything.

use async_trait::async_trait;
use aws_sdk_sqs::types::Message;
use local_dev::{Delivery, Runner};
use pipeline_tests::*;
use provisioning::domain::{Service, Stage, StageMessage};
use provisioning::ports::MessageQueue;
use provisioning::StageError;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// Sends every stage message twice through the real SQS adapter.
struct DuplicatingQueue(Arc<dyn MessageQueue>);

#[async_trait]
impl MessageQueue for DuplicatingQueue {
    async fn send(&self, message: &StageMessage, group: &str) -> Result<(), StageError> {
        self.0.send(message, group).await?;
        self.0.send(message, group).await
    }
}

fn attempts(report: &provisioning::report::ProjectReport) -> Vec<(String, i32)> {
    report
        .timeline
        .iter()
        .map(|s| (s.stage.clone(), s.attempts))
        .collect()
}

fn all_once() -> Vec<(String, i32)> {
    Stage::PROVISION
        .iter()
        .map(|s| (s.as_str().to_owned(), 1))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_delivered_twice_and_out_of_order_gives_one_of_everything() {
    let env = TestEnv::new().await;
    let (pipeline, runner) = env.with_queue(Arc::new(DuplicatingQueue(env.pipeline.queue.clone())));
    let created = provisioning::project::create_project(
        &pipeline.db,
        pipeline.destinations(),
        &project("twice"),
        None,
    )
    .await
    .unwrap();
    let first = StageMessage {
        project_id: created.project_id,
        run_id: created.run_id,
        stage: Stage::Validate,
        correlation_id: created.correlation_id,
    };
    // Out of order: later stages' messages arrive before their predecessors ran.
    for stage in [Stage::CreateSchema, Stage::GenerateApiKeys, Stage::Finalize] {
        env.pipeline
            .queue
            .send(&first.for_stage(stage), "stray")
            .await
            .unwrap();
    }

    let report = env
        .settle_with(&runner, created.project_id, Duration::from_secs(60))
        .await;
    assert_ready(&report);
    env.drain(&runner, Duration::from_secs(30)).await;
    // Late duplicates after the run finished.
    for stage in [
        Stage::Validate,
        Stage::CreateDatabase,
        Stage::GenerateApiKeys,
    ] {
        env.pipeline
            .queue
            .send(&first.for_stage(stage), "stray")
            .await
            .unwrap();
    }
    env.drain(&runner, Duration::from_secs(30)).await;

    let report = env.report(created.project_id).await;
    assert_ready(&report);
    assert_eq!(attempts(&report), all_once(), "a duplicate re-ran a stage");
    assert_exactly_one_of_everything(&env, created.project_id, 2).await;
}

/// Polls one queue in crash mode until it has handled a message.
async fn crash_after_handling(runner: &Runner, queue: &str) {
    let report = eventually(queue, || async {
        let report = runner
            .poll_once(queue, Delivery::CrashBeforeDelete)
            .await
            .unwrap();
        (report.received > 0).then_some(report)
    })
    .await;
    assert_eq!(report.failed, 0, "{queue} reported a failure");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_every_acknowledgement_recovers_with_no_duplicate() {
    let env = TestEnv::new().await;
    let created = env.create(&project("crashy")).await;

    // Every stage does its work and "crashes" before deleting its message.
    for stage in Stage::PROVISION {
        crash_after_handling(&env.runner, stage.queue_name()).await;
    }
    assert_eq!(env.report(created.project_id).await.status, "ready");
    // The undeleted messages come back after the visibility timeout.
    env.drain(&env.runner, Duration::from_secs(30)).await;

    let report = env.report(created.project_id).await;
    assert_ready(&report);
    assert_eq!(attempts(&report), all_once());
    assert_exactly_one_of_everything(&env, created.project_id, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_creating_the_database_but_before_recording_it_is_finished_by_the_redelivery()
{
    let env = TestEnv::new().await;
    let created = env.create(&project("half-done")).await;
    crash_after_handling(&env.runner, "validate").await;
    crash_after_handling(&env.runner, "create-database").await;
    // The side effects exist but the success was never recorded.
    env.exec(
        "UPDATE control_plane.provisioning_stages SET status = 'running', finished_at = NULL
              WHERE run_id = $1 AND stage = 'create-database'",
        &[&created.run_id],
    )
    .await;

    let report = env.settle(created.project_id).await;
    env.drain(&env.runner, Duration::from_secs(30)).await;

    assert_ready(&report);
    let create_database = report
        .timeline
        .iter()
        .find(|s| s.stage == "create-database")
        .unwrap();
    assert_eq!(
        create_database.attempts, 2,
        "the redelivery ran the stage again"
    );
    assert_exactly_one_of_everything(&env, created.project_id, 2).await;
}

/// Every copy of a queue's next message, received and hidden for a minute,
/// and at least two: if the queue holds one, a copy of it is sent and received too.
async fn two_or_more_copies(env: &TestEnv, queue: &str) -> Vec<Message> {
    let receive = env
        .sqs
        .receive_message()
        .queue_url(env.queue_url(queue))
        .max_number_of_messages(10)
        .visibility_timeout(60)
        .wait_time_seconds(1);
    let visible = || async {
        let out = receive.clone().send().await.unwrap();
        Some(out.messages.unwrap_or_default()).filter(|m| !m.is_empty())
    };
    let mut copies = eventually(queue, visible).await;
    if copies.len() == 1 {
        env.send_raw(queue, copies[0].body().unwrap_or_default())
            .await;
        copies.extend(eventually(queue, visible).await);
    }
    copies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_stage_run_by_two_workers_at_once_does_its_work_once() {
    let env = TestEnv::new().await;
    // Two "Lambda instances" with their own connection pools, one message each.
    let mut worker_a = (*env.runner).clone();
    worker_a.batch_size = 1;
    let mut worker_b = Runner::new(env.sqs.clone(), env.another_instance().await);
    worker_b.batch_size = 1;
    let created = env.create(&project("contended")).await;

    for stage in Stage::PROVISION {
        let queue = stage.queue_name();
        let copies = two_or_more_copies(&env, queue).await;
        let (first, rest) = copies.split_at(1);
        // Both workers run the stage at the same moment, each on its own copy.
        let (a, b) = tokio::join!(
            worker_a.handle(queue, first, Delivery::Normal),
            worker_b.handle(queue, rest, Delivery::Normal)
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!((a.failed, b.failed), (0, 0), "{stage}: an error surfaced");
        assert_eq!(
            (a.deleted, b.deleted),
            (1, rest.len()),
            "{stage}: every copy is acknowledged"
        );
    }
    env.drain(&env.runner, Duration::from_secs(30)).await;

    let report = env.report(created.project_id).await;
    assert_ready(&report);
    assert_eq!(attempts(&report), all_once());
    assert_exactly_one_of_everything(&env, created.project_id, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_projects_provisioned_concurrently_each_get_their_own_database() {
    let env = TestEnv::new().await;
    let a = env.create(&project("first")).await;
    let b = env.create(&project("second")).await;

    let running = env.runner.spawn(2);
    let ra = env
        .wait_for_status(a.project_id, &["ready", "failed"], Duration::from_secs(60))
        .await;
    let rb = env
        .wait_for_status(b.project_id, &["ready", "failed"], Duration::from_secs(60))
        .await;
    running.stop().await;

    assert_ready(&ra);
    assert_ready(&rb);
    assert_ne!(ra.resources.database, rb.resources.database);
    for id in [a.project_id, b.project_id] {
        assert_eq!(
            env.count(
                "SELECT count(*) FROM control_plane.api_keys WHERE project_id = $1",
                id
            )
            .await,
            2
        );
    }
    assert_eq!(env.secret_names().await.len(), 4);
}

/// Runs the runner until `point` is reached for the project, then stops it
/// there: the handler's future is dropped as a killed process would be (its
/// connection closed, its lock released, its message not acknowledged).
/// The ledger of a ready project with every service: one row per tenant object.
async fn assert_complete_ledger(env: &TestEnv, project_id: Uuid) {
    let rows = strings(
        &**env.db().await,
        &format!(
            "SELECT resource_type || ':' || CASE WHEN resource_type = 'secret' THEN regexp_replace(resource_id, '^.*/', '') ELSE '' END
               FROM control_plane.project_resources
              WHERE project_id = '{project_id}' ORDER BY 1"
        ),
    )
    .await;
    assert_eq!(
        rows,
        [
            "database:",
            "database_role:",
            "schema:",
            "secret:api-keys",
            "secret:database",
            "service:",
            "service:",
            "service:"
        ],
        "the resource ledger is complete, nothing twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_each_stages_side_effects_and_its_commit_is_finished_once_by_the_redelivery(
) {
    let cases = Stage::PROVISION.map(|stage| async move {
        let server = registration_endpoint(Service::Auth, 200, None).await;
        let env = env_with_service(Service::Auth, &server).await;
        let created = env.create(&project(&format!("crash-{stage}"))).await;
        crash_at(
            &env,
            created.project_id,
            provisioning::stages::before_commit(stage),
        )
        .await;
        let crashed = env.report(created.project_id).await;
        assert_eq!(
            crashed
                .timeline
                .iter()
                .find(|s| s.stage == stage.as_str())
                .unwrap()
                .status,
            "running",
            "{stage}: the success was not committed"
        );

        let report = env.settle(created.project_id).await;
        env.drain(&env.runner, Duration::from_secs(30)).await;
        assert_ready(&report);
        let expected: Vec<_> = all_once()
            .into_iter()
            .map(|(s, n)| (s.clone(), if s == stage.as_str() { 2 } else { n }))
            .collect();
        assert_eq!(attempts(&report), expected, "{stage}: run again once");
        assert_exactly_one_of_everything(&env, created.project_id, 2).await;
        assert_complete_ledger(&env, created.project_id).await;
        assert_eq!(
            server.received_requests().await.unwrap().len(),
            1,
            "{stage}: the service was registered once"
        );
    });
    futures::future::join_all(cases).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_a_registration_and_its_rows_registers_again_with_the_same_key_and_records_once(
) {
    let server = registration_endpoint(Service::Auth, 200, None).await;
    let env = env_with_service(Service::Auth, &server).await;
    let created = env.create(&project("crash-registration")).await;
    crash_at(
        &env,
        created.project_id,
        provisioning::stages::AFTER_REGISTRATION,
    )
    .await;
    assert_eq!(
        env.count(
            "SELECT count(*) FROM control_plane.project_services WHERE project_id = $1",
            created.project_id
        )
        .await,
        0,
        "the registration's rows were not written"
    );

    let report = env.settle(created.project_id).await;
    assert_ready(&report);
    assert_exactly_one_of_everything(&env, created.project_id, 2).await;
    assert_complete_ledger(&env, created.project_id).await;
    let calls = server.received_requests().await.unwrap();
    let keys: Vec<_> = calls
        .iter()
        .map(|r| {
            r.headers
                .get("idempotency-key")
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        keys,
        vec![format!("{}:auth", created.project_id); 2],
        "called again after the crash, with the same Idempotency-Key"
    );
}
