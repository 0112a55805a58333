//! The attacks of tests/tests/attacks.rs that the Authress JavaScript SDK has a call for, made through
//! it unmodified: a record writer granting itself `vault:admin` (update and create), and a vault
//! id_token as the bearer of the SDK's credential call, and a connection editor steering the stored
//! client secret to its own token endpoint. The SDK's own access-token call is the control.

use std::process::Stdio;

use credvault_tests::{LocalStack, StackOptions};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_cannot_make_the_attacks_either() {
    let stack = LocalStack::start(StackOptions::default()).await;
    let alice = stack.login().await;
    let (writer_id, writer_key) = stack.new_client("sdk record writer").await;
    let admin = stack.client_token(&stack.admin_key);
    for (path, body) in [
        (
            "/v1/roles",
            json!({"roleId": "ro_records", "name": "records", "permissions": [{"action": "records:*", "allow": true}]}),
        ),
        (
            "/v1/roles",
            json!({"roleId": "ro_connection_editor", "name": "editor", "permissions": [
                {"action": "connections:update", "allow": true}, {"action": "connections:read", "allow": true}]}),
        ),
        (
            "/v1/records",
            json!({"recordId": "rec_writer", "name": "writer", "users": [{"userId": writer_id}],
            "statements": [{"roles": ["ro_records"], "resources": [{"resourceUri": "Records"}]},
                {"roles": ["ro_connection_editor"], "resources": [{"resourceUri": "Connections/con_demo"}]}]}),
        ),
    ] {
        let (status, out) = stack.call("POST", path, Some(&admin), Some(&body)).await;
        assert_eq!(status, 201, "{out}");
    }
    let before = stack.state_snapshot().await;

    let out = tokio::process::Command::new("node")
        .arg(credvault_tests::workspace_root().join("tests/js/attacks.js"))
        .env("VAULT_URL", &stack.base_url)
        .env("WRITER_KEY", &writer_key)
        .env("WRITER_ID", &writer_id)
        .env("RECORD_ID", "rec_writer")
        .env("ID_TOKEN", &alice.id_token)
        .env("ACCESS_TOKEN", &alice.access_token)
        .env("USER_ID", &alice.user_id)
        .env("CONNECTION_ID", &stack.connection_id)
        .env("EVIL_URL", "https://evil.example")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("node runs (make bootstrap installs the SDK)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("result JSON");
    let refused_as_admin_only = json!({"status": 403, "errorCode": "administrators_only"});
    assert_eq!(results["updateToAdmin"], refused_as_admin_only, "{results}");
    assert_eq!(results["createAdmin"], refused_as_admin_only, "{results}");
    assert_eq!(results["writerReads"]["status"], 403, "{results}");
    assert_eq!(
        results["idTokenReads"],
        json!({"status": 401, "errorCode": "unauthorized"}),
        "{results}"
    );
    assert_eq!(results["accessTokenReads"], json!({"status": 200}), "{results}");
    assert_eq!(
        results["steerTokenUrl"],
        json!({"status": 400, "errorCode": "client_secret_required"}),
        "{results}"
    );
    assert_eq!(
        results["tokenLifetime"].as_i64(),
        Some(credvault::identity::service_clients::MAX_CLIENT_TOKEN_LIFETIME_SECS),
        "the vault's bound on client tokens is exactly what the SDK makes"
    );
    assert_eq!(stack.state_snapshot().await, before, "nothing stored changed");
}
