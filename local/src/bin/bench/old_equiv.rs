// TEMPORARY: old formatting code, fed from figures, compared with the new report.
#![allow(clippy::all)]
use crate::figures::*;
use local_dev::bench::ms;
use std::fmt::Write as _;
use std::time::Duration;

struct Report {
    out: String,
}
impl Report {
    fn line(&mut self, text: impl AsRef<str>) {
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
struct PT {
    total: Duration,
    calls: u64,
}
impl PT {
    fn total(&self) -> Duration {
        self.total
    }
    fn calls(&self) -> u64 {
        self.calls
    }
}
struct S {
    queue_time: PT,
    secret_time: PT,
    registration_time: PT,
}
struct SB {
    queue_wait_ms: f64,
    run_ms: f64,
}

fn old_machine(m: &Machine) -> String {
    let (cores, cpu, mem) = (m.cores, &m.cpu, m.memory_gib);
    let date = m.date.format("%Y-%m-%d %H:%M UTC");
    format!(
        "Run {date} on {cores} cores ({cpu}), {mem:.0} GiB; PostgreSQL with fsync on (PG_DURABLE=1), moto for SQS and \
         Secrets Manager on the same machine; in-process handlers through the local runner."
    )
}

pub fn old_render(fig: &Figures) -> String {
    let mut r = Report { out: String::new() };
    let latency_n = fig.latency.projects;
    let burst_n = fig.throughput.projects;
    let scale_n = fig.scale.projects;
    let init_runs = fig.functions.init_runs;
    let cores = fig.throughput.cores;
    let s = S {
        queue_time: PT {
            total: fig.latency.sqs.total,
            calls: fig.latency.sqs.calls,
        },
        secret_time: PT {
            total: fig.latency.secrets.total,
            calls: fig.latency.secrets.calls,
        },
        registration_time: PT {
            total: fig.latency.registration.total,
            calls: fig.latency.registration.calls,
        },
    };
    let hash = fig.latency.hash_median;
    let hash_times = vec![(); fig.latency.hash_samples];
    let breakdown: Vec<(String, SB)> = fig
        .latency
        .stages
        .iter()
        .map(|s| {
            (
                s.stage.clone(),
                SB {
                    queue_wait_ms: s.queue_wait_ms,
                    run_ms: s.run_ms,
                },
            )
        })
        .collect();
    let (f50, f95) = (fig.latency.floor_p50, fig.latency.floor_p95);
    let (p50, p95) = (fig.latency.pipeline_p50, fig.latency.pipeline_p95);
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
    let calls = |t: &PT| format!("{:.1}", t.calls() as f64 / latency_n as f64);
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
    for run in &fig.throughput.runs {
        let workers = run.workers;
        let floor_wall = run.floor_wall;
        let floor_rate = burst_n as f64 / floor_wall.as_secs_f64();
        cpu_rows.push((format!("floor, {workers}"), run.floor_cpu, floor_wall));
        let wall = run.pipeline_wall;
        let rate_from_submission = burst_n as f64 / (run.from_submission_ms / 1000.0);
        cpu_rows.push((format!("pipeline, {workers}"), run.pipeline_cpu, wall));
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
    let batch = fig.scale.batch;
    let (disk, tenants) = (fig.scale.tenant_database_bytes, fig.scale.tenant_databases);
    let (first100, last100) = (fig.scale.first_batch_ms, fig.scale.last_batch_ms);
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
    r.line(format!("## Functions as shipped (release, x86_64, stripped): init = process start to first `next` request, median of {init_runs}"));
    r.line("");
    r.line("| function | binary MB (10^6 bytes) | init ms (median) | peak RSS MiB (one invocation) | answer |");
    r.line("|---|---:|---:|---:|---|");
    let mut worst = (0.0f64, 0.0f64, 0.0f64);
    for func in &fig.functions.functions {
        let function = &func.name;
        let size = func.binary_bytes as f64 / 1e6;
        let rss = func.peak_rss_kib as f64 / 1024.0;
        let ok = func.answered;
        let answer = std::borrow::Cow::<str>::Borrowed(&func.answer);
        let answer: String = if ok {
            answer.chars().take(40).collect()
        } else {
            format!("ERROR {}", answer.chars().take(60).collect::<String>())
        };
        let init = ms(func.init_median);
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
    let mut doc = String::new();
    let _ = writeln!(
        doc,
        "# Benchmark results\n\n{}\n",
        old_machine(&fig.machine)
    );
    doc.push_str(&r.out);
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use local_dev::cpu::CpuUse;

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 11
        }
        fn f(&mut self, max: f64) -> f64 {
            (self.next() as f64 / (1u64 << 53) as f64) * max
        }
        fn pick<T: Copy>(&mut self, v: &[T]) -> T {
            v[(self.next() % v.len() as u64) as usize]
        }
        fn d(&mut self, max_ms: f64) -> Duration {
            Duration::from_nanos(self.f(max_ms * 1e6) as u64)
        }
        fn cpu(&mut self) -> CpuUse {
            CpuUse {
                this_process: self.f(30.0),
                postgres: self.f(30.0),
                moto: self.f(10.0),
                machine_busy: self.f(80.0),
                machine_iowait: self.f(5.0),
            }
        }
    }

    fn figures(g: &mut Rng) -> Figures {
        let n = g.pick(&[1usize, 3, 50, 7]);
        let stages = (0..g.pick(&[0usize, 1, 6]))
            .map(|i| StageTimes {
                stage: format!("stage-{i}"),
                queue_wait_ms: g.f(20.0),
                run_ms: g.f(100.0),
            })
            .collect();
        let answers = ["{\"batchItemFailures\":[]}", "{\"statusCode\":200,\"headers\":{\"content-type\":\"application/json\"},\"body\":\"a|b|c\"}", "", "é|ü".repeat(50).leak()];
        let functions = (0..g.pick(&[0usize, 1, 9]))
            .map(|i| Function {
                name: format!("f{i}"),
                binary_bytes: g.next() % 20_000_000,
                init_median: g.d(40.0),
                peak_rss_kib: g.next() % 100_000,
                answered: g.next() % 2 == 0,
                answer: g.pick(&answers).to_string(),
            })
            .collect();
        Figures {
            machine: Machine {
                date: chrono::DateTime::from_timestamp((g.next() % 2_000_000_000) as i64, 0)
                    .unwrap(),
                cores: g.pick(&[1usize, 2, 16]),
                cpu: "AMD EPYC".into(),
                memory_gib: g.f(64.0),
            },
            latency: Latency {
                projects: n,
                floor_p50: g.d(300.0),
                floor_p95: g.d(500.0),
                pipeline_p50: g.d(600.0),
                pipeline_p95: g.d(900.0),
                stages,
                sqs: PortUse {
                    total: g.d(2000.0),
                    calls: g.next() % 400,
                },
                secrets: PortUse {
                    total: g.d(2000.0),
                    calls: g.next() % 400,
                },
                registration: PortUse {
                    total: g.d(200.0),
                    calls: g.next() % 400,
                },
                hash_median: g.d(60.0),
                hash_samples: n + 2,
            },
            throughput: Throughput {
                projects: g.pick(&[100usize, 7]),
                cores: g.pick(&[1usize, 2, 16]),
                runs: (1..=g.pick(&[1usize, 2, 2]))
                    .map(|w| ThroughputRun {
                        workers: w,
                        floor_wall: g.d(40_000.0),
                        floor_cpu: g.cpu(),
                        pipeline_wall: g.d(40_000.0),
                        pipeline_cpu: g.cpu(),
                        from_submission_ms: g.f(45_000.0),
                    })
                    .collect(),
            },
            scale: Scale {
                projects: g.pick(&[1000usize, 30]),
                batch: g.pick(&[100usize, 30]),
                first_batch_ms: g.f(300.0),
                last_batch_ms: g.f(300.0),
                tenant_databases: (g.next() % 2000) as i64,
                tenant_database_bytes: g.f(1e8),
            },
            functions: Functions {
                init_runs: g.pick(&[20usize, 1]),
                functions,
            },
        }
    }

    #[test]
    fn new_report_matches_old_code() {
        let mut g = Rng(42);
        for _ in 0..20000 {
            let f = figures(&mut g);
            assert_eq!(crate::report::document(&f), old_render(&f));
        }
    }
}
