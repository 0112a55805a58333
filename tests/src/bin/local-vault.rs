//! `make dev`: the whole vault on 127.0.0.1 with a demo provider, and the demo app on its own origin.

use std::time::Duration;

use credvault::config::RefreshTiming;
use credvault_tests::{LocalStack, StackOptions};

/// What the demo provider's access tokens live (README, "The two commands").
const DEMO_TOKEN_LIFETIME_SECS: i64 = 120;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
        .init();
    let port: u16 = std::env::var("CREDVAULT_DEV_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080);
    let stack = LocalStack::start(StackOptions {
        port,
        demo_app_port: Some(port + 1),
        refresh: RefreshTiming::default(),
        ..StackOptions::default()
    })
    .await;
    // Provider tokens that live two minutes, so a person sees refreshes happen: a fetch refreshes once
    // less than the asked-for validity is left, and asking is capped at half the lifetime (60 s).
    stack
        .provider
        .set_knobs(|k| k.access_token_lifetime_secs = DEMO_TOKEN_LIFETIME_SECS);
    println!();
    println!("credvault is running on {}", stack.base_url);
    let demo_url = stack.demo_url.clone().unwrap_or_default();
    println!("  demo app:       {demo_url}/  (its own origin, on the Authress login SDK)");
    println!(
        "  JWKS:           {}/.well-known/openid-configuration/jwks",
        stack.base_url
    );
    println!(
        "  demo provider:  {} (connection {})",
        stack.provider.issuer(),
        stack.connection_id
    );
    println!("  AWS emulator:   {} (table {})", stack.aws.endpoint, stack.aws.table);
    println!("  demo admin access key (local only; use it with the Authress SDK's ServiceClientTokenProvider):");
    println!("    {}", stack.admin_key);
    println!("Press Ctrl-C to stop.");
    let _ = tokio::signal::ctrl_c().await;
    tokio::time::sleep(Duration::from_millis(10)).await;
}
