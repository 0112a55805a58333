//! Lambda entry point of credential-fetch: logging, config and clients, then the Lambda runtime
//! serving the router of lib.rs.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    credvault::telemetry::init();
    // Reads are audited by INFO lines on this function's log: a filter above INFO would drop them.
    credvault::audit::check_log_level(std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().as_deref())?;
    let config = credvault::Config::from_env()?;
    let instance = credvault::Instance::from_config(config).await?;
    let app = credential_fetch::CredentialFetch::new(&instance);
    let allowed_origins = instance.config.allowed_origins();
    lambda_http::run(credvault::http::service(credential_fetch::router(
        app,
        &allowed_origins,
    )))
    .await
}
