//! Paging the provisioning jobs.

use pipeline_tests::api::assert_response_documented;
use pipeline_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_page_with_a_stable_cursor_and_filter_by_status() {
    let env = TestEnv::new().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            env.create(&project(&format!("p{i}")))
                .await
                .run_id
                .to_string(),
        );
    }
    let mut seen = Vec::new();
    let mut target = "/provisioning/jobs?limit=2".to_owned();
    loop {
        let page = env.call("GET", &target, &[], b"").await;
        assert_eq!(page.status, 200);
        assert_response_documented("/provisioning/jobs", "get", &page);
        let body = page.body.unwrap();
        let jobs = body["jobs"].as_array().unwrap();
        assert!(jobs.len() <= 2);
        seen.extend(
            jobs.iter()
                .map(|j| j["run_id"].as_str().unwrap().to_owned()),
        );
        match body["next_cursor"].as_str() {
            Some(cursor) => target = format!("/provisioning/jobs?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids, "newest first, each run exactly once");
    let failed = env
        .call("GET", "/provisioning/jobs?status=failed", &[], b"")
        .await;
    assert_eq!(failed.body.unwrap()["jobs"].as_array().unwrap().len(), 0);
    let running = env
        .call("GET", "/provisioning/jobs?status=running", &[], b"")
        .await;
    assert_eq!(running.body.unwrap()["jobs"].as_array().unwrap().len(), 5);
}
