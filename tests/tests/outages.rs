//! DynamoDB and KMS outages and throttling, injected by the fault proxy in front of moto: every path
//! answers 503 with Retry-After and a stable code, never a 500, and changes nothing.

use credvault_tests::aws_proxy::Fault;
use credvault_tests::{LocalStack, StackOptions};
use serde_json::{Value, json};

async fn stack() -> LocalStack {
    LocalStack::start(StackOptions {
        aws_proxy: true,
        ..StackOptions::default()
    })
    .await
}

/// The SDK tries three times; the fault outlasts them.
const OUTLASTS_RETRIES: u32 = 3;

async fn assert_503(resp: reqwest::Response, code: &str, retry_after: &str, case: &str) {
    assert_eq!(resp.status(), 503, "{case}");
    assert_eq!(resp.headers()["retry-after"], retry_after, "{case}");
    let body: Value = resp.json().await.expect("a JSON error body");
    assert_eq!(body["errorCode"], code, "{case}: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_outages_are_503_on_every_path_and_change_nothing() {
    let stack = stack().await;
    let user = stack.login().await;
    let admin = stack.client_token(&stack.admin_key);
    let proxy = stack.aws_proxy.as_ref().unwrap();
    let before = stack.state_snapshot().await;

    proxy.fault("GetItem", Fault::Unavailable, 0, OUTLASTS_RETRIES);
    let resp = stack.fetch_credentials(&user.access_token, &user.user_id, None).await;
    assert_503(resp, "service_unavailable", "2", "credential fetch").await;

    proxy.clear_faults();
    proxy.fault("PutItem", Fault::Unavailable, 0, OUTLASTS_RETRIES);
    let resp = stack
        .start_login(&stack.start_body(&credvault::random::token(32)))
        .await;
    assert_503(resp, "service_unavailable", "2", "login start").await;

    proxy.clear_faults();
    proxy.fault("Query", Fault::Unavailable, 0, OUTLASTS_RETRIES);
    let resp = stack
        .http
        .get(stack.url("/v1/connections"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_503(resp, "service_unavailable", "2", "management listing").await;

    proxy.clear_faults();
    proxy.fault("TransactWriteItems", Fault::Unavailable, 0, OUTLASTS_RETRIES);
    let role = json!({"roleId": "ro_outage", "name": "x", "permissions": [{"action": "x:read", "allow": true}]});
    let resp = stack
        .http
        .post(stack.url("/v1/roles"))
        .bearer_auth(&admin)
        .json(&role)
        .send()
        .await
        .unwrap();
    assert_503(resp, "service_unavailable", "2", "grant change").await;

    assert_eq!(stack.state_snapshot().await, before, "nothing stored changed");
    // And once DynamoDB is back, the same requests work.
    assert_eq!(
        stack
            .fetch_credentials(&user.access_token, &user.user_id, None)
            .await
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_outages_and_throttling_are_503_and_change_nothing() {
    let stack = stack().await;
    let proxy = stack.aws_proxy.as_ref().unwrap();
    let before = stack.state_snapshot().await;
    // A cold instance opens the connection's client secret at its first login start.
    proxy.fault("Decrypt", Fault::Unavailable, 0, OUTLASTS_RETRIES);
    let resp = stack
        .start_login(&stack.start_body(&credvault::random::token(32)))
        .await;
    assert_503(resp, "service_unavailable", "2", "KMS down at login start").await;
    // What the first case's retries left of its faults must not answer the second case.
    proxy.clear_faults();
    proxy.fault("Decrypt", Fault::Throttle, 0, OUTLASTS_RETRIES);
    let resp = stack
        .start_login(&stack.start_body(&credvault::random::token(32)))
        .await;
    assert_503(resp, "throttled", "1", "KMS throttled at login start").await;
    assert_eq!(stack.state_snapshot().await, before, "nothing stored changed");
    assert_eq!(
        stack
            .start_login(&stack.start_body(&credvault::random::token(32)))
            .await
            .status(),
        200
    );
}
