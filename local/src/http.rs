//! Serves the API's router over plain HTTP on localhost with `axum::serve`:
//! the same router the API Gateway Lambda runs, so `curl` works against the
//! local stack.

use provisioning::api::{router, Api};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Serves until `stop` turns true (then lets requests in flight finish).
pub async fn serve(api: Api, listener: TcpListener, mut stop: watch::Receiver<bool>) {
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    if let Err(e) = axum::serve(listener, router(api))
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %e, "local API server stopped");
    }
}
