//! One handler per route. Handlers check the request, call the shared domain
//! functions and map their outcomes to statuses. A request that fails writes
//! nothing: no row, no message, no secret. Every refusal, including those of
//! the routing itself (404, 405 with `Allow`) and of reading the body (413), is
//! an `application/problem+json` answer.

use super::caller::Caller;
use super::{Api, Problem, MAX_BODY_BYTES};
use crate::api_keys::{self, KeyError};
use crate::cluster::{self, ClusterChange, NewCluster, RegisterError};
use crate::domain::NewProject;
use crate::idempotency;
use crate::lifecycle::{self, LifecycleError, Operation};
use crate::project::{self, CreateProjectError, Creation, RequestKey, ResumeError};
use crate::report;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

type Handled = Result<Response, Problem>;

/// A JSON answer with a status and, where given, a `Location`.
fn reply(status: u16, body: &impl Serialize, location: Option<String>) -> Response {
    let mut response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(location) = location {
        response = response.header(header::LOCATION, location);
    }
    response
        .body(Body::from(
            serde_json::to_vec(body).expect("a response body serialises"),
        ))
        .expect("a valid response")
}

/// Seconds a client is asked to wait before looking at a project that is
/// still moving (`Retry-After` on 202 answers and on `GET /projects/{id}`).
pub const RETRY_AFTER_SECONDS: u32 = 2;

/// `Retry-After` added: the work goes on in the background.
fn moving(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::RETRY_AFTER,
        header::HeaderValue::from(RETRY_AFTER_SECONDS),
    );
    response
}

/// The body as read by the transport; a refusal (too large to read) is a problem.
fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, Problem> {
    body.map_err(|rejection| {
        let status = rejection.status().as_u16();
        if status == 413 {
            too_large()
        } else {
            Problem::bad_request(Some("body"), format!("body: {}", rejection.body_text()))
        }
    })
}

fn too_large() -> Problem {
    Problem::new(
        413,
        "too-large",
        "Payload too large",
        format!("body is larger than {MAX_BODY_BYTES} bytes"),
    )
}

/// Unmatched paths.
pub(super) async fn not_found(uri: Uri) -> Problem {
    Problem::not_found(&format!("route {}", truncate(uri.path())))
}

/// A known path with a method it does not take; axum adds `Allow`.
pub(super) async fn method_not_allowed(method: Method) -> Problem {
    Problem::new(
        405,
        "method-not-allowed",
        "Method not allowed",
        format!("{method} is not allowed here; see the Allow header"),
    )
}

/// The query's parameters, percent-decoded, in order.
fn query_pairs(raw: Option<String>) -> Vec<(String, String)> {
    raw.map(|q| {
        form_urlencoded::parse(q.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    })
    .unwrap_or_default()
}

fn path_id(id: &str) -> Result<Uuid, Problem> {
    id.parse().map_err(|_| {
        Problem::bad_request(Some("id"), format!("id: '{}' is not a UUID", truncate(id)))
    })
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

fn correlation_id(headers: &HeaderMap) -> Option<Uuid> {
    headers
        .get("x-correlation-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Body checks shared by every route that takes JSON: size, media type, syntax,
/// shape. Shape errors name the offending field.
fn json_body<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, Problem> {
    if body.len() > MAX_BODY_BYTES {
        return Err(too_large());
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
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
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b == b'[') {
        return Err(Problem::bad_request(
            Some("body"),
            "body: must be a JSON object",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
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

pub(super) async fn create_project(
    State(api): State<Api>,
    caller: Caller,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Handled {
    let body = body_bytes(body)?;
    let key = match headers.get("idempotency-key").map(|k| k.to_str()) {
        Some(Ok(k)) if idempotency::is_valid_key(k) => Some(RequestKey {
            caller: caller.0.clone(),
            key: k.to_owned(),
            request_hash: idempotency::request_hash("POST", uri.path(), &body),
        }),
        Some(_) => {
            return Err(Problem::bad_request(
                Some("Idempotency-Key"),
                "Idempotency-Key: must be 1 to 255 visible ASCII characters",
            ))
        }
        None => None,
    };
    let request: NewProject = json_body(&headers, &body)?;
    let creation = project::create_project_keyed(
        &api.pipeline.db,
        api.pipeline.destinations(),
        &request,
        correlation_id(&headers),
        key.as_ref(),
        caller.as_str(),
    )
    .await;
    match creation {
        Ok(Creation::Created(created)) => Ok(moving(reply(
            202,
            &created.response_body(),
            Some(created.location()),
        ))),
        Ok(Creation::Replayed { status, body }) => {
            let location = body
                .get("location")
                .and_then(|l| l.as_str())
                .map(str::to_owned);
            let mut response = moving(reply(status, &body, location));
            response.headers_mut().insert(
                "idempotent-replayed",
                header::HeaderValue::from_static("true"),
            );
            Ok(response)
        }
        Err(CreateProjectError::Invalid(v)) => Err(Problem::invalid(v.field, v.rule)),
        Err(CreateProjectError::KeyReused) => Err(Problem::invalid(
            "Idempotency-Key",
            "was already used with a different request body",
        )),
        Err(CreateProjectError::Unavailable(e)) => Err(e.into()),
    }
}

pub(super) async fn get_project(State(api): State<Api>, Path(id): Path<String>) -> Handled {
    let id = path_id(&id)?;
    let db = api.db().await?;
    let report = report::load_project_report(&db, id)
        .await?
        .ok_or_else(|| Problem::not_found(&format!("project {id}")))?;
    let response = reply(200, &report, None);
    Ok(if report.is_moving() {
        moving(response)
    } else {
        response
    })
}

/// `GET /projects/{id}/audit?limit=&cursor=`: the project's audit entries,
/// newest first, keyset-paged.
pub(super) async fn project_audit(
    State(api): State<Api>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Handled {
    let id = path_id(&id)?;
    let (mut limit, mut before) = (50_i64, None);
    for (name, value) in &query_pairs(query) {
        match name.as_str() {
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|l| (1..=200).contains(l))
                    .ok_or_else(|| {
                        Problem::bad_request(
                            Some("limit"),
                            "limit: must be an integer from 1 to 200",
                        )
                    })?;
            }
            "cursor" => {
                before = Some(
                    value
                        .parse::<i64>()
                        .ok()
                        .filter(|c| *c > 0)
                        .ok_or_else(|| {
                            Problem::bad_request(
                                Some("cursor"),
                                "cursor: not a cursor this API returned",
                            )
                        })?,
                );
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
    let page = report::audit_page(&db, id, limit, before)
        .await?
        .ok_or_else(|| Problem::not_found(&format!("project {id}")))?;
    Ok(reply(200, &page, None))
}

/// An empty body, or a JSON object with no fields.
fn empty_body(headers: &HeaderMap, body: &[u8]) -> Result<(), Problem> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Nothing {}
    json_body::<Nothing>(headers, body).map(|_| ())
}

pub(super) async fn retry_project(
    State(api): State<Api>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Handled {
    let id = path_id(&id)?;
    empty_body(&headers, &body_bytes(body)?)?;
    match project::resume_project(&api.pipeline, id, correlation_id(&headers), caller.as_str())
        .await
    {
        Ok(resumed) => Ok(moving(reply(
            202,
            &resumed,
            Some(format!("/projects/{id}")),
        ))),
        Err(ResumeError::NotFound) => Err(Problem::not_found(&format!("project {id}"))),
        Err(ResumeError::Refused(why)) => Err(Problem::conflict(why)),
        Err(ResumeError::Unavailable(e)) => Err(e.into()),
    }
}

/// Starts a lifecycle operation: 202 with the run, 404, or 409 naming why not.
async fn start_operation(
    api: &Api,
    caller: &Caller,
    id: Uuid,
    op: Operation,
    headers: &HeaderMap,
) -> Handled {
    match lifecycle::start(
        &api.pipeline,
        id,
        op,
        correlation_id(headers),
        caller.as_str(),
    )
    .await
    {
        Ok(started) => Ok(moving(reply(
            202,
            &started,
            Some(format!("/projects/{id}")),
        ))),
        Err(LifecycleError::NotFound) => Err(Problem::not_found(&format!("project {id}"))),
        Err(LifecycleError::Refused(why)) => Err(Problem::conflict(why)),
        Err(LifecycleError::Unavailable(e)) => Err(e.into()),
    }
}

/// `POST /projects/{id}/{suspend|resume|restore}` with an empty body.
async fn operation_route(
    api: Api,
    caller: Caller,
    id: String,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    op: Operation,
) -> Handled {
    let id = path_id(&id)?;
    empty_body(&headers, &body_bytes(body)?)?;
    start_operation(&api, &caller, id, op, &headers).await
}

pub(super) async fn suspend_project(
    State(api): State<Api>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Handled {
    operation_route(api, caller, id, headers, body, Operation::Suspend).await
}

pub(super) async fn resume_project(
    State(api): State<Api>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Handled {
    operation_route(api, caller, id, headers, body, Operation::Resume).await
}

pub(super) async fn restore_project(
    State(api): State<Api>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Handled {
    operation_route(api, caller, id, headers, body, Operation::Restore).await
}

/// `DELETE /projects/{id}[?purge=now]`.
pub(super) async fn delete_project(
    State(api): State<Api>,
    caller: Caller,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Handled {
    let id = path_id(&id)?;
    let mut purge_now = false;
    for (name, value) in &query_pairs(query) {
        match name.as_str() {
            "purge" if value == "now" => purge_now = true,
            "purge" => {
                return Err(Problem::bad_request(
                    Some("purge"),
                    "purge: the only value is 'now'",
                ))
            }
            other => {
                return Err(Problem::bad_request(
                    Some(other),
                    format!("{}: unknown query parameter", truncate(other)),
                ))
            }
        }
    }
    start_operation(&api, &caller, id, Operation::Delete { purge_now }, &headers).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    #[serde(default)]
    scopes: Option<Vec<String>>,
}

pub(super) async fn issue_key(
    State(api): State<Api>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Handled {
    let id = path_id(&id)?;
    let body = body_bytes(body)?;
    let request = if body.iter().all(u8::is_ascii_whitespace) {
        NewKey { scopes: None }
    } else {
        json_body::<NewKey>(&headers, &body)?
    };
    let scopes = request
        .scopes
        .unwrap_or_else(|| crate::keys::SCOPES.iter().map(|s| s.to_string()).collect());
    let mut unique = scopes.clone();
    unique.sort();
    unique.dedup();
    if scopes.is_empty()
        || unique.len() != scopes.len()
        || !scopes
            .iter()
            .all(|s| crate::keys::SCOPES.contains(&s.as_str()))
    {
        return Err(Problem::bad_request(
            Some("scopes"),
            "scopes: must be 1 or 2 distinct values of: read, write",
        ));
    }
    match api_keys::issue_key(&api.pipeline, id, scopes, caller.as_str()).await {
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
            Ok(reply(201, &body, Some(location)))
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

pub(super) async fn revoke_key(
    State(api): State<Api>,
    caller: Caller,
    Path((id, key_id)): Path<(String, String)>,
) -> Handled {
    let id = path_id(&id)?;
    let key_id = key_id.as_str();
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
    api_keys::revoke_key(&api.pipeline, id, key_id, caller.as_str())
        .await
        .map_err(|e| key_problem(e, id))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn list_jobs(State(api): State<Api>, RawQuery(query): RawQuery) -> Handled {
    let (mut status, mut limit, mut cursor, mut kind) = (None, 20_i64, None, None);
    for (name, value) in &query_pairs(query) {
        match name.as_str() {
            "kind" => {
                let parsed: crate::domain::RunKind =
                    value.parse().map_err(|e: crate::domain::UnknownRunKind| {
                        Problem::bad_request(Some("kind"), format!("kind: {e}"))
                    })?;
                kind = Some(parsed.as_str());
            }
            "status" => {
                if !["running", "succeeded", "failed", "cancelled"].contains(&value.as_str()) {
                    return Err(Problem::bad_request(
                        Some("status"),
                        "status: must be one of running, succeeded, failed, cancelled",
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
    let page = report::list_jobs(&db, status.as_deref(), kind, limit, cursor).await?;
    Ok(reply(200, &page, None))
}

pub(super) async fn admin_summary(State(api): State<Api>, RawQuery(query): RawQuery) -> Handled {
    let mut stuck_after = api.pipeline.settings.stalled_after();
    for (name, value) in &query_pairs(query) {
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
    Ok(reply(200, &summary, None))
}

fn register_problem(e: RegisterError) -> Problem {
    match e {
        RegisterError::Invalid(v) => Problem::invalid(v.field, v.rule),
        RegisterError::Refused { field, detail } => Problem::new(
            422,
            "cluster-unverified",
            "Cluster credentials not proven",
            detail,
        )
        .field(field),
        RegisterError::Exists(id) => {
            Problem::conflict(format!("cluster {id} is already registered"))
        }
        RegisterError::Unavailable(e) => e.into(),
    }
}

/// The reconciler's latest report.
pub(super) async fn reconciliation(State(api): State<Api>) -> Handled {
    let db = api.db().await?;
    match crate::reconcile::latest(&db).await? {
        Some(report) => Ok(reply(200, &report, None)),
        None => Err(Problem::not_found(
            "reconciliation report (the reconciler has not run yet)",
        )),
    }
}

pub(super) async fn list_clusters(State(api): State<Api>) -> Handled {
    let db = api.db().await?;
    let clusters = cluster::list(&db).await?;
    Ok(reply(200, &json!({ "clusters": clusters }), None))
}

/// Registers a cluster once its credentials are proven. The check connects to
/// the cluster before a control-plane connection is taken, so no pooled
/// connection waits on a remote host.
pub(super) async fn register_cluster(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Handled {
    let request: NewCluster = json_body(&headers, &body_bytes(body)?)?;
    request
        .validate()
        .map_err(|v| Problem::invalid(v.field, v.rule))?;
    {
        let db = api.db().await?;
        cluster::check_region(&db, &request)
            .await
            .map_err(register_problem)?;
    }
    let verified = cluster::verify(
        &*api.pipeline.secrets,
        api.pipeline.settings.tls_root_cert.as_deref(),
        &request,
    )
    .await
    .map_err(register_problem)?;
    let db = api.db().await?;
    let registered = cluster::insert(&db, &request, &verified)
        .await
        .map_err(register_problem)?;
    tracing::info!(cluster = %registered.id, region = %registered.region, "cluster registered");
    let location = format!("/admin/clusters/{}", registered.id);
    Ok(reply(201, &registered, Some(location)))
}

pub(super) async fn change_cluster(
    State(api): State<Api>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Handled {
    if !cluster::is_valid_id(&id) {
        return Err(Problem::not_found(&format!("cluster {}", truncate(&id))));
    }
    let request: ClusterChange = json_body(&headers, &body_bytes(body)?)?;
    let (status, capacity) = request
        .validate()
        .map_err(|v| Problem::invalid(v.field, v.rule))?;
    let db = api.db().await?;
    let changed = cluster::change(&db, &id, status, capacity)
        .await?
        .ok_or_else(|| Problem::not_found(&format!("cluster {id}")))?;
    tracing::info!(cluster = %id, status = %changed.status, capacity = changed.capacity, "cluster changed");
    Ok(reply(200, &changed, None))
}
