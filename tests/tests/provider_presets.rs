//! Every preset end to end: a connection made from the preset (its client authentication, dialect,
//! request encoding, user id expression and properties), with only its endpoints pointed at the fake
//! provider speaking that provider's dialect, through login, refresh with rotation, a transient
//! failure, a dead grant, a new login and revocation. Presets that name a client authentication meet
//! a provider that accepts only that one; presets that leave it to discovery meet a provider whose
//! discovery lists only HTTP Basic.

use credvault::management::presets;
use credvault::oauth::client_auth::TokenEndpointAuthMethod;
use credvault::oauth::dialect::Dialect;
use credvault_tests::access_token_of;
use credvault_tests::fake_provider::{ClientAuth, Failure, ProviderDialect};
use credvault_tests::stack::encode;
use credvault_tests::{LocalStack, StackOptions};
use serde_json::{Value, json};

/// With `:`, `%` and `+`: HTTP Basic must form-encode it (RFC 6749 §2.3.1).
const SECRET: &str = "pre:set%secret+1";

/// The connection body for `preset`: the preset, credentials, and the fake provider's endpoints.
fn body(stack: &LocalStack, name: &str, preset: &presets::Preset) -> Value {
    let issuer = stack.provider.issuer().to_string();
    let parameters: serde_json::Map<String, Value> = preset
        .parameters
        .iter()
        .map(|p| (p.clone(), json!(format!("{p}-of-the-test"))))
        .collect();
    let mut body = json!({
        "connectionId": format!("con_{}", name.replace('-', "_")),
        "preset": name, "presetParameters": parameters,
        "clientId": credvault_tests::fake_provider::CLIENT_ID, "clientSecret": SECRET,
        "revocationUrl": format!("{issuer}/revoke"),
    });
    if preset.issuer_url.is_some() {
        // OIDC: the issuer is the fake one, so discovery, id_token keys and endpoints are its.
        body["issuerUrl"] = json!(issuer);
    } else {
        body["authenticationUrl"] = json!(format!("{issuer}/authorize"));
        body["tokenUrl"] = json!(format!("{issuer}/token"));
        body["data"] = json!({"oidcUserEndpointUrl": format!("{issuer}/userinfo")});
    }
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_preset_logs_in_refreshes_fails_recovers_and_revokes() {
    let stack = LocalStack::start(StackOptions {
        client_secret: SECRET.to_string(),
        ..StackOptions::default()
    })
    .await;
    let admin = stack.client_token(&stack.admin_key);
    assert_eq!(presets::all().len(), 10, "every preset is exercised");
    for (name, preset) in presets::all() {
        let method = match preset.token_endpoint_auth_method {
            Some(TokenEndpointAuthMethod::ClientSecretPost) => ClientAuth::PostOnly,
            // Left to discovery, which lists only Basic.
            _ => ClientAuth::BasicOnly,
        };
        let expected_method = if method == ClientAuth::PostOnly {
            "client_secret_post"
        } else {
            "client_secret_basic"
        };
        let dialect = match preset.dialect {
            Dialect::Github => ProviderDialect::Github,
            Dialect::Slack => ProviderDialect::Slack,
            Dialect::Standard | Dialect::Atlassian => ProviderDialect::Standard,
        };
        let json_only = preset.supported_content_type.as_deref() == Some("application/json");
        stack.provider.set_knobs(|k| {
            k.client_auth = method;
            k.dialect = dialect;
            k.strict_json_token_requests = json_only;
            k.access_token_lifetime_secs = 0;
            k.rotate_refresh_tokens = true;
        });
        // Made with the provider already in place: discovery reads its client authentication.
        let body = body(&stack, name, preset);
        let connection_id = body["connectionId"].as_str().unwrap().to_string();
        let (status, created) = stack.call("POST", "/v1/connections", Some(&admin), Some(&body)).await;
        assert_eq!(status, 201, "{name}: {created}");
        assert_eq!(created["tokenEndpointAuthMethod"], expected_method, "{name}");
        let calls = stack.provider.counters();

        // Login: born expired, so the first fetch refreshes, and the refresh token rotates.
        let user = stack.login_at(&connection_id).await;
        assert!(
            user.user_id.starts_with(&format!("{connection_id}|")),
            "{name}: {}",
            user.user_id
        );
        stack.provider.set_knobs(|k| k.access_token_lifetime_secs = 3600);
        let path = format!(
            "/v1/connections/{connection_id}/users/{}/credentials",
            encode(&user.user_id)
        );
        let before = stack.credential_at(&connection_id, &user.user_id).await;
        let (status, fetched) = stack.call("GET", &path, Some(&user.access_token), None).await;
        assert_eq!(status, 200, "{name}: {fetched}");
        assert!(
            stack
                .provider
                .issued_secrets()
                .contains(&fetched["accessToken"].as_str().unwrap().to_string())
        );
        assert_eq!(stack.provider.counters().refreshes, calls.refreshes + 1, "{name}");
        let after = stack.credential_at(&connection_id, &user.user_id).await;
        assert_ne!(
            before.map(|c| c.refresh_token),
            after.map(|c| c.refresh_token),
            "{name}: the rotated refresh token is stored"
        );

        // A transient failure (the provider's own 503): 503 with Retry-After, the credential kept.
        stack.clock.advance(3600);
        stack.provider.fail_next(&[Failure::Status(503)]);
        let fetch = || stack.http.get(stack.url(&path)).bearer_auth(&user.access_token).send();
        let resp = fetch().await.unwrap();
        assert_eq!(resp.status(), 503, "{name}");
        assert!(resp.headers().get("retry-after").is_some(), "{name}");
        stack.clock.advance(120);
        let token = access_token_of(fetch().await.unwrap()).await;
        assert!(stack.provider.issued_secrets().contains(&token), "{name}: recovered");

        // A dead grant, in the dialect's words: re-authentication, until the user logs in again.
        stack.clock.advance(3600);
        stack.provider.fail_next(&[Failure::InvalidGrant]);
        let (status, dead) = stack.call("GET", &path, Some(&user.access_token), None).await;
        assert_eq!(
            (status, dead["errorCode"].as_str()),
            (409, Some("reauthentication_required")),
            "{name}: {dead}"
        );
        let again = stack.login_at(&connection_id).await;
        assert_eq!(again.user_id, user.user_id, "{name}");
        let (status, _) = stack.call("GET", &path, Some(&again.access_token), None).await;
        assert_eq!(status, 200, "{name}");

        // Revocation at the provider, with the same client authentication.
        let stored = stack
            .stored_refresh_token_at(&connection_id, &user.user_id)
            .await
            .expect("a refresh token");
        let revocations = stack.provider.counters().revocations;
        let (status, _) = stack.call("DELETE", &path, Some(&again.access_token), None).await;
        assert_eq!(status, 204, "{name}");
        assert_eq!(stack.provider.counters().revocations, revocations + 1, "{name}");
        assert!(!stack.provider.refresh_token_is_live(&stored), "{name}: revoked");
        assert!(
            stack.credential_at(&connection_id, &user.user_id).await.is_none(),
            "{name}: deleted"
        );
    }
}
