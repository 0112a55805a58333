//! What a provider can make the vault spend, and what an unauthenticated caller can.
//!
//! Provider answers (token endpoint, discovery, JWKS, user endpoint, revocation) are read up to 1 MB
//! and no further: a 5 MB answer fails the login or the refresh cleanly, and the fake provider's byte
//! counter shows the vault hung up long before the end. A login start seals its PKCE verifier under a
//! data key the cache can serve, so the warm path makes no KMS call, and the verifier still cannot be
//! moved onto another login request.

use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use credvault::config::RefreshTiming;
use credvault::oauth::limited_body::MAX_PROVIDER_RESPONSE_BYTES;
use credvault::store::login_requests;
use credvault_tests::fake_provider::{Answer, Oversize};
use credvault_tests::stack::{APP_REDIRECT_URL, encode, location};
use credvault_tests::{LocalStack, StackOptions};
use serde_json::{Value, json};

const FIVE_MB: usize = 5 * 1024 * 1024;
/// "Far below 5 MB": the 1 MB cap plus what sockets and the HTTP stack buffer on the way.
const HUNG_UP_BELOW: u64 = 5 * 1024 * 1024 / 2;

/// The provider's byte counter once the stream has noticed the hang-up (it only ever grows).
async fn oversized_bytes_sent(stack: &LocalStack) -> u64 {
    tokio::time::sleep(Duration::from_millis(300)).await;
    stack.provider.counters().oversized_bytes_sent
}

fn query_param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Runs the browser leg of a login and the callback; returns the app redirect.
async fn login_redirect(stack: &LocalStack) -> String {
    let (_, callback) = stack.login_until_callback(&credvault::random::token(32)).await;
    let back = stack.http.get(&callback).send().await.unwrap();
    assert_eq!(back.status(), 302, "the callback sends the browser back to the app");
    let app = location(&back);
    assert!(app.starts_with(APP_REDIRECT_URL), "{app}");
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_five_megabyte_token_answer_at_login_fails_the_login_and_is_not_read_to_the_end() {
    let stack = LocalStack::start(StackOptions::default()).await;
    for how in [Oversize::Chunked(FIVE_MB), Oversize::WithLength(FIVE_MB)] {
        stack.provider.set_knobs(|k| k.oversized = Some((Answer::Token, how)));
        let sent_before = stack.provider.counters().oversized_bytes_sent;
        let before = stack.state_snapshot().await;

        let app = login_redirect(&stack).await;
        assert_eq!(query_param(&app, "error").as_deref(), Some("server_error"), "{how:?}");
        assert_eq!(query_param(&app, "code"), None, "{how:?}");
        assert_eq!(stack.state_snapshot().await, before, "{how:?}: nothing stored");
        let sent = oversized_bytes_sent(&stack).await - sent_before;
        assert!(
            sent < HUNG_UP_BELOW,
            "{how:?}: the vault read {sent} bytes of a 5 MB answer"
        );
        if let Oversize::WithLength(_) = how {
            assert!(
                sent < MAX_PROVIDER_RESPONSE_BYTES as u64,
                "refused by its Content-Length, before reading up to the cap: {sent} bytes"
            );
        }
    }
    // The control: the same provider with ordinary answers logs the user in.
    stack.provider.set_knobs(|k| k.oversized = None);
    let user = stack.login().await;
    assert!(stack.credential(&user.user_id).await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_content_length_above_the_cap_is_refused_without_waiting_for_the_body() {
    // A provider timeout far longer than the test allows: waiting for the promised body would show.
    let stack = LocalStack::start(StackOptions {
        refresh: RefreshTiming {
            lease_length: Duration::from_secs(30),
            provider_timeout: Duration::from_secs(15),
            provider_attempts: 1,
            poll_deadline: Duration::from_secs(8),
            unknown_outcome_wait: Duration::from_secs(60),
        },
        ..StackOptions::default()
    })
    .await;
    stack
        .provider
        .set_knobs(|k| k.oversized = Some((Answer::Token, Oversize::ClaimedLength(FIVE_MB as u64))));
    let before = stack.state_snapshot().await;
    let (_, callback) = stack.login_until_callback(&credvault::random::token(32)).await;
    let started = Instant::now();
    let back = stack.http.get(&callback).send().await.unwrap();
    let waited = started.elapsed();
    assert_eq!(back.status(), 302);
    let app = location(&back);
    assert_eq!(query_param(&app, "error").as_deref(), Some("server_error"));
    assert!(
        waited < Duration::from_secs(7),
        "refused from the header, not after the provider timeout: {waited:?}"
    );
    assert_eq!(stack.state_snapshot().await, before, "nothing stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_five_megabyte_refresh_answer_is_a_503_once_and_nothing_is_committed() {
    let stack = LocalStack::start(StackOptions::default()).await;
    // Tokens issued at login are already expired, so the fetch must refresh.
    stack.provider.set_knobs(|k| k.access_token_lifetime_secs = 0);
    let user = stack.login().await;
    let stored_before = stack.stored_refresh_token(&user.user_id).await.unwrap();
    let version_before = stack.credential(&user.user_id).await.unwrap().token_version;
    stack.provider.set_knobs(|k| {
        k.access_token_lifetime_secs = 3600;
        k.oversized = Some((Answer::Token, Oversize::Chunked(FIVE_MB)));
    });

    let resp = stack.fetch_credentials(&user.access_token, &user.user_id, None).await;
    let status = resp.status().as_u16();
    assert_eq!(status, 503, "a provider fault, never a 500");
    assert!(resp.headers().get("retry-after").is_some());
    let body: Value = resp.json().await.expect("a JSON problem body");
    assert_eq!(body["errorCode"], "provider_unavailable");
    assert_eq!(
        stack.provider.counters().refreshes,
        1,
        "not retried: the provider may have rotated the token in the answer that was refused"
    );
    let sent = oversized_bytes_sent(&stack).await;
    assert!(sent < HUNG_UP_BELOW, "the vault read {sent} bytes of a 5 MB answer");
    let item = stack.credential(&user.user_id).await.unwrap();
    assert!(item.lease.is_none(), "lease released");
    assert_eq!(item.token_version, version_before, "nothing committed");
    assert_eq!(stack.stored_refresh_token(&user.user_id).await.unwrap(), stored_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_megabyte_discovery_or_jwks_answers_fail_the_login_as_an_invalid_id_token() {
    let stack = LocalStack::start(StackOptions::default()).await;
    for answer in [Answer::Discovery, Answer::Jwks] {
        stack
            .provider
            .set_knobs(|k| k.oversized = Some((answer, Oversize::Chunked(FIVE_MB))));
        let sent_before = stack.provider.counters().oversized_bytes_sent;
        let before = stack.state_snapshot().await;

        let app = login_redirect(&stack).await;
        assert_eq!(
            query_param(&app, "error").as_deref(),
            Some("invalid_id_token"),
            "{answer:?}"
        );
        assert_eq!(stack.state_snapshot().await, before, "{answer:?}: nothing stored");
        let sent = oversized_bytes_sent(&stack).await - sent_before;
        assert!(sent > 0, "{answer:?}: the inflated answer was served");
        assert!(
            sent < HUNG_UP_BELOW,
            "{answer:?}: the vault read {sent} bytes of a 5 MB answer"
        );
    }
}

/// Provider answers are taken from where the connection points, never from where a redirect sends
/// the vault: a JWKS that moved with a 302 fails the login (its id_token cannot be verified), and the
/// moved keys are never fetched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirected_jwks_is_not_followed() {
    let stack = LocalStack::start(StackOptions::default()).await;
    stack.provider.set_knobs(|k| k.jwks_moved = true);
    let before = stack.state_snapshot().await;
    let app = login_redirect(&stack).await;
    assert_eq!(query_param(&app, "error").as_deref(), Some("invalid_id_token"));
    assert_eq!(stack.state_snapshot().await, before, "nothing stored");
    let counters = stack.provider.counters();
    assert!(counters.jwks >= 1, "the JWKS was asked for");
    assert_eq!(counters.jwks_moved, 0, "the redirect was not followed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_five_megabyte_user_endpoint_answer_fails_the_login() {
    let stack = LocalStack::start(StackOptions::default()).await;
    // A GitHub-style connection: no issuer, users identified through the user endpoint.
    stack.add_connection("con_plain").await;
    let (table, envelope) = (&stack.instance.table, &stack.instance.envelope);
    let mut connection = credvault::store::connections::get(table, envelope, "con_plain")
        .await
        .unwrap()
        .unwrap();
    connection.issuer_url = None;
    connection.user_info_url = Some(format!("{}/userinfo", stack.provider.issuer()));
    assert!(
        credvault::store::connections::put(table, envelope, &connection, false)
            .await
            .unwrap()
    );
    stack
        .provider
        .set_knobs(|k| k.oversized = Some((Answer::UserInfo, Oversize::Chunked(FIVE_MB))));
    let before = stack.state_snapshot().await;

    let mut start = stack.start_body(&credvault::random::token(32));
    start["connectionId"] = json!("con_plain");
    let started: Value = stack.start_login(&start).await.json().await.unwrap();
    let consent = stack
        .http
        .get(started["authenticationUrl"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let back = stack.http.get(location(&consent)).send().await.unwrap();
    assert_eq!(back.status(), 302);
    let app = location(&back);
    assert_eq!(query_param(&app, "error").as_deref(), Some("server_error"));
    assert_eq!(stack.state_snapshot().await, before, "nothing stored");
    let sent = oversized_bytes_sent(&stack).await;
    assert!(
        sent > 0 && sent < HUNG_UP_BELOW,
        "the vault read {sent} bytes of a 5 MB answer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_five_megabyte_revocation_answer_is_not_read_and_the_disconnect_completes() {
    let stack = LocalStack::start(StackOptions::default()).await;
    let user = stack.login().await;
    stack
        .provider
        .set_knobs(|k| k.oversized = Some((Answer::Revocation, Oversize::Chunked(FIVE_MB))));
    let path = format!("/v1/connections/con_demo/users/{}/credentials", encode(&user.user_id));
    let (status, _) = stack.call("DELETE", &path, Some(&user.access_token), None).await;
    assert_eq!(status, 204, "RFC 7009: the status says the token is revoked");
    assert_eq!(stack.provider.counters().revocations, 1);
    assert!(stack.credential(&user.user_id).await.is_none());
    let sent = oversized_bytes_sent(&stack).await;
    assert!(sent < HUNG_UP_BELOW, "the vault read {sent} bytes of a 5 MB answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_login_starts_make_no_kms_call() {
    let stack = LocalStack::start(StackOptions::default()).await;
    let start = || async {
        let resp = stack
            .start_login(&stack.start_body(&credvault::random::token(32)))
            .await;
        assert_eq!(resp.status(), 200);
    };
    // The first start warms the instance: the connection's client secret and a verifier data key.
    start().await;
    let (_, _, kms_warm) = stack.counters.snapshot();
    assert!(kms_warm > 0, "the cold start does reach KMS");
    for _ in 0..20 {
        start().await;
    }
    let (_, _, kms_after) = stack.counters.snapshot();
    assert_eq!(
        kms_after,
        kms_warm,
        "20 unauthenticated login starts cost {} KMS calls",
        kms_after - kms_warm
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verifier_moved_onto_another_login_request_does_not_open() {
    let stack = LocalStack::start(StackOptions::default()).await;
    let (_, callback_a) = stack.login_until_callback(&credvault::random::token(32)).await;
    let (_, callback_b) = stack.login_until_callback(&credvault::random::token(32)).await;
    let pk_of = |callback: &str| login_requests::pk(&query_param(callback, "state").unwrap());
    let (pk_a, pk_b) = (pk_of(&callback_a), pk_of(&callback_b));
    let dynamodb = &stack.aws.dynamodb;
    let key = |pk: &str| {
        [
            ("pk".to_string(), AttributeValue::S(pk.to_string())),
            ("sk".to_string(), AttributeValue::S("LOGIN_REQUEST".to_string())),
        ]
        .into_iter()
        .collect::<std::collections::HashMap<_, _>>()
    };
    let item_a = dynamodb
        .get_item()
        .table_name(&stack.aws.table)
        .set_key(Some(key(&pk_a)))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    let verifier_a = item_a[login_requests::ATTR_PROVIDER_VERIFIER].clone();
    // The attacker (anyone who can write the table) puts A's sealed verifier on B's login request.
    dynamodb
        .update_item()
        .table_name(&stack.aws.table)
        .set_key(Some(key(&pk_b)))
        .update_expression("SET #v = :v")
        .condition_expression("attribute_exists(pk)")
        .expression_attribute_names("#v", login_requests::ATTR_PROVIDER_VERIFIER)
        .expression_attribute_values(":v", verifier_a)
        .send()
        .await
        .unwrap();
    let before = stack.state_snapshot().await;

    let back = stack.http.get(&callback_b).send().await.unwrap();
    assert_eq!(
        back.status(),
        302,
        "the browser goes back to the app with an error, not a 500"
    );
    let app = location(&back);
    assert_eq!(query_param(&app, "error").as_deref(), Some("invalid_request"), "{app}");
    assert_eq!(query_param(&app, "code"), None, "{app}");
    assert_eq!(
        stack.provider.counters().code_exchanges,
        0,
        "the moved verifier never opened, so the provider was never asked"
    );
    let after = stack.state_snapshot().await;
    let expected: Vec<String> = before.into_iter().filter(|item| !item.contains(&pk_b)).collect();
    assert_eq!(after, expected, "B's request is consumed and nothing is stored");

    // The control: A's verifier, where it belongs, still opens and A's login completes.
    let back = stack.http.get(&callback_a).send().await.unwrap();
    assert_eq!(back.status(), 302);
    assert!(query_param(&location(&back), "code").is_some());
    assert_eq!(stack.provider.counters().code_exchanges, 1);
}
