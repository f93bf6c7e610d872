//! A project goes from requested to ready through every stage function, on the
//! real local stack.

use pipeline_tests::*;
use provisioning::domain::{Service, ServiceSelection, TenantNames};
use std::collections::HashMap;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_with_every_service_is_provisioned_and_registered() {
    let services = MockServer::start().await;
    for service in ["auth", "realtime", "storage"] {
        Mock::given(method("POST"))
            .and(path(format!("/{service}")))
            .and(header("content-type", "application/json"))
            .respond_with(ResponseTemplate::new(201).set_body_json(serde_json::json!({
                "id": format!("{service}-123"),
                "endpoint": format!("https://{service}.example.test/p")
            })))
            .expect(1)
            .mount(&services)
            .await;
    }
    let urls: HashMap<Service, String> = Service::ALL
        .iter()
        .map(|s| (*s, format!("{}/{s}", services.uri())))
        .collect();
    let env = TestEnv::with(EnvOptions {
        registration_urls: urls,
        ..Default::default()
    })
    .await;
    let created = env.create(&project("everything")).await;

    let report = env.settle(created.project_id).await;

    assert_ready(&report);
    assert!(
        report
            .timeline
            .iter()
            .all(|s| s.attempts == 1 && s.duration_ms.is_some()),
        "{:#?}",
        report.timeline
    );
    let names = TenantNames::for_project(created.project_id);
    assert_eq!(
        report.resources.database.as_deref(),
        Some(names.database.as_str())
    );
    assert_eq!(report.resources.schema_version, Some(1));
    let registered: Vec<_> = report
        .resources
        .services
        .iter()
        .map(|s| {
            (
                s.service.as_str(),
                s.endpoint.clone(),
                s.registered_remotely,
            )
        })
        .collect();
    assert_eq!(
        registered,
        vec![
            ("auth", Some("https://auth.example.test/p".to_owned()), true),
            (
                "realtime",
                Some("https://realtime.example.test/p".to_owned()),
                true
            ),
            (
                "storage",
                Some("https://storage.example.test/p".to_owned()),
                true
            ),
        ]
    );
    // Each registration carried the project and an idempotency key.
    for request in services.received_requests().await.unwrap() {
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(body["project_id"], created.project_id.to_string());
        assert_eq!(body["database"], names.database);
        let key = request
            .headers
            .get("idempotency-key")
            .unwrap()
            .to_str()
            .unwrap();
        assert!(key.starts_with(&created.project_id.to_string()));
    }
    assert_eq!(report.resources.api_keys.len(), 2);
    assert_eq!(
        env.secret_names().await,
        vec![
            env.secret_name(created.project_id, "api-keys"),
            env.secret_name(created.project_id, "database")
        ]
    );
    assert!(report.provisioning_ms.is_some());
    assert_eq!(env.count("SELECT count(*) FROM control_plane.audit_log WHERE project_id = $1 AND action = 'provisioning.ready'", created.project_id).await, 1);

    // The tenant database really exists with the tenant schema applied.
    let admin = env.admin().await;
    let row = admin
        .query_one("SELECT datconnlimit, pg_encoding_to_char(encoding), pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1", &[&names.database])
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, i32>(0),
            row.get::<_, String>(1),
            row.get::<_, String>(2)
        ),
        (20, "UTF8".into(), names.role.clone())
    );
    let credentials = tenant_credentials(&env, created.project_id).await;
    let tenant = connect(&login_url(&credentials, &credentials.dbname)).await;
    let tables = strings(
        &tenant,
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'app' ORDER BY 1",
    )
    .await;
    assert_eq!(tables, ["audit_logs", "schema_migrations", "settings"]);
    let indexes: i64 = tenant.query_one("SELECT count(*) FROM pg_indexes WHERE schemaname = 'app' AND indexname LIKE 'audit_logs_%_idx'", &[]).await.unwrap().get(0);
    assert_eq!(indexes, 2);
    let version: i32 = tenant
        .query_one("SELECT max(version) FROM app.schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, 1);
    assert_eq!(
        env.total_messages().await,
        0,
        "every message was acknowledged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_with_no_services_is_provisioned_without_service_rows() {
    let env = TestEnv::new().await;
    let mut request = project("bare");
    request.services = ServiceSelection::NONE;
    request.api_keys.count = 1;
    let created = env.create(&request).await;

    let report = env.settle(created.project_id).await;

    assert_ready(&report);
    assert!(report.resources.services.is_empty());
    assert_eq!(
        env.count(
            "SELECT count(*) FROM control_plane.project_services WHERE project_id = $1",
            created.project_id
        )
        .await,
        0
    );
    assert_eq!(report.resources.api_keys.len(), 1);
    assert!(report.resources.database.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_without_a_registration_url_get_a_row_but_no_call() {
    let env = TestEnv::new().await;
    let created = env.create(&project("local-services")).await;

    let report = env.settle(created.project_id).await;

    assert_ready(&report);
    let services: Vec<_> = report
        .resources
        .services
        .iter()
        .map(|s| (s.service.as_str(), s.status.as_str(), s.registered_remotely))
        .collect();
    assert_eq!(
        services,
        [
            ("auth", "active", false),
            ("realtime", "active", false),
            ("storage", "active", false)
        ]
    );
}
