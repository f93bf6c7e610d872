//! Who did what: the caller's IAM principal (from the API Gateway request
//! context) is the actor in the audit log, its Idempotency-Key is its own, and
//! answers about work still moving carry Retry-After.

use pipeline_tests::api::{assert_response_documented, sample_event};
use pipeline_tests::*;
use serde_json::Value;
use uuid::Uuid;

const OPERATOR: &str = "arn:aws:sts::123456789012:assumed-role/ProvisioningOperator/operator";
const AUDITOR: &str = "arn:aws:sts::123456789012:assumed-role/ProvisioningAuditor/auditor";

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

async fn audit(env: &TestEnv, id: Uuid, query: &str) -> Value {
    let answer = env
        .call("GET", &format!("/projects/{id}/audit{query}"), &[], b"")
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_response_documented("/projects/{id}/audit", "get", &answer);
    answer.body.unwrap()
}

fn actors(page: &Value, action: &str) -> Vec<String> {
    page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == action)
        .map(|e| e["actor"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_principal_is_the_actor_its_key_is_its_own_and_moving_work_says_retry_after() {
    let env = TestEnv::new().await;
    let create = sample_event("api-create-project.json");
    assert!(
        create.contains(OPERATOR),
        "the sample is signed by the operator"
    );

    let (status, headers, body) = env.send_event_text(&create).await;
    assert_eq!(status, 202, "{body:?}");
    assert_eq!(header(&headers, "retry-after"), Some("2"));
    let first: Uuid = body.unwrap()["project_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    // The same caller, key and body: the same project.
    let (_, headers, body) = env.send_event_text(&create).await;
    assert_eq!(header(&headers, "idempotent-replayed"), Some("true"));
    assert_eq!(
        body.unwrap()["project_id"].as_str(),
        Some(first.to_string().as_str())
    );
    // Another caller with the same key and body: its own project.
    let (status, _, body) = env
        .send_event_text(&create.replace(OPERATOR, AUDITOR))
        .await;
    assert_eq!(status, 202);
    let second: Uuid = body.unwrap()["project_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(first, second, "two callers' keys never collide");
    // Each project's first event names its caller.
    for (id, caller) in [(first, OPERATOR), (second, AUDITOR)] {
        let actor: String = env
            .db()
            .await
            .query_one(
                "SELECT payload #>> '{detail,actor}' FROM control_plane.outbox
                  WHERE project_id = $1 AND payload ->> 'detail_type' = 'Project Requested'",
                &[&id],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(actor, caller);
    }

    // While it is provisioned, looking at it says when to look again; once ready, not.
    let moving = env
        .call("GET", &format!("/projects/{first}"), &[], b"")
        .await;
    assert_eq!(moving.header("retry-after"), Some("2"), "{:?}", moving.body);
    assert_ready(&env.settle(first).await);
    let ready = env
        .call("GET", &format!("/projects/{first}"), &[], b"")
        .await;
    assert_eq!(ready.header("retry-after"), None);

    // Changes through the API name their caller; the stages name themselves.
    let (status, headers, _) = env
        .send_event("api-suspend-project.json", &first.to_string(), "-")
        .await;
    assert_eq!(status, 202);
    assert_eq!(header(&headers, "retry-after"), Some("2"));
    env.settle_run(first).await;
    let page = audit(&env, first, "").await;
    assert_eq!(actors(&page, "project.created"), [OPERATOR]);
    assert_eq!(actors(&page, "suspend.requested"), [OPERATOR]);
    assert_eq!(actors(&page, "provisioning.ready"), ["finalize"]);
    assert_eq!(actors(&page, "suspend.succeeded"), ["access"]);
    assert_eq!(
        actors(&audit(&env, second, "").await, "project.created"),
        [AUDITOR]
    );
    // A direct call (no API Gateway context) is `local`.
    assert_eq!(env.operate(first, "resume").await.status, 202);
    assert_eq!(
        actors(&audit(&env, first, "").await, "resume.requested"),
        ["local"]
    );

    // Paged newest first, two at a time: every entry once, in order.
    let all: Vec<i64> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    let (mut paged, mut query) = (Vec::new(), "?limit=2".to_owned());
    loop {
        let page = audit(&env, first, &query).await;
        paged.extend(
            page["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_i64().unwrap()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => query = format!("?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    let latest = audit(&env, first, "").await;
    let now: Vec<i64> = latest["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        paged, now,
        "pages of two give every entry once, newest first"
    );
    assert!(now.len() > all.len() && now.windows(2).all(|w| w[0] > w[1]));
    let unknown = env
        .call(
            "GET",
            &format!("/projects/{}/audit", Uuid::new_v4()),
            &[],
            b"",
        )
        .await;
    assert_eq!(unknown.status, 404);
    let bad = env
        .call("GET", &format!("/projects/{first}/audit?limit=0"), &[], b"")
        .await;
    assert_eq!(
        (bad.status, bad.body.unwrap()["field"].as_str()),
        (400, Some("limit"))
    );
}
