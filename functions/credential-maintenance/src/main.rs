//! Lambda entry point of credential-maintenance: logging, config and clients, then the Lambda runtime
//! invoking the keep-alive run of lib.rs on every scheduled event.

use lambda_http::lambda_runtime::{self, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    credvault::telemetry::init();
    let config = credvault::Config::from_env()?;
    let instance = credvault::Instance::from_config(config).await?;
    let keep_alive = instance.keep_alive();
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        credential_maintenance::handle(&keep_alive, event)
    }))
    .await
}
