//! Adapters behind the ports: AWS SQS, EventBridge and Secrets Manager, and HTTP, and the
//! in-memory ones the benchmark's floor uses.

pub mod eventbridge;
pub mod http;
pub mod memory;
pub mod secrets_manager;
pub mod sqs;

use crate::error::StageError;
use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};

/// Classifies an AWS SDK failure: throttling, 5xx, timeouts and transport
/// failures can pass; anything else the service rejected will not.
pub(crate) fn classify_sdk_error<E>(what: &str, err: SdkError<E, HttpResponse>) -> StageError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let error = classify_sdk(what, &err);
    error.with_source(err)
}

fn classify_sdk<E>(what: &str, err: &SdkError<E, HttpResponse>) -> StageError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let code = ctx.err().code().unwrap_or("unknown");
            let message = format!("{what}: {code} (HTTP {status})");
            if status >= 500
                || status == 429
                || code.contains("Throttl")
                || code.contains("TooManyRequests")
            {
                StageError::retryable(message)
            } else {
                StageError::permanent(message)
            }
        }
        SdkError::TimeoutError(_) => StageError::retryable(format!("{what}: timed out")),
        SdkError::DispatchFailure(f) => {
            StageError::retryable(format!("{what}: dispatch failure: {f:?}"))
        }
        SdkError::ResponseError(_) => StageError::retryable(format!("{what}: unreadable response")),
        _ => StageError::retryable(format!(
            "{what}: request failed: {}",
            aws_sdk_sqs::error::DisplayErrorContext(err)
        )),
    }
}

/// Builds the shared AWS configuration once per cold start. Honours
/// `AWS_ENDPOINT_URL` so local runs reach moto.
pub async fn aws_config() -> aws_config::SdkConfig {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    let https = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(https)
        .load()
        .await
}
