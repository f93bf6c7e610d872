//! The report: figures in, markdown out. One function per section, in the
//! order of `document`; every unit conversion, derived row, ratio and target
//! verdict is made here.

use crate::figures::{Figures, Functions, Latency, Machine, PortUse, Scale, Throughput};
use local_dev::bench::ms;
use std::time::Duration;

/// The whole of bench/results.md: title, machine, every section.
pub fn document(f: &Figures) -> String {
    let mut doc = format!("# Benchmark results\n\n{}\n\n", machine(&f.machine));
    doc.push_str(&latency(&f.latency));
    doc.push_str(&throughput(&f.throughput));
    doc.push_str(&scale(&f.scale));
    doc.push_str(&functions(&f.functions));
    doc.push_str(&targets(f));
    doc
}

/// Markdown lines, each ended by a newline.
#[derive(Default)]
struct Lines(String);

impl Lines {
    fn line(&mut self, text: impl AsRef<str>) {
        self.0.push_str(text.as_ref());
        self.0.push('\n');
    }
}

fn machine(m: &Machine) -> String {
    format!(
        "Run {} on {} cores ({}), {:.0} GiB; PostgreSQL with fsync on (PG_DURABLE=1), moto for SQS and \
         Secrets Manager on the same machine; in-process handlers through the local runner.",
        m.date.format("%Y-%m-%d %H:%M UTC"),
        m.cores,
        m.cpu,
        m.memory_gib
    )
}

/// Pipeline p50 over floor p50.
fn latency_ratio(l: &Latency) -> f64 {
    ms(l.pipeline_p50) / ms(l.floor_p50)
}

pub fn latency(l: &Latency) -> String {
    let mut r = Lines::default();
    let n = l.projects;
    let per_project = |d: Duration| ms(d) / n as f64;
    let calls = |p: &PortUse| format!("{:.1}", p.calls as f64 / n as f64);
    let sm_ms = per_project(l.secrets.total);
    let sqs_ms = per_project(l.sqs.total);
    let http_ms = per_project(l.registration.total);
    let hashing_ms = ms(l.hash_median) * 2.0;
    let f50 = ms(l.floor_p50);

    r.line(format!(
        "## Latency: {n} projects one after another (runner: 1 invocation per stage)"
    ));
    r.line("");
    r.line("| | p50 ms | p95 ms | ratio to floor (p50) |");
    r.line("|---|---:|---:|---:|");
    r.line(format!(
        "| floor (same executor and SQL, no queues, secrets in memory) | {:.1} | {:.1} | 1.00 |",
        f50,
        ms(l.floor_p95)
    ));
    r.line(format!(
        "| pipeline, creation to ready | {:.1} | {:.1} | {:.2} |",
        ms(l.pipeline_p50),
        ms(l.pipeline_p95),
        latency_ratio(l)
    ));
    if !l.lifecycle.is_empty() {
        r.line("");
        r.line("Lifecycle runs on the same projects, one after another, from the start of the run to its end:");
        r.line("");
        r.line("| operation | runs | p50 ms | p95 ms |");
        r.line("|---|---:|---:|---:|");
        r.line(format!(
            "| provisioning (above) | {n} | {:.1} | {:.1} |",
            ms(l.pipeline_p50),
            ms(l.pipeline_p95)
        ));
        for o in &l.lifecycle {
            r.line(format!(
                "| {} | {} | {:.1} | {:.1} |",
                o.operation,
                o.runs,
                ms(o.p50),
                ms(o.p95)
            ));
        }
    }
    r.line("");
    r.line("Per stage (mean): queue wait = from the previous stage's end (or creation) to this stage's start.");
    r.line("");
    r.line("| stage | queue wait ms | run ms |");
    r.line("|---|---:|---:|");
    let (mut wait_total, mut run_total) = (0.0, 0.0);
    for s in &l.stages {
        wait_total += s.queue_wait_ms;
        run_total += s.run_ms;
        r.line(format!(
            "| {} | {:.1} | {:.1} |",
            s.stage, s.queue_wait_ms, s.run_ms
        ));
    }
    r.line(format!("| **total** | {wait_total:.1} | {run_total:.1} |"));
    r.line("");
    r.line("Where a project's time goes (mean per project):");
    r.line("");
    r.line("| component | ms | calls |");
    r.line("|---|---:|---:|");
    r.line(format!("| queue waits, all six hops | {wait_total:.1} | |"));
    r.line(format!(
        "| - SQS sends (by the previous stage) | {sqs_ms:.1} | {} |",
        calls(&l.sqs)
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
        calls(&l.secrets)
    ));
    r.line(format!(
        "| - scrypt hashing (2 keys x {:.1} ms: median of {} hashes timed between the projects) | {hashing_ms:.1} | 2 |",
        ms(l.hash_median),
        l.hash_samples
    ));
    r.line(format!(
        "| - HTTP registration (local stub) | {http_ms:.1} | {} |",
        calls(&l.registration)
    ));
    r.line(format!(
        "| - Postgres and the executor (the rest) | {:.1} | |",
        (run_total - sm_ms - hashing_ms - http_ms).max(0.0)
    ));
    r.line(format!(
        "| floor, for comparison: Postgres and the executor (p50 minus hashing) | {:.1} | |",
        (f50 - hashing_ms).max(0.0)
    ));
    r.line("");
    r.0
}

/// Projects per second over a wall time.
fn rate(projects: usize, wall: Duration) -> f64 {
    projects as f64 / wall.as_secs_f64()
}

/// Pipeline rate over floor rate at each concurrency, in the runs' order.
fn throughput_ratios(t: &Throughput) -> Vec<f64> {
    t.runs
        .iter()
        .map(|run| rate(t.projects, run.pipeline_wall) / rate(t.projects, run.floor_wall))
        .collect()
}

pub fn throughput(t: &Throughput) -> String {
    let mut r = Lines::default();
    let (burst_n, cores) = (t.projects, t.cores);
    r.line(format!(
        "## Throughput: {burst_n} projects submitted at once"
    ));
    r.line("");
    r.line("Pipeline rate: from the moment the invocations start (every message already queued) to the last `ready`; \
            in the last column, from the first submission instead (creating the projects one by one is then part of it).");
    r.line("");
    r.line("| concurrency per stage | pipeline projects/s | floor projects/s | ratio | from submission (ratio) |");
    r.line("|---:|---:|---:|---:|---:|");
    for run in &t.runs {
        let floor_rate = rate(burst_n, run.floor_wall);
        let rate = rate(burst_n, run.pipeline_wall);
        let rate_from_submission = burst_n as f64 / (run.from_submission_ms / 1000.0);
        r.line(format!(
            "| {} | {rate:.2} | {floor_rate:.2} | {:.2} | {rate_from_submission:.2} ({:.2}) |",
            run.workers,
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
    let cpu_rows = t.runs.iter().flat_map(|run| {
        [
            (
                format!("floor, {}", run.workers),
                run.floor_cpu,
                run.floor_wall,
            ),
            (
                format!("pipeline, {}", run.workers),
                run.pipeline_cpu,
                run.pipeline_wall,
            ),
        ]
    });
    for (name, used, wall) in cpu_rows {
        let per = |seconds: f64| seconds * 1000.0 / burst_n as f64;
        r.line(format!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.0}% | {:.0}% |",
            per(used.this_process),
            per(used.postgres),
            per(used.moto),
            100.0 * used.utilisation(wall, cores),
            100.0 * used.machine_iowait / (wall.as_secs_f64() * cores as f64),
        ));
    }
    r.line("");
    r.0
}

/// Last batch's time per project over the first's.
fn scale_ratio(s: &Scale) -> f64 {
    s.last_batch_ms / s.first_batch_ms
}

pub fn scale(s: &Scale) -> String {
    let mut r = Lines::default();
    let batch = s.batch;
    r.line(format!(
        "## Scale: {} projects in batches of {batch} over {} clusters (2 invocations per stage)",
        s.projects,
        s.clusters.len()
    ));
    r.line("");
    r.line("| | ms per project |");
    r.line("|---|---:|");
    r.line(format!("| first {batch} | {:.1} |", s.first_batch_ms));
    r.line(format!(
        "| last {batch} ({} tenant databases on the clusters) | {:.1} |",
        s.tenant_databases, s.last_batch_ms
    ));
    r.line(format!("| ratio last/first | {:.2} |", scale_ratio(s)));
    r.line(format!(
        "| disk per tenant database | {:.1} MiB |",
        s.tenant_database_bytes / 1048576.0
    ));
    r.line("");
    r.line(format!(
        "Placement and connections per cluster: peak client connections (`pg_stat_activity`, sampled every 50 ms) during the first {batch}-project burst and during the whole run, against the template's default budget of {} per cluster (docs/connections.md; the local runner is not sized by it).",
        s.connection_budget
    ));
    r.line("");
    r.line(format!(
        "| cluster | projects placed | tenant databases | peak, first {batch} | peak, run | budget |"
    ));
    r.line("|---|---:|---:|---:|---:|---:|");
    for c in &s.clusters {
        r.line(format!(
            "| {} | {} | {} | {} | {} | {} |",
            c.id, c.projects, c.databases, c.peak_first_batch, c.peak_run, s.connection_budget
        ));
    }
    r.line("");
    r.0
}

/// One function's row figures in the report's units: MB, ms, MiB.
struct FunctionRow {
    size_mb: f64,
    init_ms: f64,
    rss_mib: f64,
}

fn function_rows(f: &Functions) -> impl Iterator<Item = FunctionRow> + '_ {
    f.functions.iter().map(|function| FunctionRow {
        size_mb: function.binary_bytes as f64 / 1e6,
        init_ms: ms(function.init_median),
        rss_mib: function.peak_rss_kib as f64 / 1024.0,
    })
}

pub fn functions(f: &Functions) -> String {
    let mut r = Lines::default();
    r.line(format!("## Functions as shipped (release, x86_64, stripped): init = process start to first `next` request, median of {}", f.init_runs));
    r.line("");
    if let Some(dir) = &f.baseline {
        r.line(format!(
            "Baseline: the builds in `{dir}`, measured in this run (their cold starts alternate with these)."
        ));
        r.line("");
        r.line("| function | binary MB, baseline | binary MB | init ms, baseline | init ms |");
        r.line("|---|---:|---:|---:|---:|");
        for function in &f.functions {
            if let Some(b) = &function.baseline {
                r.line(format!(
                    "| {} | {:.2} | {:.2} | {:.1} | {:.1} |",
                    function.name,
                    b.binary_bytes as f64 / 1e6,
                    function.binary_bytes as f64 / 1e6,
                    ms(b.init_median),
                    ms(function.init_median)
                ));
            }
        }
        r.line("");
    }
    r.line("| function | binary MB (10^6 bytes) | init ms (median) | peak RSS MiB (one invocation) | answer |");
    r.line("|---|---:|---:|---:|---|");
    for (function, row) in f.functions.iter().zip(function_rows(f)) {
        let answer: String = if function.answered {
            function.answer.chars().take(40).collect()
        } else {
            format!(
                "ERROR {}",
                function.answer.chars().take(60).collect::<String>()
            )
        };
        r.line(format!(
            "| {} | {:.2} | {:.1} | {:.1} | `{}` |",
            function.name,
            row.size_mb,
            row.init_ms,
            row.rss_mib,
            answer.replace('|', "/")
        ));
    }
    r.line("");
    r.0
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**missed**"
    }
}

pub fn targets(f: &Figures) -> String {
    let mut r = Lines::default();
    let latency_ratio = latency_ratio(&f.latency);
    let min_throughput = throughput_ratios(&f.throughput)
        .into_iter()
        .fold(f64::MAX, f64::min);
    // (largest binary, worst init, largest RSS)
    let worst = function_rows(&f.functions).fold((0.0f64, 0.0f64, 0.0f64), |worst, row| {
        (
            worst.0.max(row.size_mb),
            worst.1.max(row.init_ms),
            worst.2.max(row.rss_mib),
        )
    });
    let scale_ratio = scale_ratio(&f.scale);
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
        "| last-{batch} <= 1.2x first-{batch} | {scale_ratio:.2}x | {} |",
        verdict(scale_ratio <= 1.2),
        batch = f.scale.batch
    ));
    r.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::figures::{
        ClusterUse, Function, OperationLatency, PortUse, StageTimes, ThroughputRun,
    };
    use chrono::{TimeZone, Utc};
    use local_dev::cpu::CpuUse;

    fn millis(n: f64) -> Duration {
        Duration::from_secs_f64(n / 1000.0)
    }

    fn cpu(this_process: f64, postgres: f64, moto: f64, busy: f64, iowait: f64) -> CpuUse {
        CpuUse {
            this_process,
            postgres,
            moto,
            machine_busy: busy,
            machine_iowait: iowait,
        }
    }

    fn function(name: &str, mb: f64, init_ms: f64, rss_kib: u64, answer: &str) -> Function {
        Function {
            name: name.into(),
            binary_bytes: (mb * 1e6) as u64,
            init_median: millis(init_ms),
            peak_rss_kib: rss_kib,
            answered: true,
            answer: answer.into(),
            baseline: None,
        }
    }

    /// A run in which every target is met.
    fn figures() -> Figures {
        let stage = |stage: &str, queue_wait_ms: f64, run_ms: f64| StageTimes {
            stage: stage.into(),
            queue_wait_ms,
            run_ms,
        };
        let ok = r#"{"batchItemFailures":[]}"#;
        Figures {
            machine: Machine {
                date: Utc.with_ymd_and_hms(2026, 11, 26, 14, 43, 27).unwrap(),
                cores: 2,
                cpu: "AMD EPYC".into(),
                memory_gib: 23.6,
            },
            latency: Latency {
                projects: 50,
                floor_p50: millis(159.5),
                floor_p95: millis(260.2),
                pipeline_p50: millis(201.5),
                pipeline_p95: millis(303.4),
                stages: vec![
                    stage("validate", 9.8, 1.1),
                    stage("create-database", 8.1, 52.9),
                    stage("create-schema", 8.9, 22.5),
                    stage("register-services", 8.8, 4.4),
                    stage("generate-api-keys", 7.6, 86.6),
                    stage("finalize", 9.9, 2.5),
                ],
                sqs: PortUse {
                    total: millis(1330.0),
                    calls: 300,
                },
                secrets: PortUse {
                    total: millis(510.0),
                    calls: 150,
                },
                registration: PortUse {
                    total: millis(25.0),
                    calls: 150,
                },
                hash_median: millis(39.9),
                hash_samples: 52,
                lifecycle: vec![OperationLatency {
                    operation: "suspend".into(),
                    runs: 20,
                    p50: millis(41.0),
                    p95: millis(60.2),
                }],
            },
            throughput: Throughput {
                projects: 100,
                cores: 2,
                runs: vec![
                    ThroughputRun {
                        workers: 1,
                        floor_wall: millis(25_000.0),
                        floor_cpu: cpu(8.64, 14.29, 0.0, 25.0, 0.5),
                        pipeline_wall: millis(20_000.0),
                        pipeline_cpu: cpu(10.41, 17.29, 4.66, 39.2, 0.0),
                        from_submission_ms: 25_000.0,
                    },
                    ThroughputRun {
                        workers: 2,
                        floor_wall: millis(12_500.0),
                        floor_cpu: cpu(9.22, 15.45, 0.01, 21.25, 0.5),
                        pipeline_wall: millis(16_000.0),
                        pipeline_cpu: cpu(10.55, 19.83, 5.04, 31.68, 0.1),
                        from_submission_ms: 21_000.0,
                    },
                ],
            },
            scale: Scale {
                projects: 1000,
                batch: 100,
                first_batch_ms: 182.6,
                last_batch_ms: 135.2,
                tenant_databases: 1000,
                tenant_database_bytes: 7.4 * 1048576.0,
                clusters: vec![
                    ClusterUse {
                        id: "local-1".into(),
                        projects: 500,
                        databases: 500,
                        peak_first_batch: 31,
                        peak_run: 33,
                    },
                    ClusterUse {
                        id: "local-2".into(),
                        projects: 500,
                        databases: 500,
                        peak_first_batch: 9,
                        peak_run: 10,
                    },
                ],
                connection_budget: 200,
            },
            functions: Functions {
                baseline: None,
                init_runs: 20,
                functions: vec![
                    function("validate", 7.27, 4.6, 9216, ok),
                    function("generate-api-keys", 7.27, 4.8, 25702, ok),
                    function(
                        "api",
                        7.55,
                        4.4,
                        9216,
                        r#"{"statusCode":200,"body":"a|b","headers":{"content-type":"application/json"}}"#,
                    ),
                ],
            },
        }
    }

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    /// Asserts that `text` holds `line` as one whole line.
    #[track_caller]
    fn has_line(text: &str, line: &str) {
        assert!(
            text.lines().any(|l| l == line),
            "no line\n  {line}\nin\n{text}"
        );
    }

    #[test]
    fn the_document_is_title_machine_then_every_section_in_order() {
        let f = figures();
        let doc = document(&f);
        let head = "# Benchmark results\n\n\
            Run 2026-11-26 14:43 UTC on 2 cores (AMD EPYC), 24 GiB; PostgreSQL with fsync on (PG_DURABLE=1), \
            moto for SQS and Secrets Manager on the same machine; in-process handlers through the local runner.\n\n";
        let sections = [
            latency(&f.latency),
            throughput(&f.throughput),
            scale(&f.scale),
            functions(&f.functions),
            targets(&f),
        ];
        assert_eq!(doc, format!("{head}{}", sections.concat()));
        // Each section but the last ends with a blank line; the document ends with the targets' last row.
        for section in &sections[..4] {
            assert!(section.ends_with("|\n\n"), "{section}");
        }
        assert!(doc.ends_with("| last-100 <= 1.2x first-100 | 0.74x | met |\n"));
        let headings: Vec<&str> = doc.lines().filter(|l| l.starts_with('#')).collect();
        assert_eq!(
            headings,
            [
                "# Benchmark results",
                "## Latency: 50 projects one after another (runner: 1 invocation per stage)",
                "## Throughput: 100 projects submitted at once",
                "## Scale: 1000 projects in batches of 100 over 2 clusters (2 invocations per stage)",
                "## Functions as shipped (release, x86_64, stripped): init = process start to first `next` request, median of 20",
                "## Targets",
            ]
        );
    }

    #[test]
    fn latency_rows_show_p50_p95_and_the_ratio_to_the_floor() {
        let text = latency(&figures().latency);
        assert_eq!(
            lines(&text)[2..6],
            [
                "| | p50 ms | p95 ms | ratio to floor (p50) |",
                "|---|---:|---:|---:|",
                "| floor (same executor and SQL, no queues, secrets in memory) | 159.5 | 260.2 | 1.00 |",
                "| pipeline, creation to ready | 201.5 | 303.4 | 1.26 |",
            ]
        );
    }

    #[test]
    fn stage_rows_in_pipeline_order_then_their_totals() {
        let text = latency(&figures().latency);
        let table: Vec<&str> = text
            .lines()
            .skip_while(|l| *l != "| stage | queue wait ms | run ms |")
            .take_while(|l| !l.is_empty())
            .collect();
        assert_eq!(
            table,
            [
                "| stage | queue wait ms | run ms |",
                "|---|---:|---:|",
                "| validate | 9.8 | 1.1 |",
                "| create-database | 8.1 | 52.9 |",
                "| create-schema | 8.9 | 22.5 |",
                "| register-services | 8.8 | 4.4 |",
                "| generate-api-keys | 7.6 | 86.6 |",
                "| finalize | 9.9 | 2.5 |",
                "| **total** | 53.1 | 170.0 |",
            ]
        );
    }

    #[test]
    fn where_the_time_goes_splits_waits_and_runs_per_project() {
        let text = latency(&figures().latency);
        let table: Vec<&str> = text
            .lines()
            .skip_while(|l| *l != "| component | ms | calls |")
            .take_while(|l| !l.is_empty())
            .collect();
        assert_eq!(
            table,
            [
                "| component | ms | calls |",
                "|---|---:|---:|",
                "| queue waits, all six hops | 53.1 | |",
                "| - SQS sends (by the previous stage) | 26.6 | 6.0 |",
                "| - receive and batching by the runner (the rest) | 26.5 | |",
                "| stage run time, all six stages | 170.0 | |",
                "| - Secrets Manager | 10.2 | 3.0 |",
                "| - scrypt hashing (2 keys x 39.9 ms: median of 52 hashes timed between the projects) | 79.8 | 2 |",
                "| - HTTP registration (local stub) | 0.5 | 3.0 |",
                "| - Postgres and the executor (the rest) | 79.5 | |",
                "| floor, for comparison: Postgres and the executor (p50 minus hashing) | 79.7 | |",
            ]
        );
    }

    #[test]
    fn the_rests_never_go_below_zero() {
        let mut l = figures().latency;
        l.sqs.total = millis(5000.0); // 100 ms per project, more than the waits
        l.hash_median = millis(200.0); // hashing alone longer than the runs and the floor
        let text = latency(&l);
        has_line(
            &text,
            "| - receive and batching by the runner (the rest) | 0.0 | |",
        );
        has_line(&text, "| - Postgres and the executor (the rest) | 0.0 | |");
        has_line(
            &text,
            "| floor, for comparison: Postgres and the executor (p50 minus hashing) | 0.0 | |",
        );
    }

    #[test]
    fn throughput_rows_give_rates_and_ratios_to_the_floor() {
        let text = throughput(&figures().throughput);
        let table: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("| concurrency per stage |"))
            .take_while(|l| !l.is_empty())
            .collect();
        assert_eq!(
            table,
            [
                "| concurrency per stage | pipeline projects/s | floor projects/s | ratio | from submission (ratio) |",
                "|---:|---:|---:|---:|---:|",
                "| 1 | 5.00 | 4.00 | 1.25 | 4.00 (1.00) |",
                "| 2 | 6.25 | 8.00 | 0.78 | 4.76 (0.60) |",
            ]
        );
    }

    #[test]
    fn cpu_rows_give_ms_per_project_and_shares_of_the_cores() {
        let text = throughput(&figures().throughput);
        has_line(
            &text,
            "Where the cores went: CPU ms per project, by process, and the machine's busy and iowait share of 2 cores \
             (the bench process runs the floor, or the runner with every handler and scrypt).",
        );
        let table: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("| run, concurrency |"))
            .take_while(|l| !l.is_empty())
            .collect();
        assert_eq!(
            table,
            [
                "| run, concurrency | bench process | postgres | moto | machine busy | iowait |",
                "|---|---:|---:|---:|---:|---:|",
                "| floor, 1 | 86.4 | 142.9 | 0.0 | 50% | 1% |",
                "| pipeline, 1 | 104.1 | 172.9 | 46.6 | 98% | 0% |",
                "| floor, 2 | 92.2 | 154.5 | 0.1 | 85% | 2% |",
                "| pipeline, 2 | 105.5 | 198.3 | 50.4 | 99% | 0% |",
            ]
        );
    }

    #[test]
    fn scale_rows_compare_the_last_batch_with_the_first() {
        let text = scale(&figures().scale);
        assert_eq!(
            lines(&text)[2..],
            [
                "| | ms per project |",
                "|---|---:|",
                "| first 100 | 182.6 |",
                "| last 100 (1000 tenant databases on the clusters) | 135.2 |",
                "| ratio last/first | 0.74 |",
                "| disk per tenant database | 7.4 MiB |",
                "",
                "Placement and connections per cluster: peak client connections (`pg_stat_activity`, sampled every 50 ms) during the first 100-project burst and during the whole run, against the template's default budget of 200 per cluster (docs/connections.md; the local runner is not sized by it).",
                "",
                "| cluster | projects placed | tenant databases | peak, first 100 | peak, run | budget |",
                "|---|---:|---:|---:|---:|---:|",
                "| local-1 | 500 | 500 | 31 | 33 | 200 |",
                "| local-2 | 500 | 500 | 9 | 10 | 200 |",
                "",
            ]
        );
    }

    #[test]
    fn function_rows_in_mb_ms_and_mib_with_a_short_safe_answer() {
        let mut f = figures().functions;
        f.functions.push(Function {
            answered: false,
            ..function("migrate", 6.7, 4.3, 8499, &"x".repeat(100))
        });
        let text = functions(&f);
        assert_eq!(
            lines(&text)[2..],
            [
                "| function | binary MB (10^6 bytes) | init ms (median) | peak RSS MiB (one invocation) | answer |",
                "|---|---:|---:|---:|---|",
                "| validate | 7.27 | 4.6 | 9.0 | `{\"batchItemFailures\":[]}` |",
                "| generate-api-keys | 7.27 | 4.8 | 25.1 | `{\"batchItemFailures\":[]}` |",
                // The first 40 characters, and no `|` to break the table.
                "| api | 7.55 | 4.4 | 9.0 | `{\"statusCode\":200,\"body\":\"a/b\",\"headers\"` |",
                // An error: marked, and 60 characters of it.
                &format!("| migrate | 6.70 | 4.3 | 8.3 | `ERROR {}` |", "x".repeat(60)),
                "",
            ]
        );
    }

    #[test]
    fn targets_met() {
        let text = targets(&figures());
        assert_eq!(
            lines(&text),
            [
                "## Targets",
                "",
                "| target | measured | |",
                "|---|---:|---|",
                "| end-to-end p50 <= 2x floor | 1.26x | met |",
                // The lower of the two concurrencies' ratios.
                "| throughput >= 60% of floor | 78% | met |",
                "| init <= 25 ms | 4.8 ms (worst) | met |",
                "| binary <= 8 MB | 7.55 MB (largest) | met |",
                "| peak RSS <= 64 MB | 25.1 MiB (largest) | met |",
                "| last-100 <= 1.2x first-100 | 0.74x | met |",
            ]
        );
    }

    #[test]
    fn targets_missed() {
        let mut f = figures();
        f.latency.pipeline_p50 = millis(400.0);
        f.throughput.runs[1].pipeline_wall = millis(25_000.0); // 4.00 against 8.00 projects/s
        f.functions.functions[2] = function("api", 8.5, 31.4, 70 * 1024, "{}");
        f.scale.last_batch_ms = 250.0;
        let text = targets(&f);
        assert_eq!(
            lines(&text)[4..],
            [
                "| end-to-end p50 <= 2x floor | 2.51x | **missed** |",
                "| throughput >= 60% of floor | 50% | **missed** |",
                "| init <= 25 ms | 31.4 ms (worst) | **missed** |",
                "| binary <= 8 MB | 8.50 MB (largest) | **missed** |",
                "| peak RSS <= 64 MB | 70.0 MiB (largest) | **missed** |",
                "| last-100 <= 1.2x first-100 | 1.37x | **missed** |",
            ]
        );
    }

    #[test]
    fn targets_at_their_bounds_are_met() {
        let mut f = figures();
        f.latency.floor_p50 = millis(100.0);
        f.latency.pipeline_p50 = millis(200.0);
        f.throughput.runs[1].floor_wall = millis(6_000.0);
        f.throughput.runs[1].pipeline_wall = millis(10_000.0); // 10.00 / 16.67 projects/s
        f.functions.functions[2] = function("api", 8.0, 25.0, 64 * 1024, "{}");
        f.scale.first_batch_ms = 100.0;
        f.scale.last_batch_ms = 120.0;
        let text = targets(&f);
        assert_eq!(
            lines(&text)[4..],
            [
                "| end-to-end p50 <= 2x floor | 2.00x | met |",
                "| throughput >= 60% of floor | 60% | met |",
                "| init <= 25 ms | 25.0 ms (worst) | met |",
                "| binary <= 8 MB | 8.00 MB (largest) | met |",
                "| peak RSS <= 64 MB | 64.0 MiB (largest) | met |",
                "| last-100 <= 1.2x first-100 | 1.20x | met |",
            ]
        );
    }
}
