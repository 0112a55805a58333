//! Lambda entry point of grant-management: logging, config and clients, then the Lambda runtime
//! serving the router of lib.rs.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    credvault::telemetry::init();
    let config = credvault::Config::from_env()?;
    let instance = credvault::Instance::from_config(config).await?;
    let app = grant_management::GrantManagement::new(&instance);
    lambda_http::run(credvault::http::service(grant_management::router(app))).await
}
