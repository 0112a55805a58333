//! Lambda entry point of credential-webhooks: logging, the URL and the signing secret (read once),
//! then the Lambda runtime invoking lib.rs on every batch of the webhook queue's messages.

use lambda_http::lambda_runtime::{self, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    credvault::telemetry::init();
    let sender = credential_webhooks::WebhookSender::from_env().await?;
    let clock = credvault::clock::SystemClock;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async {
        Ok::<_, lambda_http::Error>(credential_webhooks::handle(&sender, &clock, event).await)
    }))
    .await
}
