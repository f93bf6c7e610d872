//! `bench`: provisioning speed against the raw floor, and each function as
//! shipped. Run by `make bench` (scripts/bench.sh), on a durable local stack.
//!
//! Series (each on a fresh control-plane database and fresh queues, after a
//! CHECKPOINT): latency (projects one after another), throughput (a burst at 1
//! and 2 concurrent invocations per stage), scale (many projects in batches),
//! then per function: stripped binary size, init time, peak RSS.
//!
//! `measure` runs the series and returns their figures; `report` alone writes
//! the markdown. Each section is printed as soon as its series is done; the
//! whole document goes to BENCH_RESULTS (bench/results.md) at the end.

mod figures;
mod measure;
mod report;

use figures::{Figures, Throughput};
use local_dev::bench::registration_stub;
use local_dev::cpu::StackPids;
use measure::Error;

fn count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    provisioning::telemetry::init_with_writer(std::io::sink);
    // As shipped, the stages format their EMF lines; the bench drops them
    // instead of printing them among its tables.
    provisioning::metrics::set_sink(|line| {
        std::hint::black_box(line);
    });
    let latency_n = count("BENCH_LATENCY", 50);
    let burst_n = count("BENCH_BURST", 100);
    let scale_n = count("BENCH_SCALE", 2000);
    let init_runs = count("BENCH_INIT_RUNS", 20);
    let pids = StackPids::from_env();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let stub = registration_stub().await?;
    let mut open = measure::KeptOpen::default();

    let latency = measure::latency(&stub, latency_n, &mut open).await?;
    print!("{}", report::latency(&latency));

    let mut runs = Vec::new();
    for workers in [1usize, 2] {
        runs.push(measure::throughput(&stub, burst_n, workers, pids.clone()).await?);
    }
    let throughput = Throughput {
        projects: burst_n,
        cores,
        runs,
    };
    print!("{}", report::throughput(&throughput));

    let scale = measure::scale(&stub, scale_n, &mut open).await?;
    print!("{}", report::scale(&scale));

    let baseline = std::env::var("BENCH_BASELINE")
        .ok()
        .filter(|d| !d.is_empty());
    let functions = measure::functions(&stub, init_runs, baseline, &mut open).await?;
    print!("{}", report::functions(&functions));

    let figures = Figures {
        machine: measure::machine(),
        latency,
        throughput,
        scale,
        functions,
    };
    print!("{}", report::targets(&figures));

    let path = std::env::var("BENCH_RESULTS").unwrap_or_else(|_| "bench/results.md".into());
    std::fs::create_dir_all(std::path::Path::new(&path).parent().unwrap())?;
    std::fs::write(&path, report::document(&figures))?;
    eprintln!("\nwritten to {path}");
    Ok(())
}
