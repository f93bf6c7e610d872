//! What the series measure: plain figures, no text. `measure` fills them in,
//! `report` turns them into markdown (every unit conversion, ratio and
//! verdict is made there).

use chrono::{DateTime, Utc};
use local_dev::cpu::CpuUse;
use std::time::Duration;

/// Everything one run measured, in the order the report shows it.
#[derive(Debug, Clone)]
pub struct Figures {
    pub machine: Machine,
    pub latency: Latency,
    pub throughput: Throughput,
    pub scale: Scale,
    pub functions: Functions,
}

/// The machine the run happened on, and when it ended.
#[derive(Debug, Clone)]
pub struct Machine {
    pub date: DateTime<Utc>,
    pub cores: usize,
    /// `model name` from /proc/cpuinfo ("unknown CPU" without it).
    pub cpu: String,
    /// MemTotal, in GiB.
    pub memory_gib: f64,
}

/// Projects one after another, each next to a floor project.
#[derive(Debug, Clone)]
pub struct Latency {
    pub projects: usize,
    pub floor_p50: Duration,
    pub floor_p95: Duration,
    /// Creation to ready, from the projects' own timestamps.
    pub pipeline_p50: Duration,
    pub pipeline_p95: Duration,
    /// Mean per stage, in pipeline order.
    pub stages: Vec<StageTimes>,
    /// Time in the ports over all the series' projects.
    pub sqs: PortUse,
    pub secrets: PortUse,
    pub registration: PortUse,
    /// Median scrypt hash time, and how many hashes it is the median of.
    pub hash_median: Duration,
    pub hash_samples: usize,
    /// Suspend, resume, delete and purge runs on some of the series' projects.
    pub lifecycle: Vec<OperationLatency>,
}

/// One lifecycle operation's runs, one after another: from the API's start
/// of the run to its end (the runs' own timestamps).
#[derive(Debug, Clone, PartialEq)]
pub struct OperationLatency {
    pub operation: String,
    pub runs: usize,
    pub p50: Duration,
    pub p95: Duration,
}

/// Mean queue wait before a stage and its mean run time.
#[derive(Debug, Clone, PartialEq)]
pub struct StageTimes {
    pub stage: String,
    pub queue_wait_ms: f64,
    pub run_ms: f64,
}

/// Total time in one port's calls, and their number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PortUse {
    pub total: Duration,
    pub calls: u64,
}

/// A burst of projects at each concurrency, floor and pipeline.
#[derive(Debug, Clone)]
pub struct Throughput {
    pub projects: usize,
    /// Cores the CPU shares are taken of.
    pub cores: usize,
    pub runs: Vec<ThroughputRun>,
}

/// One concurrency: the floor's burst, then the pipeline's.
#[derive(Debug, Clone, Copy)]
pub struct ThroughputRun {
    pub workers: usize,
    pub floor_wall: Duration,
    pub floor_cpu: CpuUse,
    /// From the invocations' start (every message queued) to the last `ready`.
    pub pipeline_wall: Duration,
    pub pipeline_cpu: CpuUse,
    /// From the first project's `created_at` to the last `ready_at`, in ms.
    pub from_submission_ms: f64,
}

/// Many projects in batches over the stack's clusters: the first batch
/// against the last, where they were placed, and the connections each
/// cluster saw.
#[derive(Debug, Clone)]
pub struct Scale {
    pub projects: usize,
    pub batch: usize,
    /// Wall time of a batch (creation to all ready) per project, in ms.
    pub first_batch_ms: f64,
    pub last_batch_ms: f64,
    /// Tenant databases of this series found on the clusters.
    pub tenant_databases: i64,
    /// Mean size of those databases, in bytes.
    pub tenant_database_bytes: f64,
    pub clusters: Vec<ClusterUse>,
    /// The connection budget the peaks are held against (the template's default tier).
    pub connection_budget: usize,
}

/// One cluster during the scale series.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterUse {
    pub id: String,
    /// Projects placed on it (control plane) and tenant databases found on it.
    pub projects: i64,
    pub databases: i64,
    /// Most client connections seen (`pg_stat_activity`, sampled every 50 ms)
    /// during the first batch (a burst of `batch` projects) and during the run.
    pub peak_first_batch: i64,
    pub peak_run: i64,
}

/// Each function as shipped.
#[derive(Debug, Clone)]
pub struct Functions {
    /// Cold starts behind each init median.
    pub init_runs: usize,
    pub functions: Vec<Function>,
    /// `BENCH_BASELINE`: a directory of other builds of the functions
    /// (`<dir>/<function>/bootstrap`), measured in the same run, cold start
    /// for cold start alternately with these.
    pub baseline: Option<String>,
}

/// A function's other build, from `BENCH_BASELINE`.
#[derive(Debug, Clone)]
pub struct Baseline {
    pub binary_bytes: u64,
    pub init_median: Duration,
}

#[derive(Debug, Clone)]
pub struct Function {
    pub name: String,
    pub binary_bytes: u64,
    /// Process start to first `next` request, median.
    pub init_median: Duration,
    /// VmHWM after one invocation, 0 when it could not be read.
    pub peak_rss_kib: u64,
    /// Whether the function answered (rather than reporting an error), and
    /// its whole answer.
    pub answered: bool,
    pub answer: String,
    /// The same function's baseline build, when one was measured.
    pub baseline: Option<Baseline>,
}
