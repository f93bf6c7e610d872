//! The operator's retry of a failed project.

use pipeline_tests::api::assert_response_documented;
use pipeline_tests::*;
use provisioning::domain::Service;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_of_a_failed_project_resumes_from_the_failed_stage_and_reaches_ready() {
    let server = registration_endpoint(Service::Storage, 400, Some(1)).await;
    let env = env_with_service(Service::Storage, &server).await;
    let created = env.create(&project("second-chance")).await;
    let failed = env.settle(created.project_id).await;
    assert_eq!(
        (failed.status.as_str(), failed.failed_stage.as_deref()),
        ("failed", Some("register-services"))
    );

    let response = env.retry(created.project_id).await;
    assert_eq!(response.status, 202, "{:?}", response.body);
    assert_response_documented("/projects/{id}/provisioning/retry", "post", &response);
    let resumed = response.body.unwrap();
    assert_eq!(
        (
            resumed["resume_from"].as_str(),
            resumed["run_number"].as_i64()
        ),
        (Some("register-services"), Some(2))
    );
    // A late message of the failed run is ignored.
    let old = provisioning::StageMessage {
        project_id: created.project_id,
        run_id: created.run_id,
        stage: provisioning::Stage::GenerateApiKeys,
        correlation_id: created.correlation_id,
    };
    env.pipeline.queue.send(&old, "stray").await.unwrap();

    let report = env.settle(created.project_id).await;
    env.drain(&env.runner, Duration::from_secs(20)).await;

    assert_eq!(report.status, "ready", "{report:#?}");
    let statuses: Vec<_> = report
        .timeline
        .iter()
        .map(|s| (s.stage.as_str(), s.status.as_str()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("validate", "skipped"),
            ("create-database", "skipped"),
            ("create-schema", "skipped"),
            ("register-services", "succeeded"),
            ("generate-api-keys", "succeeded"),
            ("finalize", "succeeded"),
        ]
    );
    assert_eq!(report.run.as_ref().unwrap().number, 2);
    assert_eq!(
        env.count(
            "SELECT count(*) FROM control_plane.api_keys WHERE project_id = $1",
            created.project_id
        )
        .await,
        2
    );
    let second = env.retry(created.project_id).await;
    assert_eq!(second.status, 409);
}
