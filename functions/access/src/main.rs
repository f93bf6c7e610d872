//! The access function (suspend, resume, delete, restore: access made to match the status): wiring only, the logic lives in the shared crate.

use lambda_runtime::{run, service_fn, Error};
use provisioning::{telemetry, Role, Stage, StageFunction};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let function = StageFunction::from_env(Role::Stage(Stage::Access)).await?;
    run(service_fn(|event| function.handle(event))).await
}
