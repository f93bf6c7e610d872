//! The control-plane HTTP API as an `axum::Router`: served by
//! `lambda_http::run` on Lambda (API Gateway HTTP API, payload v2, see
//! `lambda`), by `axum::serve` locally, and called with `oneshot` in tests.

pub mod caller;
pub mod lambda;
mod problem;
mod routes;

pub use problem::Problem;

use crate::pipeline::Pipeline;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, patch, post};
use axum::Router;

/// Largest request body accepted (413 above it).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Bodies up to this size are read, so a larger one than `MAX_BODY_BYTES`
/// still gets its 413 problem from the handler; beyond it the transport
/// refuses (API Gateway's own limit is 10 MB).
const TRANSPORT_LIMIT: usize = 4 * 1024 * 1024;

/// What the API needs: the same pipeline the stage functions use.
#[derive(Clone)]
pub struct Api {
    pub pipeline: Pipeline,
}

impl Api {
    /// A control-plane connection; pool trouble becomes a 503 problem.
    pub async fn db(&self) -> Result<deadpool_postgres::Object, Problem> {
        Ok(self
            .pipeline
            .db
            .get()
            .await
            .map_err(crate::error::StageError::from)?)
    }
}

/// Every route, and the problem answers for the paths and methods it has not.
pub fn router(api: Api) -> Router {
    Router::new()
        .route("/projects", post(routes::create_project))
        .route(
            "/projects/{id}",
            get(routes::get_project).delete(routes::delete_project),
        )
        .route("/projects/{id}/audit", get(routes::project_audit))
        .route("/projects/{id}/suspend", post(routes::suspend_project))
        .route("/projects/{id}/resume", post(routes::resume_project))
        .route("/projects/{id}/restore", post(routes::restore_project))
        .route(
            "/projects/{id}/provisioning/retry",
            post(routes::retry_project),
        )
        .route("/projects/{id}/api-keys", post(routes::issue_key))
        .route(
            "/projects/{id}/api-keys/{key_id}",
            delete(routes::revoke_key),
        )
        .route("/provisioning/jobs", get(routes::list_jobs))
        .route("/admin/provisioning", get(routes::admin_summary))
        .route(
            "/admin/clusters",
            get(routes::list_clusters).post(routes::register_cluster),
        )
        .route("/admin/clusters/{id}", patch(routes::change_cluster))
        .route("/admin/reconciliation", get(routes::reconciliation))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(TRANSPORT_LIMIT))
        .with_state(api)
}
