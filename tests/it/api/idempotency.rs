//! The Idempotency-Key: one project per key, replays, a reused key refused.

use pipeline_tests::api::assert_response_documented;
use pipeline_tests::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_concurrent_posts_with_one_idempotency_key_create_exactly_one_project() {
    let env = TestEnv::new().await;
    let body = serde_json::to_value(project("once")).unwrap();
    let key = [("idempotency-key", "order-42")];

    let responses =
        futures::future::join_all((0..10).map(|_| env.post_json("/projects", &body, &key))).await;

    let accepted: Vec<_> = responses.iter().filter(|r| r.status == 202).collect();
    // The key is bound in the creating transaction: the others wait for it on
    // the key's index and replay its answer.
    assert_eq!(accepted.len(), 10, "{responses:?}");
    for r in &responses {
        assert_response_documented("/projects", "post", r);
    }
    let ids: std::collections::HashSet<_> = accepted
        .iter()
        .map(|r| r.body.as_ref().unwrap()["project_id"].clone())
        .collect();
    assert_eq!(ids.len(), 1, "every accepted answer names the same project");
    assert_eq!(env.rows("projects").await, 1);
    assert_eq!(
        env.queue_depth("validate").await,
        1,
        "one first-stage message"
    );

    // Later replays return the original answer; another body with the key is refused.
    let replay = env.post_json("/projects", &body, &key).await;
    assert_eq!(
        (replay.status, replay.body.as_ref()),
        (202, accepted[0].body.as_ref())
    );
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    let mut other = body.clone();
    other["name"] = json!("different");
    let refused = env.post_json("/projects", &other, &key).await;
    assert_eq!(
        (
            refused.status,
            refused.body.as_ref().unwrap()["field"].as_str()
        ),
        (422, Some("Idempotency-Key"))
    );
    // Without a key every POST is a new project.
    env.post_json("/projects", &body, &[]).await;
    env.post_json("/projects", &body, &[]).await;
    assert_eq!(env.rows("projects").await, 3);
}
