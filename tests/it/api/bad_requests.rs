//! Bad requests, as data: each row is sent once and must get its 4xx as a
//! problem answer naming the field and the rule, documented in openapi.yaml,
//! and change nothing (no row, no message, no secret).

use pipeline_tests::api::assert_response_documented;
use pipeline_tests::*;
use serde_json::Value;
use std::time::Duration;
use uuid::Uuid;

/// What a bad request sends as its body.
enum Body {
    /// These bytes (`""`: no body).
    Raw(&'static str),
    /// A valid project request.
    Good,
    /// A valid project request followed by these bytes.
    GoodThen(&'static str),
    /// A valid project request with the JSON value at a pointer set.
    Set(&'static str, &'static str),
    /// A valid project request without a top-level field.
    Unset(&'static str),
    /// A valid project request whose name has this many characters.
    NameOfLength(usize),
    /// This many spaces.
    Spaces(usize),
}
use Body::*;

const JSON: Option<&str> = Some("application/json");
const TEXT: Option<&str> = Some("text/plain");
const NO_TYPE: Option<&str> = None;
const NO_HEADER: Option<(&str, &str)> = None;

/// (what, "METHOD target" with {ready}/{unknown} for project ids, content
/// type, extra header, body, status, field named ("" for none), the route it
/// is documented under ("" for none)).
type Case = (
    &'static str,
    &'static str,
    Option<&'static str>,
    Option<(&'static str, &'static str)>,
    Body,
    u16,
    &'static str,
    &'static str,
);

#[rustfmt::skip]
const CASES: &[Case] = &[
    ("truncated JSON", "POST /projects", JSON, NO_HEADER, Raw(r#"{"name": "x", "region": "#), 400, "", "post /projects"),
    ("trailing garbage", "POST /projects", JSON, NO_HEADER, GoodThen(" x"), 400, "", "post /projects"),
    ("empty body", "POST /projects", JSON, NO_HEADER, Raw(""), 400, "", "post /projects"),
    ("array instead of object", "POST /projects", JSON, NO_HEADER, Raw("[1,2]"), 400, "body", "post /projects"),
    ("name of the wrong type", "POST /projects", JSON, NO_HEADER, Set("/name", "5"), 400, "name", "post /projects"),
    ("missing name", "POST /projects", JSON, NO_HEADER, Unset("name"), 400, "name", "post /projects"),
    ("missing region", "POST /projects", JSON, NO_HEADER, Unset("region"), 400, "region", "post /projects"),
    ("owner_id not a UUID", "POST /projects", JSON, NO_HEADER, Set("/owner_id", r#""abc""#), 400, "owner_id", "post /projects"),
    ("organization_id not a UUID", "POST /projects", JSON, NO_HEADER, Set("/organization_id", r#""1234""#), 400, "organization_id", "post /projects"),
    ("nil owner_id", "POST /projects", JSON, NO_HEADER, Set("/owner_id", r#""00000000-0000-0000-0000-000000000000""#), 422, "owner_id", "post /projects"),
    ("unknown region", "POST /projects", JSON, NO_HEADER, Set("/region", r#""mars-north-1""#), 422, "region", "post /projects"),
    ("malformed region", "POST /projects", JSON, NO_HEADER, Set("/region", r#""US EAST""#), 422, "region", "post /projects"),
    ("key count 0", "POST /projects", JSON, NO_HEADER, Set("/api_keys/count", "0"), 422, "api_keys.count", "post /projects"),
    ("key count 11", "POST /projects", JSON, NO_HEADER, Set("/api_keys/count", "11"), 422, "api_keys.count", "post /projects"),
    ("key count as text", "POST /projects", JSON, NO_HEADER, Set("/api_keys/count", r#""two""#), 400, "api_keys.count", "post /projects"),
    ("prefix with SQL", "POST /projects", JSON, NO_HEADER, Set("/api_keys/prefix", r#""x'; DROP TABLE control_plane.projects; --""#), 422, "api_keys.prefix", "post /projects"),
    ("prefix with a control character", "POST /projects", JSON, NO_HEADER, Set("/api_keys/prefix", r#""ab\u0007c""#), 422, "api_keys.prefix", "post /projects"),
    ("empty name", "POST /projects", JSON, NO_HEADER, Set("/name", r#""""#), 422, "name", "post /projects"),
    ("name with a NUL", "POST /projects", JSON, NO_HEADER, Set("/name", r#""a\u0000b""#), 422, "name", "post /projects"),
    ("name too long", "POST /projects", JSON, NO_HEADER, NameOfLength(101), 422, "name", "post /projects"),
    ("unknown field", "POST /projects", JSON, NO_HEADER, Set("/plan", r#""pro""#), 400, "plan", "post /projects"),
    ("unknown nested field", "POST /projects", JSON, NO_HEADER, Set("/services/billing", "true"), 400, "services.billing", "post /projects"),
    ("service flag of the wrong type", "POST /projects", JSON, NO_HEADER, Set("/services/auth", r#""yes""#), 400, "services.auth", "post /projects"),
    ("1 MB body", "POST /projects", JSON, NO_HEADER, Spaces(1024 * 1024), 413, "", "post /projects"),
    ("wrong content type", "POST /projects", TEXT, NO_HEADER, Good, 415, "content-type", "post /projects"),
    ("no content type", "POST /projects", NO_TYPE, NO_HEADER, Good, 415, "content-type", "post /projects"),
    ("bad Idempotency-Key", "POST /projects", JSON, Some(("idempotency-key", "has spaces in it")), Good, 400, "Idempotency-Key", "post /projects"),
    ("project id not a UUID", "GET /projects/not-a-uuid", JSON, NO_HEADER, Raw(""), 400, "id", "get /projects/{id}"),
    ("unknown project", "GET /projects/{unknown}", JSON, NO_HEADER, Raw(""), 404, "", "get /projects/{id}"),
    ("wrong method", "PUT /projects", JSON, NO_HEADER, Raw(""), 405, "", "post /projects"),
    ("wrong method on a project", "PATCH /projects/{ready}", JSON, NO_HEADER, Raw(""), 405, "", "get /projects/{id}"),
    ("purge other than now", "DELETE /projects/{ready}?purge=later", JSON, NO_HEADER, Raw(""), 400, "purge", "delete /projects/{id}"),
    ("unknown delete parameter", "DELETE /projects/{ready}?force=1", JSON, NO_HEADER, Raw(""), 400, "force", "delete /projects/{id}"),
    ("purge=now of a ready project", "DELETE /projects/{ready}?purge=now", JSON, NO_HEADER, Raw(""), 409, "", "delete /projects/{id}"),
    ("delete of an unknown project", "DELETE /projects/{unknown}", JSON, NO_HEADER, Raw(""), 404, "", "delete /projects/{id}"),
    ("resume of a ready project", "POST /projects/{ready}/resume", JSON, NO_HEADER, Raw(""), 409, "", "post /projects/{id}/resume"),
    ("restore of a ready project", "POST /projects/{ready}/restore", JSON, NO_HEADER, Raw(""), 409, "", "post /projects/{id}/restore"),
    ("suspend with a body", "POST /projects/{ready}/suspend", JSON, NO_HEADER, Raw(r#"{"now":true}"#), 400, "now", "post /projects/{id}/suspend"),
    ("suspend of an unknown project", "POST /projects/{unknown}/suspend", JSON, NO_HEADER, Raw(""), 404, "", "post /projects/{id}/suspend"),
    ("suspend of a project id that is not a UUID", "POST /projects/nope/suspend", JSON, NO_HEADER, Raw(""), 400, "id", "post /projects/{id}/suspend"),
    ("wrong method on suspend", "GET /projects/{ready}/suspend", JSON, NO_HEADER, Raw(""), 405, "", "post /projects/{id}/suspend"),
    ("unknown run kind", "GET /provisioning/jobs?kind=remove", JSON, NO_HEADER, Raw(""), 400, "kind", "get /provisioning/jobs"),
    ("unknown route", "GET /nope", JSON, NO_HEADER, Raw(""), 404, "", ""),
    ("unknown job status", "GET /provisioning/jobs?status=bogus", JSON, NO_HEADER, Raw(""), 400, "status", "get /provisioning/jobs"),
    ("limit 0", "GET /provisioning/jobs?limit=0", JSON, NO_HEADER, Raw(""), 400, "limit", "get /provisioning/jobs"),
    ("limit not a number", "GET /provisioning/jobs?limit=ten", JSON, NO_HEADER, Raw(""), 400, "limit", "get /provisioning/jobs"),
    ("forged cursor", "GET /provisioning/jobs?cursor=zzz", JSON, NO_HEADER, Raw(""), 400, "cursor", "get /provisioning/jobs"),
    ("unknown query parameter", "GET /provisioning/jobs?color=red", JSON, NO_HEADER, Raw(""), 400, "color", "get /provisioning/jobs"),
    ("stuck threshold out of range", "GET /admin/provisioning?stuck_after_seconds=0", JSON, NO_HEADER, Raw(""), 400, "stuck_after_seconds", "get /admin/provisioning"),
    ("unknown admin query parameter", "GET /admin/provisioning?verbose=1", JSON, NO_HEADER, Raw(""), 400, "verbose", "get /admin/provisioning"),
    ("retry of a ready project", "POST /projects/{ready}/provisioning/retry", JSON, NO_HEADER, Raw(""), 409, "", "post /projects/{id}/provisioning/retry"),
    ("retry of an unknown project", "POST /projects/{unknown}/provisioning/retry", JSON, NO_HEADER, Raw(""), 404, "", "post /projects/{id}/provisioning/retry"),
    ("retry with a body", "POST /projects/{ready}/provisioning/retry", JSON, NO_HEADER, Raw(r#"{"force":true}"#), 400, "force", "post /projects/{id}/provisioning/retry"),
    ("unknown scope", "POST /projects/{ready}/api-keys", JSON, NO_HEADER, Raw(r#"{"scopes":["admin"]}"#), 400, "scopes", "post /projects/{id}/api-keys"),
    ("no scopes", "POST /projects/{ready}/api-keys", JSON, NO_HEADER, Raw(r#"{"scopes":[]}"#), 400, "scopes", "post /projects/{id}/api-keys"),
    ("key request of the wrong content type", "POST /projects/{ready}/api-keys", TEXT, NO_HEADER, Raw(r#"{"scopes":["read"]}"#), 415, "content-type", "post /projects/{id}/api-keys"),
    ("key for an unknown project", "POST /projects/{unknown}/api-keys", JSON, NO_HEADER, Raw(""), 404, "", "post /projects/{id}/api-keys"),
    ("malformed key id", "DELETE /projects/{ready}/api-keys/XYZ", JSON, NO_HEADER, Raw(""), 400, "key_id", "delete /projects/{id}/api-keys/{key_id}"),
    ("unknown key", "DELETE /projects/{ready}/api-keys/00000000deadbeef", JSON, NO_HEADER, Raw(""), 404, "", "delete /projects/{id}/api-keys/{key_id}"),
];

fn body(body: &Body, good: &Value) -> Vec<u8> {
    let set = |pointer: &str, value: Value| {
        let mut v = good.clone();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        v.pointer_mut(parent)
            .unwrap()
            .as_object_mut()
            .unwrap()
            .insert(key.to_owned(), value);
        v.to_string().into_bytes()
    };
    match body {
        Raw(bytes) => bytes.as_bytes().to_vec(),
        Good => good.to_string().into_bytes(),
        GoodThen(tail) => format!("{good}{tail}").into_bytes(),
        Set(pointer, json) => set(pointer, serde_json::from_str(json).unwrap()),
        Unset(key) => {
            let mut v = good.clone();
            v.as_object_mut().unwrap().remove(*key);
            v.to_string().into_bytes()
        }
        NameOfLength(n) => set("/name", Value::String("n".repeat(*n))),
        Spaces(n) => vec![b' '; *n],
    }
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
        "outbox",
    ] {
        counts.push(env.rows(table).await);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_the_right_4xx_naming_the_field_and_change_nothing() {
    let env = TestEnv::new().await;
    let ready = env.create(&project("ready")).await.project_id;
    assert_ready(&env.settle(ready).await);
    env.drain(&env.runner, Duration::from_secs(20)).await;
    let good = serde_json::to_value(project("valid")).unwrap();
    let unknown = Uuid::new_v4();

    let before = state(&env).await;
    for (what, request, content_type, extra_header, sent, status, field, doc) in CASES {
        let (method, target) = request.split_once(' ').unwrap();
        let target = target
            .replace("{ready}", &ready.to_string())
            .replace("{unknown}", &unknown.to_string());
        let mut headers: Vec<(&str, &str)> = content_type
            .map(|ct| ("content-type", ct))
            .into_iter()
            .collect();
        headers.extend(*extra_header);
        let response = env
            .call(method, &target, &headers, &body(sent, &good))
            .await;
        let problem = response.body.clone().unwrap_or(Value::Null);
        let field = (!field.is_empty()).then_some(*field);
        assert_eq!(response.status, *status, "{what}: {problem}");
        assert_eq!(
            response.header("content-type"),
            Some("application/problem+json"),
            "{what}"
        );
        assert_eq!(problem["status"], *status, "{what}");
        assert_eq!(problem["field"].as_str(), field, "{what}: {problem}");
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(!detail.is_empty(), "{what}: no detail");
        if let Some(field) = field {
            assert!(
                detail.contains(field) || *status == 415,
                "{what}: detail does not name {field}: {detail}"
            );
        }
        if *status == 405 {
            assert!(
                response.header("allow").is_some(),
                "{what}: no Allow header"
            );
        }
        if let Some((method, route)) = doc.split_once(' ') {
            assert_response_documented(route, method, &response);
        }
        assert_eq!(
            state(&env).await,
            before,
            "{what}: the request changed something"
        );
    }
    println!(
        "{} bad requests, each refused with its 4xx and no change",
        CASES.len()
    );
}
