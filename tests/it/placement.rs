//! Placement over the cluster registry: each test registers its own clusters
//! for eu-west-1 (the stack's clusters again, under other ids) through the
//! admin API, in its own control plane, so the figures are its own.

use pipeline_tests::api::assert_response_documented;
use pipeline_tests::*;
use provisioning::project::CreatedProject;
use provisioning::{NewProject, Stage, StageMessage};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

const REGION: &str = "eu-west-1";

/// The admin secret of the stack's cluster `local-<n>`.
fn stack_secret(n: usize) -> String {
    let listed: Value = serde_json::from_str(&stack_var("REGISTER_CLUSTERS")).unwrap();
    listed[n - 1]["admin_secret_arn"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Registers the stack's cluster `local-<n>` as `id` in eu-west-1.
async fn register(env: &TestEnv, id: &str, n: usize, capacity: i64) {
    let response = env
        .post_json(
            "/admin/clusters",
            &json!({ "id": id, "region": REGION, "admin_secret_arn": stack_secret(n),
                     "capacity": capacity, "tls_mode": "prefer" }),
            &[],
        )
        .await;
    assert_eq!(response.status, 201, "{response:?}");
    assert_response_documented("/admin/clusters", "post", &response);
}

async fn set_cluster(env: &TestEnv, id: &str, change: Value) {
    let response = env
        .call(
            "PATCH",
            &format!("/admin/clusters/{id}"),
            &[("content-type", "application/json")],
            change.to_string().as_bytes(),
        )
        .await;
    assert_eq!(response.status, 200, "{response:?}");
    assert_response_documented("/admin/clusters/{id}", "patch", &response);
}

fn in_region(name: &str) -> NewProject {
    NewProject {
        region: REGION.into(),
        ..project(name)
    }
}

/// Projects per cluster in eu-west-1, and each cluster's `placed` counter.
async fn spread(env: &TestEnv) -> (BTreeMap<String, i64>, BTreeMap<String, i64>) {
    let db = env.db().await;
    let projects = db
        .query(
            "SELECT cluster_id, count(*) FROM control_plane.projects
              WHERE region = $1 AND cluster_id IS NOT NULL GROUP BY 1",
            &[&REGION],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let placed = db
        .query(
            "SELECT id, placed::bigint FROM control_plane.clusters WHERE region = $1",
            &[&REGION],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    (projects, placed)
}

async fn env() -> TestEnv {
    TestEnv::with(EnvOptions {
        scrypt_log_n: Some(10),
        ..Default::default()
    })
    .await
}

/// Registers eu-a (local-1) and eu-b (local-2) with `capacity` each and
/// provisions two projects one after the other: ties go by id, so the first
/// lands on eu-a and the second on the emptier eu-b.
async fn one_on_each_cluster(env: &TestEnv, capacity: i64) -> (CreatedProject, CreatedProject) {
    register(env, "eu-a", 1, capacity).await;
    register(env, "eu-b", 2, capacity).await;
    let mut placed = Vec::new();
    for (name, cluster) in [("first", "eu-a"), ("second", "eu-b")] {
        let created = env.create(&in_region(name)).await;
        assert_ready(&env.settle(created.project_id).await);
        assert_eq!(env.placement(created.project_id).await.unwrap().0, cluster);
        placed.push(created);
    }
    let second = placed.pop().unwrap();
    (placed.pop().unwrap(), second)
}

/// Registers eu-a (local-1) and eu-b (local-2) with the given capacities and
/// creates `count` projects for the region (not yet provisioned).
async fn create_on_two_clusters(
    env: &TestEnv,
    (a, b): (i64, i64),
    name: &str,
    count: usize,
) -> Vec<CreatedProject> {
    register(env, "eu-a", 1, a).await;
    register(env, "eu-b", 2, b).await;
    let mut created = Vec::new();
    for i in 0..count {
        created.push(env.create(&in_region(&format!("{name}-{i}"))).await);
    }
    created
}

/// Runs the validate stage of every project at once, on `instances`
/// pipelines of their own (as that many function instances would).
async fn validate_all_at_once(env: &TestEnv, created: &[CreatedProject], instances: usize) {
    let mut pipelines = Vec::new();
    for _ in 0..instances {
        pipelines.push(env.another_instance().await);
    }
    let outcomes = futures::future::join_all(created.iter().enumerate().map(|(i, c)| {
        let pipeline = &pipelines[i % instances];
        async move {
            let msg = StageMessage {
                project_id: c.project_id,
                run_id: c.run_id,
                stage: Stage::Validate,
                correlation_id: c.correlation_id,
            };
            pipeline.run_stage(&msg).await
        }
    }))
    .await;
    for outcome in outcomes {
        outcome.expect("validate answers for every project (no retry needed)");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_projects_over_two_equal_clusters_are_placed_evenly_and_provisioned_there() {
    let env = env().await;
    let created = create_on_two_clusters(&env, (100, 100), "even", 40).await;
    let running = env.runner.spawn(4);
    for c in &created {
        let report = env
            .wait_for_status(c.project_id, &["ready", "failed"], Duration::from_secs(240))
            .await;
        assert_ready(&report);
    }
    running.stop().await;

    let (projects, placed) = spread(&env).await;
    eprintln!("placement of 40 projects: {projects:?}");
    let (a, b) = (projects["eu-a"], projects["eu-b"]);
    assert_eq!(a + b, 40);
    assert!((a - b).abs() <= 1, "uneven placement: {projects:?}");
    assert_eq!(placed, projects, "the counters match the projects placed");
    // Each database is on the cluster its project names, and only there.
    let ports: BTreeMap<_, _> = [("eu-a", "local-1"), ("eu-b", "local-2")].into();
    for c in created.iter().step_by(7) {
        let names = provisioning::domain::TenantNames::for_project(c.project_id);
        let (cluster, _) = env.placement(c.project_id).await.unwrap();
        let found = tenant_objects_per_cluster(&names.database, &names.role).await;
        let expected: Vec<_> = found
            .iter()
            .map(|(id, _, _)| {
                let here = i64::from(*id == ports[cluster.as_str()]);
                (id.clone(), here, here)
            })
            .collect();
        assert_eq!(found, expected, "{cluster}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_cluster_gets_no_new_project_and_keeps_serving_its_own() {
    let env = env().await;
    let (_, second) = one_on_each_cluster(&env, 100).await;

    set_cluster(&env, "eu-b", json!({ "status": "draining" })).await;
    let mut later = Vec::new();
    for i in 0..4 {
        later.push(env.create(&in_region(&format!("later-{i}"))).await);
    }
    let running = env.runner.spawn(2);
    for c in &later {
        assert_ready(
            &env.wait_for_status(c.project_id, &["ready", "failed"], Duration::from_secs(120))
                .await,
        );
    }
    running.stop().await;
    let (projects, _) = spread(&env).await;
    assert_eq!(projects, [("eu-a".into(), 5), ("eu-b".into(), 1)].into());

    // The draining cluster still serves the project it holds.
    let credentials = tenant_credentials(&env, second.project_id).await;
    let tenant = connect(&login_url(&credentials, &credentials.dbname)).await;
    tenant.batch_execute("SELECT 1").await.unwrap();
    let listed = env.call("GET", "/admin/clusters", &[], b"").await;
    assert_response_documented("/admin/clusters", "get", &listed);
    let statuses: Vec<(String, String, i64)> = listed.body.unwrap()["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["region"] == REGION)
        .map(|c| {
            (
                c["id"].as_str().unwrap().into(),
                c["status"].as_str().unwrap().into(),
                c["placed"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("eu-a".into(), "active".into(), 5),
            ("eu-b".into(), "draining".into(), 1)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_region_fails_clearly_and_the_retry_succeeds_on_a_cluster_added_later() {
    let env = env().await;
    register(&env, "eu-a", 1, 1).await;
    let first = env.create(&in_region("fits")).await;
    assert_ready(&env.settle(first.project_id).await);

    let second = env.create(&in_region("no-room")).await;
    let report = env.settle(second.project_id).await;
    assert_eq!(report.status, "failed");
    assert_eq!(report.failed_stage.as_deref(), Some("validate"));
    assert_eq!(
        report.last_error.as_deref(),
        Some("no active cluster with capacity in eu-west-1 (permanent)")
    );
    assert_eq!(report.cluster, None);
    // Nothing was created for it anywhere.
    let names = provisioning::domain::TenantNames::for_project(second.project_id);
    assert!(tenant_objects_per_cluster(&names.database, &names.role)
        .await
        .iter()
        .all(|(_, databases, roles)| (*databases, *roles) == (0, 0)));

    register(&env, "eu-b", 2, 5).await;
    let retried = env.retry(second.project_id).await;
    assert_eq!(retried.status, 202, "{retried:?}");
    let report = env.settle(second.project_id).await;
    assert_ready(&report);
    assert_eq!(report.cluster.as_deref(), Some("eu-b"));
    let (projects, placed) = spread(&env).await;
    assert_eq!(projects, [("eu-a".into(), 1), ("eu-b".into(), 1)].into());
    assert_eq!(placed, projects);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projects_retries_and_its_operator_retry_stay_on_its_cluster() {
    // register-services answers 503 once (a queue retry), then 400 once (a
    // failure the operator retries), then 200.
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let server = MockServer::start().await;
    for (status, priority) in [(503, 1), (400, 2)] {
        Mock::given(method("POST"))
            .and(path("/auth"))
            .respond_with(ResponseTemplate::new(status))
            .up_to_n_times(1)
            .with_priority(priority)
            .mount(&server)
            .await;
    }
    Mock::given(method("POST"))
        .and(path("/auth"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(3)
        .mount(&server)
        .await;
    let env = env_with_service(provisioning::domain::Service::Auth, &server).await;
    register(&env, "eu-a", 1, 10).await;
    register(&env, "eu-b", 2, 10).await;
    // Equal clusters: the project goes to eu-a (ties by id). Once it failed,
    // its cluster is made full, so placing it again would have to pick the
    // other one: the retry must not place it again.
    let created = env.create(&in_region("sticky")).await;
    let failed = env
        .settle_with(&env.runner, created.project_id, Duration::from_secs(60))
        .await;
    assert_eq!(failed.status, "failed", "{failed:#?}");
    assert_eq!(failed.failed_stage.as_deref(), Some("register-services"));
    let placed_on = failed.cluster.clone().expect("placed");
    set_cluster(&env, &placed_on, json!({ "capacity": 1 })).await;

    let retried = env.retry(created.project_id).await;
    assert_eq!(retried.status, 202, "{retried:?}");
    let report = env.settle(created.project_id).await;
    // The retry resumed at register-services (the stages before it skipped).
    assert_eq!(report.status, "ready", "{report:#?}");
    assert_eq!(report.cluster.as_deref(), Some(placed_on.as_str()));
    let (projects, placed) = spread(&env).await;
    assert_eq!(projects, [(placed_on.clone(), 1)].into());
    assert_eq!(placed[&placed_on], 1, "one slot, taken once");
    assert_exactly_one_of_everything(&env, created.project_id, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_on_two_clusters_cannot_reach_each_other() {
    let env = env().await;
    let (a, b) = one_on_each_cluster(&env, 10).await;

    let creds_a = tenant_credentials(&env, a.project_id).await;
    let creds_b = tenant_credentials(&env, b.project_id).await;
    assert_ne!(creds_a.port, creds_b.port, "the secrets name two clusters");
    for (from, to) in [(&creds_a, &creds_b), (&creds_b, &creds_a)] {
        // Own database: yes. The other's, on its cluster: the role is unknown there.
        connect(&login_url(from, &from.dbname)).await;
        let crossed = provisioning::secrets::DatabaseCredentials {
            host: to.host.clone(),
            port: to.port,
            username: from.username.clone(),
            dbname: to.dbname.clone(),
            password: from.password.clone(),
        };
        let err =
            tokio_postgres::connect(&login_url(&crossed, &crossed.dbname), tokio_postgres::NoTls)
                .await
                .err()
                .expect("a tenant logged in on another cluster");
        assert_eq!(
            err.code(),
            Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD),
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_placements_for_ten_free_slots_place_ten_and_fail_ten() {
    let env = env().await;
    let created = create_on_two_clusters(&env, (6, 4), "race", 20).await;
    validate_all_at_once(&env, &created, 5).await;

    let (projects, placed) = spread(&env).await;
    assert_eq!(projects, [("eu-a".into(), 6), ("eu-b".into(), 4)].into());
    assert_eq!(placed, projects);
    let mut failed = 0;
    for c in &created {
        let report = env.report(c.project_id).await;
        match report.cluster {
            Some(_) => assert_eq!(report.status, "provisioning", "{report:#?}"),
            None => {
                assert_eq!(report.status, "failed");
                assert_eq!(
                    report.last_error.as_deref(),
                    Some("no active cluster with capacity in eu-west-1 (permanent)")
                );
                failed += 1;
            }
        }
    }
    assert_eq!(failed, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_registration_refuses_bad_fields_unreachable_hosts_and_weak_users() {
    let env = env().await;
    let post = |body: Value| {
        let env = &env;
        async move { env.post_json("/admin/clusters", &body, &[]).await }
    };
    let base = json!({ "id": "eu-x", "region": REGION, "admin_secret_arn": stack_secret(1), "capacity": 5 });
    let with = |field: &str, value: Value| {
        let mut body = base.clone();
        body[field] = value;
        body
    };
    for (body, status, field) in [
        (with("id", json!("Not_An_Id")), 422, "id"),
        (with("capacity", json!(-1)), 422, "capacity"),
        (with("region", json!("mars-north-1")), 422, "region"),
        (with("tls_mode", json!("sometimes")), 422, "tls_mode"),
        (
            with("admin_secret_arn", json!("no/such/secret")),
            422,
            "admin_secret_arn",
        ),
        // Nothing listens on port 1.
        (with("port", json!(1)), 422, "host"),
    ] {
        let response = post(body.clone()).await;
        assert_eq!(
            (
                response.status,
                response.body.as_ref().unwrap()["field"].as_str()
            ),
            (status, Some(field)),
            "{body}: {response:?}"
        );
        assert_response_documented("/admin/clusters", "post", &response);
    }
    // A user without CREATEDB/CREATEROLE is refused.
    let admin = env.admin().await;
    let weak = format!("weak_{}", env.id);
    admin
        .batch_execute(&format!("CREATE ROLE {weak} LOGIN PASSWORD 'weak-pass'"))
        .await
        .unwrap();
    let port = stack_clusters()[0].1;
    let secret = format!("{}/weak-admin", env.id);
    env.secrets
        .create_secret()
        .name(&secret)
        .secret_string(
            json!({ "username": weak, "password": "weak-pass", "host": "127.0.0.1", "port": port })
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    let response = post(with("admin_secret_arn", json!(secret))).await;
    assert_eq!(response.status, 422, "{response:?}");
    let detail = response.body.as_ref().unwrap()["detail"].as_str().unwrap();
    assert!(detail.contains("lacks CREATEDB or CREATEROLE"), "{detail}");
    admin
        .batch_execute(&format!("DROP ROLE {weak}"))
        .await
        .unwrap();

    // None of that registered anything; a good one registers once.
    assert!(spread(&env).await.1.is_empty());
    register(&env, "eu-x", 1, 5).await;
    let again = post(base.clone()).await;
    assert_eq!(again.status, 409, "{again:?}");
    let unknown = env
        .call(
            "PATCH",
            "/admin/clusters/eu-nope",
            &[("content-type", "application/json")],
            br#"{"status":"offline"}"#,
        )
        .await;
    assert_eq!(unknown.status, 404);
    let bad = env
        .call(
            "PATCH",
            "/admin/clusters/eu-x",
            &[("content-type", "application/json")],
            br#"{"status":"retired"}"#,
        )
        .await;
    assert_eq!(
        (bad.status, bad.body.unwrap()["field"].clone()),
        (422, json!("status"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_without_an_active_cluster_is_not_available() {
    let env = env().await;
    register(&env, "eu-a", 1, 5).await;
    set_cluster(&env, "eu-a", json!({ "status": "offline" })).await;
    let created = env.create(&in_region("nowhere")).await;
    let report = env.settle(created.project_id).await;
    assert_eq!(report.status, "failed");
    assert_eq!(
        report.last_error.as_deref(),
        Some("region: 'eu-west-1' is not available (no active cluster) (permanent)")
    );
}
