//! Creates the first administrator of a deployed vault and prints its access key once.
//!
//! Run it with your own AWS credentials and the function's settings, e.g.
//! `CREDVAULT_TABLE=... CREDVAULT_DATA_KEY_ID=... CREDVAULT_SIGNING_KEY_ID=... CREDVAULT_ISSUER=https://vault.example.com \
//!  cargo run -p grant-management --bin bootstrap-admin -- "ops admin"`.
//! The key goes to standard output only: nothing is logged and nothing secret is stored.

use secrecy::ExposeSecret;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let name = std::env::args().nth(1).unwrap_or_else(|| "administrator".to_string());
    let config = credvault::Config::from_env()?;
    let instance = credvault::Instance::from_config(config).await?;
    let (grants, clients) = (instance.access_admin(), instance.service_client_admin());
    let (client_id, access_key) = credvault::management::bootstrap::create_admin(&grants, &clients, &name)
        .await
        .map_err(|e| format!("could not create the administrator: {}", e.error_code()))?;
    eprintln!("Created administrator service client {client_id}. Its access key follows; it is shown only this once.");
    println!("{}", access_key.expose_secret());
    Ok(())
}
