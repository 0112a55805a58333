//! Lambda entry point of grant-management: logging, config and clients, then the Lambda runtime
//! serving the router of lib.rs.

use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    credvault::telemetry::init();
    let config = credvault::Config::from_env()?;
    let services = Arc::new(credvault::Services::from_config(config).await?);
    lambda_http::run(credvault::http::service(grant_management::router(services))).await
}
