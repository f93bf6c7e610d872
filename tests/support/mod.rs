//! Test support: every test gets its own control-plane database, its own queues
//! and its own secret prefix on the shared local stack (real Postgres, moto's
//! SQS and Secrets Manager over HTTP), so tests run in parallel without meeting.
//!
//! Start the stack with `make test` (or `scripts/stack.sh up && source .local/env`).
//! A test that cannot reach it fails saying so: it never skips.

pub mod api;

use aws_sdk_sqs::types::QueueAttributeName;
use local_dev::sandbox::{admin_client, Sandbox, StackAddress};
use local_dev::{QueueSettings, Runner};
use provisioning::domain::{NewProject, Service, ServiceSelection};
use provisioning::ports::MessageQueue;
use provisioning::project::{create_project, CreatedProject};
use provisioning::report::{load_project_report, ProjectReport};
use provisioning::{Pipeline, Settings};
use secrecy::{ExposeSecret, SecretString};
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use uuid::Uuid;

pub const HOW_TO_START: &str =
    "the local stack is not reachable: run `make test`, or `scripts/stack.sh up && source .local/env` before `cargo test`";

/// Visibility timeout of test queues: short, so the retry path runs in seconds.
pub const TEST_VISIBILITY_SECS: u32 = 2;

/// Reads a stack variable from the environment, or from `.local/env` written by
/// `scripts/stack.sh up`.
pub fn stack_var(name: &str) -> String {
    if let Ok(v) = std::env::var(name) {
        return v;
    }
    static FILE: OnceLock<HashMap<String, String>> = OnceLock::new();
    let vars = FILE.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../.local/env");
        let text = std::fs::read_to_string(path).unwrap_or_default();
        text.lines()
            .filter_map(|l| l.trim().strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| {
                (
                    k.to_owned(),
                    v.trim_matches(|c| c == '"' || c == '\'').to_owned(),
                )
            })
            .collect()
    });
    vars.get(name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} is not set: {HOW_TO_START}"))
}

fn init_aws_env() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        for var in [
            "AWS_ENDPOINT_URL",
            "AWS_REGION",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
        ] {
            let value = stack_var(var);
            // SAFETY: set once, before any test thread reads the environment.
            unsafe { std::env::set_var(var, value) };
        }
    });
}

/// Every EMF document the pipeline emitted in this process, parsed.
pub fn captured_metrics() -> Vec<serde_json::Value> {
    metric_buffer()
        .lock()
        .unwrap()
        .iter()
        .map(|line| serde_json::from_str(line).expect("an EMF line is JSON"))
        .collect()
}

/// The EMF documents that name `project_id`.
pub fn metrics_of(project_id: Uuid) -> Vec<serde_json::Value> {
    let id = project_id.to_string();
    captured_metrics()
        .into_iter()
        .filter(|m| m["project_id"].as_str() == Some(id.as_str()))
        .collect()
}

fn metric_buffer() -> &'static Arc<Mutex<Vec<String>>> {
    static BUFFER: OnceLock<Arc<Mutex<Vec<String>>>> = OnceLock::new();
    BUFFER.get_or_init(|| Arc::new(Mutex::new(Vec::new())))
}

/// Everything the tests' subscriber has logged, as JSON lines.
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&log_buffer().lock().unwrap()).into_owned()
}

fn log_buffer() -> &'static Arc<Mutex<Vec<u8>>> {
    static BUFFER: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUFFER.get_or_init(|| Arc::new(Mutex::new(Vec::new())))
}

#[derive(Clone)]
struct BufferWriter(Arc<Mutex<Vec<u8>>>);

impl Write for BufferWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn init_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        // Debug level everywhere but the chattiest transport crates, so a leak
        // anywhere in our code or the SDK's request logging would be caught.
        if std::env::var("RUST_LOG").is_err() {
            unsafe {
                std::env::set_var(
                    "RUST_LOG",
                    "debug,h2=info,hyper=info,hyper_util=info,rustls=info",
                )
            };
        }
        let buffer = log_buffer().clone();
        provisioning::telemetry::init_with_writer(move || BufferWriter(buffer.clone()));
        let metrics = metric_buffer().clone();
        provisioning::metrics::set_sink(move |line| metrics.lock().unwrap().push(line.to_owned()));
    });
}

/// Options of one test environment.
#[derive(Default, Clone)]
pub struct EnvOptions {
    /// Registration endpoint per service (a wiremock server in tests).
    pub registration_urls: HashMap<Service, String>,
    /// scrypt cost; the production default (2^14) when None.
    pub scrypt_log_n: Option<u8>,
    /// Further settings, e.g. ("DATABASE_SSLMODE", "require").
    pub extra: Vec<(&'static str, String)>,
}

pub struct TestEnv {
    pub id: String,
    pub settings: Settings,
    pub pipeline: Pipeline,
    pub runner: Arc<Runner>,
    pub sqs: aws_sdk_sqs::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub database_name: String,
    /// The queue every event on this environment's bus is copied to.
    pub event_tap: local_dev::events::EventTap,
}

impl TestEnv {
    pub async fn new() -> TestEnv {
        TestEnv::with(EnvOptions::default()).await
    }

    pub async fn with(options: EnvOptions) -> TestEnv {
        init_logs();
        init_aws_env();
        let stack = StackAddress::from_lookup(|name| Some(stack_var(name))).expect("stack address");
        let mut settings: Vec<(&'static str, String)> = vec![
            ("REGISTRATION_TIMEOUT_MS", "2000".into()),
            ("STAGE_LOCK_TIMEOUT_MS", "10000".into()),
            ("VISIBILITY_TIMEOUT", TEST_VISIBILITY_SECS.to_string()),
        ];
        if let Some(log_n) = options.scrypt_log_n {
            settings.push(("API_KEY_SCRYPT_LOG_N", log_n.to_string()));
        }
        settings.extend(options.extra);
        for (service, url) in options.registration_urls {
            settings.push((provisioning::config::registration_var(service), url));
        }
        let queues = QueueSettings {
            visibility_timeout_secs: TEST_VISIBILITY_SECS,
            max_receive_count: 3,
        };
        let sandbox = Sandbox::create(&stack, "cp", settings, queues)
            .await
            .unwrap_or_else(|e| panic!("{e}: {HOW_TO_START}"));
        let event_tap = local_dev::events::create_event_tap(
            &provisioning::adapters::aws_config().await,
            sandbox
                .settings
                .event_bus_name
                .as_deref()
                .unwrap_or_default(),
            &sandbox.settings.queue_url_prefix,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}: {HOW_TO_START}"));
        let runner = Arc::new(Runner::new(sandbox.sqs.clone(), sandbox.pipeline.clone()));
        TestEnv {
            id: sandbox.id,
            settings: sandbox.settings,
            pipeline: sandbox.pipeline,
            runner,
            sqs: sandbox.sqs,
            secrets: sandbox.secrets,
            database_name: sandbox.database_name,
            event_tap,
        }
    }

    /// The events delivered to this environment's bus since the last call
    /// (read from its tap queue until it stays empty for a second).
    pub async fn delivered_events(&self) -> Vec<local_dev::events::Delivered> {
        self.event_tap
            .drain(Duration::from_secs(1))
            .await
            .expect("event tap")
            .0
    }

    /// A second, independent pipeline on the same state (another "Lambda instance").
    pub async fn another_instance(&self) -> Pipeline {
        Pipeline::from_settings(self.settings.clone())
            .await
            .expect("pipeline")
    }

    /// The same pipeline with its queue port replaced.
    pub fn with_queue(&self, queue: Arc<dyn MessageQueue>) -> (Pipeline, Arc<Runner>) {
        let mut pipeline = self.pipeline.clone();
        pipeline.queue = queue;
        let runner = Arc::new(Runner::new(self.sqs.clone(), pipeline.clone()));
        (pipeline, runner)
    }

    pub async fn create(&self, request: &NewProject) -> CreatedProject {
        create_project(
            &self.pipeline.db,
            self.pipeline.destinations(),
            request,
            None,
        )
        .await
        .expect("create project")
    }

    pub async fn report(&self, project_id: Uuid) -> ProjectReport {
        let db = self.pipeline.db.get().await.unwrap();
        load_project_report(&db, project_id)
            .await
            .unwrap()
            .expect("project exists")
    }

    /// The report, or None while the control plane cannot be reached (a
    /// fault test took Postgres away).
    pub async fn try_report(&self, project_id: Uuid) -> Option<ProjectReport> {
        let db = self.pipeline.db.get().await.ok()?;
        load_project_report(&db, project_id).await.ok().flatten()
    }

    /// Rows of a query, or None while the control plane cannot be reached.
    pub async fn try_rows(&self, sql: &str) -> Option<Vec<tokio_postgres::Row>> {
        let db = self.pipeline.db.get().await.ok()?;
        db.query(sql, &[]).await.ok()
    }

    /// Runs the runner until the project is ready or failed.
    pub async fn settle(&self, project_id: Uuid) -> ProjectReport {
        self.settle_with(&self.runner, project_id, Duration::from_secs(60))
            .await
    }

    pub async fn settle_with(
        &self,
        runner: &Arc<Runner>,
        project_id: Uuid,
        timeout: Duration,
    ) -> ProjectReport {
        let running = runner.spawn(1);
        let report = self
            .wait_for_status(project_id, &["ready", "failed"], timeout)
            .await;
        running.stop().await;
        report
    }

    pub async fn wait_for_status(
        &self,
        project_id: Uuid,
        statuses: &[&str],
        timeout: Duration,
    ) -> ProjectReport {
        let started = Instant::now();
        loop {
            let report = self.report(project_id).await;
            if statuses.contains(&report.status.as_str()) {
                return report;
            }
            assert!(
                started.elapsed() < timeout,
                "project still {} after {timeout:?}: {report:#?}",
                report.status
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs the runner until the project's current run has finished (of any
    /// kind: provisioning or a lifecycle operation).
    pub async fn settle_run(&self, project_id: Uuid) -> ProjectReport {
        let running = self.runner.spawn(1);
        let started = Instant::now();
        let report = loop {
            let report = self.report(project_id).await;
            if report.run.as_ref().is_some_and(|r| r.status != "running") {
                break report;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "run still moving after 60 s: {report:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        running.stop().await;
        report
    }

    /// Runs the runner until every queue of this environment is empty.
    pub async fn drain(&self, runner: &Arc<Runner>, timeout: Duration) {
        let running = runner.spawn(1);
        let started = Instant::now();
        loop {
            if self.total_messages().await == 0 {
                break;
            }
            assert!(
                started.elapsed() < timeout,
                "queues not drained after {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        running.stop().await;
    }

    pub fn queue_url(&self, queue_name: &str) -> String {
        self.settings.queue_url(queue_name)
    }

    /// Visible + in-flight messages of one queue.
    pub async fn queue_depth(&self, queue_name: &str) -> u64 {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(self.queue_url(queue_name))
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("queue attributes");
        let attrs = out.attributes().cloned().unwrap_or_default();
        [
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        ]
        .iter()
        .map(|a| {
            attrs
                .get(a)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum()
    }

    pub async fn total_messages(&self) -> u64 {
        let mut total = 0;
        for consumer in self.runner.consumers() {
            total += self.queue_depth(&consumer.queue_name).await;
        }
        total
    }

    /// Receives and deletes every message of a queue, waiting out those in
    /// flight (a stopped runner's long poll may still have taken one); returns
    /// how many.
    pub async fn drain_queue(&self, queue_name: &str) -> usize {
        let mut taken = 0;
        let started = Instant::now();
        loop {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{queue_name} not drained"
            );
            let out = self
                .sqs
                .receive_message()
                .queue_url(self.queue_url(queue_name))
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .expect("receive");
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() && self.queue_depth(queue_name).await == 0 {
                return taken;
            }
            for m in &messages {
                self.sqs
                    .delete_message()
                    .queue_url(self.queue_url(queue_name))
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send()
                    .await
                    .expect("delete");
                taken += 1;
            }
        }
    }

    pub async fn send_raw(&self, queue_name: &str, body: &str) {
        self.sqs
            .send_message()
            .queue_url(self.queue_url(queue_name))
            .message_body(body)
            .send()
            .await
            .expect("send");
    }

    pub fn secret_name(&self, project_id: Uuid, kind: &str) -> String {
        provisioning::secrets::secret_name(&self.settings, project_id, kind)
    }

    pub async fn secret(&self, name: &str) -> Option<SecretString> {
        match self.secrets.get_secret_value().secret_id(name).send().await {
            Ok(out) => out.secret_string.map(SecretString::from),
            Err(_) => None,
        }
    }

    /// Number of versions Secrets Manager holds for a secret (1 = written once).
    pub async fn secret_version_count(&self, name: &str) -> usize {
        let out = self
            .secrets
            .list_secret_version_ids()
            .secret_id(name)
            .send()
            .await
            .expect("list versions");
        out.versions().len()
    }

    /// Every secret of this environment (by name prefix).
    pub async fn secret_names(&self) -> Vec<String> {
        let prefix = format!("{}/", self.settings.secret_prefix);
        let mut names = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .secrets
                .list_secrets()
                .set_next_token(token)
                .max_results(100)
                .send()
                .await
                .expect("list secrets");
            names.extend(
                out.secret_list()
                    .iter()
                    .filter_map(|s| s.name().map(str::to_owned))
                    .filter(|n| n.starts_with(&prefix)),
            );
            token = out.next_token().map(str::to_owned);
            if token.is_none() {
                break;
            }
        }
        names.sort();
        names
    }

    pub async fn db(&self) -> deadpool_postgres::Object {
        self.pipeline
            .db
            .get()
            .await
            .expect("control-plane connection")
    }

    /// Rows in a control-plane table.
    pub async fn rows(&self, table: &str) -> i64 {
        let sql = format!("SELECT count(*) FROM control_plane.{table}");
        self.db()
            .await
            .query_one(&sql, &[])
            .await
            .expect(&sql)
            .get(0)
    }

    pub async fn count(&self, sql: &str, project_id: Uuid) -> i64 {
        self.db()
            .await
            .query_one(sql, &[&project_id])
            .await
            .expect(sql)
            .get(0)
    }

    /// Whole-cluster facts, asked of the admin connection (cluster local-1,
    /// which also holds the control plane).
    pub async fn admin(&self) -> tokio_postgres::Client {
        connect(&stack_var("PG_ADMIN_URL")).await
    }

    /// The cluster a project was placed on (its id and port).
    pub async fn placement(&self, project_id: Uuid) -> Option<(String, u16)> {
        let row = self
            .db()
            .await
            .query_one(
                "SELECT c.id, c.port FROM control_plane.projects p
                   LEFT JOIN control_plane.clusters c ON c.id = p.cluster_id WHERE p.id = $1",
                &[&project_id],
            )
            .await
            .expect("project row");
        let id: Option<String> = row.get(0);
        id.map(|id| (id, row.get::<_, i32>(1) as u16))
    }

    /// An admin connection to the cluster the project was placed on.
    pub async fn project_admin(&self, project_id: Uuid) -> tokio_postgres::Client {
        let (_, port) = self
            .placement(project_id)
            .await
            .expect("the project was placed on a cluster");
        admin_at(port, "postgres").await
    }
}

/// The local stack's clusters: (id, port), `PG_PORT_1` .. `PG_PORT_<PG_CLUSTERS>`.
pub fn stack_clusters() -> Vec<(String, u16)> {
    local_dev::sandbox::stack_clusters(|name| Some(stack_var(name)))
        .unwrap_or_else(|e| panic!("{e}: {HOW_TO_START}"))
}

/// An admin connection to `database` on the local cluster listening on `port`.
pub async fn admin_at(port: u16, database: &str) -> tokio_postgres::Client {
    connect(&local_dev::sandbox::admin_url_at(
        &stack_var("PG_ADMIN_URL"),
        port,
        database,
    ))
    .await
}

/// How many of the named databases and roles exist on each local cluster.
pub async fn tenant_objects_per_cluster(database: &str, role: &str) -> Vec<(String, i64, i64)> {
    let mut found = Vec::new();
    for (id, port) in stack_clusters() {
        let admin = admin_at(port, "postgres").await;
        let row = admin
            .query_one(
                "SELECT (SELECT count(*) FROM pg_database WHERE datname = $1),
                        (SELECT count(*) FROM pg_roles WHERE rolname = $2)",
                &[&database, &role],
            )
            .await
            .unwrap();
        found.push((id, row.get(0), row.get(1)));
    }
    found
}

pub async fn connect(url: &str) -> tokio_postgres::Client {
    admin_client(url).await.unwrap_or_else(|e| {
        panic!(
            "postgres at {}: {e}: {HOW_TO_START}",
            url.rsplit('@').next().unwrap_or("?")
        )
    })
}

/// A sample request; tweak fields per test.
pub fn project(name: &str) -> NewProject {
    NewProject {
        name: name.into(),
        region: "us-east-1".into(),
        owner_id: Some(Uuid::new_v4()),
        organization_id: Some(Uuid::new_v4()),
        services: ServiceSelection::default(),
        api_keys: provisioning::domain::ApiKeySpec {
            count: 2,
            prefix: "test".into(),
        },
    }
}

/// Asserts the run reached ready with every stage succeeded exactly as expected.
pub fn assert_ready(report: &ProjectReport) {
    assert_eq!(report.status, "ready", "{report:#?}");
    assert!(
        report.timeline.iter().all(|s| s.status == "succeeded"),
        "{:#?}",
        report.timeline
    );
}

/// Reads a tenant's credentials secret.
pub async fn tenant_credentials(
    env: &TestEnv,
    project_id: Uuid,
) -> provisioning::secrets::DatabaseCredentials {
    let secret = env
        .secret(&env.secret_name(project_id, "database"))
        .await
        .expect("database secret");
    provisioning::secrets::DatabaseCredentials::parse(&secret).unwrap()
}

/// Plaintext API keys from a project's api-keys secret.
pub async fn plaintext_keys(env: &TestEnv, project_id: Uuid) -> Vec<String> {
    let secret = env
        .secret(&env.secret_name(project_id, "api-keys"))
        .await
        .expect("api-keys secret");
    let stored = provisioning::secrets::StoredKeys::parse(&secret).unwrap();
    stored
        .keys
        .iter()
        .map(|(k, _)| k.plaintext().expose_secret().to_owned())
        .collect()
}

/// A Postgres URL for a tenant login on any database (for isolation checks).
pub fn login_url(c: &provisioning::secrets::DatabaseCredentials, dbname: &str) -> String {
    format!(
        "postgres://{}:{}@{}:{}/{dbname}",
        c.username,
        c.password.expose_secret(),
        c.host,
        c.port
    )
}

/// The first column of every row, as text.
pub async fn strings(client: &tokio_postgres::Client, sql: &str) -> Vec<String> {
    client
        .query(sql, &[])
        .await
        .expect(sql)
        .iter()
        .map(|r| r.get(0))
        .collect()
}

impl TestEnv {
    /// Runs one control-plane statement (test set-up).
    pub async fn exec(&self, sql: &str, params: &[&(dyn tokio_postgres::types::ToSql + Sync)]) {
        self.db().await.execute(sql, params).await.expect(sql);
    }
}

/// Waits (bounded) for `attempt` to yield a value.
pub async fn eventually<T, F, Fut>(what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = attempt().await {
            return value;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "timed out waiting for {what}"
        );
    }
}

impl TestEnv {
    /// An admin connection to one database of the cluster.
    pub async fn admin_on(&self, database: &str) -> tokio_postgres::Client {
        admin_on(database).await
    }
}

/// An admin connection to one database of the cluster.
pub async fn admin_on(database: &str) -> tokio_postgres::Client {
    let admin_url = stack_var("PG_ADMIN_URL");
    connect(&format!(
        "{}/{database}",
        admin_url.rsplit_once('/').unwrap().0
    ))
    .await
}

/// Arms the fault point `point` for the project and runs the runner until it
/// is hit; the handler never resumes (a killed process, as far as Postgres
/// and SQS can tell).
pub async fn crash_at(env: &TestEnv, project_id: Uuid, point: &'static str) {
    let reached = provisioning::fault::arm(project_id, point);
    let running = env.runner.spawn(1);
    tokio::time::timeout(Duration::from_secs(60), reached)
        .await
        .unwrap_or_else(|_| panic!("{point} was not reached"))
        .expect("armed");
    running.kill().await;
}

/// A tenant login with the project's stored credentials, or its refusal.
pub async fn tenant_login(
    env: &TestEnv,
    project_id: Uuid,
) -> Result<tokio_postgres::Client, String> {
    let creds = tenant_credentials(env, project_id).await;
    admin_client(&login_url(&creds, &creds.dbname))
        .await
        .map_err(|e| e.to_string())
}

/// A registration endpoint for `service` that answers `status` to the first
/// `failures` calls (every call when None) and 200 after that.
pub async fn registration_endpoint(
    service: Service,
    status: u16,
    failures: Option<u64>,
) -> wiremock::MockServer {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let server = MockServer::start().await;
    let failing = Mock::given(method("POST"))
        .and(path(format!("/{service}")))
        .respond_with(ResponseTemplate::new(status));
    match failures {
        Some(n) => {
            failing
                .up_to_n_times(n)
                .with_priority(1)
                .mount(&server)
                .await;
            Mock::given(method("POST"))
                .and(path(format!("/{service}")))
                .respond_with(ResponseTemplate::new(200))
                .with_priority(2)
                .mount(&server)
                .await;
        }
        None => failing.mount(&server).await,
    }
    server
}

/// A test environment whose `service` registers at `server`.
pub async fn env_with_service(service: Service, server: &wiremock::MockServer) -> TestEnv {
    let urls = HashMap::from([(service, format!("{}/{service}", server.uri()))]);
    TestEnv::with(EnvOptions {
        registration_urls: urls,
        ..Default::default()
    })
    .await
}

/// One database, one role, each secret written once, exactly `keys` key rows.
pub async fn assert_exactly_one_of_everything(env: &TestEnv, project_id: Uuid, keys: i64) {
    let names = provisioning::domain::TenantNames::for_project(project_id);
    // One database and one role over all clusters, on the project's cluster.
    // (A test may register a stack cluster again under another id: the port says which it is.)
    let (_, placed_port) = env.placement(project_id).await.expect("placed");
    let expected: Vec<_> = stack_clusters()
        .into_iter()
        .map(|(id, port)| {
            let n = i64::from(port == placed_port);
            (id, n, n)
        })
        .collect();
    assert_eq!(
        tenant_objects_per_cluster(&names.database, &names.role).await,
        expected
    );
    let own = format!("/{project_id}/");
    let secrets: Vec<String> = env
        .secret_names()
        .await
        .into_iter()
        .filter(|name| name.contains(&own))
        .collect();
    assert_eq!(
        secrets,
        [
            env.secret_name(project_id, "api-keys"),
            env.secret_name(project_id, "database")
        ]
    );
    for secret in &secrets {
        assert_eq!(
            env.secret_version_count(secret).await,
            1,
            "{secret} was written more than once"
        );
    }
    assert_eq!(
        env.count(
            "SELECT count(*) FROM control_plane.api_keys WHERE project_id = $1",
            project_id
        )
        .await,
        keys
    );
    assert_eq!(plaintext_keys(env, project_id).await.len() as i64, keys);
    assert_eq!(
        env.count(
            "SELECT count(*) FROM control_plane.project_services WHERE project_id = $1",
            project_id
        )
        .await,
        3
    );
    assert_eq!(
        env.count("SELECT count(*) FROM control_plane.audit_log WHERE project_id = $1 AND action = 'provisioning.ready'", project_id).await,
        1
    );
}

/// Runs `scripts/stack.sh COMMAND` (`pg-stop [N]`, `pg-start [N]`): the fault
/// tests take the local stack's Postgres (or its cluster N) away and bring it
/// back with it.
pub fn stack_control(command: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/stack.sh");
    let status = std::process::Command::new("bash")
        .arg(script)
        .args(command.split_whitespace())
        .status()
        .unwrap_or_else(|e| panic!("{script} {command}: {e}"));
    assert!(
        status.success(),
        "{script} {command} failed: {HOW_TO_START}"
    );
}

impl TestEnv {
    /// Serves this environment's API over HTTP on a free loopback port, as the
    /// local API does; returns its base URL and a switch that stops it.
    pub async fn serve_api(&self) -> (String, tokio::sync::watch::Sender<bool>) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("a free loopback port");
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(local_dev::http::serve(self.api(), listener, stopped));
        (base_url, stop)
    }
}

/// An HTTP client for the local API.
pub fn http_client() -> reqwest::Client {
    provisioning::tls::http_client()
        .expect("http client")
        .build()
        .expect("http client")
}
