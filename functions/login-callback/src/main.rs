//! Lambda entry point of login-callback: everything else is in lib.rs.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    credvault::http::run_lambda(login_callback::LoginCallback::new).await
}
