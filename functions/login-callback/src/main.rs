//! Lambda entry point of login-callback: logging, config and clients, then the Lambda runtime
//! serving the router of lib.rs.

use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    credvault::telemetry::init();
    let config = credvault::Config::from_env()?;
    let instance = credvault::Instance::from_config(config).await?;
    let login = Arc::new(instance.login_flow());
    let allowed_origins = instance.config.allowed_origins();
    lambda_http::run(credvault::http::service(login_callback::router(
        login,
        &allowed_origins,
    )))
    .await
}
