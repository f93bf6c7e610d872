//! `bench`: provisioning speed against the raw floor, and each function as
//! shipped. Run by `make bench` (scripts/bench.sh), on a durable local stack.
//!
//! Series (each on a fresh control-plane database and fresh queues, after a
//! CHECKPOINT): latency (projects one after another), throughput (a burst at 1
//! and 2 concurrent invocations per stage), scale (many projects in batches),
//! then per function: stripped binary size, init time, peak RSS.

use local_dev::bench::{
    floor_pipeline, floor_project, ms, percentile, registration_stub, PortTime, TimedQueue,
    TimedRegistrar, TimedSecrets,
};
use local_dev::cpu::{CpuSample, StackPids};
use local_dev::runtime_api::{peak_rss_kib, FakeRuntime};
use local_dev::sandbox::{admin_client, Sandbox, StackAddress};
use local_dev::{QueueSettings, Runner};
use provisioning::domain::{ApiKeySpec, NewProject, ServiceSelection, Stage, StageMessage};
use provisioning::project::create_project;
use provisioning::Pipeline;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn var(name: &str) -> Result<String, Error> {
    std::env::var(name)
        .map_err(|_| format!("{name} is not set: run `make bench` (it starts the stack)").into())
}

fn count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn admin() -> Result<tokio_postgres::Client, Error> {
    Ok(admin_client(&var("PG_ADMIN_URL")?).await?)
}

/// A fresh control-plane database and queue set, with timed ports.
struct Series {
    name: String,
    pipeline: Pipeline,
    runner: Arc<Runner>,
    queue_time: Arc<PortTime>,
    secret_time: Arc<PortTime>,
    registration_time: Arc<PortTime>,
    env: HashMap<&'static str, String>,
}

/// `registration` is the base URL of the registration stub: every service registers there.
async fn series(name: &str, registration: &str) -> Result<Series, Error> {
    admin().await?.batch_execute("CHECKPOINT").await?;
    let stack = StackAddress::from_lookup(|name| std::env::var(name).ok())
        .map_err(|e| format!("{e}: run `make bench` (it starts the stack)"))?;
    let registration_urls = [
        ("AUTH_REGISTRATION_URL", format!("{registration}/auth")),
        (
            "REALTIME_REGISTRATION_URL",
            format!("{registration}/realtime"),
        ),
        (
            "STORAGE_REGISTRATION_URL",
            format!("{registration}/storage"),
        ),
    ];
    let queues = QueueSettings {
        visibility_timeout_secs: 30,
        max_receive_count: 3,
    };
    let sandbox =
        Sandbox::create(&stack, &format!("bench_{name}"), registration_urls, queues).await?;
    let mut pipeline = sandbox.pipeline;
    let queue_time = Arc::new(PortTime::default());
    let secret_time = Arc::new(PortTime::default());
    let registration_time = Arc::new(PortTime::default());
    pipeline.registrar = Arc::new(TimedRegistrar(
        pipeline.registrar.clone(),
        registration_time.clone(),
    ));
    pipeline.queue = Arc::new(TimedQueue(pipeline.queue.clone(), queue_time.clone()));
    pipeline.secrets = Arc::new(TimedSecrets(pipeline.secrets.clone(), secret_time.clone()));
    let runner = Arc::new(Runner::new(sandbox.sqs, pipeline.clone()));
    Ok(Series {
        name: name.to_owned(),
        pipeline,
        runner,
        queue_time,
        secret_time,
        registration_time,
        env: sandbox.vars,
    })
}

fn request(i: usize) -> NewProject {
    NewProject {
        name: format!("bench {i}"),
        region: "us-east-1".into(),
        owner_id: Some(Uuid::new_v4()),
        organization_id: None,
        services: ServiceSelection::default(),
        api_keys: ApiKeySpec {
            count: 2,
            prefix: "bench".into(),
        },
    }
}

/// Waits until every project is ready; returns (created_at, ready_at) per project in ms since epoch.
async fn wait_ready(s: &Series, ids: &[Uuid]) -> Result<Vec<(f64, f64)>, Error> {
    let db = s.pipeline.db.get().await?;
    let started = Instant::now();
    loop {
        let rows = db
            .query(
                "SELECT status, (extract(epoch FROM created_at) * 1000)::float8, (extract(epoch FROM ready_at) * 1000)::float8
                   FROM control_plane.projects WHERE id = ANY($1)",
                &[&ids],
            )
            .await?;
        if rows.iter().any(|r| r.get::<_, String>(0) == "failed") {
            let failed = db
                .query_one(
                    "SELECT failed_stage, last_error FROM control_plane.projects WHERE id = ANY($1) AND status = 'failed' LIMIT 1",
                    &[&ids],
                )
                .await?;
            let (stage, error): (Option<String>, Option<String>) = (failed.get(0), failed.get(1));
            return Err(format!("{}: a project failed at {stage:?}: {error:?}", s.name).into());
        }
        if rows.len() == ids.len() && rows.iter().all(|r| r.get::<_, String>(0) == "ready") {
            return Ok(rows
                .iter()
                .map(|r| (r.get::<_, f64>(1), r.get::<_, f64>(2)))
                .collect());
        }
        if started.elapsed() > Duration::from_secs(900) {
            return Err(format!("{}: projects not ready after 15 minutes", s.name).into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct StageBreakdown {
    queue_wait_ms: f64,
    run_ms: f64,
}

async fn stage_breakdown(s: &Series, ids: &[Uuid]) -> Result<Vec<(String, StageBreakdown)>, Error> {
    let db = s.pipeline.db.get().await?;
    let rows = db
        .query(
            "SELECT st.stage,
                    avg(extract(epoch FROM st.started_at - coalesce(
                        (SELECT prev.finished_at FROM control_plane.provisioning_stages prev
                          WHERE prev.run_id = st.run_id AND prev.position = st.position - 1),
                        r.created_at)) * 1000)::float8,
                    avg(st.duration_ms)::float8
               FROM control_plane.provisioning_stages st
               JOIN control_plane.provisioning_runs r ON r.id = st.run_id
              WHERE r.project_id = ANY($1)
              GROUP BY st.stage, st.position ORDER BY st.position",
            &[&ids],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get::<_, String>(0),
                StageBreakdown {
                    queue_wait_ms: r.get(1),
                    run_ms: r.get(2),
                },
            )
        })
        .collect())
}

/// Times of `n` scrypt hashes with the default parameters.
fn hash_samples(n: usize) -> Vec<Duration> {
    let settings_log_n = 14;
    let key = provisioning::keys::ApiKey::generate("bench");
    (0..n)
        .map(|_| {
            let started = Instant::now();
            provisioning::keys::hash_secret(&key.secret_part(), settings_log_n).unwrap();
            started.elapsed()
        })
        .collect()
}

struct Report {
    out: String,
}

impl Report {
    fn line(&mut self, text: impl AsRef<str>) {
        println!("{}", text.as_ref());
        self.out.push_str(text.as_ref());
        self.out.push('\n');
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**missed**"
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    provisioning::telemetry::init_with_writer(std::io::sink);
    let latency_n = count("BENCH_LATENCY", 50);
    let burst_n = count("BENCH_BURST", 100);
    let scale_n = count("BENCH_SCALE", 1000);
    let init_runs = count("BENCH_INIT_RUNS", 20);
    let mut r = Report { out: String::new() };
    let pids = StackPids::from_env();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let stub = registration_stub().await?;
    // Hashing is sampled beside each latency project (same machine state),
    // not once up front: this machine's speed drifts within a run.
    let mut hash_times = hash_samples(2);

    // ---- latency ----------------------------------------------------------
    let s = series("latency", &stub).await?;
    let floor = floor_pipeline(&s.pipeline);
    s.queue_time.reset();
    s.secret_time.reset();
    s.registration_time.reset();
    let running = s.runner.spawn(1);
    let mut floor_times = Vec::new();
    let mut e2e = Vec::new();
    let mut ids = Vec::new();
    // Floor and pipeline projects alternate, so both see the same machine and
    // cluster state (the floor's run while the runner idles on long polls).
    for i in 0..latency_n {
        floor_times.push(floor_project(&floor, &request(i)).await?);
        let created = create_project(&s.pipeline.db, &*s.pipeline.queue, &request(i), None).await?;
        let times = wait_ready(&s, &[created.project_id]).await?;
        e2e.push(Duration::from_secs_f64((times[0].1 - times[0].0) / 1000.0));
        ids.push(created.project_id);
        hash_times.extend(hash_samples(1));
    }
    let hash = percentile(&hash_times, 50.0);
    running.stop().await;
    let breakdown = stage_breakdown(&s, &ids).await?;
    let (f50, f95) = (
        percentile(&floor_times, 50.0),
        percentile(&floor_times, 95.0),
    );
    let (p50, p95) = (percentile(&e2e, 50.0), percentile(&e2e, 95.0));
    let per_project = |d: Duration| ms(d) / latency_n as f64;
    let sm_ms = per_project(s.secret_time.total());
    let sqs_ms = per_project(s.queue_time.total());
    let http_ms = per_project(s.registration_time.total());
    let hashing_ms = ms(hash) * 2.0;

    r.line(format!(
        "## Latency: {latency_n} projects one after another (runner: 1 invocation per stage)"
    ));
    r.line("");
    r.line("| | p50 ms | p95 ms | ratio to floor (p50) |");
    r.line("|---|---:|---:|---:|");
    r.line(format!(
        "| floor (same executor and SQL, no queues, secrets in memory) | {:.1} | {:.1} | 1.00 |",
        ms(f50),
        ms(f95)
    ));
    r.line(format!(
        "| pipeline, creation to ready | {:.1} | {:.1} | {:.2} |",
        ms(p50),
        ms(p95),
        ms(p50) / ms(f50)
    ));
    r.line("");
    r.line("Per stage (mean): queue wait = from the previous stage's end (or creation) to this stage's start.");
    r.line("");
    r.line("| stage | queue wait ms | run ms |");
    r.line("|---|---:|---:|");
    let (mut wait_total, mut run_total) = (0.0, 0.0);
    for (stage, b) in &breakdown {
        wait_total += b.queue_wait_ms;
        run_total += b.run_ms;
        r.line(format!(
            "| {stage} | {:.1} | {:.1} |",
            b.queue_wait_ms, b.run_ms
        ));
    }
    r.line(format!("| **total** | {wait_total:.1} | {run_total:.1} |"));
    r.line("");
    let calls = |t: &PortTime| format!("{:.1}", t.calls() as f64 / latency_n as f64);
    r.line("Where a project's time goes (mean per project):");
    r.line("");
    r.line("| component | ms | calls |");
    r.line("|---|---:|---:|");
    r.line(format!("| queue waits, all six hops | {wait_total:.1} | |"));
    r.line(format!(
        "| - SQS sends (by the previous stage) | {sqs_ms:.1} | {} |",
        calls(&s.queue_time)
    ));
    r.line(format!(
        "| - receive and batching by the runner (the rest) | {:.1} | |",
        (wait_total - sqs_ms).max(0.0)
    ));
    r.line(format!(
        "| stage run time, all six stages | {run_total:.1} | |"
    ));
    r.line(format!(
        "| - Secrets Manager | {sm_ms:.1} | {} |",
        calls(&s.secret_time)
    ));
    r.line(format!(
        "| - scrypt hashing (2 keys x {:.1} ms: median of {} hashes timed between the projects) | {hashing_ms:.1} | 2 |",
        ms(hash),
        hash_times.len()
    ));
    r.line(format!(
        "| - HTTP registration (local stub) | {http_ms:.1} | {} |",
        calls(&s.registration_time)
    ));
    r.line(format!(
        "| - Postgres and the executor (the rest) | {:.1} | |",
        (run_total - sm_ms - hashing_ms - http_ms).max(0.0)
    ));
    r.line(format!(
        "| floor, for comparison: Postgres and the executor (p50 minus hashing) | {:.1} | |",
        (ms(f50) - hashing_ms).max(0.0)
    ));
    r.line("");
    let latency_ratio = ms(p50) / ms(f50);

    // ---- throughput ---------------------------------------------------------
    r.line(format!(
        "## Throughput: {burst_n} projects submitted at once"
    ));
    r.line("");
    r.line("Pipeline rate: from the moment the invocations start (every message already queued) to the last `ready`; \
            in the last column, from the first submission instead (creating the projects one by one is then part of it).");
    r.line("");
    r.line("| concurrency per stage | pipeline projects/s | floor projects/s | ratio | from submission (ratio) |");
    r.line("|---:|---:|---:|---:|---:|");
    let mut throughput_ratios = Vec::new();
    let mut cpu_rows = Vec::new();
    for workers in [1usize, 2] {
        let s = series(&format!("burst{workers}"), &stub).await?;
        let floor = floor_pipeline(&s.pipeline);
        let cpu_before = CpuSample::take(pids);
        let started = Instant::now();
        let tasks: Vec<_> = (0..workers)
            .map(|w| {
                let floor = floor.clone();
                tokio::spawn(async move {
                    for i in (w..burst_n).step_by(workers) {
                        floor_project(&floor, &request(i)).await?;
                    }
                    Ok::<_, String>(())
                })
            })
            .collect();
        for t in tasks {
            t.await??;
        }
        let floor_wall = started.elapsed();
        let floor_rate = burst_n as f64 / floor_wall.as_secs_f64();
        cpu_rows.push((
            format!("floor, {workers}"),
            CpuSample::take(pids).since(&cpu_before),
            floor_wall,
        ));
        let mut ids = Vec::new();
        for i in 0..burst_n {
            ids.push(
                create_project(&s.pipeline.db, &*s.pipeline.queue, &request(i), None)
                    .await?
                    .project_id,
            );
        }
        // Every message is queued: the clock starts when the invocations do.
        let cpu_before = CpuSample::take(pids);
        let started = Instant::now();
        let running = s.runner.spawn(workers);
        let times = wait_ready(&s, &ids).await?;
        let wall = started.elapsed();
        // The same run timed from the first submission (creating 100 projects
        // one by one, each with its first SQS send, is then part of the time).
        let first = times.iter().map(|t| t.0).fold(f64::MAX, f64::min);
        let last = times.iter().map(|t| t.1).fold(0.0, f64::max);
        let rate_from_submission = burst_n as f64 / ((last - first) / 1000.0);
        running.stop().await;
        cpu_rows.push((
            format!("pipeline, {workers}"),
            CpuSample::take(pids).since(&cpu_before),
            wall,
        ));
        let rate = burst_n as f64 / wall.as_secs_f64();
        throughput_ratios.push(rate / floor_rate);
        r.line(format!(
            "| {workers} | {rate:.2} | {floor_rate:.2} | {:.2} | {rate_from_submission:.2} ({:.2}) |",
            rate / floor_rate,
            rate_from_submission / floor_rate
        ));
    }
    r.line("");
    r.line(format!(
        "Where the cores went: CPU ms per project, by process, and the machine's busy and iowait share of {cores} cores \
         (the bench process runs the floor, or the runner with every handler and scrypt)."
    ));
    r.line("");
    r.line("| run, concurrency | bench process | postgres | moto | machine busy | iowait |");
    r.line("|---|---:|---:|---:|---:|---:|");
    for (name, used, wall) in &cpu_rows {
        let per = |seconds: f64| seconds * 1000.0 / burst_n as f64;
        r.line(format!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.0}% | {:.0}% |",
            per(used.this_process),
            per(used.postgres),
            per(used.moto),
            100.0 * used.utilisation(*wall, cores),
            100.0 * used.machine_iowait / (wall.as_secs_f64() * cores as f64),
        ));
    }
    r.line("");

    // ---- scale --------------------------------------------------------------
    let s = series("scale", &stub).await?;
    let batch = 100.min(scale_n.max(1));
    let mut batch_ms = Vec::new();
    let running = s.runner.spawn(2);
    let mut all_ids = Vec::new();
    for b in 0..scale_n.div_ceil(batch) {
        let started = Instant::now();
        let mut ids = Vec::new();
        for i in 0..batch.min(scale_n - b * batch) {
            ids.push(
                create_project(
                    &s.pipeline.db,
                    &*s.pipeline.queue,
                    &request(b * batch + i),
                    None,
                )
                .await?
                .project_id,
            );
        }
        wait_ready(&s, &ids).await?;
        batch_ms.push(ms(started.elapsed()) / ids.len() as f64);
        all_ids.extend(ids);
    }
    running.stop().await;
    let names: Vec<String> = all_ids
        .iter()
        .map(|id| provisioning::domain::TenantNames::for_project(*id).database)
        .collect();
    let admin = admin().await?;
    let row = admin
        .query_one("SELECT avg(pg_database_size(datname))::float8, count(*) FROM pg_database WHERE datname = ANY($1)", &[&names])
        .await?;
    let (disk, tenants): (f64, i64) = (row.get(0), row.get(1));
    let (first100, last100) = (batch_ms[0], *batch_ms.last().unwrap());
    r.line(format!(
        "## Scale: {scale_n} projects in batches of {batch} (2 invocations per stage)"
    ));
    r.line("");
    r.line("| | ms per project |");
    r.line("|---|---:|");
    r.line(format!("| first {batch} | {first100:.1} |"));
    r.line(format!(
        "| last {batch} ({tenants} tenant databases in the cluster) | {last100:.1} |"
    ));
    r.line(format!("| ratio last/first | {:.2} |", last100 / first100));
    r.line(format!(
        "| disk per tenant database | {:.1} MiB |",
        disk / 1048576.0
    ));
    r.line("");

    // ---- functions as shipped ---------------------------------------------------
    let f = series("functions", &stub).await?;
    let events = function_events(&f).await?;
    r.line(format!("## Functions as shipped (release, x86_64, stripped): init = process start to first `next` request, median of {init_runs}"));
    r.line("");
    r.line("| function | binary MB (10^6 bytes) | init ms (median) | peak RSS MiB (one invocation) | answer |");
    r.line("|---|---:|---:|---:|---|");
    let mut worst = (0.0f64, 0.0f64, 0.0f64);
    for (function, event) in &events {
        let binary = format!("target/lambda/{function}/bootstrap");
        let size = std::fs::metadata(&binary)
            .map_err(|e| format!("{binary}: {e} (make build first)"))?
            .len() as f64
            / 1e6;
        let mut inits = Vec::new();
        for _ in 0..init_runs {
            let runtime = FakeRuntime::start(None).await?;
            let started = Instant::now();
            let mut child = spawn(&binary, function, &runtime.address, &f.env)?;
            let first = tokio::time::timeout(Duration::from_secs(10), runtime.first_next())
                .await
                .map_err(|_| format!("{function}: no next request"))?;
            inits.push(first - started);
            child.kill().await?;
        }
        let runtime = FakeRuntime::start(Some(event.to_string().into_bytes())).await?;
        let mut child = spawn(&binary, function, &runtime.address, &f.env)?;
        let (ok, body) = tokio::time::timeout(Duration::from_secs(60), runtime.outcome())
            .await
            .map_err(|_| format!("{function}: no answer"))?;
        let rss = peak_rss_kib(child.id().unwrap_or_default()).unwrap_or_default() as f64 / 1024.0;
        child.kill().await?;
        let answer = String::from_utf8_lossy(&body);
        let answer: String = if ok {
            answer.chars().take(40).collect()
        } else {
            format!("ERROR {}", answer.chars().take(60).collect::<String>())
        };
        let init = ms(percentile(&inits, 50.0));
        worst = (worst.0.max(size), worst.1.max(init), worst.2.max(rss));
        r.line(format!(
            "| {function} | {size:.2} | {init:.1} | {rss:.1} | `{}` |",
            answer.replace('|', "/")
        ));
    }
    r.line("");

    // ---- targets ----------------------------------------------------------------
    let min_throughput = throughput_ratios.iter().cloned().fold(f64::MAX, f64::min);
    r.line("## Targets");
    r.line("");
    r.line("| target | measured | |");
    r.line("|---|---:|---|");
    r.line(format!(
        "| end-to-end p50 <= 2x floor | {latency_ratio:.2}x | {} |",
        verdict(latency_ratio <= 2.0)
    ));
    r.line(format!(
        "| throughput >= 60% of floor | {:.0}% | {} |",
        min_throughput * 100.0,
        verdict(min_throughput >= 0.6)
    ));
    r.line(format!(
        "| init <= 25 ms | {:.1} ms (worst) | {} |",
        worst.1,
        verdict(worst.1 <= 25.0)
    ));
    r.line(format!(
        "| binary <= 8 MB | {:.2} MB (largest) | {} |",
        worst.0,
        verdict(worst.0 <= 8.0)
    ));
    r.line(format!(
        "| peak RSS <= 64 MB | {:.1} MiB (largest) | {} |",
        worst.2,
        verdict(worst.2 <= 64.0)
    ));
    r.line(format!(
        "| last-100 <= 1.2x first-100 | {:.2}x | {} |",
        last100 / first100,
        verdict(last100 / first100 <= 1.2)
    ));

    let path = std::env::var("BENCH_RESULTS").unwrap_or_else(|_| "bench/results.md".into());
    let mut doc = String::new();
    let _ = writeln!(doc, "# Benchmark results\n\n{}\n", machine());
    doc.push_str(&r.out);
    std::fs::create_dir_all(std::path::Path::new(&path).parent().unwrap())?;
    std::fs::write(&path, doc)?;
    eprintln!("\nwritten to {path}");
    Ok(())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().next().map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse::<f64>()
                    .unwrap_or(0.0)
                    / 1048576.0
            })
        })
        .unwrap_or(0.0);
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC");
    format!(
        "Run {date} on {cores} cores ({cpu}), {mem:.0} GiB; PostgreSQL with fsync on (PG_DURABLE=1), moto for SQS and \
         Secrets Manager on the same machine; in-process handlers through the local runner."
    )
}

fn spawn(
    binary: &str,
    function: &str,
    runtime: &str,
    env: &HashMap<&'static str, String>,
) -> Result<tokio::process::Child, Error> {
    let mut command = tokio::process::Command::new(binary);
    command
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("AWS_LAMBDA_RUNTIME_API", runtime)
        .env("AWS_LAMBDA_FUNCTION_NAME", function)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    Ok(command.spawn()?)
}

fn sqs_event(message: &StageMessage, queue: &str) -> serde_json::Value {
    serde_json::json!({ "Records": [{
        "messageId": Uuid::new_v4().to_string(),
        "receiptHandle": "bench",
        "body": message.to_body(),
        "attributes": { "ApproximateReceiveCount": "1" },
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": format!("arn:aws:sqs:us-east-1:123456789012:bench-{queue}"),
        "awsRegion": "us-east-1"
    }]})
}

/// One real event per function, for a project brought (in-process) to the
/// stage before the function's own.
async fn function_events(s: &Series) -> Result<Vec<(String, serde_json::Value)>, Error> {
    let mut events = Vec::new();
    for (i, stage) in Stage::ALL.into_iter().enumerate() {
        let created = create_project(&s.pipeline.db, &*s.pipeline.queue, &request(i), None).await?;
        let message = StageMessage {
            project_id: created.project_id,
            run_id: created.run_id,
            stage: Stage::Validate,
            correlation_id: created.correlation_id,
        };
        for earlier in Stage::ALL.into_iter().take_while(|s| *s != stage) {
            s.pipeline.run_stage(&message.for_stage(earlier)).await?;
        }
        events.push((
            stage.as_str().to_owned(),
            sqs_event(&message.for_stage(stage), stage.as_str()),
        ));
    }
    let created = create_project(&s.pipeline.db, &*s.pipeline.queue, &request(99), None).await?;
    let message = StageMessage {
        project_id: created.project_id,
        run_id: created.run_id,
        stage: Stage::Validate,
        correlation_id: created.correlation_id,
    };
    events.push(("dead-letter".into(), sqs_event(&message, "validate-dlq")));
    let get = std::fs::read_to_string("events/api-get-project.json")?.replace(
        "11111111-2222-4333-8444-555555555555",
        &created.project_id.to_string(),
    );
    events.push(("api".into(), serde_json::from_str(&get)?));
    events.push(("migrate".into(), serde_json::json!({})));
    Ok(events)
}
