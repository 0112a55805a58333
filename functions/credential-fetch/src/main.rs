//! Lambda entry point of credential-fetch: logging, config and clients, then the Lambda runtime
//! serving the router of lib.rs.

use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    credvault::telemetry::init();
    let config = credvault::Config::from_env()?;
    let services = Arc::new(credvault::Services::from_config(config).await?);
    lambda_http::run(credvault::http::service(credential_fetch::router(services))).await
}
