//! Lambda entry point of credential-fetch: everything else is in lib.rs.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    credvault::http::run_lambda(credential_fetch::CredentialFetch::new).await
}
