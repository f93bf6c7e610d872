//! Many requests at once on the local HTTP API: no hold-and-wait.

use pipeline_tests::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_creates_on_the_local_api_get_no_5xx() {
    let env = TestEnv::new().await;
    let (base_url, stop) = env.serve_api().await;
    let client = http_client();
    let started = std::time::Instant::now();
    let answers = futures::future::join_all((0..50).map(|i| {
        let (client, base_url) = (&client, &base_url);
        async move {
            let response = client
                .post(format!("{base_url}/projects"))
                .header("content-type", "application/json")
                .header("idempotency-key", format!("fifty-{i}"))
                .json(&project(&format!("fifty-{i}")))
                .send()
                .await
                .expect("an answer");
            response.status().as_u16()
        }
    }))
    .await;
    let elapsed = started.elapsed();
    let _ = stop.send(true);
    eprintln!("50 concurrent creates answered in {elapsed:?}");
    assert_eq!(answers, vec![202; 50], "every create accepted, none 5xx");
    assert_eq!(
        env.db()
            .await
            .query_one(
                "SELECT count(*) FROM control_plane.outbox WHERE sent_at IS NOT NULL AND destination = 'stage'",
                &[]
            )
            .await
            .unwrap()
            .get::<_, i64>(0),
        50,
        "each first message sent"
    );
    assert_eq!(env.queue_depth("validate").await, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twelve_concurrent_key_issues_on_a_project_with_two_keys_give_eight_keys_then_conflicts() {
    let env = TestEnv::new().await;
    let created = env.create(&project("twelve")).await;
    assert_ready(&env.settle(created.project_id).await);
    let (base_url, stop) = env.serve_api().await;
    let client = http_client();
    let target = format!("{base_url}/projects/{}/api-keys", created.project_id);
    let started = std::time::Instant::now();
    let mut answers = futures::future::join_all((0..12).map(|_| async {
        let r = client.post(&target).send().await.expect("an answer");
        (r.status().as_u16(), started.elapsed())
    }))
    .await;
    let _ = stop.send(true);
    answers.sort();
    eprintln!("12 concurrent key issues: {answers:?}");
    let statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses, [[201; 8].as_slice(), &[409; 4]].concat());
    let slowest = answers.iter().map(|(_, t)| *t).max().unwrap();
    assert!(
        slowest < Duration::from_secs(10),
        "answered within seconds: {slowest:?}"
    );
    assert_eq!(plaintext_keys(&env, created.project_id).await.len(), 10);
}
