use crate::domain::Service;
use crate::error::StageError;
use crate::ports::{Registration, RegistrationRequest, ServiceRegistrar};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;
use uuid::Uuid;

/// Registers projects by POSTing to each service's configured URL.
///
/// 2xx: registered (the body may name an id and endpoint); 409: already
/// registered; 408, 429 and 5xx, timeouts and connection failures: retryable;
/// any other 4xx: permanent.
#[derive(Clone, Debug)]
pub struct HttpRegistrar {
    client: OnceLock<reqwest::Client>,
    timeout: Duration,
    urls: HashMap<Service, String>,
}

impl HttpRegistrar {
    pub fn new(urls: HashMap<Service, String>, timeout: Duration) -> HttpRegistrar {
        HttpRegistrar {
            client: OnceLock::new(),
            timeout,
            urls,
        }
    }

    /// The HTTP client is built on the first registration, not at cold start:
    /// it loads the system trust store, which only register-services needs.
    fn client(&self) -> Result<&reqwest::Client, StageError> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let client = crate::tls::http_client()
            .and_then(|builder| {
                builder
                    .timeout(self.timeout)
                    .connect_timeout(self.timeout)
                    .build()
                    .map_err(|e| e.to_string())
            })
            .map_err(|e| StageError::permanent(format!("building the HTTP client: {e}")))?;
        Ok(self.client.get_or_init(|| client))
    }
}

impl HttpRegistrar {
    /// Sends a request; transport failures are retryable and name what was tried.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<reqwest::Response, StageError> {
        request.send().await.map_err(|e| {
            let kind = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "connection failed"
            } else {
                "request failed"
            };
            StageError::retryable(format!("{what}: {kind}")).with_source(e)
        })
    }

    /// `POST {url}/{project}/{action}` or `DELETE {url}/{project}`: 2xx done,
    /// 404 "nothing there" (done when `missing_is_done`), else as `refusal`.
    async fn project_call(
        &self,
        service: Service,
        method: reqwest::Method,
        project_id: Uuid,
        action: Option<&str>,
        correlation_id: Uuid,
        missing_is_done: bool,
    ) -> Result<(), StageError> {
        let Some(url) = self.urls.get(&service) else {
            return Ok(());
        };
        let target = match action {
            Some(action) => format!("{}/{project_id}/{action}", url.trim_end_matches('/')),
            None => format!("{}/{project_id}", url.trim_end_matches('/')),
        };
        let what = format!("{} {service} registration", action.unwrap_or("removing"));
        let request = self
            .client()?
            .request(method, target)
            .header("X-Correlation-Id", correlation_id.to_string());
        let status = self.send(request, &what).await?.status();
        if status.is_success() || (missing_is_done && status == reqwest::StatusCode::NOT_FOUND) {
            return Ok(());
        }
        Err(refusal(status, &what))
    }
}

/// A non-2xx answer: 408, 429 and 5xx are retryable, any other status permanent.
fn refusal(status: reqwest::StatusCode, what: &str) -> StageError {
    let message = format!("{what}: HTTP {}", status.as_u16());
    if status.is_server_error()
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
    {
        StageError::retryable(message)
    } else {
        StageError::permanent(message)
    }
}

#[async_trait]
impl ServiceRegistrar for HttpRegistrar {
    fn is_configured(&self, service: Service) -> bool {
        self.urls.contains_key(&service)
    }

    async fn register(&self, request: &RegistrationRequest) -> Result<Registration, StageError> {
        let service = request.service;
        let Some(url) = self.urls.get(&service) else {
            return Ok(Registration::default());
        };
        let what = format!("registering with {service}");
        let call = self
            .client()?
            .post(url)
            .header(
                "Idempotency-Key",
                format!("{}:{service}", request.project_id),
            )
            .header("X-Correlation-Id", request.correlation_id.to_string())
            .json(request);
        let response = self.send(call, &what).await?;
        let status = response.status();
        if status.is_success() {
            // A body we cannot read as a registration still means "registered".
            let body = response.bytes().await.unwrap_or_default();
            return Ok(serde_json::from_slice(&body).unwrap_or_default());
        }
        if status == reqwest::StatusCode::CONFLICT {
            return Ok(Registration::default());
        }
        Err(refusal(status, &what))
    }

    /// `POST {url}/{project_id}/suspend` or `.../resume`. Suspending a
    /// registration the service does not have (404) is done; resuming one is not.
    async fn set_enabled(
        &self,
        service: Service,
        project_id: Uuid,
        enabled: bool,
        correlation_id: Uuid,
    ) -> Result<(), StageError> {
        let action = if enabled { "resume" } else { "suspend" };
        self.project_call(
            service,
            reqwest::Method::POST,
            project_id,
            Some(action),
            correlation_id,
            !enabled,
        )
        .await
    }

    /// `DELETE {url}/{project_id}`; 404 means already removed.
    async fn deregister(
        &self,
        service: Service,
        project_id: Uuid,
        correlation_id: Uuid,
    ) -> Result<(), StageError> {
        self.project_call(
            service,
            reqwest::Method::DELETE,
            project_id,
            None,
            correlation_id,
            true,
        )
        .await
    }
}
