//! The API on Lambda: API Gateway (HTTP API, payload v2) events become
//! `http::Request`s in `lambda_http`, which serves the router built here once
//! per cold start (`lambda_http::run(router)` in `functions/api`).

use super::{router, Api};
use crate::config::Settings;
use crate::pipeline::Pipeline;
use axum::Router;

pub type Error = lambda_runtime::Error;

/// Reads the settings from the environment (failing fast) and builds the router.
pub async fn router_from_env() -> Result<Router, Error> {
    let settings = Settings::from_env()?;
    Ok(router(Api {
        pipeline: Pipeline::without_service_calls(settings).await?,
    }))
}
