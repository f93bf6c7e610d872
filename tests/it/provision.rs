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

    // The tenant database really exists with the tenant schema applied, on
    // the cluster the project was placed on, which its secret names.
    let admin = env.project_admin(created.project_id).await;
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
    let (cluster, port) = env.placement(created.project_id).await.unwrap();
    assert_eq!(report.cluster.as_deref(), Some(cluster.as_str()));
    assert_eq!(
        (credentials.host.as_str(), credentials.port),
        ("127.0.0.1", port),
        "the secret names the project's cluster"
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_applied_concurrently_and_twice_are_applied_once() {
    let env = TestEnv::new().await;
    let admin = env.admin().await;
    let fresh = format!("mig_{}", env.id);
    admin
        .batch_execute(&format!("CREATE DATABASE {fresh}"))
        .await
        .unwrap();

    let runs = (0..4).map(|_| {
        let fresh = fresh.clone();
        tokio::spawn(async move {
            let mut client = admin_on(&fresh).await;
            provisioning::db::migrate(
                &mut client,
                "control_plane",
                provisioning::db::CONTROL_PLANE_MIGRATIONS,
            )
            .await
        })
    });
    let latest = provisioning::db::CONTROL_PLANE_MIGRATIONS.len() as i32;
    for run in futures::future::join_all(runs).await {
        assert_eq!(run.unwrap().unwrap(), latest);
    }
    let mut again = admin_on(&fresh).await;
    assert_eq!(
        provisioning::db::migrate(
            &mut again,
            "control_plane",
            provisioning::db::CONTROL_PLANE_MIGRATIONS
        )
        .await
        .unwrap(),
        latest
    );
    let recorded = strings(
        &again,
        "SELECT version::text FROM control_plane.schema_migrations ORDER BY version",
    )
    .await;
    let expected: Vec<String> = (1..=latest).map(|v| v.to_string()).collect();
    assert_eq!(recorded, expected, "each file applied once");

    // An applied file that changed is refused rather than silently skipped.
    again
        .batch_execute("UPDATE control_plane.schema_migrations SET checksum = 'edited'")
        .await
        .unwrap();
    let err = provisioning::db::migrate(
        &mut again,
        "control_plane",
        provisioning::db::CONTROL_PLANE_MIGRATIONS,
    )
    .await
    .unwrap_err();
    assert!(
        err.message.contains("was changed after it was applied"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_request_names_the_field_and_writes_nothing() {
    let env = TestEnv::new().await;
    let mut unknown_region = project("nowhere");
    unknown_region.region = "mars-north-1".into();
    let mut bad_prefix = project("bad-prefix");
    bad_prefix.api_keys.prefix = "x'; DROP TABLE control_plane.projects; --".into();
    let mut too_many = project("too-many");
    too_many.api_keys.count = 11;

    for (request, field) in [
        (unknown_region, "region"),
        (bad_prefix, "api_keys.prefix"),
        (too_many, "api_keys.count"),
    ] {
        let err = provisioning::project::create_project(
            &env.pipeline.db,
            env.pipeline.destinations(),
            &request,
            None,
        )
        .await
        .expect_err(field);
        match err {
            provisioning::project::CreateProjectError::Invalid(v) => assert_eq!(v.field, field),
            other => panic!("{field}: {other}"),
        }
    }
    let db = env.db().await;
    for table in [
        "projects",
        "provisioning_runs",
        "provisioning_stages",
        "audit_log",
    ] {
        let rows: i64 = db
            .query_one(&format!("SELECT count(*) FROM control_plane.{table}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(rows, 0, "{table}");
    }
    assert_eq!(env.total_messages().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migrate_custom_resource_migrates_on_create_and_reports_to_cloudformation() {
    let env = TestEnv::new().await;
    let fresh = format!("deploy_{}", env.id);
    env.admin()
        .await
        .batch_execute(&format!("CREATE DATABASE {fresh}"))
        .await
        .unwrap();
    let mut settings = env.settings.clone();
    let admin_url = stack_var("PG_ADMIN_URL");
    let url = format!("{}/{fresh}", admin_url.rsplit_once('/').unwrap().0);
    settings.database =
        provisioning::config::DatabaseSource::Config(Box::new(url.parse().unwrap()));
    let cloudformation = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path("/response"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&cloudformation)
        .await;
    let function =
        provisioning::migrate::MigrateFunction::new(settings, env.pipeline.secrets.clone())
            .unwrap();

    for request_type in ["Create", "Update", "Delete"] {
        let event = serde_json::json!({
            "RequestType": request_type,
            "ResponseURL": format!("{}/response", cloudformation.uri()),
            "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/p/1",
            "RequestId": format!("req-{request_type}"),
            "LogicalResourceId": "ControlPlaneMigrations",
            "ResourceType": "Custom::Migrations",
            "ResourceProperties": { "Version": "1" }
        });
        let lambda_event =
            lambda_runtime::LambdaEvent::new(event, lambda_runtime::Context::default());
        function.handle(lambda_event).await.unwrap();
    }

    let responses: Vec<serde_json::Value> = cloudformation
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    let statuses: Vec<_> = responses
        .iter()
        .map(|r| {
            (
                r["RequestId"].as_str().unwrap(),
                r["Status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            ("req-Create", "SUCCESS"),
            ("req-Update", "SUCCESS"),
            ("req-Delete", "SUCCESS")
        ]
    );
    assert_eq!(
        responses[0]["Data"]["Version"],
        provisioning::db::CONTROL_PLANE_MIGRATIONS.len()
    );
    let migrated = admin_on(&fresh).await;
    let tables = strings(
        &migrated,
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'control_plane' ORDER BY 1",
    )
    .await;
    assert!(
        tables.contains(&"projects".to_owned()) && tables.contains(&"schema_migrations".to_owned()),
        "{tables:?}"
    );
    // The clusters of REGISTER_CLUSTERS were registered by Create, once: Update
    // left them as they were (one row each, proven when Create ran).
    assert!(
        responses[0]["Reason"]
            .as_str()
            .unwrap()
            .ends_with("clusters registered: local-1, local-2"),
        "{}",
        responses[0]["Reason"]
    );
    assert!(
        responses[1]["Reason"]
            .as_str()
            .unwrap()
            .ends_with("clusters registered: none"),
        "{}",
        responses[1]["Reason"]
    );
    let clusters = strings(
        &migrated,
        "SELECT id || ' ' || status || ' ' || (verified_at IS NOT NULL)::text
           FROM control_plane.clusters ORDER BY 1",
    )
    .await;
    assert_eq!(clusters, ["local-1 active true", "local-2 active true"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_credentials_can_come_from_a_secrets_manager_secret() {
    let env = TestEnv::new().await;
    let url: tokio_postgres::Config = format!(
        "{}/{}",
        stack_var("PG_ADMIN_URL").rsplit_once('/').unwrap().0,
        env.database_name
    )
    .parse()
    .unwrap();
    let tokio_postgres::config::Host::Tcp(host) = &url.get_hosts()[0] else {
        panic!("tcp host expected")
    };
    let secret = serde_json::json!({
        "engine": "postgres",
        "host": host,
        "port": url.get_ports()[0],
        "username": url.get_user().unwrap(),
        "password": String::from_utf8(url.get_password().unwrap().to_vec()).unwrap(),
        "dbname": env.database_name,
    });
    let arn = env
        .secrets
        .create_secret()
        .name(format!("{}/control-plane", env.settings.secret_prefix))
        .secret_string(secret.to_string())
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    let mut settings = env.settings.clone();
    settings.database = provisioning::config::DatabaseSource::Secret(arn);

    let pipeline = provisioning::Pipeline::from_settings(settings)
        .await
        .expect("credentials read from the secret");
    let runner = std::sync::Arc::new(local_dev::Runner::new(env.sqs.clone(), pipeline.clone()));
    let created = provisioning::project::create_project(
        &pipeline.db,
        pipeline.destinations(),
        &project("from-secret"),
        None,
    )
    .await
    .unwrap();

    assert_ready(
        &env.settle_with(
            &runner,
            created.project_id,
            std::time::Duration::from_secs(60),
        )
        .await,
    );
}

/// Fair queues: every stage message is sent in the message group of the
/// project's organization, or of the project when it has none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stage_messages_carry_the_organization_or_the_project_as_message_group() {
    use aws_sdk_sqs::types::MessageSystemAttributeName;
    let env = TestEnv::new().await;
    let with_org = project("grouped");
    let organization = with_org.organization_id.unwrap();
    let a = env.create(&with_org).await;
    let b = env
        .create(&provisioning::NewProject {
            organization_id: None,
            ..project("alone")
        })
        .await;
    // The first stage's messages, as SQS hands them to the validate function.
    let out = env
        .sqs
        .receive_message()
        .queue_url(env.queue_url("validate"))
        .max_number_of_messages(10)
        .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    let mut groups: Vec<(String, String)> = out
        .messages
        .unwrap_or_default()
        .iter()
        .map(|m| {
            let body = provisioning::StageMessage::parse(m.body().unwrap()).unwrap();
            let group = m
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                .cloned()
                .unwrap_or_default();
            (body.project_id.to_string(), group)
        })
        .collect();
    groups.sort();
    let mut expected = vec![
        (a.project_id.to_string(), organization.to_string()),
        (b.project_id.to_string(), b.project_id.to_string()),
    ];
    expected.sort();
    assert_eq!(groups, expected);
    // The outbox rows hold the group, so a re-send by the sweeper keeps it.
    let outbox: Vec<(String, String)> = env
        .db()
        .await
        .query(
            "SELECT project_id::text, message_group FROM control_plane.outbox WHERE destination = 'stage' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(outbox, expected);
}
