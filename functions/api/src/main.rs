//! The control-plane HTTP API function: wiring only, the routes live in the shared crate.

use lambda_http::{run, service_fn, Error};
use provisioning::api::lambda::ApiFunction;
use provisioning::telemetry;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let api = ApiFunction::from_env().await?;
    run(service_fn(|request| api.handle(request))).await
}
