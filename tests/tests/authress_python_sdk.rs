//! The real Authress Python SDK (PyPI `authress`, pinned in tests/requirements.txt) as a service
//! client of the local vault: its `ServiceClientTokenProvider` token authenticates, and the lifetime it
//! gives its tokens is within the vault's bound (`MAX_CLIENT_TOKEN_LIFETIME_SECS`), measured here.

use std::process::Stdio;

use credvault::identity::service_clients::MAX_CLIENT_TOKEN_LIFETIME_SECS;
use credvault_tests::{LocalStack, StackOptions};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_reads_a_granted_credential() {
    let stack = LocalStack::start(StackOptions::default()).await;
    let alice = stack.login().await;
    let (backend_id, backend_key) = stack.new_client("python backend").await;
    let admin = stack.client_token(&stack.admin_key);
    for (path, body) in [
        (
            "/v1/roles",
            json!({"roleId": "ro_reader", "name": "reader",
            "permissions": [{"action": "connections:credentials:read", "allow": true}]}),
        ),
        (
            "/v1/records",
            json!({"recordId": "rec_python", "name": "python", "users": [{"userId": backend_id}],
            "statements": [{"roles": ["ro_reader"], "resources": [{"resourceUri": "Connections/con_demo"}]}]}),
        ),
    ] {
        let (status, out) = stack.call("POST", path, Some(&admin), Some(&body)).await;
        assert_eq!(status, 201, "{out}");
    }
    let root = credvault_tests::workspace_root();
    let out = tokio::process::Command::new(root.join(".venv/bin/python"))
        .arg(root.join("tests/scripts/python_sdk.py"))
        .env("VAULT_URL", &stack.base_url)
        .env("BACKEND_KEY", &backend_key)
        .env("USER_ID", &alice.user_id)
        .env("CONNECTION_ID", &stack.connection_id)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("the test venv exists (make bootstrap)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("result JSON");
    let issued = stack.provider.issued_secrets();
    assert!(
        issued
            .iter()
            .any(|s| Some(s.as_str()) == result["accessToken"].as_str()),
        "the SDK got the provider's token: {result}"
    );
    assert_eq!(
        result["lifetime"].as_i64(),
        Some(MAX_CLIENT_TOKEN_LIFETIME_SECS),
        "the vault's bound is exactly what the SDK makes"
    );
}
