//! CPU time by process group, read from /proc: the benchmark's answer to
//! "where did the cores go?" for this process (the runner, its handlers and
//! scrypt), PostgreSQL (the postmaster, its live backends and the reaped ones)
//! and moto, plus the whole machine's busy and iowait time.

use std::time::Duration;

/// Linux reports process CPU times in USER_HZ ticks, 100 per second on every
/// mainstream kernel configuration.
const TICKS_PER_SECOND: f64 = 100.0;

/// Process ids of the stack's servers (`make bench` passes them in).
#[derive(Debug, Clone, Default)]
pub struct StackPids {
    /// Every Postgres cluster's postmaster (the stack may run several).
    pub postgres: Vec<u32>,
    pub moto: Option<u32>,
}

impl StackPids {
    /// From BENCH_PG_PID (space-separated pids, one per cluster) and
    /// BENCH_MOTO_PID; a missing one is not measured.
    pub fn from_env() -> StackPids {
        let var = |name: &str| std::env::var(name).unwrap_or_default();
        StackPids {
            postgres: var("BENCH_PG_PID")
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect(),
            moto: var("BENCH_MOTO_PID").trim().parse().ok(),
        }
    }
}

/// Cumulative CPU seconds at one instant.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSample {
    pub this_process: f64,
    pub postgres: f64,
    pub moto: f64,
    pub machine_busy: f64,
    pub machine_iowait: f64,
}

/// CPU seconds spent between two samples.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUse {
    pub this_process: f64,
    pub postgres: f64,
    pub moto: f64,
    pub machine_busy: f64,
    pub machine_iowait: f64,
}

impl CpuUse {
    /// Busy share of `cores` over `wall`, 0..=1.
    pub fn utilisation(&self, wall: Duration, cores: usize) -> f64 {
        self.machine_busy / (wall.as_secs_f64() * cores.max(1) as f64)
    }
}

impl CpuSample {
    pub fn take(pids: &StackPids) -> CpuSample {
        let (busy, iowait) = machine_times().unwrap_or_default();
        CpuSample {
            this_process: process_times(std::process::id()).map_or(0.0, |t| t.own),
            postgres: pids.postgres.iter().copied().map(tree_seconds).sum(),
            moto: pids.moto.map_or(0.0, tree_seconds),
            machine_busy: busy,
            machine_iowait: iowait,
        }
    }

    pub fn since(&self, earlier: &CpuSample) -> CpuUse {
        CpuUse {
            this_process: self.this_process - earlier.this_process,
            postgres: self.postgres - earlier.postgres,
            moto: self.moto - earlier.moto,
            machine_busy: self.machine_busy - earlier.machine_busy,
            machine_iowait: self.machine_iowait - earlier.machine_iowait,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct ProcTimes {
    ppid: u32,
    /// utime + stime of the process (all its threads).
    own: f64,
    /// cutime + cstime: children it has waited for.
    reaped_children: f64,
}

/// Parses /proc/<pid>/stat text. The command name may hold spaces and
/// parentheses, so fields are counted from the last ')'.
fn parse_stat(text: &str) -> Option<ProcTimes> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
    let tick =
        |i: usize| -> Option<f64> { Some(fields.get(i)?.parse::<f64>().ok()? / TICKS_PER_SECOND) };
    Some(ProcTimes {
        ppid: fields.get(1)?.parse().ok()?,
        own: tick(11)? + tick(12)?,
        reaped_children: tick(13)? + tick(14)?,
    })
}

fn process_times(pid: u32) -> Option<ProcTimes> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// A process's own time, its reaped children's, and its live children's own
/// time (PostgreSQL's backends are children of the postmaster).
fn tree_seconds(root: u32) -> f64 {
    let Some(root_times) = process_times(root) else {
        return 0.0;
    };
    let children: f64 = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(process_times)
        .filter(|t| t.ppid == root)
        .map(|t| t.own)
        .sum();
    root_times.own + root_times.reaped_children + children
}

/// (busy, iowait) seconds of the whole machine from /proc/stat.
fn machine_times() -> Option<(f64, f64)> {
    parse_machine(&std::fs::read_to_string("/proc/stat").ok()?)
}

fn parse_machine(text: &str) -> Option<(f64, f64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse::<f64>().map(|t| t / TICKS_PER_SECOND))
        .collect::<Result<_, _>>()
        .ok()?;
    // user nice system idle iowait irq softirq steal ...
    let busy = v.first()? + v.get(1)? + v.get(2)? + v.get(5)? + v.get(6)? + v.get(7)?;
    Some((busy, *v.get(4)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_last_parenthesis() {
        let text =
            "42 (post gres) (x)) S 7 42 42 0 -1 4194560 100 0 0 0 150 50 30 20 20 0 1 0 5 0 0";
        let t = parse_stat(text).unwrap();
        assert_eq!(t.ppid, 7);
        assert!((t.own - 2.0).abs() < 1e-9, "{t:?}");
        assert!((t.reaped_children - 0.5).abs() < 1e-9, "{t:?}");
    }

    #[test]
    fn machine_busy_excludes_idle_and_iowait() {
        let text = "cpu  100 0 50 1000 25 5 5 0 0 0\ncpu0 1 2 3 4 5 6 7 8\n";
        let (busy, iowait) = parse_machine(text).unwrap();
        assert!((busy - 1.6).abs() < 1e-9);
        assert!((iowait - 0.25).abs() < 1e-9);
    }

    #[test]
    fn this_process_burns_measurable_cpu() {
        let before = CpuSample::take(&StackPids::default());
        let mut x = 0u64;
        let started = std::time::Instant::now();
        while started.elapsed() < Duration::from_millis(200) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let used = CpuSample::take(&StackPids::default()).since(&before);
        assert!(used.this_process > 0.1, "{used:?}");
        assert!(used.machine_busy >= used.this_process * 0.5, "{used:?}");
    }
}
