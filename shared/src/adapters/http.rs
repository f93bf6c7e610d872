use crate::domain::Service;
use crate::error::StageError;
use crate::ports::{Registration, RegistrationRequest, ServiceRegistrar};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

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
        let response = self
            .client()?
            .post(url)
            .header(
                "Idempotency-Key",
                format!("{}:{service}", request.project_id),
            )
            .header("X-Correlation-Id", request.correlation_id.to_string())
            .json(request)
            .send()
            .await
            .map_err(|e| {
                let kind = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "connection failed"
                } else {
                    "request failed"
                };
                StageError::retryable(format!("{what}: {kind}")).with_source(e)
            })?;
        let status = response.status();
        if status.is_success() {
            // A body we cannot read as a registration still means "registered".
            let body = response.bytes().await.unwrap_or_default();
            return Ok(serde_json::from_slice(&body).unwrap_or_default());
        }
        if status == reqwest::StatusCode::CONFLICT {
            return Ok(Registration::default());
        }
        let message = format!("{what}: HTTP {}", status.as_u16());
        if status.is_server_error()
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || status == reqwest::StatusCode::REQUEST_TIMEOUT
        {
            Err(StageError::retryable(message))
        } else {
            Err(StageError::permanent(message))
        }
    }
}
