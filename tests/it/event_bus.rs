//! Lifecycle events: each change is written once to the outbox, in order per
//! project, by the transaction that makes it, and reaches the EventBridge bus
//! (read back through the environment's tap queue). No event carries a secret.

use local_dev::events::Delivered;
use pipeline_tests::*;
use provisioning::domain::{Service, Stage};
use secrecy::ExposeSecret;
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;
use uuid::Uuid;

/// Every field each event carries (null where it does not apply).
const FIELDS: [&str; 13] = [
    "event_id",
    "project_id",
    "organization_id",
    "region",
    "cluster_id",
    "run_id",
    "kind",
    "stage",
    "status",
    "error",
    "actor",
    "attempt",
    "time",
];

/// The project's events in the outbox, oldest first.
async fn told(env: &TestEnv, project_id: Uuid) -> Vec<Value> {
    env.db()
        .await
        .query(
            "SELECT payload FROM control_plane.outbox
              WHERE project_id = $1 AND destination = 'event' ORDER BY id",
            &[&project_id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// `(detail type, stage)` of each event.
fn steps(events: &[Value]) -> Vec<(String, Option<String>)> {
    events
        .iter()
        .map(|e| {
            (
                e["detail_type"].as_str().unwrap().to_owned(),
                e["detail"]["stage"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

fn step(detail_type: &str, stage: Option<Stage>) -> (String, Option<String>) {
    (detail_type.to_owned(), stage.map(|s| s.as_str().to_owned()))
}

fn of<'a>(events: &'a [Value], detail_type: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["detail_type"] == detail_type)
        .map(|e| &e["detail"])
        .collect()
}

/// The stage succeeded events of a provisioning from validate through `until`.
fn provisioned_until(until: Stage) -> Vec<(String, Option<String>)> {
    let mut expected = vec![step("Project Requested", None)];
    for stage in Stage::PROVISION {
        expected.push(step("Stage Succeeded", Some(stage)));
        if stage == Stage::Validate {
            expected.push(step("Project Provisioning", None));
        }
        if stage == until {
            break;
        }
    }
    expected
}

/// The JSON Schemas of docs/event-schemas.json, by detail type.
fn schemas() -> serde_json::Map<String, Value> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/event-schemas.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Checks `value` against the part of JSON Schema the event schemas use:
/// type, const, enum, minimum, required, properties, additionalProperties
/// (false) and items.
fn conforms(schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let type_name = |v: &Value| match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    if let Some(t) = schema.get("type") {
        let allowed: Vec<&str> = match t {
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            t => vec![t.as_str().unwrap()],
        };
        if !allowed.contains(&type_name(value)) {
            return Err(format!("{at}: {value} is not {allowed:?}"));
        }
    }
    if let Some(c) = schema.get("const") {
        if c != value {
            return Err(format!("{at}: {value} is not {c}"));
        }
    }
    if let Some(Value::Array(options)) = schema.get("enum") {
        if !options.contains(value) {
            return Err(format!("{at}: {value} is not one of {options:?}"));
        }
    }
    if let (Some(min), Some(n)) = (schema.get("minimum"), value.as_f64()) {
        if n < min.as_f64().unwrap() {
            return Err(format!("{at}: {n} < {min}"));
        }
    }
    if let (Some(items), Value::Array(values)) = (schema.get("items"), value) {
        for (i, v) in values.iter().enumerate() {
            conforms(items, v, &format!("{at}[{i}]"))?;
        }
    }
    if let Value::Object(fields) = value {
        let properties = schema.get("properties").and_then(Value::as_object);
        for required in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = required.as_str().unwrap();
            if !fields.contains_key(name) {
                return Err(format!("{at}: {name} is missing"));
            }
        }
        for (name, v) in fields {
            match properties.and_then(|p| p.get(name)) {
                Some(s) => conforms(s, v, &format!("{at}.{name}"))?,
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    return Err(format!("{at}: {name} is not in the schema"))
                }
                None => {}
            }
        }
    }
    Ok(())
}

/// Checks each event against its detail type's schema.
fn assert_documented(events: &[Value]) {
    let schemas = schemas();
    for e in events {
        let detail_type = e["detail_type"].as_str().unwrap();
        let schema = schemas
            .get(detail_type)
            .unwrap_or_else(|| panic!("{detail_type} has no schema in docs/event-schemas.json"));
        if let Err(why) = conforms(schema, &e["detail"], detail_type) {
            panic!("{why}: {}", e["detail"]);
        }
    }
}

/// Checks that what reached the bus is exactly what the outbox holds (each
/// event at least once, deduplicated by its id), with every field.
fn assert_delivered(delivered: &[Delivered], events: &[Value]) {
    assert_documented(events);
    let ids: BTreeSet<&str> = events
        .iter()
        .map(|e| e["detail"]["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), events.len(), "each event has its own id");
    let project = events[0]["detail"]["project_id"].as_str().unwrap();
    let ours: Vec<&Delivered> = delivered
        .iter()
        .filter(|d| d.event.detail["project_id"] == project)
        .collect();
    let got: BTreeSet<&str> = ours.iter().filter_map(|d| d.event.event_id()).collect();
    assert_eq!(got, ids, "every outbox event on the bus, and nothing else");
    let by_id: HashMap<&str, &Value> = events
        .iter()
        .map(|e| (e["detail"]["event_id"].as_str().unwrap(), e))
        .collect();
    for d in ours {
        assert_eq!(d.source, provisioning::events::SOURCE);
        let stored = by_id[d.event.event_id().unwrap()];
        assert_eq!(d.event.detail_type, stored["detail_type"]);
        assert_eq!(d.event.detail, stored["detail"]);
        for field in FIELDS {
            assert!(
                d.event.detail.get(field).is_some(),
                "{} lacks {field}: {}",
                d.event.detail_type,
                d.event.detail
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provisioning_tells_each_step_once_in_order_and_every_event_reaches_the_bus_without_a_secret(
) {
    let env = TestEnv::new().await;
    let request = project("told");
    let created = env.create(&request).await;
    let report = env.settle(created.project_id).await;
    assert_ready(&report);

    let events = told(&env, created.project_id).await;
    let mut expected = provisioned_until(Stage::RegisterServices);
    expected.push(step("Api Key Issued", None));
    expected.push(step("Api Key Issued", None));
    expected.push(step("Stage Succeeded", Some(Stage::GenerateApiKeys)));
    expected.push(step("Stage Succeeded", Some(Stage::Finalize)));
    expected.push(step("Project Ready", None));
    assert_eq!(steps(&events), expected);

    let times: Vec<&str> = events
        .iter()
        .map(|e| e["detail"]["time"].as_str().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    for e in &events {
        let d = &e["detail"];
        assert_eq!(d["run_id"], created.run_id.to_string());
        assert_eq!(d["kind"], "provision");
        assert_eq!(d["region"], "us-east-1");
        assert_eq!(
            d["organization_id"],
            request.organization_id.unwrap().to_string()
        );
    }
    let requested = of(&events, "Project Requested")[0];
    assert_eq!(
        (&requested["status"], &requested["actor"]),
        (&Value::from("requested"), &Value::from("local"))
    );
    for d in of(&events, "Stage Succeeded") {
        assert_eq!(d["attempt"], 1, "{d}");
        assert_eq!(d["actor"], d["stage"], "a stage's own change names it");
        assert!(d["duration_ms"].as_i64().is_some(), "{d}");
    }
    let ready = of(&events, "Project Ready")[0];
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["previous_status"], "provisioning");
    assert_eq!(ready["provisioning_ms"], report.provisioning_ms.unwrap());
    assert_eq!(ready["cluster_id"], report.cluster.as_deref().unwrap());
    let keys: Vec<&str> = of(&events, "Api Key Issued")
        .iter()
        .map(|d| d["key_id"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), 2);

    let (delivered, bodies) = env.event_tap.drain(Duration::from_secs(1)).await.unwrap();
    assert_delivered(&delivered, &events);

    // No secret: not a key, its secret part, its hash, nor the tenant's password.
    let plaintexts = plaintext_keys(&env, created.project_id).await;
    let mut secrets: Vec<String> = plaintexts.clone();
    secrets.extend(
        plaintexts
            .iter()
            .map(|p| provisioning::keys::parse(p).unwrap().secret.to_owned()),
    );
    let hashes = env
        .db()
        .await
        .query(
            "SELECT key_hash FROM control_plane.api_keys WHERE project_id = $1",
            &[&created.project_id],
        )
        .await
        .unwrap();
    secrets.extend(hashes.iter().map(|r| r.get::<_, String>(0)));
    let credentials = tenant_credentials(&env, created.project_id).await;
    secrets.push(credentials.password.expose_secret().to_owned());
    let everything = format!("{}\n{}", bodies.join("\n"), Value::from(events.clone()));
    for key in &keys {
        assert!(everything.contains(key), "the key ids are told");
    }
    for secret in &secrets {
        assert!(
            !everything.contains(secret.as_str()),
            "an event carries a secret"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_tells_the_failed_stage_then_the_failed_project() {
    let server = registration_endpoint(Service::Realtime, 400, None).await;
    let env = env_with_service(Service::Realtime, &server).await;
    let created = env.create(&project("refused")).await;
    let report = env.settle(created.project_id).await;
    assert_eq!(report.status, "failed");

    let events = told(&env, created.project_id).await;
    let mut expected = provisioned_until(Stage::CreateSchema);
    expected.push(step("Stage Failed", Some(Stage::RegisterServices)));
    expected.push(step("Project Failed", Some(Stage::RegisterServices)));
    assert_eq!(steps(&events), expected);
    for d in [
        of(&events, "Stage Failed")[0],
        of(&events, "Project Failed")[0],
    ] {
        assert_eq!(d["attempt"], 1);
        assert_eq!(d["status"], "failed");
        assert!(
            d["error"].as_str().unwrap().contains("HTTP 400"),
            "the reason is told: {d}"
        );
    }
    assert_delivered(&env.delivered_events().await, &events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_told_with_their_attempt_and_error_before_the_success() {
    let server = registration_endpoint(Service::Auth, 503, Some(2)).await;
    let env = env_with_service(Service::Auth, &server).await;
    let created = env.create(&project("flaky")).await;
    assert_ready(&env.settle(created.project_id).await);

    let events = told(&env, created.project_id).await;
    let all = steps(&events);
    let register = Some(Stage::RegisterServices.as_str().to_owned());
    let around: Vec<_> = all
        .iter()
        .filter(|(_, stage)| *stage == register)
        .cloned()
        .collect();
    assert_eq!(
        around,
        vec![
            step("Stage Retrying", Some(Stage::RegisterServices)),
            step("Stage Retrying", Some(Stage::RegisterServices)),
            step("Stage Succeeded", Some(Stage::RegisterServices)),
        ]
    );
    let attempts: Vec<&Value> = events
        .iter()
        .filter(|e| e["detail"]["stage"] == register.as_deref().unwrap())
        .map(|e| &e["detail"]["attempt"])
        .collect();
    assert_eq!(
        attempts,
        [&Value::from(1), &Value::from(2), &Value::from(3)]
    );
    for d in of(&events, "Stage Retrying") {
        assert!(d["error"].as_str().unwrap().contains("HTTP 503"), "{d}");
        assert_eq!(d["status"], "provisioning");
    }
    assert_eq!(all.last(), Some(&step("Project Ready", None)));
    assert_eq!(
        all.iter().filter(|(t, _)| t == "Project Ready").count(),
        1,
        "ready is told once"
    );
    assert_delivered(&env.delivered_events().await, &events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_operations_and_keys_are_told_when_they_start_and_when_they_are_done() {
    let env = TestEnv::new().await;
    let created = env.create(&project("lived")).await;
    assert_ready(&env.settle(created.project_id).await);
    let id = created.project_id;
    let before = told(&env, id).await.len();

    assert_eq!(env.operate(id, "suspend").await.status, 202);
    env.settle_run(id).await;
    assert_eq!(env.operate(id, "resume").await.status, 202);
    env.settle_run(id).await;
    let issued = env
        .post_json(
            &format!("/projects/{id}/api-keys"),
            &serde_json::json!({ "scopes": ["read"] }),
            &[],
        )
        .await;
    assert_eq!(issued.status, 201, "{issued:?}");
    let key_id = issued.body.as_ref().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let revoked = env
        .call(
            "DELETE",
            &format!("/projects/{id}/api-keys/{key_id}"),
            &[],
            b"",
        )
        .await;
    assert_eq!(revoked.status, 204, "{revoked:?}");

    let events = told(&env, id).await;
    let later = &events[before..];
    assert_eq!(
        steps(later),
        vec![
            step("Operation Started", None),
            step("Stage Succeeded", Some(Stage::Access)),
            step("Project Suspended", None),
            step("Operation Started", None),
            step("Stage Succeeded", Some(Stage::Access)),
            step("Project Resumed", None),
            step("Api Key Issued", None),
            step("Api Key Revoked", None),
        ]
    );
    let started = of(later, "Operation Started");
    for (d, (kind, status, was)) in started.iter().zip([
        ("suspend", "suspended", "ready"),
        ("resume", "ready", "suspended"),
    ]) {
        assert_eq!(
            (&d["kind"], &d["status"], &d["previous_status"]),
            (&Value::from(kind), &Value::from(status), &Value::from(was))
        );
    }
    assert_eq!(started.len(), 2);
    for d in started {
        assert_eq!(d["actor"], "local", "the API's caller started it");
    }
    for key in [
        of(later, "Api Key Issued")[0],
        of(later, "Api Key Revoked")[0],
    ] {
        assert_eq!(key["key_id"], key_id.as_str());
        assert_eq!(key["actor"], "local");
    }
    assert_delivered(&env.delivered_events().await, &events);
}

#[test]
fn every_detail_type_has_a_schema_and_a_place_in_the_docs() {
    let schemas = schemas();
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/events.md")).unwrap();
    let all = provisioning::events::DETAIL_TYPES.to_vec();
    let mut documented: Vec<&str> = schemas.keys().map(String::as_str).collect();
    let mut expected = all.clone();
    documented.sort();
    expected.sort();
    assert_eq!(
        documented, expected,
        "one schema per detail type, and no other"
    );
    for detail_type in all {
        assert!(
            docs.contains(&format!("`{detail_type}`")),
            "docs/events.md does not describe {detail_type}"
        );
    }
    // The checker rejects what does not conform.
    let ready = &schemas["Project Ready"];
    let mut detail = serde_json::json!({});
    assert!(conforms(ready, &detail, "d").is_err());
    detail = serde_json::json!({ "password": "x" });
    assert!(conforms(ready, &detail, "d")
        .unwrap_err()
        .contains("missing"));
}
