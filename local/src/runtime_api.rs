//! A minimal Lambda runtime API on localhost, to start a function binary as
//! Lambda would and measure it: the time from process start to its first
//! request for the next event (init), and one invocation with a given event.

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::net::TcpListener;
use tokio::sync::Notify;

#[derive(Default)]
struct State {
    first_next: Mutex<Option<Instant>>,
    event: Mutex<Option<Vec<u8>>>,
    outcome: Mutex<Option<(bool, Vec<u8>)>>,
    changed: Notify,
}

/// One runtime API endpoint serving at most one event.
pub struct FakeRuntime {
    pub address: String,
    state: Arc<State>,
}

impl FakeRuntime {
    /// Starts the endpoint; `event` is handed to the first `next` request.
    pub async fn start(event: Option<Vec<u8>>) -> std::io::Result<FakeRuntime> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?.to_string();
        let state = Arc::new(State {
            event: Mutex::new(event),
            ..Default::default()
        });
        let served = state.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = served.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| serve(state.clone(), req));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(FakeRuntime { address, state })
    }

    /// When the function first asked for an event.
    pub async fn first_next(&self) -> Instant {
        loop {
            let notified = self.state.changed.notified();
            if let Some(at) = *self.state.first_next.lock().unwrap() {
                return at;
            }
            notified.await;
        }
    }

    /// The function's answer to the event: (succeeded, body).
    pub async fn outcome(&self) -> (bool, Vec<u8>) {
        loop {
            let notified = self.state.changed.notified();
            if let Some(outcome) = self.state.outcome.lock().unwrap().clone() {
                return outcome;
            }
            notified.await;
        }
    }
}

async fn serve(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    if path.ends_with("/invocation/next") {
        state
            .first_next
            .lock()
            .unwrap()
            .get_or_insert_with(Instant::now);
        state.changed.notify_waiters();
        let event = state.event.lock().unwrap().take();
        let Some(event) = event else {
            // No (more) events: hold the request, as Lambda does between invocations.
            std::future::pending::<()>().await;
            unreachable!()
        };
        let deadline = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
            + 60_000;
        let response = Response::builder()
            .header("lambda-runtime-aws-request-id", "bench-request-1")
            .header("lambda-runtime-deadline-ms", deadline.to_string())
            .header(
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:123456789012:function:bench",
            )
            .header(
                "lambda-runtime-trace-id",
                "Root=1-00000000-000000000000000000000000",
            )
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(event)))
            .unwrap();
        return Ok(response);
    }
    let succeeded = path.ends_with("/response");
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    *state.outcome.lock().unwrap() = Some((succeeded, body));
    state.changed.notify_waiters();
    Ok(Response::builder()
        .status(202)
        .body(Full::new(Bytes::new()))
        .unwrap())
}

/// Peak resident set of a running process (VmHWM), in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
