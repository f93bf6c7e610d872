//! Stuck projects: listed, re-kicked by the sweeper, retried by the operator.

use pipeline_tests::api::assert_response_documented;
use pipeline_tests::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_project_is_listed_rekicked_by_the_sweeper_and_retryable_while_a_moving_one_is_not()
{
    let env = TestEnv::with(EnvOptions {
        scrypt_log_n: Some(10),
        extra: vec![("STALL_MARGIN_SECONDS", "1".into())],
        ..Default::default()
    })
    .await;
    // Two projects whose first message is lost (taken off the queue).
    let swept = env.create(&project("lost-then-swept")).await;
    let retried = env.create(&project("lost-then-retried")).await;
    assert_eq!(env.drain_queue("validate").await, 2);
    let moving = env.retry(retried.project_id).await;
    assert_eq!(moving.status, 409, "not stuck yet: {moving:?}");

    // Past the visibility timeout plus the margin, both are listed as stuck.
    tokio::time::sleep(env.settings.stalled_after() + Duration::from_millis(200)).await;
    let summary = env.call("GET", "/admin/provisioning", &[], b"").await;
    assert_response_documented("/admin/provisioning", "get", &summary);
    let stuck: Vec<(String, String)> = summary.body.unwrap()["stuck"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["project_id"].as_str().unwrap().to_owned(),
                s["stage"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        stuck,
        [
            (swept.project_id.to_string(), "validate".to_owned()),
            (retried.project_id.to_string(), "validate".to_owned())
        ]
    );

    // The operator retries one; the sweeper re-kicks the other.
    let accepted = env.retry(retried.project_id).await;
    assert_eq!(accepted.status, 202, "{accepted:?}");
    assert_response_documented("/projects/{id}/provisioning/retry", "post", &accepted);
    assert_eq!(accepted.body.as_ref().unwrap()["status"], "requested");
    let report = env.runner.sweeper().sweep().await.unwrap();
    assert_eq!(report.runs_rekicked, 1, "{report:?}");
    for id in [swept.project_id, retried.project_id] {
        assert_ready(&env.settle(id).await);
    }
    let again = env.runner.sweeper().sweep().await.unwrap();
    assert_eq!(again.runs_rekicked, 0, "nothing stuck any more: {again:?}");
    assert_eq!(
        env.retry(swept.project_id).await.status,
        409,
        "ready is not retried"
    );
}
