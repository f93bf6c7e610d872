//! The control-plane HTTP API function: wiring only, the routes live in the shared crate.

use lambda_http::{run, Error};
use provisioning::api::lambda::router_from_env;
use provisioning::telemetry;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    run(router_from_env().await?).await
}
