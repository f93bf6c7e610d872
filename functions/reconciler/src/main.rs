//! The reconciler function: wiring only, the logic lives in the shared crate.

use lambda_runtime::{run, service_fn, Error};
use provisioning::{reconcile::Reconciler, telemetry};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let reconciler = Reconciler::from_env().await?;
    run(service_fn(|event| reconciler.handle(event))).await
}
