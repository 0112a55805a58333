//! Lambda entry point of credential-events: logging, the EventBridge client and bus, then the Lambda
//! runtime invoking lib.rs on every batch of stream records.

use lambda_http::lambda_runtime::{self, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    credvault::telemetry::init();
    let publisher = credvault::lifecycle::EventPublisher::from_env().await;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        credential_events::handle(&publisher, event)
    }))
    .await
}
