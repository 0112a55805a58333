//! The one-off security migration of a vault stored before the access-control rules (see
//! `credvault::migration` and the README, "Upgrading a vault stored before these rules").
//!
//! Run it with your own AWS credentials and the function's settings, e.g.
//! `CREDVAULT_TABLE=... CREDVAULT_DATA_KEY_ID=... CREDVAULT_SIGNING_KEY_ID=... CREDVAULT_ISSUER=https://vault.example.com \
//!  cargo run -p grant-management --bin migrate-security`. It prints a JSON report; running it again is harmless.

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = credvault::Config::from_env()?;
    let instance = credvault::Instance::from_config(config).await?;
    let report = credvault::migration::migrate(&instance.table, &instance.envelope, instance.clock.as_ref()).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
