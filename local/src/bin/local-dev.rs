//! `local-dev setup | run | demo FILE`: local tooling for the pipeline.
//!
//! - setup: applies the control-plane migrations and creates the queues;
//! - run:   setup, then the event-source runner for every queue and the API on
//!   http://127.0.0.1:$API_PORT (default 8787) until Ctrl-C;
//! - demo:  setup, runner and API, then `POST /projects` with FILE and follow
//!   the project through `GET /projects/{id}` until it is ready;
//! - demo-lifecycle: the demo, then suspend, resume, delete, restore, delete
//!   and, once the recovery window has passed, the sweeper's purge.

use local_dev::{create_queues, demo, QueueSettings, Runner};
use provisioning::adapters::secrets_manager::SecretsManagerStore;
use provisioning::api::Api;
use provisioning::migrate::MigrateFunction;
use provisioning::ports::SecretStore;
use provisioning::{Pipeline, Settings};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("setup") => setup().await.map(|_| ExitCode::SUCCESS),
        Some("run") => run().await.map(|_| ExitCode::SUCCESS),
        Some(demo @ ("demo" | "demo-lifecycle")) => match args.get(1) {
            Some(file) => run_demo(file, demo == "demo-lifecycle").await,
            None => Err(format!("usage: local-dev {demo} FILE").into()),
        },
        _ => Err("usage: local-dev setup | run | demo FILE | demo-lifecycle FILE".into()),
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    })
}

fn init_logs() -> Result<String, Error> {
    let path = std::env::var("PIPELINE_LOG").unwrap_or_else(|_| ".local/logs/pipeline.log".into());
    if let Some(dir) = std::path::Path::new(&path).parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    let metrics = file.try_clone()?;
    provisioning::telemetry::init_with_writer(std::sync::Mutex::new(file));
    // EMF lines go to the log file too (on Lambda they go to stdout), so the
    // demo's output stays the stages and the summary.
    let metrics = std::sync::Mutex::new(metrics);
    provisioning::metrics::set_sink(move |line| {
        use std::io::Write;
        let _ = writeln!(metrics.lock().unwrap(), "{line}");
    });
    Ok(path)
}

async fn setup() -> Result<(Pipeline, Runner, local_dev::events::EventTap), Error> {
    let mut settings = Settings::from_env()?;
    let queue_settings = QueueSettings::from_env()?;
    let aws = provisioning::adapters::aws_config().await;
    provisioning::pipeline::resolve_database(
        &mut settings,
        &aws_sdk_secretsmanager::Client::new(&aws),
    )
    .await?;
    let secrets: Arc<dyn SecretStore> = Arc::new(SecretsManagerStore::new(
        aws_sdk_secretsmanager::Client::new(&aws),
    ));
    let applied = MigrateFunction::new(settings.clone(), secrets)?
        .apply()
        .await?;
    let version = applied.version;
    if !applied.registered.is_empty() {
        eprintln!("clusters registered: {}", applied.registered.join(", "));
    }
    let sqs = aws_sdk_sqs::Client::new(&aws);
    create_queues(&sqs, &settings.queue_url_prefix, queue_settings).await?;
    eprintln!(
        "control plane at schema version {version}; queues {}<stage> (visibility {} s, {} receives to DLQ)",
        settings.queue_url_prefix, queue_settings.visibility_timeout_secs, queue_settings.max_receive_count
    );
    let bus = settings
        .event_bus_name
        .clone()
        .ok_or("EVENT_BUS_NAME: not set (scripts/stack.sh up writes it to .local/env)")?;
    let tap = local_dev::events::create_event_tap(&aws, &bus, &settings.queue_url_prefix).await?;
    let pipeline = Pipeline::from_settings(settings).await?;
    let runner = Runner::new(sqs, pipeline.clone());
    Ok((pipeline, runner, tap))
}

/// Starts the runner and the local API; returns the API's base URL and a stop switch.
async fn start(
    pipeline: Pipeline,
    runner: Runner,
    port: u16,
) -> Result<(String, watch::Sender<bool>, local_dev::RunningRunner), Error> {
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let base_url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(local_dev::http::serve(Api { pipeline }, listener, stopped));
    let running = Arc::new(runner).spawn(2);
    Ok((base_url, stop, running))
}

async fn run() -> Result<(), Error> {
    let log = init_logs()?;
    let (pipeline, runner, _) = setup().await?;
    let port = std::env::var("API_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8787);
    let (base_url, stop, running) = start(pipeline, runner, port).await?;
    eprintln!("runner polling every stage queue and DLQ; logs in {log}");
    eprintln!("API on {base_url}, e.g.:");
    eprintln!("  curl -s -X POST {base_url}/projects -H 'content-type: application/json' -d @events/create-project.json");
    eprintln!("  curl -s {base_url}/projects/<id>    curl -s {base_url}/admin/provisioning");
    eprintln!("Ctrl-C to stop");
    tokio::signal::ctrl_c().await?;
    let _ = stop.send(true);
    running.stop().await;
    Ok(())
}

async fn run_demo(file: &str, lifecycle: bool) -> Result<ExitCode, Error> {
    let started = Instant::now();
    let log = init_logs()?;
    let body = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
    let (pipeline, runner, tap) = setup().await?;
    let (base_url, stop, running) = start(pipeline, runner, 0).await?;
    let client = provisioning::tls::http_client()?.build()?;
    let response = client
        .post(format!("{base_url}/projects"))
        .header("content-type", "application/json")
        .header("idempotency-key", format!("demo-{}", uuid::Uuid::new_v4()))
        .body(body)
        .send()
        .await?;
    let status = response.status();
    let created: serde_json::Value = response.json().await?;
    println!("POST {base_url}/projects -> {status}\n  {created}");
    let project_id: uuid::Uuid = created["project_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or("no project_id in the response")?;
    println!("following GET {base_url}/projects/{project_id}");
    let mut stdout = std::io::stdout();
    let report = demo::follow(
        &client,
        &base_url,
        project_id,
        Duration::from_secs(120),
        &mut stdout,
    )
    .await;
    let report = match (report, lifecycle) {
        (Ok(report), true) if report.status == "ready" => {
            demo::print_summary(&report, &mut stdout);
            lifecycle_demo(&client, &base_url, project_id, &mut stdout).await
        }
        (report, _) => report,
    };
    let _ = stop.send(true);
    running.stop().await;
    let report = report?;
    demo::print_summary(&report, &mut stdout);
    let (delivered, _) = tap.drain(Duration::from_millis(500)).await?;
    demo::print_events(&delivered, project_id, &mut stdout);
    println!(
        "\ndemo finished in {:.1} s; JSON logs in {log}",
        started.elapsed().as_secs_f64()
    );
    let expected = if lifecycle { "purged" } else { "ready" };
    Ok(if report.status == expected {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// suspend, resume, delete, restore, delete, then the sweeper's purge.
async fn lifecycle_demo(
    client: &reqwest::Client,
    base_url: &str,
    project_id: uuid::Uuid,
    out: &mut std::io::Stdout,
) -> Result<provisioning::report::ProjectReport, String> {
    let mut last_run = None;
    for operation in demo::LIFECYCLE {
        let report = demo::operate(client, base_url, project_id, operation, out).await?;
        let run = report
            .run
            .as_ref()
            .map(|r| r.status.as_str())
            .unwrap_or("-");
        println!("  project {}, run {run}", report.status);
        last_run = report.run.as_ref().map(|r| r.id);
    }
    let window = std::env::var("RECOVERY_WINDOW_SECONDS").unwrap_or_default();
    println!(
        "\nwaiting for the recovery window ({window} s) to end: the sweeper then starts the purge"
    );
    demo::follow_until(
        client,
        base_url,
        project_id,
        Duration::from_secs(120),
        last_run,
        out,
        |r| r.status == "purged",
    )
    .await
}
