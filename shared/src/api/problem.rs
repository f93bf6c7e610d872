//! Errors as RFC 9457 problem details: type, title, status, detail and, where a
//! request field is at fault, that field.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub field: Option<String>,
}

impl Problem {
    pub fn new(status: u16, slug: &str, title: &str, detail: impl Into<String>) -> Problem {
        Problem {
            kind: format!("https://provisioning.example/problems/{slug}"),
            title: title.to_owned(),
            status,
            detail: detail.into(),
            field: None,
        }
    }

    pub fn field(mut self, field: impl Into<String>) -> Problem {
        self.field = Some(field.into());
        self
    }

    pub fn bad_request(field: Option<&str>, detail: impl Into<String>) -> Problem {
        let p = Problem::new(400, "bad-request", "Bad request", detail);
        match field {
            Some(f) => p.field(f),
            None => p,
        }
    }

    pub fn invalid(field: &str, rule: impl Into<String>) -> Problem {
        Problem::new(
            422,
            "validation",
            "Validation failed",
            format!("{field}: {}", rule.into()),
        )
        .field(field)
    }

    pub fn not_found(what: &str) -> Problem {
        Problem::new(404, "not-found", "Not found", format!("{what} not found"))
    }

    pub fn conflict(detail: impl Into<String>) -> Problem {
        Problem::new(409, "conflict", "Conflict", detail)
    }

    pub fn unavailable(detail: impl Into<String>) -> Problem {
        Problem::new(503, "unavailable", "Service unavailable", detail)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self).expect("a problem serialises");
        Response::builder()
            .status(self.status)
            .header(header::CONTENT_TYPE, "application/problem+json")
            .body(body.into())
            .expect("a valid response")
    }
}

impl From<crate::error::StageError> for Problem {
    fn from(e: crate::error::StageError) -> Problem {
        if e.is_retryable() {
            Problem::unavailable(format!("{}; try again", e.message))
        } else {
            Problem::new(500, "internal", "Internal error", e.message)
        }
    }
}
