//! Driving the API in tests: through its sample events (the API Gateway v2
//! payloads in events/) or directly, and checking responses against openapi.yaml.

use super::TestEnv;
use http_body_util::BodyExt;
use provisioning::api::{router, Api};
use serde_json::Value;
use std::sync::OnceLock;
use tower::ServiceExt;

pub const PROJECT_PLACEHOLDER: &str = "11111111-2222-4333-8444-555555555555";
pub const KEY_PLACEHOLDER: &str = "0123456789abcdef";

/// An answer of the API, read whole: status, headers, JSON body (if any).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Option<Value>,
}

impl ApiResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    async fn read(response: axum::response::Response) -> ApiResponse {
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap().to_owned()))
            .collect();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("a readable body")
            .to_bytes();
        let body = (!bytes.is_empty()).then(|| serde_json::from_slice(&bytes).expect("JSON body"));
        ApiResponse {
            status,
            headers,
            body,
        }
    }
}

impl TestEnv {
    pub fn api(&self) -> Api {
        Api {
            pipeline: self.pipeline.clone(),
        }
    }

    /// Calls the API's router directly (method, path with query, headers, body).
    pub async fn call(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> ApiResponse {
        let mut request = axum::http::Request::builder().method(method).uri(target);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(axum::body::Body::from(body.to_vec()))
            .expect("a valid request");
        let response = router(self.api())
            .oneshot(request)
            .await
            .expect("infallible");
        ApiResponse::read(response).await
    }

    /// `POST /projects/{id}/provisioning/retry`, with no body.
    pub async fn retry(&self, project_id: impl std::fmt::Display) -> ApiResponse {
        self.call(
            "POST",
            &format!("/projects/{project_id}/provisioning/retry"),
            &[],
            b"",
        )
        .await
    }

    /// `POST /projects/{id}/{operation}` (suspend, resume, restore), no body.
    pub async fn operate(
        &self,
        project_id: impl std::fmt::Display,
        operation: &str,
    ) -> ApiResponse {
        self.call(
            "POST",
            &format!("/projects/{project_id}/{operation}"),
            &[],
            b"",
        )
        .await
    }

    /// `DELETE /projects/{id}{query}` (query: "" or "?purge=now").
    pub async fn delete(&self, project_id: impl std::fmt::Display, query: &str) -> ApiResponse {
        self.call(
            "DELETE",
            &format!("/projects/{project_id}{query}"),
            &[],
            b"",
        )
        .await
    }

    /// POSTs a JSON body.
    pub async fn post_json(
        &self,
        target: &str,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> ApiResponse {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        self.call("POST", target, &all, body.to_string().as_bytes())
            .await
    }

    /// Sends a sample event from events/ as `lambda_http` turns it into a
    /// request for the router, with the placeholders replaced. Returns
    /// status, headers and parsed body.
    pub async fn send_event(
        &self,
        file: &str,
        project_id: &str,
        key_id: &str,
    ) -> (u16, Vec<(String, String)>, Option<Value>) {
        let text = sample_event(file)
            .replace(PROJECT_PLACEHOLDER, project_id)
            .replace(KEY_PLACEHOLDER, key_id);
        self.send_event_text(&text).await
    }

    /// Sends an API Gateway event given as text (a sample event edited by the test).
    pub async fn send_event_text(&self, text: &str) -> (u16, Vec<(String, String)>, Option<Value>) {
        let request = lambda_http::request::from_str(text)
            .unwrap_or_else(|e| panic!("not an API Gateway event: {e}"));
        let response = router(self.api())
            .oneshot(request)
            .await
            .expect("infallible");
        let response = ApiResponse::read(response).await;
        (response.status, response.headers, response.body)
    }
}

impl TestEnv {
    /// `send_event`, asserting that the answer is what openapi.yaml documents
    /// for `method route`.
    pub async fn send_documented_event(
        &self,
        file: &str,
        ids: (&str, &str),
        route: &str,
        method: &str,
    ) -> (u16, Vec<(String, String)>, Option<Value>) {
        let (status, headers, body) = self.send_event(file, ids.0, ids.1).await;
        let content_type = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.as_str());
        assert_documented(route, method, status, content_type, body.as_ref());
        (status, headers, body)
    }
}

/// A sample event from events/, as text.
pub fn sample_event(file: &str) -> String {
    let path = format!("{}/../events/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn openapi() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.yaml");
        let text = std::fs::read_to_string(path).expect("openapi.yaml");
        serde_yaml::from_str(&text).expect("openapi.yaml parses")
    })
}

/// Asserts that a response matches what openapi.yaml declares for the route,
/// method and status: the status is documented, the content type is, and the
/// body validates against the schema.
pub fn assert_documented(
    route: &str,
    method: &str,
    status: u16,
    content_type: Option<&str>,
    body: Option<&Value>,
) {
    let doc = openapi();
    let operation = &doc["paths"][route][method.to_ascii_lowercase()];
    assert!(
        operation.is_object(),
        "openapi.yaml has no {method} {route}"
    );
    let mut response = &operation["responses"][status.to_string()];
    // A shared response (`$ref: '#/components/responses/...'`).
    if let Some(reference) = response.get("$ref").and_then(Value::as_str) {
        let pointer = reference.trim_start_matches('#');
        response = doc.pointer(pointer).unwrap_or(&Value::Null);
    }
    assert!(
        response.is_object(),
        "openapi.yaml does not document {status} for {method} {route}"
    );
    let Some(body) = body else {
        assert!(
            response.get("content").is_none(),
            "{method} {route} {status}: a body was documented but none sent"
        );
        return;
    };
    let media = content_type.expect("a body comes with a content type");
    let media = media.split(';').next().unwrap().trim();
    let schema = &response["content"][media]["schema"];
    assert!(
        schema.is_object(),
        "{method} {route} {status}: {media} is not documented"
    );
    let mut root = schema.clone();
    root["components"] = doc["components"].clone();
    let validator = jsonschema::validator_for(&root).expect("schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {route} {status}: body does not match openapi.yaml:\n{}\n{body:#}",
        errors.join("\n")
    );
}

/// `assert_documented` for an `ApiResponse`.
pub fn assert_response_documented(route: &str, method: &str, response: &ApiResponse) {
    assert_documented(
        route,
        method,
        response.status,
        response.header("content-type"),
        response.body.as_ref(),
    );
}
