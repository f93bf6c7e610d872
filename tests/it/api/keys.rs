//! Keys issued after provisioning: the quota.

use pipeline_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eleventh_active_key_is_refused() {
    let env = TestEnv::with(EnvOptions {
        scrypt_log_n: Some(10),
        ..Default::default()
    })
    .await;
    let created = env.create(&project("many-keys")).await;
    assert_ready(&env.settle(created.project_id).await);
    let target = format!("/projects/{}/api-keys", created.project_id);
    for _ in 0..8 {
        assert_eq!(env.call("POST", &target, &[], b"").await.status, 201);
    }
    let refused = env.call("POST", &target, &[], b"").await;
    assert_eq!(refused.status, 409, "{:?}", refused.body);
    assert!(refused.body.unwrap()["detail"]
        .as_str()
        .unwrap()
        .contains("quota exceeded: api_keys"));
    assert_eq!(plaintext_keys(&env, created.project_id).await.len(), 10);
}
