//! RFC 8693 token exchange (`POST /api/authentication/oauth/tokens`) through the whole authorization
//! matrix over real HTTP: the user themself, a granted and an ungranted actor, tokens of the wrong
//! kind in each place, another connection, a dead grant, a provider outage, scopes, and malformed
//! requests. Every refusal is an RFC 6749 §5.2 error that changes nothing; the audit names subject
//! and actor; no answer ever carries a refresh token.

use credvault_tests::fake_provider::Failure;
use credvault_tests::{LocalStack, LoggedIn, StackOptions};
use serde_json::{Value, json};

const GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";
const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

struct Answer {
    status: u16,
    body: Value,
    retry_after: Option<String>,
    cache_control: Option<String>,
}

async fn exchange(stack: &LocalStack, params: &[(&str, &str)]) -> Answer {
    let resp = stack
        .http
        .post(stack.url("/api/authentication/oauth/tokens"))
        .form(params)
        .send()
        .await
        .expect("token endpoint");
    let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(String::from);
    let (retry_after, cache_control) = (header("retry-after"), header("cache-control"));
    Answer {
        status: resp.status().as_u16(),
        body: resp.json().await.unwrap_or(Value::Null),
        retry_after,
        cache_control,
    }
}

fn as_user<'a>(subject: &'a str, audience: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", GRANT),
        ("subject_token", subject),
        ("subject_token_type", ACCESS),
        ("audience", audience),
    ]
}

fn with_actor<'a>(subject: &'a str, actor: &'a str, audience: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut params = as_user(subject, audience);
    params.extend([("actor_token", actor), ("actor_token_type", JWT)]);
    params
}

fn refused(answer: &Answer, error: &str) {
    assert_eq!(
        (answer.status, answer.body["error"].as_str()),
        (400, Some(error)),
        "{}",
        answer.body
    );
    assert!(answer.body["error_description"].is_string(), "{}", answer.body);
    assert_eq!(answer.cache_control.as_deref(), Some("no-store"));
}

struct World {
    stack: LocalStack,
    alice: LoggedIn,
    bob: LoggedIn,
    granted: String,
    ungranted: String,
}

async fn world() -> World {
    let stack = LocalStack::start(StackOptions::default()).await;
    stack.provider.set_knobs(|k| k.access_token_lifetime_secs = 3600);
    let alice = stack.login_as("alice").await;
    let bob = stack.login_as("bob").await;
    stack.add_connection("con_other").await;
    let admin = stack.client_token(&stack.admin_key);
    let (granted_id, granted_key) = stack.new_client("mcp server").await;
    let (_, ungranted_key) = stack.new_client("stranger").await;
    for (path, body) in [
        (
            "/v1/roles",
            json!({"roleId": "ro_reader", "name": "reader",
                "permissions": [{"action": "connections:credentials:read", "allow": true}]}),
        ),
        (
            "/v1/records",
            json!({"recordId": "rec_mcp", "name": "mcp", "users": [{"userId": granted_id}],
                "statements": [{"roles": ["ro_reader"], "resources": [{"resourceUri": "Connections/con_demo"}]}]}),
        ),
    ] {
        let (status, out) = stack.call("POST", path, Some(&admin), Some(&body)).await;
        assert_eq!(status, 201, "{out}");
    }
    let granted = stack.client_token(&granted_key);
    let ungranted = stack.client_token(&ungranted_key);
    World {
        stack,
        alice,
        bob,
        granted,
        ungranted,
    }
}

fn audit_events(items: &[credvault::store::Item]) -> Vec<(Option<String>, Option<String>, String)> {
    items
        .iter()
        .filter(|item| {
            item.get("action").and_then(|v| v.as_s().ok()).map(String::as_str) == Some("credential.exchange")
        })
        .map(|item| {
            let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
            (text("caller"), text("onBehalfOf"), text("outcome").unwrap_or_default())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_or_a_granted_actor_gets_the_provider_token_and_nobody_else_does() {
    let World {
        stack,
        alice,
        bob,
        granted,
        ungranted,
    } = world().await;
    let issued = |token: &str| stack.provider.issued_secrets().iter().any(|s| s == token);

    // The user themself.
    let mine = exchange(&stack, &as_user(&alice.access_token, "con_demo")).await;
    assert_eq!(mine.status, 200, "{}", mine.body);
    let token = mine.body["access_token"].as_str().unwrap().to_string();
    assert!(issued(&token), "the provider's token");
    assert_eq!(mine.body["issued_token_type"], ACCESS);
    assert_eq!(mine.body["token_type"], "Bearer");
    let expires_in = mine.body["expires_in"].as_i64().unwrap();
    assert!((1..=3600).contains(&expires_in), "{expires_in}");
    assert_eq!(mine.cache_control.as_deref(), Some("no-store"));
    assert!(mine.body.get("refresh_token").is_none());
    // `resource` names the connection as well as `audience` does.
    let mut by_resource = as_user(&alice.access_token, "con_demo");
    by_resource.retain(|(k, _)| *k != "audience");
    by_resource.push(("resource", "con_demo"));
    assert_eq!(
        exchange(&stack, &by_resource).await.body["access_token"],
        token.as_str()
    );

    // A granted service acting for the user.
    let acted = exchange(&stack, &with_actor(&alice.access_token, &granted, "con_demo")).await;
    assert_eq!(acted.status, 200, "{}", acted.body);
    assert_eq!(acted.body["access_token"], token.as_str());

    let before = stack.state_snapshot().await;
    // A service without the grant.
    refused(
        &exchange(&stack, &with_actor(&alice.access_token, &ungranted, "con_demo")).await,
        "unauthorized_client",
    );
    // Another connection: the user has no credential there, and is not its user.
    refused(
        &exchange(&stack, &as_user(&alice.access_token, "con_other")).await,
        "invalid_target",
    );
    refused(
        &exchange(&stack, &as_user(&alice.access_token, "con_missing")).await,
        "invalid_target",
    );
    // Tokens of the wrong kind in each place.
    refused(
        &exchange(&stack, &as_user(&granted, "con_demo")).await,
        "invalid_request",
    );
    refused(
        &exchange(&stack, &as_user(&alice.id_token, "con_demo")).await,
        "invalid_request",
    );
    refused(
        &exchange(&stack, &with_actor(&alice.access_token, &bob.access_token, "con_demo")).await,
        "invalid_request",
    );
    refused(
        &exchange(&stack, &as_user("not.a.jwt", "con_demo")).await,
        "invalid_request",
    );
    refused(
        &exchange(&stack, &with_actor(&alice.access_token, "not.a.jwt", "con_demo")).await,
        "invalid_request",
    );
    // An actor may not make someone else's token its subject's.
    refused(
        &exchange(&stack, &with_actor(&bob.access_token, &ungranted, "con_demo")).await,
        "unauthorized_client",
    );
    // Scopes: one the grant holds is fine; one it lacks is named.
    let mut scoped = as_user(&alice.access_token, "con_demo");
    scoped.push(("scope", "openid email"));
    assert_eq!(exchange(&stack, &scoped).await.status, 200);
    let mut lacking = as_user(&alice.access_token, "con_demo");
    lacking.push(("scope", "openid admin:org"));
    let answer = exchange(&stack, &lacking).await;
    refused(&answer, "invalid_scope");
    assert!(answer.body["error_description"].as_str().unwrap().contains("admin:org"));
    assert_eq!(stack.state_snapshot().await, before, "refusals change nothing");

    // The audit names the actor as the caller and the user it acted for.
    stack.audit_flushed().await;
    let events = audit_events(&stack.aws.scan_all().await);
    let alice_id = alice.user_id.clone();
    let granted_id = granted_subject(&granted);
    assert!(
        events.contains(&(Some(alice_id.clone()), None, "ok".into())),
        "{events:?}"
    );
    assert!(
        events.contains(&(Some(granted_id), Some(alice_id), "ok".into())),
        "{events:?}"
    );
    assert!(
        events.iter().any(|(_, _, outcome)| outcome == "forbidden"),
        "{events:?}"
    );

    // No answer carried the refresh token.
    let stored = stack.stored_refresh_token(&alice.user_id).await.unwrap();
    for answer in [mine, acted] {
        assert!(!answer.body.to_string().contains(&stored));
    }
}

/// The service client a client token is of (its `sub`).
fn granted_subject(token: &str) -> String {
    jsonwebtoken::dangerous::insecure_decode::<Value>(token).unwrap().claims["sub"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_grant_and_an_outage_answer_as_a_token_endpoint_does() {
    let World { stack, alice, bob, .. } = world().await;
    // Bob's refresh token is dead at the provider.
    stack.clock.advance(3600);
    stack.provider.fail_next(&[Failure::InvalidGrant]);
    refused(
        &exchange(&stack, &as_user(&bob.access_token, "con_demo")).await,
        "invalid_grant",
    );
    // The provider is down and Alice's token has expired: retry later.
    stack
        .provider
        .fail_next(&[Failure::Status(503), Failure::Status(503), Failure::Status(503)]);
    let answer = exchange(&stack, &as_user(&alice.access_token, "con_demo")).await;
    assert_eq!(
        (answer.status, answer.body["error"].as_str()),
        (503, Some("temporarily_unavailable")),
        "{}",
        answer.body
    );
    assert!(answer.retry_after.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_rfc_errors_and_json_bodies_work_too() {
    let World { stack, alice, .. } = world().await;
    let before = stack.state_snapshot().await;
    let post = |content_type: &'static str, body: String| {
        stack
            .http
            .post(stack.url("/api/authentication/oauth/tokens"))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    for (content_type, body, error) in [
        (
            "application/x-www-form-urlencoded",
            "grant_type=client_credentials".to_string(),
            "unsupported_grant_type",
        ),
        ("application/x-www-form-urlencoded", String::new(), "invalid_request"),
        ("text/plain", format!("grant_type={GRANT}"), "invalid_request"),
        ("application/json", "[1, 2]".to_string(), "invalid_request"),
        (
            "application/x-www-form-urlencoded",
            "a".repeat(20_000),
            "invalid_request",
        ),
    ] {
        let resp = post(content_type, body).await.unwrap();
        assert_eq!(resp.status(), 400, "{content_type}");
        let answer: Value = resp.json().await.unwrap();
        assert_eq!(answer["error"], error, "{answer}");
    }
    assert_eq!(stack.state_snapshot().await, before);
    let json_body = json!({
        "grant_type": GRANT, "subject_token": alice.access_token, "subject_token_type": ACCESS, "audience": "con_demo",
    });
    let resp = post("application/json", json_body.to_string()).await.unwrap();
    assert_eq!(resp.status(), 200);
}
