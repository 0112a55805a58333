//! Bad input of every kind gets a clear 4xx JSON error and changes nothing in the table.

use std::collections::BTreeMap;

use credvault_tests::stack::{APP_REDIRECT_URL, location};
use credvault_tests::{LocalStack, StackOptions};
use serde_json::{Value, json};

/// Asserts the vault's JSON error and gives back its body.
async fn expect_error(resp: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(resp.status().as_u16(), status, "expected {code}");
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["errorCode"], code, "{body}");
    assert_eq!(body["status"], status);
    assert!(body["title"].is_string() && body["errorId"].is_string());
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_login_starts_are_refused_and_store_nothing() {
    let stack = LocalStack::start(StackOptions::default()).await;
    let before = stack.state_snapshot().await;
    let verifier = credvault::random::token(32);
    let good = stack.start_body(&verifier);
    let with = |field: &str, value: Value| {
        let mut body = good.clone();
        body[field] = value;
        body
    };

    expect_error(
        stack.start_login(&with("connectionId", json!("con_unknown"))).await,
        404,
        "connection_not_found",
    )
    .await;
    expect_error(
        stack.start_login(&with("connectionId", json!("bad/id"))).await,
        400,
        "invalid_connection_id",
    )
    .await;
    for redirect in [
        "https://evil.example.com/after-login",
        "https://app.example.com/after-login/more",
        "https://app.example.com/after-logi",
        "https://APP.example.com/after-login",
        "https://app.example.com/After-Login",
        "https://app.example.com/after-login?next=https://evil.example.com",
        "https://app.example.com/after-login#x",
        "http://app.example.com/after-login",
        "https://app.example.com.evil.example/after-login",
        "https://app.example.com/after-login/../evil",
    ] {
        expect_error(
            stack.start_login(&with("redirectUrl", json!(redirect))).await,
            400,
            "invalid_redirect_url",
        )
        .await;
    }
    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("codeChallenge");
    expect_error(stack.start_login(&missing).await, 400, "invalid_code_challenge").await;
    expect_error(
        stack.start_login(&with("codeChallengeMethod", json!("plain"))).await,
        400,
        "invalid_code_challenge",
    )
    .await;
    expect_error(
        stack.start_login(&with("codeChallenge", json!("too-short"))).await,
        400,
        "invalid_code_challenge",
    )
    .await;
    let hostile = with(
        "connectionProperties",
        json!({"redirect_uri": "https://evil.example.com"}),
    );
    expect_error(stack.start_login(&hostile).await, 400, "invalid_connection_properties").await;
    expect_error(
        stack
            .start_login(&with("connectionProperties", json!({"prompt": 5})))
            .await,
        400,
        "invalid_json",
    )
    .await;

    let post_raw = |body: Vec<u8>| {
        stack
            .http
            .post(stack.url("/api/authentication"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    expect_error(post_raw(b"{not json".to_vec()).await.unwrap(), 400, "invalid_json").await;
    expect_error(post_raw(Vec::new()).await.unwrap(), 400, "invalid_json").await;
    let mut huge = good.clone();
    huge["padding"] = json!("x".repeat(20_000));
    expect_error(
        post_raw(huge.to_string().into_bytes()).await.unwrap(),
        413,
        "payload_too_large",
    )
    .await;

    assert_eq!(stack.state_snapshot().await, before, "nothing stored");
    assert_eq!(stack.provider.counters().authorize, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_callbacks_are_refused_and_leave_the_login_request_usable() {
    let stack = LocalStack::start(StackOptions::default()).await;
    stack.add_connection("con_other").await;
    let verifier = credvault::random::token(32);
    let (_, callback) = stack.login_until_callback(&verifier).await;
    let query = url::Url::parse(&callback).unwrap().query().unwrap().to_string();
    let before = stack.state_snapshot().await;

    // A state presented at another connection's callback: a mix-up attempt.
    let foreign = stack
        .http
        .get(stack.url(&format!("/api/callback/con_other?{query}")))
        .send()
        .await
        .unwrap();
    expect_error(foreign, 400, "invalid_state").await;
    let no_state = stack
        .http
        .get(stack.url("/api/callback/con_demo?code=abc"))
        .send()
        .await
        .unwrap();
    expect_error(no_state, 400, "invalid_state").await;
    let unknown = stack
        .http
        .get(stack.url("/api/callback/con_demo?code=abc&state=never-issued"))
        .send()
        .await
        .unwrap();
    expect_error(unknown, 400, "invalid_state").await;
    let repeated = stack.http.get(format!("{callback}&state=again")).send().await.unwrap();
    expect_error(repeated, 400, "invalid_request").await;
    assert_eq!(stack.state_snapshot().await, before, "nothing changed");
    assert_eq!(stack.provider.counters().code_exchanges, 0);

    // The real callback still works once, and a replay of it is refused.
    let ok = stack.http.get(&callback).send().await.unwrap();
    assert_eq!(ok.status(), 302);
    assert!(location(&ok).contains("code="));
    let after_login = stack.state_snapshot().await;
    let replay = stack.http.get(&callback).send().await.unwrap();
    expect_error(replay, 400, "invalid_state").await;
    assert_eq!(stack.state_snapshot().await, after_login);
    assert_eq!(stack.provider.counters().code_exchanges, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_error_at_the_callback_goes_back_to_the_app_and_stores_nothing() {
    let stack = LocalStack::start(StackOptions::default()).await;
    let (request_id, callback) = stack.login_until_callback(&credvault::random::token(32)).await;
    let state = url::Url::parse(&callback)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let resp = stack
        .http
        .get(stack.url(&format!("/api/callback/con_demo?error=access_denied&state={state}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    let app = url::Url::parse(&location(&resp)).unwrap();
    assert!(app.as_str().starts_with(APP_REDIRECT_URL));
    let q: BTreeMap<String, String> = app.query_pairs().into_owned().collect();
    assert_eq!(q.get("error").map(String::as_str), Some("access_denied"));
    assert_eq!(q.get("nonce"), Some(&request_id));
    assert!(!q.contains_key("code"));
    let kinds: Vec<String> = stack
        .aws
        .scan_all()
        .await
        .iter()
        .map(|i| i["pk"].as_s().unwrap().clone())
        .collect();
    let stored_by_login = ["CREDENTIAL#", "LOGIN#", "VAULT_CODE#"];
    assert!(
        !kinds.iter().any(|k| stored_by_login.iter().any(|p| k.starts_with(p))),
        "the login request is consumed and nothing else is stored: {kinds:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_login_request_is_refused() {
    let stack = LocalStack::start(StackOptions {
        configure: |c| c.login_request_lifetime = std::time::Duration::from_secs(1),
        ..StackOptions::default()
    })
    .await;
    let (_, callback) = stack.login_until_callback(&credvault::random::token(32)).await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let before = stack.state_snapshot().await;
    expect_error(stack.http.get(&callback).send().await.unwrap(), 400, "login_expired").await;
    assert_eq!(stack.state_snapshot().await, before);
    assert_eq!(stack.provider.counters().code_exchanges, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_token_exchanges_are_refused_and_leave_the_code_usable() {
    let stack = LocalStack::start(StackOptions::default()).await;
    let verifier = credvault::random::token(32);
    let (request_id, callback) = stack.login_until_callback(&verifier).await;
    let back = stack.http.get(&callback).send().await.unwrap();
    let app = url::Url::parse(&location(&back)).unwrap();
    let code = app.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    let before = stack.state_snapshot().await;

    // Each binding refuses by itself, and says which: a code whose exchange names the wrong request,
    // verifier or redirect URL stays in place for the right one; an unknown code (of the right shape)
    // finds nothing.
    let wrong_verifier = credvault::random::token(32);
    let unknown_code = credvault::random::token(32);
    let refusals = [
        (
            stack
                .exchange(&request_id, &code, &wrong_verifier, APP_REDIRECT_URL)
                .await,
            "code_verifier does not match the code challenge",
        ),
        (
            stack
                .exchange(&request_id, &code, &verifier, "https://evil.example.com/")
                .await,
            "redirect_uri does not match the login request",
        ),
        (
            stack
                .exchange("another-request", &code, &verifier, APP_REDIRECT_URL)
                .await,
            "the code belongs to another authentication request",
        ),
        (
            stack
                .exchange(&request_id, &unknown_code, &verifier, APP_REDIRECT_URL)
                .await,
            "the code is unknown or was already used",
        ),
        (
            stack
                .exchange(&request_id, "not-a-code", &verifier, APP_REDIRECT_URL)
                .await,
            "the code is unknown or was already used",
        ),
    ];
    for (resp, detail) in refusals {
        let body = expect_error(resp, 400, "invalid_grant").await;
        assert_eq!(body["detail"], detail, "{body}");
    }
    expect_error(
        stack.exchange(&request_id, &code, "short", APP_REDIRECT_URL).await,
        400,
        "invalid_request",
    )
    .await;
    let url = stack.url(&format!("/api/authentication/{request_id}/tokens"));
    let wrong_grant =
        json!({"grant_type": "password", "code": code, "code_verifier": verifier, "redirect_uri": APP_REDIRECT_URL});
    expect_error(
        stack.http.post(&url).json(&wrong_grant).send().await.unwrap(),
        400,
        "unsupported_grant_type",
    )
    .await;
    let malformed = stack
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body("[1,2")
        .send()
        .await
        .unwrap();
    expect_error(malformed, 400, "invalid_json").await;
    assert_eq!(stack.state_snapshot().await, before, "nothing changed");

    // The right exchange still works, exactly once.
    assert_eq!(
        stack
            .exchange(&request_id, &code, &verifier, APP_REDIRECT_URL)
            .await
            .status(),
        200
    );
    expect_error(
        stack.exchange(&request_id, &code, &verifier, APP_REDIRECT_URL).await,
        400,
        "invalid_grant",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credential_requests_and_routes_are_4xx_json() {
    let stack = LocalStack::start(StackOptions::default()).await;
    let user = stack.login().await;
    let before = stack.state_snapshot().await;
    let base = format!(
        "/v1/connections/con_demo/users/{}/credentials",
        credvault_tests::stack::encode(&user.user_id)
    );
    for bad in ["abc", "-1", "86401", "1.5"] {
        let resp = stack
            .http
            .get(stack.url(&format!("{base}?minimumValiditySeconds={bad}")))
            .bearer_auth(&user.access_token);
        expect_error(resp.send().await.unwrap(), 400, "invalid_minimum_validity").await;
    }
    let long_user = "x".repeat(65);
    let resp = stack
        .http
        .get(stack.url(&format!("/v1/connections/con_demo/users/{long_user}/credentials")));
    expect_error(
        resp.bearer_auth(&user.access_token).send().await.unwrap(),
        400,
        "invalid_user_id",
    )
    .await;
    let resp = stack
        .http
        .get(stack.url("/v1/connections/con_demo/users/%FF%FE/credentials"));
    expect_error(
        resp.bearer_auth(&user.access_token).send().await.unwrap(),
        400,
        "invalid_path",
    )
    .await;
    expect_error(
        stack.http.get(stack.url("/nowhere")).send().await.unwrap(),
        404,
        "route_not_found",
    )
    .await;
    expect_error(
        stack
            .http
            .delete(stack.url("/api/authentication"))
            .send()
            .await
            .unwrap(),
        405,
        "method_not_allowed",
    )
    .await;
    assert_eq!(stack.state_snapshot().await, before);
    assert_eq!(stack.provider.counters().refreshes, 0);
}
