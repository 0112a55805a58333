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

/// The login callback, the token exchange and management writes answer a DynamoDB or KMS outage or
/// throttling as every other path does: 503 with Retry-After and a stable code, never a 500, and a
/// request refused at its first write changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_and_management_outages_are_503_and_change_nothing() {
    let stack = stack().await;
    let admin = stack.client_token(&stack.admin_key);
    let proxy = stack.aws_proxy.as_ref().unwrap();

    // The callback consumes its login request first: throttled there, the request stays usable.
    let verifier = credvault::random::token(32);
    let (_, callback) = stack.login_until_callback(&verifier).await;
    let before = stack.state_snapshot().await;
    proxy.throttle("DeleteItem", 0, OUTLASTS_RETRIES);
    let resp = stack.http.get(&callback).send().await.unwrap();
    assert_503(resp, "throttled", "1", "login callback, DynamoDB throttled").await;
    assert_eq!(stack.state_snapshot().await, before, "the callback changed nothing");
    proxy.fault("DeleteItem", Fault::Unavailable, 0, OUTLASTS_RETRIES);
    let resp = stack.http.get(&callback).send().await.unwrap();
    assert_503(resp, "service_unavailable", "2", "login callback, DynamoDB down").await;
    assert_eq!(stack.state_snapshot().await, before, "the callback changed nothing");
    // Stalled: the vault's own timeouts end the wait.
    proxy.fault("DeleteItem", Fault::Stall, 0, OUTLASTS_RETRIES);
    let resp = stack.http.get(&callback).send().await.unwrap();
    assert_503(resp, "service_unavailable", "2", "login callback, DynamoDB stalled").await;
    proxy.clear_faults();
    assert_eq!(stack.state_snapshot().await, before, "the callback changed nothing");

    // KMS down while the callback opens the login's own PKCE verifier (consumed by then: a login
    // request is single-use, so only the answer is checked here). Past the data-key cache's age the
    // callback decrypts twice: the connection's client secret, then the verifier.
    let verifier = credvault::random::token(32);
    let (_, callback) = stack.login_until_callback(&verifier).await;
    stack.clock.advance(310);
    proxy.fault("Decrypt", Fault::Unavailable, 1, OUTLASTS_RETRIES);
    let resp = stack.http.get(&callback).send().await.unwrap();
    assert_503(resp, "service_unavailable", "2", "login callback, KMS down").await;

    // The token exchange consumes its vault code first: throttled there, the code stays usable.
    let verifier = credvault::random::token(32);
    let (request_id, callback) = stack.login_until_callback(&verifier).await;
    let back = stack.http.get(&callback).send().await.unwrap();
    assert_eq!(back.status(), 302);
    let app = url::Url::parse(&credvault_tests::stack::location(&back)).unwrap();
    let code = app
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("a vault code");
    let redirect = credvault_tests::stack::APP_REDIRECT_URL;
    let before = stack.state_snapshot().await;
    proxy.throttle("DeleteItem", 0, OUTLASTS_RETRIES);
    let resp = stack.exchange(&request_id, &code, &verifier, redirect).await;
    assert_503(resp, "throttled", "1", "token exchange, DynamoDB throttled").await;
    assert_eq!(stack.state_snapshot().await, before, "the exchange changed nothing");
    // KMS throttled while the vault signs the tokens (the code is spent by then).
    proxy.fault("Sign", Fault::Throttle, 0, OUTLASTS_RETRIES);
    let resp = stack.exchange(&request_id, &code, &verifier, redirect).await;
    assert_503(resp, "throttled", "1", "token exchange, KMS throttled").await;

    // Management writes: an access record and a service client.
    let before = stack.state_snapshot().await;
    let record = json!({"recordId": "rec_outage", "name": "x", "users": [{"userId": "sc_nobody"}],
        "statements": [{"roles": ["vault:admin"], "resources": [{"resourceUri": "Connections/con_x"}]}]});
    for (fault, code, after) in [
        (Fault::Throttle, "throttled", "1"),
        (Fault::Unavailable, "service_unavailable", "2"),
        (Fault::Stall, "service_unavailable", "2"),
    ] {
        proxy.fault("TransactWriteItems", fault, 0, OUTLASTS_RETRIES);
        let resp = stack
            .http
            .post(stack.url("/v1/records"))
            .bearer_auth(&admin)
            .json(&record)
            .send()
            .await
            .unwrap();
        assert_503(resp, code, after, "record create").await;
        proxy.clear_faults();
        proxy.fault("PutItem", fault, 0, OUTLASTS_RETRIES);
        let resp = stack
            .http
            .post(stack.url("/v1/clients"))
            .bearer_auth(&admin)
            .json(&json!({"name": "outage"}))
            .send()
            .await
            .unwrap();
        assert_503(resp, code, after, "client create").await;
        proxy.clear_faults();
    }
    assert_eq!(stack.state_snapshot().await, before, "no management write landed");
}
