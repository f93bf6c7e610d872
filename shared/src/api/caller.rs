//! Who is calling: the IAM principal API Gateway authenticated the request
//! with (`requestContext.authorizer.iam`), recorded as the actor of every
//! change the request makes and scoping its `Idempotency-Key`.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use lambda_http::request::RequestContext;
use std::convert::Infallible;

/// The actor of a request that did not come through API Gateway (the local
/// server, the tests' direct calls): there is no principal to name.
pub const LOCAL: &str = "local";

/// The caller's IAM principal ARN (`userArn`, else `callerId`), or `local`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub String);

impl Caller {
    pub fn of(context: Option<&RequestContext>) -> Caller {
        let principal = match context {
            Some(RequestContext::ApiGatewayV2(ctx)) => ctx
                .authorizer
                .as_ref()
                .and_then(|a| a.iam.as_ref())
                .and_then(|iam| iam.user_arn.clone().or_else(|| iam.caller_id.clone())),
            _ => None,
        };
        Caller(principal.unwrap_or_else(|| LOCAL.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Caller::of(parts.extensions.get::<RequestContext>()))
    }
}
