//! Lets logins through another connection make an existing user id: the explicit link an operator
//! makes when one person signs in through two providers (see the README, "Identity namespaces").
//!
//! `cargo run -p grant-management --bin link-identity -- <userId> <connectionId>`, with your own AWS
//! credentials and the function's settings. Without a link such a login fails with `identity_conflict`.

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(user_id), Some(connection_id)) = (args.next(), args.next()) else {
        return Err("usage: link-identity <userId> <connectionId>".into());
    };
    let config = credvault::Config::from_env()?;
    let instance = credvault::Instance::from_config(config).await?;
    credvault::store::identities::link_checked(&instance.table, &user_id, &connection_id).await?;
    eprintln!("Logins through {connection_id} may now make the user id {user_id}.");
    Ok(())
}
