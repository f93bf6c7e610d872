//! The control-plane HTTP API, free of transport types: a request in, a response
//! out. `lambda` adapts it to API Gateway (HTTP API, payload v2); the local
//! runner serves it over plain HTTP.

pub mod lambda;
mod problem;
mod routes;

pub use problem::Problem;
pub use routes::handle;

use crate::pipeline::Pipeline;
use std::collections::BTreeMap;

/// Largest request body accepted (413 above it).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

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

#[derive(Debug, Clone, Default)]
pub struct ApiRequest {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    /// Header names in lowercase.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl ApiRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Option<serde_json::Value>,
}

impl ApiResponse {
    pub fn json(status: u16, body: serde_json::Value) -> ApiResponse {
        ApiResponse::json_with_type(status, "application/json", body)
    }

    pub fn json_with_type(status: u16, content_type: &str, body: serde_json::Value) -> ApiResponse {
        ApiResponse {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: Some(body),
        }
    }

    pub fn empty(status: u16) -> ApiResponse {
        ApiResponse {
            status,
            headers: Vec::new(),
            body: None,
        }
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> ApiResponse {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}
