//! The migrate function: wiring only; applies the control-plane migrations on
//! deploy (CloudFormation custom resource) or when invoked directly.

use lambda_runtime::{run, service_fn, Error};
use provisioning::migrate::MigrateFunction;
use provisioning::telemetry;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let function = MigrateFunction::from_env().await?;
    run(service_fn(|event| function.handle(event))).await
}
