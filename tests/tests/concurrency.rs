//! Many Lambda instances fetch one expired credential at once: exactly one refresh reaches the
//! provider, everyone gets its result, and the rotated refresh token is never used twice.

use std::collections::HashSet;
use std::time::Duration;

use credvault_tests::{LocalStack, StackOptions};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_fetches_of_an_expired_credential_make_one_refresh() {
    // Four handler instances stand in for four warm Lambdas, each with its own caches.
    let stack = LocalStack::start(StackOptions {
        instances: 4,
        ..StackOptions::default()
    })
    .await;
    stack.provider.set_knobs(|k| {
        k.access_token_lifetime_secs = 0;
        k.rotate_refresh_tokens = true;
        k.reuse_detection = true;
    });
    let user = stack.login().await;
    stack.provider.set_knobs(|k| {
        k.access_token_lifetime_secs = 3600;
        // A slow provider widens the race window.
        k.latency = Duration::from_millis(300);
    });

    let fetches = (0..50).map(|_| {
        let http = stack.http.clone();
        let url = stack.url(&format!(
            "/v1/connections/{}/users/{}/credentials",
            stack.connection_id,
            credvault_tests::stack::encode(&user.user_id)
        ));
        let bearer = user.access_token.clone();
        tokio::spawn(async move {
            let resp = http.get(url).bearer_auth(bearer).send().await.expect("request");
            (resp.status().as_u16(), resp.json::<Value>().await.expect("json"))
        })
    });
    let mut tokens = HashSet::new();
    for handle in fetches.collect::<Vec<_>>() {
        let (status, body) = handle.await.expect("task");
        assert_eq!(status, 200, "{body}");
        tokens.insert(body["accessToken"].as_str().expect("accessToken").to_string());
    }
    let counters = stack.provider.counters();
    assert_eq!(counters.refreshes, 1, "exactly one provider refresh");
    assert_eq!(counters.reuse_detected, 0, "no rotated refresh token was reused");
    assert_eq!(tokens.len(), 1, "everyone got the same new token");
    let issued_last = stack
        .provider
        .issued_secrets()
        .into_iter()
        .rfind(|s| s.starts_with("at-"))
        .unwrap();
    assert!(tokens.contains(&issued_last), "the token is the refreshed one");
    let stored = stack.stored_refresh_token(&user.user_id).await.unwrap();
    assert!(
        stack.provider.refresh_token_is_live(&stored),
        "the vault holds the live rotated token"
    );
}

/// Inside one instance the concurrent fetches of one credential share its work: one of them reads
/// the item and refreshes, the others take its token, and none of them reads DynamoDB on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_fetches_in_one_instance_share_one_read_and_one_refresh() {
    let stack = LocalStack::start(StackOptions::default()).await;
    stack.provider.set_knobs(|k| k.access_token_lifetime_secs = 0);
    let user = stack.login().await;
    stack.provider.set_knobs(|k| {
        k.access_token_lifetime_secs = 3600;
        // Long enough that every fetch arrives while the first one is still at the provider.
        k.latency = Duration::from_millis(500);
    });
    stack.counters.reset();
    let fetches: Vec<_> = (0..30)
        .map(|_| stack.fetch_credentials(&user.access_token, &user.user_id, None))
        .collect();
    let answers = credvault_tests::join_all(fetches).await;
    let mut tokens = HashSet::new();
    for resp in answers {
        assert_eq!(resp.status(), 200);
        tokens.insert(
            resp.json::<Value>().await.unwrap()["accessToken"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(tokens.len(), 1, "everyone got the one refreshed token");
    assert_eq!(stack.provider.counters().refreshes, 1);
    let (reads, _, _) = stack.counters.snapshot();
    assert!(
        reads <= 3,
        "the leader's reads only (credential, connection), not one per fetch: {reads} reads for 30 fetches"
    );
}
