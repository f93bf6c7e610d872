//! API Gateway (HTTP API, payload v2) adapter for the API.

use super::{handle, Api, ApiRequest, ApiResponse};
use crate::config::Settings;
use crate::pipeline::Pipeline;
use lambda_http::{Body, Request, RequestExt, Response};

pub type Error = lambda_runtime::Error;

/// The API Lambda: built once per cold start.
#[derive(Clone)]
pub struct ApiFunction {
    api: Api,
}

impl ApiFunction {
    pub async fn from_env() -> Result<ApiFunction, Error> {
        let settings = Settings::from_env()?;
        Ok(ApiFunction::new(Pipeline::from_settings(settings).await?))
    }

    pub fn new(pipeline: Pipeline) -> ApiFunction {
        ApiFunction {
            api: Api { pipeline },
        }
    }

    /// The Lambda handler.
    pub async fn handle(&self, request: Request) -> Result<Response<Body>, Error> {
        let response = handle(&self.api, to_api_request(&request)).await;
        Ok(to_lambda_response(response)?)
    }
}

pub fn to_api_request(request: &Request) -> ApiRequest {
    let parameters = request.query_string_parameters();
    let mut query = Vec::new();
    for (name, _) in parameters.iter() {
        for value in parameters.all(name).unwrap_or_default() {
            query.push((name.to_owned(), value.to_owned()));
        }
    }
    query.dedup();
    let headers = request
        .headers()
        .iter()
        .filter_map(|(name, value)| {
            Some((
                name.as_str().to_ascii_lowercase(),
                value.to_str().ok()?.to_owned(),
            ))
        })
        .collect();
    let body = match request.body() {
        Body::Empty => Vec::new(),
        Body::Text(text) => text.as_bytes().to_vec(),
        Body::Binary(bytes) => bytes.clone(),
        _ => Vec::new(),
    };
    ApiRequest {
        method: request.method().as_str().to_owned(),
        path: request.raw_http_path().to_owned(),
        query,
        headers,
        body,
    }
}

pub fn to_lambda_response(
    response: ApiResponse,
) -> Result<Response<Body>, lambda_http::http::Error> {
    let mut builder = Response::builder().status(response.status);
    for (name, value) in &response.headers {
        builder = builder.header(name, value);
    }
    let body = match response.body {
        Some(json) => Body::Text(json.to_string()),
        None => Body::Empty,
    };
    builder.body(body)
}
