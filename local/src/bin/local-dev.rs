//! `local-dev setup | run | demo FILE`: local tooling for the pipeline.
//!
//! - setup: applies the control-plane migrations and creates the queues;
//! - run:   setup, then the event-source runner until Ctrl-C;
//! - demo:  setup, create the project described by FILE, follow it to ready.

use local_dev::{create_queues, demo, QueueSettings, Runner};
use provisioning::db::{migrate, CONTROL_PLANE_MIGRATIONS};
use provisioning::project::create_project;
use provisioning::{NewProject, Pipeline, Settings};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("setup") => setup().await.map(|_| ExitCode::SUCCESS),
        Some("run") => run().await.map(|_| ExitCode::SUCCESS),
        Some("demo") => match args.get(1) {
            Some(file) => run_demo(file).await,
            None => Err("usage: local-dev demo FILE".into()),
        },
        _ => Err("usage: local-dev setup | run | demo FILE".into()),
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
    provisioning::telemetry::init_with_writer(std::sync::Mutex::new(file));
    Ok(path)
}

async fn setup() -> Result<(Pipeline, Runner), Error> {
    let settings = Settings::from_env()?;
    let queue_settings = QueueSettings::from_env()?;
    let (mut client, connection) = settings
        .database_config()
        .connect(tokio_postgres::NoTls)
        .await?;
    tokio::spawn(connection);
    let version = migrate(&mut client, "control_plane", CONTROL_PLANE_MIGRATIONS).await?;
    let aws = provisioning::adapters::aws_config().await;
    let sqs = aws_sdk_sqs::Client::new(&aws);
    create_queues(&sqs, &settings.queue_url_prefix, queue_settings).await?;
    eprintln!(
        "control plane at schema version {version}; queues {}<stage> (visibility {} s, {} receives to DLQ)",
        settings.queue_url_prefix, queue_settings.visibility_timeout_secs, queue_settings.max_receive_count
    );
    let pipeline = Pipeline::from_settings(settings).await?;
    let runner = Runner::new(sqs, pipeline.clone());
    Ok((pipeline, runner))
}

async fn run() -> Result<(), Error> {
    let log = init_logs()?;
    let (_, runner) = setup().await?;
    eprintln!("runner polling every stage queue and DLQ; logs in {log}; Ctrl-C to stop");
    let running = Arc::new(runner).spawn(2);
    tokio::signal::ctrl_c().await?;
    running.stop().await;
    Ok(())
}

async fn run_demo(file: &str) -> Result<ExitCode, Error> {
    let started = Instant::now();
    let log = init_logs()?;
    let request: NewProject = serde_json::from_str(&std::fs::read_to_string(file)?)
        .map_err(|e| format!("{file}: not a project request: {e}"))?;
    let (pipeline, runner) = setup().await?;
    let created = create_project(&pipeline.db, &*pipeline.queue, &request, None).await?;
    println!(
        "project {} '{}' requested in {} (run {})",
        created.project_id, request.name, request.region, created.run_id
    );
    let mut stdout = std::io::stdout();
    let report = demo::run_and_follow(
        Arc::new(runner),
        &pipeline,
        created.project_id,
        Duration::from_secs(120),
        &mut stdout,
    )
    .await?;
    demo::print_summary(&report, &mut stdout);
    println!(
        "\ndemo finished in {:.1} s; JSON logs in {log}",
        started.elapsed().as_secs_f64()
    );
    Ok(if report.status == "ready" {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
