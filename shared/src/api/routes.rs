//! The router and one handler per route. Handlers check the request, call the
//! shared domain functions and map their outcomes to statuses. A request that
//! fails writes nothing: no row, no message, no secret.

use super::{Api, ApiRequest, ApiResponse, Problem, MAX_BODY_BYTES};
use crate::api_keys::{self, KeyError};
use crate::domain::NewProject;
use crate::idempotency;
use crate::project::{self, CreateProjectError, Creation, RequestKey, ResumeError};
use crate::report;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

type Handled = Result<ApiResponse, Problem>;

/// Routes a request; every failure becomes a problem response.
pub async fn handle(api: &Api, req: ApiRequest) -> ApiResponse {
    let path = req.path.trim_end_matches('/').to_owned();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let method = req.method.to_ascii_uppercase();
    let result = match (segments.as_slice(), method.as_str()) {
        (["projects"], "POST") => create_project(api, &req).await,
        (["projects", id], "GET") => get_project(api, id).await,
        (["projects", id, "provisioning", "retry"], "POST") => retry_project(api, id, &req).await,
        (["projects", id, "api-keys"], "POST") => issue_key(api, id, &req).await,
        (["projects", id, "api-keys", key_id], "DELETE") => revoke_key(api, id, key_id).await,
        (["provisioning", "jobs"], "GET") => list_jobs(api, &req).await,
        (["admin", "provisioning"], "GET") => admin_summary(api, &req).await,
        (segments, _) => {
            return match allowed_methods(segments) {
                Some(allow) => Problem::new(
                    405,
                    "method-not-allowed",
                    "Method not allowed",
                    format!("{method} is not allowed here; use {allow}"),
                )
                .into_response()
                .with_header("allow", allow),
                None => Problem::not_found(&format!("route {path}")).into_response(),
            };
        }
    };
    result.unwrap_or_else(Problem::into_response)
}

fn allowed_methods(segments: &[&str]) -> Option<&'static str> {
    match segments {
        ["projects"] => Some("POST"),
        ["projects", _] => Some("GET"),
        ["projects", _, "provisioning", "retry"] => Some("POST"),
        ["projects", _, "api-keys"] => Some("POST"),
        ["projects", _, "api-keys", _] => Some("DELETE"),
        ["provisioning", "jobs"] | ["admin", "provisioning"] => Some("GET"),
        _ => None,
    }
}

fn path_id(id: &str) -> Result<Uuid, Problem> {
    id.parse().map_err(|_| {
        Problem::bad_request(Some("id"), format!("id: '{}' is not a UUID", truncate(id)))
    })
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

fn correlation_id(req: &ApiRequest) -> Option<Uuid> {
    req.header("x-correlation-id").and_then(|v| v.parse().ok())
}

/// Body checks shared by every route that takes JSON: size, media type, syntax,
/// shape. Shape errors name the offending field.
fn json_body<T: DeserializeOwned>(req: &ApiRequest) -> Result<T, Problem> {
    if req.body.len() > MAX_BODY_BYTES {
        return Err(Problem::new(
            413,
            "too-large",
            "Payload too large",
            format!("body is larger than {MAX_BODY_BYTES} bytes"),
        ));
    }
    let content_type = req.header("content-type").unwrap_or("");
    let media = content_type.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("application/json") {
        let shown = if media.is_empty() {
            "none".to_owned()
        } else {
            truncate(media)
        };
        return Err(Problem::new(
            415,
            "unsupported-media-type",
            "Unsupported media type",
            format!("content-type must be application/json, got {shown}"),
        )
        .field("content-type"));
    }
    // Every body this API takes is an object (serde would also accept an array).
    let first = req.body.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b == b'[') {
        return Err(Problem::bad_request(
            Some("body"),
            "body: must be a JSON object",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(&req.body);
    let value = serde_path_to_error::deserialize::<_, T>(&mut de);
    if value.is_ok() {
        de.end()
            .map_err(|e| Problem::bad_request(None, format!("malformed JSON: {e}")))?;
    }
    value.map_err(|e| {
        let inner = e.inner();
        if matches!(inner.classify(), serde_json::error::Category::Data) {
            let path = e.path().to_string();
            let message = inner.to_string();
            // The path of an unknown field already ends with it; a missing
            // field's path is its parent's, so name the field itself.
            let field = match message.split('`').nth(1) {
                Some(name) if message.starts_with("missing field") => {
                    if path == "." {
                        name.to_owned()
                    } else {
                        format!("{path}.{name}")
                    }
                }
                _ if path == "." => "body".to_owned(),
                _ => path,
            };
            let rule = message
                .split(" at line")
                .next()
                .unwrap_or(&message)
                .to_owned();
            Problem::bad_request(Some(&field), format!("{field}: {rule}"))
        } else {
            Problem::bad_request(None, format!("malformed JSON: {inner}"))
        }
    })
}

async fn create_project(api: &Api, req: &ApiRequest) -> Handled {
    let key = match req.header("idempotency-key") {
        Some(k) if idempotency::is_valid_key(k) => Some(RequestKey {
            key: k.to_owned(),
            request_hash: idempotency::request_hash(&req.method, &req.path, &req.body),
        }),
        Some(_) => {
            return Err(Problem::bad_request(
                Some("Idempotency-Key"),
                "Idempotency-Key: must be 1 to 255 visible ASCII characters",
            ))
        }
        None => None,
    };
    let request: NewProject = json_body(req)?;
    let creation = project::create_project_keyed(
        &api.pipeline.db,
        &*api.pipeline.queue,
        &request,
        correlation_id(req),
        key.as_ref(),
    )
    .await;
    match creation {
        Ok(Creation::Created(created)) => {
            let location = created.location();
            Ok(ApiResponse::json(202, created.response_body()).with_header("location", location))
        }
        Ok(Creation::Replayed { status, body }) => {
            let location = body
                .get("location")
                .and_then(|l| l.as_str())
                .unwrap_or_default()
                .to_owned();
            Ok(ApiResponse::json(status, body)
                .with_header("location", location)
                .with_header("idempotent-replayed", "true"))
        }
        Err(CreateProjectError::Invalid(v)) => Err(Problem::invalid(v.field, v.rule)),
        Err(CreateProjectError::KeyReused) => Err(Problem::invalid(
            "Idempotency-Key",
            "was already used with a different request body",
        )),
        Err(CreateProjectError::Unavailable(e)) => Err(e.into()),
    }
}

async fn get_project(api: &Api, id: &str) -> Handled {
    let id = path_id(id)?;
    let db = api.db().await?;
    let report = report::load_project_report(&db, id)
        .await?
        .ok_or_else(|| Problem::not_found(&format!("project {id}")))?;
    Ok(ApiResponse::json(
        200,
        serde_json::to_value(report).expect("serialisable"),
    ))
}

/// An empty body, or a JSON object with no fields.
fn empty_body(req: &ApiRequest) -> Result<(), Problem> {
    if req.body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Nothing {}
    json_body::<Nothing>(req).map(|_| ())
}

async fn retry_project(api: &Api, id: &str, req: &ApiRequest) -> Handled {
    let id = path_id(id)?;
    empty_body(req)?;
    match project::resume_project(&api.pipeline, id, correlation_id(req)).await {
        Ok(resumed) => {
            let location = format!("/projects/{id}");
            Ok(
                ApiResponse::json(202, serde_json::to_value(resumed).expect("serialisable"))
                    .with_header("location", location),
            )
        }
        Err(ResumeError::NotFound) => Err(Problem::not_found(&format!("project {id}"))),
        Err(ResumeError::Refused(why)) => Err(Problem::conflict(why)),
        Err(ResumeError::Unavailable(e)) => Err(e.into()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    #[serde(default)]
    scopes: Option<Vec<String>>,
}

const SCOPES: [&str; 2] = ["read", "write"];

async fn issue_key(api: &Api, id: &str, req: &ApiRequest) -> Handled {
    let id = path_id(id)?;
    let request = if req.body.iter().all(u8::is_ascii_whitespace) {
        NewKey { scopes: None }
    } else {
        json_body::<NewKey>(req)?
    };
    let scopes = request
        .scopes
        .unwrap_or_else(|| SCOPES.iter().map(|s| s.to_string()).collect());
    let mut unique = scopes.clone();
    unique.sort();
    unique.dedup();
    if scopes.is_empty()
        || unique.len() != scopes.len()
        || !scopes.iter().all(|s| SCOPES.contains(&s.as_str()))
    {
        return Err(Problem::bad_request(
            Some("scopes"),
            "scopes: must be 1 or 2 distinct values of: read, write",
        ));
    }
    match api_keys::issue_key(&api.pipeline, id, scopes).await {
        Ok(key) => {
            use secrecy::ExposeSecret;
            let location = format!("/projects/{id}/api-keys/{}", key.id);
            let body = json!({
                "id": key.id,
                "prefix": key.prefix,
                "scopes": key.scopes,
                "created_at": key.created_at,
                "key": key.key.expose_secret(),
                "secret_name": key.secret_name,
            });
            Ok(ApiResponse::json(201, body).with_header("location", location))
        }
        Err(e) => Err(key_problem(e, id)),
    }
}

fn key_problem(e: KeyError, id: Uuid) -> Problem {
    match e {
        KeyError::ProjectNotFound => Problem::not_found(&format!("project {id}")),
        KeyError::KeyNotFound => Problem::not_found("api key"),
        KeyError::Conflict(detail) => Problem::conflict(detail),
        KeyError::Failed(e) => e.into(),
    }
}

async fn revoke_key(api: &Api, id: &str, key_id: &str) -> Handled {
    let id = path_id(id)?;
    if key_id.len() != 16
        || !key_id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(Problem::bad_request(
            Some("key_id"),
            "key_id: must be 16 lowercase hex digits",
        ));
    }
    api_keys::revoke_key(&api.pipeline, id, key_id)
        .await
        .map_err(|e| key_problem(e, id))?;
    Ok(ApiResponse::empty(204))
}

async fn list_jobs(api: &Api, req: &ApiRequest) -> Handled {
    let (mut status, mut limit, mut cursor) = (None, 20_i64, None);
    for (name, value) in &req.query {
        match name.as_str() {
            "status" => {
                if !["running", "succeeded", "failed"].contains(&value.as_str()) {
                    return Err(Problem::bad_request(
                        Some("status"),
                        "status: must be one of running, succeeded, failed",
                    ));
                }
                status = Some(value.clone());
            }
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|l| (1..=100).contains(l))
                    .ok_or_else(|| {
                        Problem::bad_request(
                            Some("limit"),
                            "limit: must be an integer from 1 to 100",
                        )
                    })?;
            }
            "cursor" => {
                cursor = Some(report::JobCursor::decode(value).ok_or_else(|| {
                    Problem::bad_request(Some("cursor"), "cursor: not a cursor this API returned")
                })?);
            }
            other => {
                return Err(Problem::bad_request(
                    Some(other),
                    format!("{}: unknown query parameter", truncate(other)),
                ))
            }
        }
    }
    let db = api.db().await?;
    let page = report::list_jobs(&db, status.as_deref(), limit, cursor).await?;
    Ok(ApiResponse::json(
        200,
        serde_json::to_value(page).expect("serialisable"),
    ))
}

async fn admin_summary(api: &Api, req: &ApiRequest) -> Handled {
    let mut stuck_after = api.pipeline.settings.stalled_after();
    for (name, value) in &req.query {
        match name.as_str() {
            "stuck_after_seconds" => {
                let seconds: u64 = value
                    .parse()
                    .ok()
                    .filter(|s| (1..=604_800).contains(s))
                    .ok_or_else(|| {
                        Problem::bad_request(
                            Some("stuck_after_seconds"),
                            "stuck_after_seconds: must be an integer from 1 to 604800",
                        )
                    })?;
                stuck_after = std::time::Duration::from_secs(seconds);
            }
            other => {
                return Err(Problem::bad_request(
                    Some(other),
                    format!("{}: unknown query parameter", truncate(other)),
                ))
            }
        }
    }
    let db = api.db().await?;
    let summary = report::admin_summary(&db, stuck_after).await?;
    Ok(ApiResponse::json(
        200,
        serde_json::to_value(summary).expect("serialisable"),
    ))
}
