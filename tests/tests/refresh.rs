//! The refresh protocol against the fake provider over HTTP: expiry, rotation, minimum validity,
//! dead grants, provider outages and a lease left behind by a crashed instance.

use std::time::{Duration, Instant};

use credvault_tests::access_token_of;
use credvault_tests::{Failure, LocalStack, StackOptions};
use serde_json::Value;

/// The `Retry-After` of a 503, in seconds.
fn retry_after(resp: &reqwest::Response) -> i64 {
    resp.headers()["retry-after"].to_str().unwrap().parse().unwrap()
}

/// The credential's stored backoff, as seconds from the stack's clock: what a 503 should tell callers.
async fn backoff_left_secs(stack: &LocalStack, user_id: &str) -> i64 {
    let item = stack.credential(user_id).await.unwrap();
    let next = item.next_attempt_at_ms.expect("a backoff is recorded");
    let left_ms = next - credvault::clock::Clock::now_millis(&stack.clock);
    assert!(left_ms > 0, "the backoff lies ahead");
    (left_ms + 999) / 1000
}

async fn stack_with_expired_login() -> (LocalStack, credvault_tests::LoggedIn) {
    let stack = LocalStack::start(StackOptions::default()).await;
    // Tokens issued at login are already expired; the refreshed ones live an hour.
    stack.provider.set_knobs(|k| k.access_token_lifetime_secs = 0);
    let user = stack.login().await;
    stack.provider.set_knobs(|k| k.access_token_lifetime_secs = 3600);
    (stack, user)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_is_refreshed_and_a_rotated_refresh_token_replaces_the_stored_one() {
    let (stack, user) = stack_with_expired_login().await;
    let login_refresh_token = stack.stored_refresh_token(&user.user_id).await.unwrap();
    let version_before = stack.credential(&user.user_id).await.unwrap().token_version;

    let token = access_token_of(stack.fetch_credentials(&user.access_token, &user.user_id, None).await).await;
    assert_eq!(stack.provider.counters().refreshes, 1);
    assert_eq!(
        stack.provider.refresh_tokens_presented(),
        vec![login_refresh_token.clone()]
    );
    let stored = stack.stored_refresh_token(&user.user_id).await.unwrap();
    assert_ne!(
        stored, login_refresh_token,
        "the rotated token must replace the old one"
    );
    assert!(stack.provider.refresh_token_is_live(&stored));
    let item = stack.credential(&user.user_id).await.unwrap();
    assert_eq!(item.token_version, version_before + 1);
    assert!(item.lease.is_none(), "the lease is dropped on commit");

    // The new token is valid for an hour: the next fetch is served from the store.
    assert_eq!(
        access_token_of(stack.fetch_credentials(&user.access_token, &user.user_id, None).await).await,
        token
    );
    assert_eq!(stack.provider.counters().refreshes, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_rotation_the_stored_refresh_token_is_kept_and_reused() {
    let (stack, user) = stack_with_expired_login().await;
    stack.provider.set_knobs(|k| k.rotate_refresh_tokens = false);
    let login_refresh_token = stack.stored_refresh_token(&user.user_id).await.unwrap();

    access_token_of(stack.fetch_credentials(&user.access_token, &user.user_id, None).await).await;
    assert_eq!(
        stack.stored_refresh_token(&user.user_id).await.unwrap(),
        login_refresh_token
    );
    // An hour later the token is near its end: the second refresh presents the same refresh token.
    stack.clock.advance(3400);
    access_token_of(stack.fetch_credentials(&user.access_token, &user.user_id, None).await).await;
    assert_eq!(
        stack.provider.refresh_tokens_presented(),
        vec![login_refresh_token.clone(), login_refresh_token]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minimum_validity_decides_whether_to_refresh() {
    let stack = LocalStack::start(StackOptions::default()).await;
    let user = stack.login().await;
    let fetch = |min: Option<u64>| stack.fetch_credentials(&user.access_token, &user.user_id, min);
    let login_token = access_token_of(fetch(None).await).await;

    // 40 minutes on, 20 are left: enough for the default (5 min) and for 15 min, not for 25 min.
    stack.clock.advance(2400);
    assert_eq!(access_token_of(fetch(None).await).await, login_token);
    assert_eq!(access_token_of(fetch(Some(900)).await).await, login_token);
    assert_eq!(stack.provider.counters().refreshes, 0);
    let resp = fetch(Some(1500)).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_ne!(body["accessToken"], login_token.as_str());
    assert_eq!(stack.provider.counters().refreshes, 1);
    assert!(body["expiresAt"].as_str().unwrap().ends_with('Z'), "ISO-8601 UTC");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asking_for_more_validity_than_the_provider_grants_does_not_refresh_every_time() {
    let stack = LocalStack::start(StackOptions::default()).await;
    let user = stack.login().await;
    // The provider's tokens live an hour; asking for two hours is asking for all a token can give.
    for _ in 0..3 {
        assert_eq!(
            stack
                .fetch_credentials(&user.access_token, &user.user_id, Some(7200))
                .await
                .status(),
            200
        );
    }
    assert_eq!(stack.provider.counters().refreshes, 0);
    // Past half its lifetime the token is refreshed once, and the new one again satisfies the request.
    stack.clock.advance(1900);
    for _ in 0..3 {
        assert_eq!(
            stack
                .fetch_credentials(&user.access_token, &user.user_id, Some(7200))
                .await
                .status(),
            200
        );
    }
    assert_eq!(stack.provider.counters().refreshes, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_grant_marks_the_credential_dead_and_stops_calling_the_provider() {
    let (stack, user) = stack_with_expired_login().await;
    stack.provider.fail_next(&[Failure::InvalidGrant]);

    for _ in 0..3 {
        let resp = stack.fetch_credentials(&user.access_token, &user.user_id, None).await;
        assert_eq!(resp.status(), 409);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["errorCode"], "reauthentication_required");
    }
    assert_eq!(
        stack.provider.counters().refreshes,
        1,
        "no provider call after the grant died"
    );
    let item = stack.credential(&user.user_id).await.unwrap();
    assert_eq!(
        item.status,
        credvault::store::credentials::CredentialStatus::ReauthRequired
    );
    assert!(item.lease.is_none());

    // Logging in again revives it.
    let again = stack.login().await;
    assert_eq!(again.user_id, user.user_id);
    assert_eq!(
        stack
            .fetch_credentials(&again.access_token, &user.user_id, None)
            .await
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_outage_serves_the_old_token_while_it_is_still_valid() {
    let stack = LocalStack::start(StackOptions::default()).await;
    let user = stack.login().await;
    let old = access_token_of(stack.fetch_credentials(&user.access_token, &user.user_id, None).await).await;
    stack.provider.fail_next(&[Failure::Status(500)]);

    // Under 5 minutes left: a refresh is tried once. A 500 after the request was sent may come from a
    // provider that rotated the token, so it is not sent again; the still-valid old token is served.
    stack.clock.advance(3400);
    let resp = stack.fetch_credentials(&user.access_token, &user.user_id, None).await;
    assert_eq!(access_token_of(resp).await, old);
    assert_eq!(
        stack.provider.counters().refreshes,
        1,
        "no second use of the refresh token"
    );
    let item = stack.credential(&user.user_id).await.unwrap();
    assert!(item.lease.is_none(), "lease given back");
    assert_eq!(item.refresh_failures, 1);
    assert!(item.rotation_unconfirmed_at.is_some(), "the rotation is in doubt");
    backoff_left_secs(&stack, &user.user_id).await;

    // Backing off: the next fetches are served the old token and the provider is left alone.
    for _ in 0..3 {
        let resp = stack.fetch_credentials(&user.access_token, &user.user_id, None).await;
        assert_eq!(access_token_of(resp).await, old);
    }
    assert_eq!(
        stack.provider.counters().refreshes,
        1,
        "no provider call during the backoff"
    );

    // Past the backoff (a 500's outcome is unknown: at least a lease length), with the provider back:
    // the refresh token was never spent, and it refreshes.
    stack
        .clock
        .advance(stack.config.refresh.lease_length.as_secs() as i64 + 1);
    let fresh = access_token_of(stack.fetch_credentials(&user.access_token, &user.user_id, None).await).await;
    assert_ne!(fresh, old);
    assert_eq!(stack.provider.counters().refreshes, 2);
    let item = stack.credential(&user.user_id).await.unwrap();
    assert_eq!(item.next_attempt_at_ms, None, "a success ends the backoff");
    assert_eq!(item.refresh_failures, 0);
    assert_eq!(item.rotation_unconfirmed_at, None, "and confirms the rotation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_outage_with_an_expired_token_is_503_with_retry_after() {
    let (stack, user) = stack_with_expired_login().await;
    // 429: the provider says it did nothing and to come back, so the holder tries again within its
    // lease, up to the attempt limit.
    stack
        .provider
        .fail_next(&[Failure::Status(429), Failure::Status(429), Failure::Status(429)]);
    let resp = stack.fetch_credentials(&user.access_token, &user.user_id, None).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(
        stack.provider.counters().refreshes,
        3,
        "429 is retried, up to the limit"
    );
    let told = retry_after(&resp);
    assert_eq!(
        told,
        backoff_left_secs(&stack, &user.user_id).await,
        "callers are told the stored backoff"
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["errorCode"], "provider_unavailable");
    let item = stack.credential(&user.user_id).await.unwrap();
    assert!(item.lease.is_none(), "lease given back");
    assert_eq!(
        item.rotation_unconfirmed_at, None,
        "a 429 says nothing was done: the rotation is not in doubt"
    );

    // During the backoff: 503 again, and no provider call.
    let resp = stack.fetch_credentials(&user.access_token, &user.user_id, None).await;
    assert_eq!(resp.status(), 503);
    assert!((1..=told).contains(&retry_after(&resp)));
    assert_eq!(stack.provider.counters().refreshes, 3);

    // Once the backoff has passed and the provider is back, the same credential refreshes normally.
    stack.clock.advance(told);
    access_token_of(stack.fetch_credentials(&user.access_token, &user.user_id, None).await).await;
    assert_eq!(stack.provider.counters().refreshes, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_timeout_is_not_retried_and_releases_the_lease() {
    let (stack, user) = stack_with_expired_login().await;
    let login_refresh_token = stack.stored_refresh_token(&user.user_id).await.unwrap();
    stack.provider.fail_next(&[Failure::Hang]);
    let started = Instant::now();
    let resp = stack.fetch_credentials(&user.access_token, &user.user_id, None).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(retry_after(&resp), backoff_left_secs(&stack, &user.user_id).await);
    // One attempt only: the provider may have rotated the token before the answer was lost.
    assert_eq!(stack.provider.counters().refreshes, 1);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "gave up at the provider timeout"
    );
    let item = stack.credential(&user.user_id).await.unwrap();
    assert!(item.lease.is_none());
    assert_eq!(
        stack.stored_refresh_token(&user.user_id).await.unwrap(),
        login_refresh_token,
        "nothing committed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_lease_of_a_crashed_instance_is_taken_over_after_it_expires() {
    let (stack, user) = stack_with_expired_login().await;
    // A refresher claimed the lease and died: its lease runs 1.5 s more.
    let item = stack.credential(&user.user_id).await.unwrap();
    let until = credvault::clock::Clock::now_millis(&credvault::clock::SystemClock) + 1500;
    stack.plant_lease(&user.user_id, "crashed-instance", until).await;

    let started = Instant::now();
    let resp = stack.fetch_credentials(&user.access_token, &user.user_id, None).await;
    assert_eq!(resp.status(), 200);
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "waited for the stale lease"
    );
    assert_eq!(stack.provider.counters().refreshes, 1);
    let after = stack.credential(&user.user_id).await.unwrap();
    assert_eq!(after.token_version, item.token_version + 1);
    assert!(after.lease.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relogin_without_a_refresh_token_keeps_the_stored_one_and_a_new_one_replaces_it() {
    let stack = LocalStack::start(StackOptions::default()).await;
    let user = stack.login().await;
    let first = stack.stored_refresh_token(&user.user_id).await.unwrap();

    stack.provider.set_knobs(|k| k.issue_refresh_token_on_login = false);
    stack.login().await;
    assert_eq!(stack.stored_refresh_token(&user.user_id).await.unwrap(), first);

    stack.provider.set_knobs(|k| k.issue_refresh_token_on_login = true);
    stack.login().await;
    let third = stack.stored_refresh_token(&user.user_id).await.unwrap();
    assert_ne!(third, first);
    assert!(stack.provider.live_refresh_tokens().contains(&third));
}
