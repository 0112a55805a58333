//! The real Authress JavaScript SDK (npm `@authress/sdk`, pinned in tests/js) as a client of the local
//! vault: a `ServiceClientTokenProvider` over an access key made by our API authenticates, and
//! roles, records, connections, credentials and permission checks work through it unpatched.

use std::process::Stdio;

use credvault_tests::{LocalStack, StackOptions};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authress_sdk_works_against_the_vault() {
    let stack = LocalStack::start(StackOptions::default()).await;
    let alice = stack.login().await;
    let (backend_id, backend_key) = stack.new_client("sdk backend").await;
    let expected_token: String = stack
        .provider
        .issued_secrets()
        .into_iter()
        .find(|s| s.starts_with("at-"))
        .expect("provider issued a token");

    let script = credvault_tests::workspace_root().join("tests/js/authress-sdk.js");
    let out = tokio::process::Command::new("node")
        .arg(script)
        .env("VAULT_URL", &stack.base_url)
        .env("ADMIN_KEY", &stack.admin_key)
        .env("BACKEND_KEY", &backend_key)
        .env("BACKEND_ID", &backend_id)
        .env("USER_ID", &alice.user_id)
        .env("CONNECTION_ID", &stack.connection_id)
        .env("PROVIDER_URL", stack.provider.issuer())
        .stdin(Stdio::null())
        .output()
        .await
        .expect("node runs (make bootstrap installs the SDK)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "SDK script failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("result JSON");
    assert_eq!(
        result["accessToken"],
        expected_token.as_str(),
        "the SDK got the provider's token"
    );
    assert_eq!(result["denied"], "denied");

    // What the SDK created is really there, and the connection's secret is stored sealed.
    let admin = stack.client_token(&stack.admin_key);
    let (status, connection) = stack.call("GET", "/v1/connections/con_sdk", Some(&admin), None).await;
    assert_eq!(status, 200);
    assert!(connection.get("clientSecret").is_none());
    let raw = format!("{:?}", stack.aws.scan_all().await);
    assert!(!raw.contains("sdk-planted-secret"));
}
