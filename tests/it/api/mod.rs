//! The control-plane API against the real stack, by concern: every route
//! through its sample API Gateway event checked against openapi.yaml, the
//! Idempotency-Key, the caller as the actor, a table of bad requests that change nothing, retry, keys,
//! paging, concurrency on the local HTTP API, stuck projects.

mod bad_requests;
mod callers;
mod concurrency;
mod contract;
mod idempotency;
mod jobs;
mod keys;
mod retry;
mod stuck;
