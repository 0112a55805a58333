//! DynamoDB throttling, injected by a proxy between the vault and moto (the emulator cannot throttle):
//! absorbed when retries suffice, a 503 that changes nothing when they do not, and never the loss of a
//! refresh token the provider has just rotated.

use credvault_tests::{LocalStack, StackOptions};
use serde_json::Value;

async fn throttled_stack() -> LocalStack {
    LocalStack::start(StackOptions {
        aws_proxy: true,
        ..StackOptions::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_reads_are_retried_or_answered_503_without_changing_anything() {
    let stack = throttled_stack().await;
    let user = stack.login().await;
    let proxy = stack.aws_proxy.as_ref().unwrap();

    // Two throttles: the SDK's own retries absorb them.
    proxy.throttle("GetItem", 0, 2);
    assert_eq!(
        stack
            .fetch_credentials(&user.access_token, &user.user_id, None)
            .await
            .status(),
        200
    );
    assert_eq!(proxy.throttled(), 2);

    // Throttled on every attempt: a 503 with Retry-After and a stable code, nothing written.
    let before = stack.state_snapshot().await;
    proxy.throttle("GetItem", 0, 3);
    let resp = stack.fetch_credentials(&user.access_token, &user.user_id, None).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1", "throttling: retry after a second");
    assert_eq!(resp.json::<Value>().await.unwrap()["errorCode"], "throttled");
    assert_eq!(
        stack.state_snapshot().await,
        before,
        "no stored item changed, in any attribute"
    );
    assert_eq!(
        stack
            .fetch_credentials(&user.access_token, &user.user_id, None)
            .await
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_commit_after_a_rotating_refresh_loses_no_refresh_token() {
    let stack = throttled_stack().await;
    stack.provider.set_knobs(|k| k.access_token_lifetime_secs = 0);
    let user = stack.login().await;
    stack.provider.set_knobs(|k| k.access_token_lifetime_secs = 3600);
    let proxy = stack.aws_proxy.as_ref().unwrap();

    // Let the lease claim through, then throttle the commit more often than the SDK retries (3 tries).
    proxy.throttle("UpdateItem", 1, 5);
    let resp = stack.fetch_credentials(&user.access_token, &user.user_id, None).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(proxy.throttled(), 5);
    assert_eq!(stack.provider.counters().refreshes, 1);
    let stored = stack.stored_refresh_token(&user.user_id).await.unwrap();
    assert!(
        stack.provider.refresh_token_is_live(&stored),
        "the rotated refresh token was saved"
    );

    // And it works: the next refresh uses it without the provider seeing a reuse.
    stack.clock.advance(3400);
    assert_eq!(
        stack
            .fetch_credentials(&user.access_token, &user.user_id, None)
            .await
            .status(),
        200
    );
    assert_eq!(stack.provider.counters().reuse_detected, 0);
    assert_eq!(stack.provider.counters().refreshes, 2);
}
