//! One vault process for the chaos suite: a gateway over one `Instance`, on a given port, as one
//! warm Lambda instance would be. Configured like the Lambda functions (`CREDVAULT_*`, read by
//! `Config::from_env`), plus:
//!
//! - `CHAOS_VAULT_PORT`: the port to serve on (127.0.0.1);
//! - `CHAOS_DYNAMODB_ENDPOINT`, `CHAOS_KMS_ENDPOINT`: where DynamoDB and KMS are (a fault proxy each,
//!   so the suite can stall one service and not the other);
//! - `CHAOS_VAULT_LOG`: a tracing filter for stderr (default `warn`).
//!
//! It prints `listening <url>` once it serves, and exits when its stdin closes, so a parent that
//! dies takes its vault processes with it.

use std::sync::Arc;

use credvault::clock::SystemClock;
use credvault::{Config, Instance};
use credvault_tests::aws::{CallCounters, vault_clients};
use credvault_tests::gateway::Gateway;
use std::io::Read;

fn required(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        eprintln!("vault-process: {name} is not set");
        std::process::exit(2)
    })
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("CHAOS_VAULT_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let port: u16 = required("CHAOS_VAULT_PORT").parse().unwrap_or(0);
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("vault-process: {e}");
            std::process::exit(2)
        }
    };
    // The same clients the in-process stack gives its instances, one service per proxy.
    let counters = Arc::new(CallCounters::default());
    let (dynamodb, _) = vault_clients(&required("CHAOS_DYNAMODB_ENDPOINT"), &counters);
    let (_, kms) = vault_clients(&required("CHAOS_KMS_ENDPOINT"), &counters);
    let instance = match Instance::from_clients(config, dynamodb, kms, Arc::new(SystemClock)) {
        Ok(instance) => instance,
        Err(e) => {
            eprintln!("vault-process: {e}");
            std::process::exit(2)
        }
    };
    // A restart after SIGKILL binds the same port; the kernel may need a moment to let it go.
    let mut listener = None;
    for _ in 0..50 {
        match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
            Ok(bound) => {
                listener = Some(bound);
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    let Some(listener) = listener else {
        eprintln!("vault-process: cannot bind 127.0.0.1:{port}");
        std::process::exit(2)
    };
    let url = format!(
        "http://{}",
        listener.local_addr().map(|a| a.to_string()).unwrap_or_default()
    );
    Gateway::new(vec![instance]).serve(listener).await;
    println!("listening {url}");
    // A blocking read on its own thread: tokio's stdin would need another tokio feature for this one use.
    let _ = tokio::task::spawn_blocking(|| {
        let mut buf = [0u8; 64];
        while matches!(std::io::stdin().read(&mut buf), Ok(n) if n > 0) {}
    })
    .await;
}
