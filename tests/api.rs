//! The control-plane API against the real stack: every route through its sample
//! API Gateway event, responses checked against openapi.yaml, idempotency under
//! concurrency, a table of bad requests that change nothing, retry and revoke.

use pipeline_tests::api::{assert_documented, assert_response_documented};
use pipeline_tests::*;
use provisioning::api_keys::verify_key;
use provisioning::domain::Service;
use serde_json::{json, Value};
use std::time::Duration;
use uuid::Uuid;

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

async fn active_keys_in_secret(env: &TestEnv, project_id: Uuid) -> Vec<String> {
    plaintext_keys(env, project_id).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_its_sample_event_as_openapi_yaml_says() {
    let env = TestEnv::new().await;
    let none = "-";

    let (status, headers, body) = env
        .send_documented_event("api-create-project.json", (none, none), "/projects", "post")
        .await;
    assert_eq!(status, 202, "{body:?}");
    let body = body.unwrap();
    let id = body["project_id"].as_str().unwrap().to_owned();
    assert_eq!(
        header(&headers, "location"),
        Some(format!("/projects/{id}").as_str())
    );
    let project_id: Uuid = id.parse().unwrap();
    assert_ready(&env.settle(project_id).await);

    let (status, _, body) = env
        .send_documented_event("api-get-project.json", (&id, none), "/projects/{id}", "get")
        .await;
    assert_eq!(status, 200);
    let report = body.unwrap();
    assert_eq!(report["status"], "ready");
    assert_eq!(report["timeline"].as_array().unwrap().len(), 6);
    let plaintexts = active_keys_in_secret(&env, project_id).await;
    for plain in &plaintexts {
        assert!(
            !report.to_string().contains(plain.as_str()),
            "GET /projects/{{id}} shows a key"
        );
    }

    let (status, _, _) = env
        .send_documented_event(
            "api-list-jobs.json",
            (none, none),
            "/provisioning/jobs",
            "get",
        )
        .await;
    assert_eq!(status, 200);

    let (status, _, body) = env
        .send_documented_event(
            "api-admin-provisioning.json",
            (none, none),
            "/admin/provisioning",
            "get",
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body.unwrap()["projects_by_status"]["ready"], 1);

    let (status, _, body) = env
        .send_documented_event(
            "api-create-api-key.json",
            (&id, none),
            "/projects/{id}/api-keys",
            "post",
        )
        .await;
    assert_eq!(status, 201, "{body:?}");
    let issued = body.unwrap();
    let key = issued["key"].as_str().unwrap().to_owned();
    let key_id = issued["id"].as_str().unwrap().to_owned();
    assert_eq!(issued["scopes"], json!(["read"]));
    let db = env.db().await;
    let verified = verify_key(&db, &key)
        .await
        .unwrap()
        .expect("the issued key verifies");
    assert_eq!(
        (verified.project_id, verified.scopes.clone()),
        (project_id, vec!["read".to_owned()])
    );
    assert_eq!(active_keys_in_secret(&env, project_id).await.len(), 3);
    // The plaintext is shown once: never again in the project's status.
    let (_, _, report) = env.send_event("api-get-project.json", &id, none).await;
    assert!(!report.unwrap().to_string().contains(&key));

    let (status, _, _) = env
        .send_documented_event(
            "api-revoke-api-key.json",
            (&id, &key_id),
            "/projects/{id}/api-keys/{key_id}",
            "delete",
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(
        verify_key(&db, &key).await.unwrap(),
        None,
        "a revoked key no longer verifies"
    );
    let remaining = active_keys_in_secret(&env, project_id).await;
    assert_eq!(remaining.len(), 2);
    assert!(!remaining.contains(&key), "the revoked key left the secret");
    for plain in &remaining {
        assert!(
            verify_key(&db, plain).await.unwrap().is_some(),
            "other keys still verify"
        );
    }
    let (status, _, _) = env
        .send_event("api-revoke-api-key.json", &id, &key_id)
        .await;
    assert_eq!(status, 204, "revoking twice is harmless");

    let (status, _, _) = env
        .send_documented_event(
            "api-retry-project.json",
            (&id, none),
            "/projects/{id}/provisioning/retry",
            "post",
        )
        .await;
    assert_eq!(status, 409, "a ready project cannot be retried");
}

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
    assert_eq!(
        env.db()
            .await
            .query_one("SELECT count(*) FROM control_plane.projects", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        1
    );
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
    assert_eq!(
        env.db()
            .await
            .query_one("SELECT count(*) FROM control_plane.projects", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        3
    );
}

/// Everything a request could have written: row counts, messages, secrets.
async fn state(env: &TestEnv) -> (Vec<i64>, u64, Vec<(String, usize)>, Vec<Option<String>>) {
    let db = env.db().await;
    let mut counts = Vec::new();
    for table in [
        "projects",
        "provisioning_runs",
        "provisioning_stages",
        "idempotency_keys",
        "audit_log",
        "api_keys",
        "project_services",
        "project_resources",
    ] {
        counts.push(
            db.query_one(&format!("SELECT count(*) FROM control_plane.{table}"), &[])
                .await
                .unwrap()
                .get(0),
        );
    }
    let revoked = db
        .query(
            "SELECT revoked_at::text FROM control_plane.api_keys ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut secrets = Vec::new();
    for name in env.secret_names().await {
        let versions = env.secret_version_count(&name).await;
        secrets.push((name, versions));
    }
    (counts, env.total_messages().await, secrets, revoked)
}

struct Bad {
    what: &'static str,
    method: &'static str,
    target: String,
    content_type: Option<&'static str>,
    extra_header: Option<(&'static str, &'static str)>,
    body: Vec<u8>,
    status: u16,
    field: Option<&'static str>,
    /// (route, method) in openapi.yaml, when the route exists.
    doc: Option<(&'static str, &'static str)>,
}

fn bad(
    what: &'static str,
    method: &'static str,
    target: impl Into<String>,
    body: impl Into<Vec<u8>>,
    status: u16,
    field: Option<&'static str>,
) -> Bad {
    Bad {
        what,
        method,
        target: target.into(),
        content_type: Some("application/json"),
        extra_header: None,
        body: body.into(),
        status,
        field,
        doc: None,
    }
}

fn create(what: &'static str, body: Value, status: u16, field: Option<&'static str>) -> Bad {
    Bad {
        doc: Some(("/projects", "post")),
        ..bad(what, "POST", "/projects", body.to_string(), status, field)
    }
}

fn with(mut base: Value, pointer: &str, value: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    if value.is_null() && key == "-" {
        return base;
    }
    base.pointer_mut(parent)
        .unwrap()
        .as_object_mut()
        .unwrap()
        .insert(key.to_owned(), value);
    base
}

fn without(mut base: Value, key: &str) -> Value {
    base.as_object_mut().unwrap().remove(key);
    base
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_the_right_4xx_naming_the_field_and_change_nothing() {
    let env = TestEnv::new().await;
    let ready = env.create(&project("ready")).await.project_id;
    assert_ready(&env.settle(ready).await);
    env.drain(&env.runner, Duration::from_secs(20)).await;
    let good = serde_json::to_value(project("valid")).unwrap();
    let unknown = Uuid::new_v4();
    let key_route = Some(("/projects/{id}/api-keys", "post"));
    let retry_route = Some(("/projects/{id}/provisioning/retry", "post"));
    let jobs = Some(("/provisioning/jobs", "get"));

    let cases = vec![
        Bad {
            doc: Some(("/projects", "post")),
            ..bad(
                "truncated JSON",
                "POST",
                "/projects",
                r#"{"name": "x", "region": "#,
                400,
                None,
            )
        },
        Bad {
            doc: Some(("/projects", "post")),
            ..bad(
                "trailing garbage",
                "POST",
                "/projects",
                format!("{good} x"),
                400,
                None,
            )
        },
        Bad {
            doc: Some(("/projects", "post")),
            ..bad("empty body", "POST", "/projects", "", 400, None)
        },
        create("array instead of object", json!([1, 2]), 400, Some("body")),
        create(
            "name of the wrong type",
            with(good.clone(), "/name", json!(5)),
            400,
            Some("name"),
        ),
        create(
            "missing name",
            without(good.clone(), "name"),
            400,
            Some("name"),
        ),
        create(
            "missing region",
            without(good.clone(), "region"),
            400,
            Some("region"),
        ),
        create(
            "owner_id not a UUID",
            with(good.clone(), "/owner_id", json!("abc")),
            400,
            Some("owner_id"),
        ),
        create(
            "organization_id not a UUID",
            with(good.clone(), "/organization_id", json!("1234")),
            400,
            Some("organization_id"),
        ),
        create(
            "nil owner_id",
            with(good.clone(), "/owner_id", json!(Uuid::nil())),
            422,
            Some("owner_id"),
        ),
        create(
            "unknown region",
            with(good.clone(), "/region", json!("mars-north-1")),
            422,
            Some("region"),
        ),
        create(
            "malformed region",
            with(good.clone(), "/region", json!("US EAST")),
            422,
            Some("region"),
        ),
        create(
            "key count 0",
            with(good.clone(), "/api_keys/count", json!(0)),
            422,
            Some("api_keys.count"),
        ),
        create(
            "key count 11",
            with(good.clone(), "/api_keys/count", json!(11)),
            422,
            Some("api_keys.count"),
        ),
        create(
            "key count as text",
            with(good.clone(), "/api_keys/count", json!("two")),
            400,
            Some("api_keys.count"),
        ),
        create(
            "prefix with SQL",
            with(
                good.clone(),
                "/api_keys/prefix",
                json!("x'; DROP TABLE control_plane.projects; --"),
            ),
            422,
            Some("api_keys.prefix"),
        ),
        create(
            "prefix with a control character",
            with(good.clone(), "/api_keys/prefix", json!("ab\u{7}c")),
            422,
            Some("api_keys.prefix"),
        ),
        create(
            "empty name",
            with(good.clone(), "/name", json!("")),
            422,
            Some("name"),
        ),
        create(
            "name with a NUL",
            with(good.clone(), "/name", json!("a\u{0}b")),
            422,
            Some("name"),
        ),
        create(
            "name too long",
            with(good.clone(), "/name", json!("n".repeat(101))),
            422,
            Some("name"),
        ),
        create(
            "unknown field",
            with(good.clone(), "/plan", json!("pro")),
            400,
            Some("plan"),
        ),
        create(
            "unknown nested field",
            with(good.clone(), "/services/billing", json!(true)),
            400,
            Some("services.billing"),
        ),
        create(
            "service flag of the wrong type",
            with(good.clone(), "/services/auth", json!("yes")),
            400,
            Some("services.auth"),
        ),
        Bad {
            doc: Some(("/projects", "post")),
            ..bad(
                "1 MB body",
                "POST",
                "/projects",
                vec![b' '; 1024 * 1024],
                413,
                None,
            )
        },
        Bad {
            content_type: Some("text/plain"),
            doc: Some(("/projects", "post")),
            ..bad(
                "wrong content type",
                "POST",
                "/projects",
                good.to_string(),
                415,
                Some("content-type"),
            )
        },
        Bad {
            content_type: None,
            doc: Some(("/projects", "post")),
            ..bad(
                "no content type",
                "POST",
                "/projects",
                good.to_string(),
                415,
                Some("content-type"),
            )
        },
        Bad {
            extra_header: Some(("idempotency-key", "has spaces in it")),
            doc: Some(("/projects", "post")),
            ..bad(
                "bad Idempotency-Key",
                "POST",
                "/projects",
                good.to_string(),
                400,
                Some("Idempotency-Key"),
            )
        },
        Bad {
            doc: Some(("/projects/{id}", "get")),
            ..bad(
                "project id not a UUID",
                "GET",
                "/projects/not-a-uuid",
                "",
                400,
                Some("id"),
            )
        },
        Bad {
            doc: Some(("/projects/{id}", "get")),
            ..bad(
                "unknown project",
                "GET",
                format!("/projects/{unknown}"),
                "",
                404,
                None,
            )
        },
        Bad {
            doc: Some(("/projects", "post")),
            ..bad("wrong method", "PUT", "/projects", "", 405, None)
        },
        Bad {
            doc: Some(("/projects/{id}", "get")),
            ..bad(
                "wrong method on a project",
                "DELETE",
                format!("/projects/{ready}"),
                "",
                405,
                None,
            )
        },
        bad("unknown route", "GET", "/nope", "", 404, None),
        Bad {
            doc: jobs,
            ..bad(
                "unknown job status",
                "GET",
                "/provisioning/jobs?status=bogus",
                "",
                400,
                Some("status"),
            )
        },
        Bad {
            doc: jobs,
            ..bad(
                "limit 0",
                "GET",
                "/provisioning/jobs?limit=0",
                "",
                400,
                Some("limit"),
            )
        },
        Bad {
            doc: jobs,
            ..bad(
                "limit not a number",
                "GET",
                "/provisioning/jobs?limit=ten",
                "",
                400,
                Some("limit"),
            )
        },
        Bad {
            doc: jobs,
            ..bad(
                "forged cursor",
                "GET",
                "/provisioning/jobs?cursor=zzz",
                "",
                400,
                Some("cursor"),
            )
        },
        Bad {
            doc: jobs,
            ..bad(
                "unknown query parameter",
                "GET",
                "/provisioning/jobs?color=red",
                "",
                400,
                Some("color"),
            )
        },
        Bad {
            doc: retry_route,
            ..bad(
                "retry of a ready project",
                "POST",
                format!("/projects/{ready}/provisioning/retry"),
                "",
                409,
                None,
            )
        },
        Bad {
            doc: retry_route,
            ..bad(
                "retry of an unknown project",
                "POST",
                format!("/projects/{unknown}/provisioning/retry"),
                "",
                404,
                None,
            )
        },
        Bad {
            doc: retry_route,
            ..bad(
                "retry with a body",
                "POST",
                format!("/projects/{ready}/provisioning/retry"),
                r#"{"force":true}"#,
                400,
                Some("force"),
            )
        },
        Bad {
            doc: key_route,
            ..bad(
                "unknown scope",
                "POST",
                format!("/projects/{ready}/api-keys"),
                r#"{"scopes":["admin"]}"#,
                400,
                Some("scopes"),
            )
        },
        Bad {
            doc: key_route,
            ..bad(
                "no scopes",
                "POST",
                format!("/projects/{ready}/api-keys"),
                r#"{"scopes":[]}"#,
                400,
                Some("scopes"),
            )
        },
        Bad {
            content_type: Some("text/plain"),
            doc: key_route,
            ..bad(
                "key request of the wrong content type",
                "POST",
                format!("/projects/{ready}/api-keys"),
                r#"{"scopes":["read"]}"#,
                415,
                Some("content-type"),
            )
        },
        Bad {
            doc: key_route,
            ..bad(
                "key for an unknown project",
                "POST",
                format!("/projects/{unknown}/api-keys"),
                "",
                404,
                None,
            )
        },
        Bad {
            doc: Some(("/projects/{id}/api-keys/{key_id}", "delete")),
            ..bad(
                "malformed key id",
                "DELETE",
                format!("/projects/{ready}/api-keys/XYZ"),
                "",
                400,
                Some("key_id"),
            )
        },
        Bad {
            doc: Some(("/projects/{id}/api-keys/{key_id}", "delete")),
            ..bad(
                "unknown key",
                "DELETE",
                format!("/projects/{ready}/api-keys/00000000deadbeef"),
                "",
                404,
                None,
            )
        },
    ];
    assert!(cases.len() >= 25);

    let before = state(&env).await;
    for case in &cases {
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(ct) = case.content_type {
            headers.push(("content-type", ct));
        }
        if let Some(h) = case.extra_header {
            headers.push(h);
        }
        let response = env
            .call(case.method, &case.target, &headers, &case.body)
            .await;
        let problem = response.body.clone().unwrap_or(Value::Null);
        assert_eq!(response.status, case.status, "{}: {problem}", case.what);
        assert_eq!(
            response.header("content-type"),
            Some("application/problem+json"),
            "{}",
            case.what
        );
        assert_eq!(problem["status"], case.status, "{}", case.what);
        assert_eq!(
            problem["field"].as_str(),
            case.field,
            "{}: {problem}",
            case.what
        );
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(!detail.is_empty(), "{}: no detail", case.what);
        if let Some(field) = case.field {
            assert!(
                detail.contains(field) || case.status == 415,
                "{}: detail does not name {field}: {detail}",
                case.what
            );
        }
        if case.status == 405 {
            assert!(
                response.header("allow").is_some(),
                "{}: no Allow header",
                case.what
            );
        }
        if let Some((route, method)) = case.doc {
            assert_documented(
                route,
                method,
                response.status,
                response.header("content-type"),
                response.body.as_ref(),
            );
        }
        assert_eq!(
            state(&env).await,
            before,
            "{}: the request changed something",
            case.what
        );
    }
    println!(
        "{} bad requests, each refused with its 4xx and no change",
        cases.len()
    );
}

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

    let response = env
        .call(
            "POST",
            &format!("/projects/{}/provisioning/retry", created.project_id),
            &[],
            b"",
        )
        .await;
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
    env.pipeline.queue.send(&old).await.unwrap();

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
    let second = env
        .call(
            "POST",
            &format!("/projects/{}/provisioning/retry", created.project_id),
            &[],
            b"",
        )
        .await;
    assert_eq!(second.status, 409);
}

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
                "SELECT count(*) FROM control_plane.outbox WHERE sent_at IS NOT NULL",
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
    let retry = |id: Uuid| {
        let env = &env;
        async move {
            env.call(
                "POST",
                &format!("/projects/{id}/provisioning/retry"),
                &[],
                b"",
            )
            .await
        }
    };
    let moving = retry(retried.project_id).await;
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
    let accepted = retry(retried.project_id).await;
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
        retry(swept.project_id).await.status,
        409,
        "ready is not retried"
    );
}
