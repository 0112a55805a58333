//! Lambda entry point of grant-management: everything else is in lib.rs.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    credvault::http::run_lambda(grant_management::GrantManagement::new).await
}
