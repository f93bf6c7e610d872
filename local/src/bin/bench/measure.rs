//! The series: each sets up what it needs, measures, and returns its figures.

use crate::figures::{
    Baseline, ClusterUse, Function, Functions, Latency, Machine, OperationLatency, PortUse, Scale,
    StageTimes, ThroughputRun,
};
use local_dev::bench::{
    floor_pipeline, floor_project, ms, percentile, PortTime, TimedQueue, TimedRegistrar,
    TimedSecrets,
};
use local_dev::cpu::{CpuSample, StackPids};
use local_dev::runtime_api::{peak_rss_kib, FakeRuntime};
use local_dev::sandbox::{admin_client, admin_url_at, stack_clusters, Sandbox, StackAddress};
use local_dev::{QueueSettings, Runner};
use provisioning::domain::{ApiKeySpec, NewProject, ServiceSelection, Stage, StageMessage};
use provisioning::project::create_project;
use provisioning::Pipeline;
use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

fn var(name: &str) -> Result<String, Error> {
    std::env::var(name)
        .map_err(|_| format!("{name} is not set: run `make bench` (it starts the stack)").into())
}

async fn admin() -> Result<tokio_postgres::Client, Error> {
    Ok(admin_client(&var("PG_ADMIN_URL")?).await?)
}

/// What the latency, scale and functions series leave open until the end of
/// the run: their pipeline's and runner's connection pools, and the scale
/// series' admin connection. One `main` used to hold them all that long
/// (shadowed, not dropped), so later series still run beside them; the
/// burst series close theirs at once, as they did.
#[derive(Default)]
pub struct KeptOpen {
    series: Vec<Series>,
    admin: Vec<tokio_postgres::Client>,
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

/// Mean queue wait and run time per stage, in pipeline order.
async fn stage_breakdown(s: &Series, ids: &[Uuid]) -> Result<Vec<StageTimes>, Error> {
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
              WHERE r.project_id = ANY($1) AND r.kind = 'provision'
              GROUP BY st.stage, st.position ORDER BY st.position",
            &[&ids],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| StageTimes {
            stage: r.get(0),
            queue_wait_ms: r.get(1),
            run_ms: r.get(2),
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
fn port_use(time: &PortTime) -> PortUse {
    PortUse {
        total: time.total(),
        calls: time.calls(),
    }
}

/// Latency: `projects` one after another, the runner at 1 invocation per
/// stage, each next to a floor project; scrypt sampled between them.
pub async fn latency(
    registration: &str,
    projects: usize,
    open: &mut KeptOpen,
) -> Result<Latency, Error> {
    // Hashing is sampled beside each latency project (same machine state),
    // not once up front: this machine's speed drifts within a run.
    let mut hash_times = hash_samples(2);
    let s = series("latency", registration).await?;
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
    for i in 0..projects {
        floor_times.push(floor_project(&floor, &request(i)).await?);
        let created =
            create_project(&s.pipeline.db, s.pipeline.destinations(), &request(i), None).await?;
        let times = wait_ready(&s, &[created.project_id]).await?;
        e2e.push(Duration::from_secs_f64((times[0].1 - times[0].0) / 1000.0));
        ids.push(created.project_id);
        hash_times.extend(hash_samples(1));
    }
    let hash_median = percentile(&hash_times, 50.0);
    let lifecycle = lifecycle_latency(&s, &ids[..ids.len().min(LIFECYCLE_RUNS)]).await?;
    running.stop().await;
    let stages = stage_breakdown(&s, &ids).await?;
    let latency = Latency {
        projects,
        floor_p50: percentile(&floor_times, 50.0),
        floor_p95: percentile(&floor_times, 95.0),
        pipeline_p50: percentile(&e2e, 50.0),
        pipeline_p95: percentile(&e2e, 95.0),
        stages,
        sqs: port_use(&s.queue_time),
        secrets: port_use(&s.secret_time),
        registration: port_use(&s.registration_time),
        hash_median,
        hash_samples: hash_times.len(),
        lifecycle,
    };
    open.series.push(s);
    Ok(latency)
}

/// Lifecycle runs measured per operation.
const LIFECYCLE_RUNS: usize = 20;

/// Suspend, resume, delete and purge on each of `ids` (ready), one run after
/// another, each through `lifecycle::start` as the API and the sweeper start
/// them; the purge once the project's window is made to have ended.
async fn lifecycle_latency(s: &Series, ids: &[Uuid]) -> Result<Vec<OperationLatency>, Error> {
    use provisioning::lifecycle::{start, Operation};
    let operations = [
        ("suspend", Operation::Suspend),
        ("resume", Operation::Resume),
        ("delete", Operation::Delete { purge_now: false }),
        ("purge", Operation::PurgeDue),
    ];
    let mut figures = Vec::new();
    for (name, operation) in operations {
        let mut times = Vec::new();
        for id in ids {
            if name == "purge" {
                s.pipeline
                    .db
                    .get()
                    .await?
                    .execute(
                        "UPDATE control_plane.projects SET purge_after = now() WHERE id = $1",
                        &[id],
                    )
                    .await?;
            }
            let run = start(&s.pipeline, *id, operation, None, "bench")
                .await
                .map_err(|e| format!("{name} of {id}: {e}"))?;
            times.push(wait_run(s, run.run_id).await?);
        }
        figures.push(OperationLatency {
            operation: name.into(),
            runs: times.len(),
            p50: percentile(&times, 50.0),
            p95: percentile(&times, 95.0),
        });
    }
    Ok(figures)
}

/// Waits for a run to succeed; returns its duration from its own timestamps.
async fn wait_run(s: &Series, run_id: Uuid) -> Result<Duration, Error> {
    let db = s.pipeline.db.get().await?;
    let started = Instant::now();
    loop {
        let row = db
            .query_one(
                "SELECT status, (extract(epoch FROM coalesce(finished_at, now()) - created_at) * 1000)::float8
                   FROM control_plane.provisioning_runs WHERE id = $1",
                &[&run_id],
            )
            .await?;
        match row.get::<_, &str>(0) {
            "succeeded" => return Ok(Duration::from_secs_f64(row.get::<_, f64>(1) / 1000.0)),
            "running" if started.elapsed() < Duration::from_secs(120) => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            status => return Err(format!("{}: run {run_id} {status}", s.name).into()),
        }
    }
}

/// Throughput at one concurrency: `projects` on the floor with `workers`
/// tasks, then the same number queued at once and the runner started with
/// `workers` invocations per stage.
pub async fn throughput(
    registration: &str,
    projects: usize,
    workers: usize,
    pids: StackPids,
) -> Result<ThroughputRun, Error> {
    let s = series(&format!("burst{workers}"), registration).await?;
    let floor = floor_pipeline(&s.pipeline);
    let cpu_before = CpuSample::take(&pids);
    let started = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let floor = floor.clone();
            tokio::spawn(async move {
                for i in (w..projects).step_by(workers) {
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
    let floor_cpu = CpuSample::take(&pids).since(&cpu_before);
    let mut ids = Vec::new();
    for i in 0..projects {
        ids.push(
            create_project(&s.pipeline.db, s.pipeline.destinations(), &request(i), None)
                .await?
                .project_id,
        );
    }
    // Every message is queued: the clock starts when the invocations do.
    let cpu_before = CpuSample::take(&pids);
    let started = Instant::now();
    let running = s.runner.spawn(workers);
    let times = wait_ready(&s, &ids).await?;
    let pipeline_wall = started.elapsed();
    // The same run timed from the first submission (creating the projects
    // one by one, each with its first SQS send, is then part of the time).
    let first = times.iter().map(|t| t.0).fold(f64::MAX, f64::min);
    let last = times.iter().map(|t| t.1).fold(0.0, f64::max);
    running.stop().await;
    let pipeline_cpu = CpuSample::take(&pids).since(&cpu_before);
    Ok(ThroughputRun {
        workers,
        floor_wall,
        floor_cpu,
        pipeline_wall,
        pipeline_cpu,
        from_submission_ms: last - first,
    })
}

/// Scale: `projects` in batches of up to 100 (2 invocations per stage), each
/// batch created then waited for; the first batch's time against the last's.
pub async fn scale(
    registration: &str,
    projects: usize,
    open: &mut KeptOpen,
) -> Result<Scale, Error> {
    let s = series("scale", registration).await?;
    let batch = 200.min(projects.max(1));
    let clusters = stack_clusters(|name| std::env::var(name).ok())?;
    let admin_url = var("PG_ADMIN_URL")?;
    let mut admins = Vec::new();
    for (id, port) in &clusters {
        admins.push((
            id.clone(),
            admin_client(&admin_url_at(&admin_url, *port, "postgres")).await?,
        ));
    }
    let sampler = ConnectionSampler::start(&admin_url, &clusters).await?;
    let mut batch_ms = Vec::new();
    let mut first_batch_peaks = Vec::new();
    let running = s.runner.spawn(2);
    let mut all_ids = Vec::new();
    for b in 0..projects.div_ceil(batch) {
        let started = Instant::now();
        let mut ids = Vec::new();
        for i in 0..batch.min(projects - b * batch) {
            ids.push(
                create_project(
                    &s.pipeline.db,
                    s.pipeline.destinations(),
                    &request(b * batch + i),
                    None,
                )
                .await?
                .project_id,
            );
        }
        wait_ready(&s, &ids).await?;
        batch_ms.push(ms(started.elapsed()) / ids.len() as f64);
        eprintln!(
            "[scale] batch {}: {:.1} ms per project",
            b + 1,
            batch_ms[batch_ms.len() - 1]
        );
        if b == 0 {
            first_batch_peaks = sampler.peaks();
        }
        all_ids.extend(ids);
    }
    running.stop().await;
    let run_peaks = sampler.stop().await;
    let names: Vec<String> = all_ids
        .iter()
        .map(|id| provisioning::domain::TenantNames::for_project(*id).database)
        .collect();
    let db = s.pipeline.db.get().await?;
    let placed: HashMap<String, i64> = db
        .query(
            "SELECT cluster_id, count(*) FROM control_plane.projects GROUP BY 1",
            &[],
        )
        .await?
        .iter()
        .filter_map(|r| Some((r.get::<_, Option<String>>(0)?, r.get(1))))
        .collect();
    drop(db);
    let (mut bytes, mut tenants) = (0.0, 0);
    let mut uses = Vec::new();
    for (i, (id, admin)) in admins.iter().enumerate() {
        let row = admin
            .query_one(
                "SELECT coalesce(sum(pg_database_size(datname)), 0)::float8, count(*)
                   FROM pg_database WHERE datname = ANY($1)",
                &[&names],
            )
            .await?;
        let (cluster_bytes, databases): (f64, i64) = (row.get(0), row.get(1));
        bytes += cluster_bytes;
        tenants += databases;
        uses.push(ClusterUse {
            id: id.clone(),
            projects: placed.get(id).copied().unwrap_or_default(),
            databases,
            peak_first_batch: first_batch_peaks[i],
            peak_run: run_peaks[i],
        });
    }
    open.series.push(s);
    open.admin
        .extend(admins.into_iter().map(|(_, admin)| admin));
    Ok(Scale {
        projects,
        batch,
        first_batch_ms: batch_ms[0],
        last_batch_ms: *batch_ms.last().unwrap(),
        tenant_databases: tenants,
        tenant_database_bytes: bytes / tenants.max(1) as f64,
        clusters: uses,
        connection_budget: DEFAULT_CONNECTION_BUDGET,
    })
}

/// The template's default `ClusterConnectionBudget` (docs/connections.md).
const DEFAULT_CONNECTION_BUDGET: usize = 200;

/// Samples every cluster's client connections (`pg_stat_activity`, its own
/// excluded) every 50 ms on a connection of its own, keeping each peak.
struct ConnectionSampler {
    peaks: Arc<Vec<std::sync::atomic::AtomicI64>>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl ConnectionSampler {
    async fn start(admin_url: &str, clusters: &[(String, u16)]) -> Result<Self, Error> {
        let mut clients = Vec::new();
        for (_, port) in clusters {
            clients.push(admin_client(&admin_url_at(admin_url, *port, "postgres")).await?);
        }
        let peaks: Arc<Vec<_>> = Arc::new(
            clusters
                .iter()
                .map(|_| std::sync::atomic::AtomicI64::new(0))
                .collect(),
        );
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let shared = peaks.clone();
        let task = tokio::spawn(async move {
            while !*stopped.borrow() {
                for (i, client) in clients.iter().enumerate() {
                    if let Ok(row) = client
                        .query_one(
                            "SELECT count(*) FROM pg_stat_activity
                              WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
                            &[],
                        )
                        .await
                    {
                        shared[i].fetch_max(row.get(0), std::sync::atomic::Ordering::Relaxed);
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    _ = stopped.changed() => {}
                }
            }
        });
        Ok(ConnectionSampler { peaks, stop, task })
    }

    fn peaks(&self) -> Vec<i64> {
        self.peaks
            .iter()
            .map(|p| p.load(std::sync::atomic::Ordering::Relaxed))
            .collect()
    }

    async fn stop(self) -> Vec<i64> {
        let peaks = self.peaks.clone();
        let _ = self.stop.send(true);
        let _ = self.task.await;
        peaks
            .iter()
            .map(|p| p.load(std::sync::atomic::Ordering::Relaxed))
            .collect()
    }
}

/// Functions as shipped: for each, its binary's size, the median of
/// `init_runs` cold starts, and one real invocation (answer and peak RSS).
pub async fn functions(
    registration: &str,
    init_runs: usize,
    baseline: Option<String>,
    open: &mut KeptOpen,
) -> Result<Functions, Error> {
    let f = series("functions", registration).await?;
    let events = function_events(&f).await?;
    let mut functions = Vec::new();
    for (name, event) in &events {
        functions.push(one_function(&f, name, event, init_runs, baseline.as_deref()).await?);
    }
    open.series.push(f);
    Ok(Functions {
        init_runs,
        functions,
        baseline,
    })
}

fn binary_size(binary: &str) -> Result<u64, Error> {
    Ok(std::fs::metadata(binary)
        .map_err(|e| format!("{binary}: {e} (make build first)"))?
        .len())
}

/// Process start to the first `next` request, once.
async fn cold_start(f: &Series, binary: &str, function: &str) -> Result<Duration, Error> {
    let runtime = FakeRuntime::start(None).await?;
    let started = Instant::now();
    let mut child = spawn(binary, function, &runtime.address, &f.env)?;
    let first = tokio::time::timeout(Duration::from_secs(10), runtime.first_next())
        .await
        .map_err(|_| format!("{function}: no next request"))?;
    child.kill().await?;
    Ok(first - started)
}

async fn one_function(
    f: &Series,
    function: &str,
    event: &serde_json::Value,
    init_runs: usize,
    baseline_dir: Option<&str>,
) -> Result<Function, Error> {
    let binary = format!("target/lambda/{function}/bootstrap");
    let binary_bytes = binary_size(&binary)?;
    let other = baseline_dir.map(|dir| format!("{dir}/{function}/bootstrap"));
    let mut inits = Vec::new();
    let mut other_inits = Vec::new();
    for _ in 0..init_runs {
        inits.push(cold_start(f, &binary, function).await?);
        if let Some(other) = &other {
            other_inits.push(cold_start(f, other, function).await?);
        }
    }
    let baseline = match &other {
        Some(other) => Some(Baseline {
            binary_bytes: binary_size(other)?,
            init_median: percentile(&other_inits, 50.0),
        }),
        None => None,
    };
    let runtime = FakeRuntime::start(Some(event.to_string().into_bytes())).await?;
    let mut child = spawn(&binary, function, &runtime.address, &f.env)?;
    let (answered, body) = tokio::time::timeout(Duration::from_secs(60), runtime.outcome())
        .await
        .map_err(|_| format!("{function}: no answer"))?;
    let peak_rss_kib = peak_rss_kib(child.id().unwrap_or_default()).unwrap_or_default();
    child.kill().await?;
    Ok(Function {
        name: function.to_owned(),
        binary_bytes,
        init_median: percentile(&inits, 50.0),
        peak_rss_kib,
        answered,
        answer: String::from_utf8_lossy(&body).into_owned(),
        baseline,
    })
}

/// The machine, read now (the report's date is the run's end).
pub fn machine() -> Machine {
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
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
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
    Machine {
        date: chrono::Utc::now(),
        cores,
        cpu,
        memory_gib,
    }
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
    use provisioning::lifecycle::{start, Operation};
    let mut events = Vec::new();
    for (i, stage) in Stage::PROVISION.into_iter().enumerate() {
        let created =
            create_project(&s.pipeline.db, s.pipeline.destinations(), &request(i), None).await?;
        let message = StageMessage {
            project_id: created.project_id,
            run_id: created.run_id,
            stage: Stage::Validate,
            correlation_id: created.correlation_id,
        };
        for earlier in Stage::PROVISION.into_iter().take_while(|s| *s != stage) {
            s.pipeline.run_stage(&message.for_stage(earlier)).await?;
        }
        events.push((
            stage.as_str().to_owned(),
            sqs_event(&message.for_stage(stage), stage.as_str()),
        ));
    }
    // The lifecycle stages: a ready project's suspend (access), and a deleted
    // project's purge once its window has ended.
    let mut ready = Vec::new();
    for i in 0..2 {
        let created = create_project(
            &s.pipeline.db,
            s.pipeline.destinations(),
            &request(20 + i),
            None,
        )
        .await?;
        let message = StageMessage {
            project_id: created.project_id,
            run_id: created.run_id,
            stage: Stage::Validate,
            correlation_id: created.correlation_id,
        };
        for stage in Stage::PROVISION {
            s.pipeline.run_stage(&message.for_stage(stage)).await?;
        }
        ready.push(created.project_id);
    }
    let first_message = |run: &provisioning::lifecycle::StartedRun, stage: Stage| StageMessage {
        project_id: run.project_id,
        run_id: run.run_id,
        stage,
        correlation_id: run.correlation_id,
    };
    let suspend = start(&s.pipeline, ready[0], Operation::Suspend, None, "bench")
        .await
        .map_err(|e| e.to_string())?;
    events.push((
        "access".into(),
        sqs_event(&first_message(&suspend, Stage::Access), "access"),
    ));
    let delete = start(
        &s.pipeline,
        ready[1],
        Operation::Delete { purge_now: false },
        None,
        "bench",
    )
    .await
    .map_err(|e| e.to_string())?;
    s.pipeline
        .run_stage(&first_message(&delete, Stage::Access))
        .await?;
    s.pipeline
        .db
        .get()
        .await?
        .execute(
            "UPDATE control_plane.projects SET purge_after = now() WHERE id = $1",
            &[&ready[1]],
        )
        .await?;
    let purge = start(&s.pipeline, ready[1], Operation::PurgeDue, None, "bench")
        .await
        .map_err(|e| e.to_string())?;
    events.push((
        "purge".into(),
        sqs_event(&first_message(&purge, Stage::Purge), "purge"),
    ));
    let created = create_project(
        &s.pipeline.db,
        s.pipeline.destinations(),
        &request(99),
        None,
    )
    .await?;
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
    let scheduled: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("events/scheduled-sweep.json")?)?;
    events.push(("sweeper".into(), scheduled.clone()));
    events.push(("reconciler".into(), scheduled));
    events.push(("migrate".into(), serde_json::json!({})));
    Ok(events)
}
