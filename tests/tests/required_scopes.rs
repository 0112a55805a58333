//! Required scopes: a fetch (or token exchange) may name scopes the stored grant must hold. A grant
//! that lacks any answers 409 `insufficient_scope` with the missing ones and the part of a login start
//! body that asks for the union; the login it leads to, once the user consents, satisfies it. The
//! stored scopes are what the provider granted (an answer without `scope` granted what was asked).

use credvault_tests::stack::encode;
use credvault_tests::{LocalStack, LoggedIn, StackOptions};
use serde_json::{Value, json};

async fn fetch(stack: &LocalStack, user: &LoggedIn, required: &str) -> (u16, Value) {
    let path = format!(
        "/v1/connections/{}/users/{}/credentials?requiredScopes={}",
        stack.connection_id,
        encode(&user.user_id),
        encode(required)
    );
    stack.call("GET", &path, Some(&user.access_token), None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_lacking_a_required_scope_asks_for_consent_to_the_union() {
    let stack = LocalStack::start(StackOptions::default()).await;
    stack.provider.set_knobs(|k| k.access_token_lifetime_secs = 3600);
    // The user unticked `email` at the provider's consent screen: the provider granted less.
    stack
        .provider
        .set_knobs(|k| k.granted_scope = Some(Some("openid profile".into())));
    let alice = stack.login_as("alice").await;
    let stored = stack.credential(&alice.user_id).await.unwrap();
    assert_eq!(
        stored.scope.as_deref(),
        Some("openid profile"),
        "what was granted, not asked"
    );

    let (status, ok) = fetch(&stack, &alice, "openid profile").await;
    assert_eq!(status, 200, "{ok}");
    let (status, refused) = fetch(&stack, &alice, "openid email calendar.read").await;
    assert_eq!(
        (status, refused["errorCode"].as_str()),
        (409, Some("insufficient_scope")),
        "{refused}"
    );
    assert_eq!(refused["missingScopes"], json!(["email", "calendar.read"]));
    let login = &refused["login"];
    assert_eq!(login["connectionId"], stack.connection_id.as_str());
    assert_eq!(
        login["connectionProperties"]["scope"],
        "openid profile email calendar.read"
    );
    // The token was not handed out with the refusal.
    assert!(refused.get("accessToken").is_none());

    // The re-consent: the login the answer describes, the user consenting this time.
    stack.provider.set_knobs(|k| k.granted_scope = None);
    let verifier = credvault::random::token(32);
    let mut body = stack.start_body(&verifier);
    body["connectionProperties"] = login["connectionProperties"].clone();
    body["connectionProperties"]["login_hint"] = json!("alice");
    let started: Value = stack.start_login(&body).await.json().await.unwrap();
    let consent = stack
        .http
        .get(started["authenticationUrl"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let back = stack
        .http
        .get(credvault_tests::stack::location(&consent))
        .send()
        .await
        .unwrap();
    assert_eq!(back.status(), 302);
    let (status, ok) = fetch(&stack, &alice, "openid email calendar.read").await;
    assert_eq!(status, 200, "{ok}");
    assert_eq!(ok["scope"], "openid profile email calendar.read");

    // Bad lists are 400s that change nothing.
    let before = stack.state_snapshot().await;
    for bad in ["a  b", "quote\"d", &"x".repeat(1025)] {
        let (status, refused) = fetch(&stack, &alice, bad).await;
        assert_eq!(
            (status, refused["errorCode"].as_str()),
            (400, Some("invalid_required_scopes")),
            "{bad}"
        );
    }
    assert_eq!(stack.state_snapshot().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_without_scope_granted_what_was_asked() {
    let stack = LocalStack::start(StackOptions::default()).await;
    stack.provider.set_knobs(|k| k.granted_scope = Some(None));
    let bob = stack.login_as("bob").await;
    let stored = stack.credential(&bob.user_id).await.unwrap();
    assert_eq!(stored.scope.as_deref(), Some("openid profile email"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_exchange_names_the_missing_scopes_as_rfc_6749_does() {
    let stack = LocalStack::start(StackOptions::default()).await;
    stack.provider.set_knobs(|k| k.access_token_lifetime_secs = 3600);
    let carol = stack.login_as("carol").await;
    let resp = stack
        .http
        .post(stack.url("/api/authentication/oauth/tokens"))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
            ("subject_token", carol.access_token.as_str()),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:access_token"),
            ("audience", "con_demo"),
            ("scope", "openid drive.write"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_scope");
    assert_eq!(body["missing_scopes"], json!(["drive.write"]));
    assert_eq!(
        body["login"]["connectionProperties"]["scope"],
        "openid profile email drive.write"
    );
}
