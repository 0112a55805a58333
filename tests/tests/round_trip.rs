//! The whole login round trip over real HTTP: start -> provider authorize -> callback -> app redirect
//! -> token exchange -> the vault token verifies against the published JWKS -> credential fetch.

use credvault_tests::stack::{APP_REDIRECT_URL, location};
use credvault_tests::{LocalStack, StackOptions};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_round_trip_yields_a_verifiable_vault_token_and_the_provider_credential() {
    let stack = LocalStack::start(StackOptions::default()).await;
    let verifier = credvault::random::token(32);
    let (request_id, callback) = stack.login_until_callback(&verifier).await;
    assert!(
        callback.starts_with(&stack.url("/api/callback/con_demo?")),
        "{callback}"
    );

    let back = stack.http.get(&callback).send().await.unwrap();
    assert_eq!(back.status(), 302);
    let app = url::Url::parse(&location(&back)).unwrap();
    assert!(app.as_str().starts_with(APP_REDIRECT_URL));
    let q: std::collections::HashMap<String, String> = app.query_pairs().into_owned().collect();
    assert_eq!(q["nonce"], request_id);
    assert_eq!(q["iss"], stack.base_url);

    let resp = stack
        .exchange(&request_id, &q["code"], &verifier, APP_REDIRECT_URL)
        .await;
    assert_eq!(resp.status(), 200);
    let tokens: Value = resp.json().await.unwrap();
    assert_eq!(tokens["token_type"], "Bearer");
    assert!(tokens["expires_in"].as_u64().unwrap() > 0);
    let access_token = tokens["access_token"].as_str().unwrap();

    // Verify the way a service API would: discovery -> JWKS -> signature and claims.
    let discovery: Value = stack
        .http
        .get(stack.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], stack.base_url);
    let jwks: JwkSet = stack
        .http
        .get(discovery["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let header = jsonwebtoken::decode_header(access_token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    let jwk = jwks.find(header.kid.as_deref().unwrap()).expect("kid is published");
    let mut validation = Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_issuer(&[&stack.base_url]);
    validation.set_audience(&[&stack.base_url]);
    let claims = jsonwebtoken::decode::<Value>(access_token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
        .unwrap()
        .claims;
    assert_eq!(claims["sub"], "con_demo|alice");
    assert_eq!(claims["azp"], "con_demo");
    for claim in ["iat", "exp", "jti", "scope"] {
        assert!(claims.get(claim).is_some(), "missing {claim}");
    }

    // The credential the vault returns is the one the provider issued at login.
    let issued_access_tokens: Vec<String> = stack
        .provider
        .issued_secrets()
        .into_iter()
        .filter(|s| s.starts_with("at-"))
        .collect();
    assert_eq!(issued_access_tokens.len(), 1);
    let resp = stack.fetch_credentials(access_token, "con_demo|alice", None).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["accessToken"], issued_access_tokens[0]);
    assert_eq!(body["tokenType"], "Bearer");
    assert!(body.get("refreshToken").is_none() && !body.to_string().contains("rt-"));

    // The session endpoint finds the same credential from the token's azp.
    let resp = stack
        .http
        .get(stack.url("/api/session/credentials"))
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["accessToken"],
        issued_access_tokens[0]
    );
    assert_eq!(stack.provider.counters().refreshes, 0);

    // A warm fetch of a valid token costs one DynamoDB read and no KMS call (DESIGN §6); its audit
    // event goes to the log, and audit-ingest stores it off the read path.
    stack.counters.reset();
    assert_eq!(
        stack
            .fetch_credentials(access_token, "con_demo|alice", None)
            .await
            .status(),
        200
    );
    assert_eq!(stack.counters.snapshot(), (1, 0, 0), "(reads, writes, KMS calls)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_token_requests_work_for_providers_that_want_them() {
    let stack = LocalStack::start(StackOptions {
        token_request_encoding: credvault::oauth::TokenRequestEncoding::Json,
        ..StackOptions::default()
    })
    .await;
    let user = stack.login().await;
    stack.clock.advance(3400);
    let resp = stack.fetch_credentials(&user.access_token, &user.user_id, None).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        stack.provider.counters().refreshes,
        1,
        "a JSON-encoded refresh reached the provider"
    );
}

/// The login SDK's `logout()` navigates to `/logout?redirect_uri&client_id`: back to the app, and only
/// to an allowed redirect URL, matched exactly, so the vault's domain is never an open redirect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_sends_the_browser_back_only_to_an_allowed_redirect_url() {
    let stack = LocalStack::start(StackOptions::default()).await;
    let logout = |query: String| stack.http.get(stack.url(&format!("/logout{query}"))).send();
    let encoded = |u: &str| credvault_tests::stack::encode(u);

    let back = logout(format!(
        "?redirect_uri={}&client_id=app_demo",
        encoded(APP_REDIRECT_URL)
    ))
    .await
    .unwrap();
    assert_eq!(back.status(), 302);
    assert_eq!(location(&back), APP_REDIRECT_URL);

    for refused in [
        String::new(),
        format!("?redirect_uri={}", encoded("https://evil.example/after-login")),
        format!("?redirect_uri={}", encoded(&format!("{APP_REDIRECT_URL}/../../evil"))),
        format!("?redirect_uri={}", encoded(&format!("{APP_REDIRECT_URL}x"))),
        format!("?redirect_uri={}", encoded(&APP_REDIRECT_URL.to_uppercase())),
        format!("?redirect_uri={}", encoded("//evil.example")),
    ] {
        let resp = logout(refused.clone()).await.unwrap();
        assert_eq!(resp.status(), 400, "{refused}");
        assert!(resp.headers().get("location").is_none(), "{refused}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["errorCode"], "invalid_redirect_url", "{refused}: {body}");
    }
}
