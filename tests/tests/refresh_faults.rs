//! The refresh protocol on bad days (issue 9): a refresh is sent again only when it provably did not
//! reach the provider or the provider said to retry; an answer lost after the provider rotated is
//! detected and audited as `rotation_lost`; a backoff stored on the credential keeps every instance
//! away from a struggling provider; the data keys are taken before the provider is asked; a stalled
//! DynamoDB costs a bounded wait, not the lease.

use std::time::{Duration, Instant};

use credvault_tests::access_token_of;
use credvault_tests::aws_proxy::Fault;
use credvault_tests::{Failure, LocalStack, StackOptions};
use serde_json::Value;

/// A stack whose login tokens are already expired (every fetch must refresh); refreshed ones live an hour.
async fn stack_with_expired_login(options: StackOptions) -> (LocalStack, credvault_tests::LoggedIn) {
    let stack = LocalStack::start(options).await;
    stack.provider.set_knobs(|k| {
        k.access_token_lifetime_secs = 0;
        k.rotate_refresh_tokens = true;
        k.reuse_detection = true;
    });
    let user = stack.login().await;
    stack.provider.set_knobs(|k| k.access_token_lifetime_secs = 3600);
    (stack, user)
}

fn retry_after(resp: &reqwest::Response) -> i64 {
    resp.headers()["retry-after"].to_str().unwrap().parse().unwrap()
}

async fn error_code(resp: reqwest::Response) -> String {
    resp.json::<Value>().await.unwrap()["errorCode"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The reasons of the audited `credential.reauth_required` events.
async fn reauth_reasons(stack: &LocalStack) -> Vec<String> {
    let admin = stack.client_token(&stack.admin_key);
    let (status, events) = stack.call("GET", "/v1/audit?limit=100", Some(&admin), None).await;
    assert_eq!(status, 200, "{events}");
    events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "credential.reauth_required")
        .map(|e| e["reason"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Moves the stack's clock past the credential's stored backoff.
async fn pass_the_backoff(stack: &LocalStack, user_id: &str) {
    let item = stack.credential(user_id).await.unwrap();
    let next = item.next_attempt_at_ms.expect("a backoff is recorded");
    let left_ms = next - credvault::clock::Clock::now_millis(&stack.clock);
    stack.clock.advance(left_ms / 1000 + 1);
}

/// The provider rotates the refresh token and then answers 502: the new token is lost with the answer.
/// The vault does not send the (now rotated-away) token again in the same refresh, records the doubt,
/// and when the next refresh is refused it names the cause `rotation_lost`, not a user's revocation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_lost_after_rotation_is_not_retried_and_is_audited_as_rotation_lost() {
    let (stack, user) = stack_with_expired_login(StackOptions::default()).await;
    stack.provider.fail_next(&[Failure::RotateThenStatus(502)]);

    let resp = stack.fetch_credentials(&user.access_token, &user.user_id, None).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(error_code(resp).await, "provider_unavailable");
    assert_eq!(
        stack.provider.counters().refreshes,
        1,
        "sent once: the provider may have acted"
    );
    assert_eq!(
        stack.provider.counters().answers_lost,
        1,
        "premise: the provider rotated"
    );
    assert_eq!(stack.provider.counters().reuse_detected, 0);
    let item = stack.credential(&user.user_id).await.unwrap();
    assert!(
        item.rotation_unconfirmed_at.is_some(),
        "the rotation is recorded as in doubt"
    );
    assert!(item.lease.is_none());

    // After the backoff the next refresh presents the stored token once, is refused, and the
    // credential is declared dead for the right reason.
    pass_the_backoff(&stack, &user.user_id).await;
    let resp = stack.fetch_credentials(&user.access_token, &user.user_id, None).await;
    assert_eq!(resp.status(), 409);
    assert_eq!(error_code(resp).await, "reauthentication_required");
    assert_eq!(stack.provider.counters().refreshes, 2);
    assert_eq!(reauth_reasons(&stack).await, ["rotation_lost"]);

    // Dead means dead: no further provider calls with that token.
    let resp = stack.fetch_credentials(&user.access_token, &user.user_id, None).await;
    assert_eq!(resp.status(), 409);
    assert_eq!(stack.provider.counters().refreshes, 2);
}

/// The control: a refresh token refused with no doubt on record is a revocation (`invalid_grant`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_without_a_lost_answer_is_audited_as_invalid_grant() {
    let (stack, user) = stack_with_expired_login(StackOptions::default()).await;
    stack.provider.fail_next(&[Failure::InvalidGrant]);
    let resp = stack.fetch_credentials(&user.access_token, &user.user_id, None).await;
    assert_eq!(resp.status(), 409);
    assert_eq!(reauth_reasons(&stack).await, ["invalid_grant"]);
}

/// A reset after the request was written may hide a rotation: sent once, in doubt, and when the
/// provider had not acted after all the next refresh succeeds and clears the doubt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_after_sending_is_not_retried_and_a_later_success_clears_the_doubt() {
    let (stack, user) = stack_with_expired_login(StackOptions::default()).await;
    stack.provider.fail_next(&[Failure::Reset]);
    let resp = stack.fetch_credentials(&user.access_token, &user.user_id, None).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(stack.provider.counters().resets, 1, "premise: the connection was reset");
    assert_eq!(stack.provider.counters().refreshes, 1, "not sent again");
    assert!(
        stack
            .credential(&user.user_id)
            .await
            .unwrap()
            .rotation_unconfirmed_at
            .is_some()
    );

    pass_the_backoff(&stack, &user.user_id).await;
    access_token_of(stack.fetch_credentials(&user.access_token, &user.user_id, None).await).await;
    assert_eq!(stack.provider.counters().refreshes, 2);
    assert_eq!(
        stack.provider.counters().reuse_detected,
        0,
        "the token was never spent twice"
    );
    let item = stack.credential(&user.user_id).await.unwrap();
    assert_eq!(item.rotation_unconfirmed_at, None);
    assert_eq!(item.next_attempt_at_ms, None);
    assert_eq!(item.refresh_failures, 0);
}

/// A 503 with a short `Retry-After` says the provider did nothing: the holder waits it out inside its
/// lease and sends again. A long `Retry-After` is not waited for in the lease: it becomes the stored
/// backoff, and callers are told it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_from_the_provider_is_honoured_in_the_lease_or_in_the_backoff() {
    let (stack, user) = stack_with_expired_login(StackOptions::default()).await;
    // This refresh's token is born expired too, so the next fetch refreshes again.
    stack.provider.set_knobs(|k| k.access_token_lifetime_secs = 0);
    stack.provider.fail_next(&[Failure::StatusRetryAfter(503, 1)]);
    access_token_of(stack.fetch_credentials(&user.access_token, &user.user_id, None).await).await;
    assert_eq!(
        stack.provider.counters().refreshes,
        2,
        "retried after the provider's one second"
    );
    assert_eq!(stack.provider.counters().reuse_detected, 0);

    // The provider now asks for two minutes.
    stack.provider.set_knobs(|k| k.access_token_lifetime_secs = 3600);
    stack.provider.fail_next(&[Failure::StatusRetryAfter(429, 120)]);
    let resp = stack.fetch_credentials(&user.access_token, &user.user_id, None).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(
        stack.provider.counters().refreshes,
        3,
        "not waited for inside the lease"
    );
    let told = retry_after(&resp);
    assert!(
        (119..=120).contains(&told),
        "callers are told the provider's wait: {told}"
    );
    let item = stack.credential(&user.user_id).await.unwrap();
    assert_eq!(item.rotation_unconfirmed_at, None, "a 429 says nothing was done");
    let now_ms = credvault::clock::Clock::now_millis(&stack.clock);
    assert!(item.next_attempt_at_ms.unwrap() >= now_ms + 119_000);

    // A minute later the provider is still left alone.
    stack.clock.advance(60);
    let resp = stack.fetch_credentials(&user.access_token, &user.user_id, None).await;
    assert_eq!(resp.status(), 503);
    assert!((59..=60).contains(&retry_after(&resp)));
    assert_eq!(stack.provider.counters().refreshes, 3);

    stack.clock.advance(61);
    access_token_of(stack.fetch_credentials(&user.access_token, &user.user_id, None).await).await;
    assert_eq!(stack.provider.counters().refreshes, 4);
}

/// One failed refresh holds back every instance: twenty concurrent fetches over two instances, with
/// the provider failing the first refresh, make one provider call between them, not one per waiter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failed_refresh_no_instance_calls_the_provider_until_the_backoff_ends() {
    let (stack, user) = stack_with_expired_login(StackOptions {
        instances: 2,
        ..StackOptions::default()
    })
    .await;
    stack.provider.fail_next(&[Failure::Status(500)]);
    // Each refresh call waits a little, so the other fetches arrive while the first one holds the lease.
    stack.provider.set_knobs(|k| k.latency = Duration::from_millis(200));
    let fetches: Vec<_> = (0..20)
        .map(|_| stack.fetch_credentials(&user.access_token, &user.user_id, None))
        .collect();
    let answers = credvault_tests::join_all(fetches).await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    assert!(statuses.iter().all(|s| *s == 503), "{statuses:?}");
    assert!(answers.iter().all(|r| retry_after(r) >= 1));
    assert_eq!(
        stack.provider.counters().refreshes,
        1,
        "one provider call for all twenty fetches on both instances"
    );

    // Past the backoff: one refresh again, for everyone.
    pass_the_backoff(&stack, &user.user_id).await;
    let fetches: Vec<_> = (0..20)
        .map(|_| stack.fetch_credentials(&user.access_token, &user.user_id, None))
        .collect();
    let answers = credvault_tests::join_all(fetches).await;
    assert!(answers.iter().all(|r| r.status() == 200));
    assert_eq!(stack.provider.counters().refreshes, 2);
    assert_eq!(stack.provider.counters().reuse_detected, 0);
}

/// Keys first: when KMS cannot give the data key that would seal the answer, the provider is never
/// asked, so no rotated refresh token can be lost for want of a key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_data_key_the_provider_is_not_asked() {
    let (stack, user) = stack_with_expired_login(StackOptions {
        aws_proxy: true,
        ..StackOptions::default()
    })
    .await;
    // The login's data key ages out of the instance's cache: sealing the refresh needs KMS.
    stack
        .clock
        .advance(stack.config.data_key_cache_max_age.as_secs() as i64 + 1);
    let before = stack.state_snapshot().await;
    let proxy = stack.aws_proxy.as_ref().unwrap();
    proxy.fault("GenerateDataKey", Fault::Unavailable, 0, 20);
    let resp = stack.fetch_credentials(&user.access_token, &user.user_id, None).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(stack.provider.counters().refreshes, 0, "the provider was not asked");
    assert_eq!(stack.state_snapshot().await, before, "nothing stored changed");
    assert_eq!(stack.provider.counters().reuse_detected, 0);

    // KMS back: the refresh goes through with the refresh token that was never sent.
    proxy.clear_faults();
    let fresh = stack.fetch_credentials(&user.access_token, &user.user_id, None).await;
    access_token_of(fresh).await;
    assert_eq!(stack.provider.counters().refreshes, 1);
}

/// A stalled DynamoDB costs the caller a bounded wait: the vault's clients give up at their operation
/// timeout and answer 503, far inside the lease, and nothing is left half-done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_dynamodb_is_a_prompt_503_not_a_hang() {
    let (stack, user) = stack_with_expired_login(StackOptions {
        aws_proxy: true,
        ..StackOptions::default()
    })
    .await;
    let before = stack.state_snapshot().await;
    let proxy = stack.aws_proxy.as_ref().unwrap();
    proxy.set_latency(Duration::from_secs(30));
    let started = Instant::now();
    let resp = stack.fetch_credentials(&user.access_token, &user.user_id, None).await;
    let took = started.elapsed();
    assert_eq!(resp.status(), 503);
    assert!(
        took < stack.config.refresh.lease_length,
        "answered within the lease: {took:?}"
    );
    assert_eq!(stack.provider.counters().refreshes, 0);
    proxy.set_latency(Duration::ZERO);
    assert_eq!(stack.state_snapshot().await, before, "nothing stored changed");
    access_token_of(stack.fetch_credentials(&user.access_token, &user.user_id, None).await).await;
}

/// The crash window: an instance spent the refresh token at the provider and died before its commit
/// (here its provider call is made directly, and its lease left to run out). The next fetch takes the
/// expired lease over, presents the stored token once, is refused, and audits `rotation_lost`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_died_after_the_provider_rotated_is_detected_as_rotation_lost() {
    use credvault_tests::fake_provider::{CLIENT_ID, CLIENT_SECRET};

    let (stack, user) = stack_with_expired_login(StackOptions::default()).await;
    let stored = stack.stored_refresh_token(&user.user_id).await.unwrap();
    let spent = reqwest::Client::new()
        .post(format!("{}/token", stack.provider.issuer()))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", stored.as_str()),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(spent.status(), 200, "the dead instance's refresh went through");
    let expired = credvault::clock::Clock::now_millis(&stack.clock) - 1;
    stack.plant_lease(&user.user_id, "dead-instance", expired).await;

    let resp = stack.fetch_credentials(&user.access_token, &user.user_id, None).await;
    assert_eq!(resp.status(), 409);
    assert_eq!(
        stack.provider.counters().refreshes,
        2,
        "the dead one's call and the probe"
    );
    assert_eq!(reauth_reasons(&stack).await, ["rotation_lost"]);
    let item = stack.credential(&user.user_id).await.unwrap();
    assert!(item.lease.is_none(), "no lease left behind");
}

/// A refresh the vault gave up on may still be running at the provider, which finishes it (and
/// rotates) whether or not anyone waits. The next refresh sends the same refresh token, so it waits a
/// whole lease length first: it never reaches the provider while the first request is in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_refresh_still_at_the_provider_is_not_raced_by_the_next_one() {
    let (stack, user) = stack_with_expired_login(StackOptions::default()).await;
    let lease = stack.config.refresh.lease_length;
    // 3 s at the provider: well past the vault's 800 ms timeout, well inside its 9 s lease.
    stack.provider.fail_next(&[Failure::Slow(Duration::from_secs(3))]);
    let first = stack.fetch_credentials(&user.access_token, &user.user_id, None).await;
    assert_eq!(first.status(), 503);
    assert!(
        stack.provider.slow_calls_in_flight() > 0,
        "premise: the provider is still working on it"
    );
    let item = stack.credential(&user.user_id).await.unwrap();
    let waits_ms = item.next_attempt_at_ms.unwrap() - credvault::clock::Clock::now_millis(&stack.clock);
    assert!(
        waits_ms >= lease.as_millis() as i64 - 100,
        "an unknown outcome holds refreshes back a lease length: {waits_ms} ms"
    );

    // Fetches while the provider still works on it: none reaches the provider.
    stack.clock.advance(2);
    let second = stack.fetch_credentials(&user.access_token, &user.user_id, None).await;
    assert_eq!(second.status(), 503);
    assert!(retry_after(&second) >= 1);
    assert_eq!(stack.provider.counters().refreshes, 1);
    while stack.provider.slow_calls_in_flight() > 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The provider did rotate: the refresh after the backoff is the one probe that finds the loss.
    pass_the_backoff(&stack, &user.user_id).await;
    let resp = stack.fetch_credentials(&user.access_token, &user.user_id, None).await;
    assert_eq!(resp.status(), 409);
    assert_eq!(stack.provider.counters().refreshes, 2);
    assert_eq!(
        stack.provider.counters().reuse_detected,
        1,
        "the probe, sent after the first had finished"
    );
    assert_eq!(reauth_reasons(&stack).await, ["rotation_lost"]);
}

/// A provider that rotates and then answers 429 ("nothing done, retry") gets its own spent token back
/// from the retry and refuses it. The vault sent that token itself moments before, so the loss is
/// `rotation_lost`, not a revocation by the user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_after_a_retry_the_provider_asked_for_is_rotation_lost() {
    let (stack, user) = stack_with_expired_login(StackOptions::default()).await;
    stack.provider.fail_next(&[Failure::RotateThenStatus(429)]);
    let resp = stack.fetch_credentials(&user.access_token, &user.user_id, None).await;
    assert_eq!(resp.status(), 409);
    assert_eq!(stack.provider.counters().refreshes, 2, "429 was retried, as it says to");
    assert_eq!(
        stack.provider.counters().answers_lost,
        1,
        "premise: the provider had rotated"
    );
    assert_eq!(reauth_reasons(&stack).await, ["rotation_lost"]);
}
