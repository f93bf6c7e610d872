//! Structured logs: one JSON object per line (what Lambda's JSON log format
//! expects: timestamp, level, message, target), carrying the current span's
//! fields, so every line of a stage names project_id, run_id, stage and
//! correlation_id. Level from `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`, else info.

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

fn filter() -> EnvFilter {
    std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .ok()
        .map(|level| EnvFilter::new(level.to_lowercase()))
        .unwrap_or_else(|| {
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
        })
}

/// Installs the JSON subscriber on stdout (what Lambda captures).
pub fn init() {
    init_with_writer(std::io::stdout);
}

/// Installs the JSON subscriber on any writer (a log file, a test buffer).
pub fn init_with_writer<W>(writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter())
        .with_current_span(true)
        .with_span_list(false)
        .flatten_event(true)
        .with_target(true)
        .with_writer(writer)
        .try_init();
}
