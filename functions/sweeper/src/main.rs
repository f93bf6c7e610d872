//! The sweeper function: wiring only, the logic lives in the shared crate.

use lambda_runtime::{run, service_fn, Error};
use provisioning::{sweeper::Sweeper, telemetry};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let sweeper = Sweeper::from_env().await?;
    run(service_fn(|event| sweeper.handle(event))).await
}
