//! Contract tests of real providers' differences, end to end through the vault against the fake
//! provider speaking each one: client authentication by HTTP Basic with awkward secrets, GitHub's and
//! Slack's answers with HTTP 200, comma scopes and Slack's user token under `authed_user`.

use credvault::oauth::client_auth::TokenEndpointAuthMethod;
use credvault::oauth::dialect::Dialect;
use credvault_tests::access_token_of;
use credvault_tests::fake_provider::{ClientAuth, ProviderDialect};
use credvault_tests::stack::encode;
use credvault_tests::{Failure, LocalStack, StackOptions};
use serde_json::Value;

/// A login, then a fetch that must refresh (login tokens are born expired).
async fn login_then_expired(stack: &LocalStack) -> credvault_tests::LoggedIn {
    stack.provider.set_knobs(|k| {
        k.access_token_lifetime_secs = 0;
        k.rotate_refresh_tokens = true;
    });
    let user = stack.login().await;
    stack.provider.set_knobs(|k| k.access_token_lifetime_secs = 3600);
    user
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_secret_basic_reaches_a_provider_that_refuses_secrets_in_the_body() {
    // RFC 6749 §2.3.1: the secret is form-encoded before base64, so `:`, `%`, `+` and spaces survive.
    let secret = "s3:cr%et+with space/ü";
    let stack = LocalStack::start(StackOptions {
        token_endpoint_auth_method: TokenEndpointAuthMethod::ClientSecretBasic,
        client_secret: secret.to_string(),
        ..StackOptions::default()
    })
    .await;
    stack.provider.set_knobs(|k| k.client_auth = ClientAuth::BasicOnly);
    let user = login_then_expired(&stack).await;
    assert_eq!(stack.provider.counters().code_exchanges, 1);

    let refreshed = access_token_of(stack.fetch_credentials(&user.access_token, &user.user_id, None).await).await;
    assert_eq!(stack.provider.counters().refreshes, 1);
    assert!(stack.provider.issued_secrets().contains(&refreshed));

    // Disconnect revokes with the same client authentication.
    stack.disconnect_and_expect_revoked(&user).await;
}

/// The control: the same provider refuses the secret in the body, so the choice of method is what
/// made the test above pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_secret_post_is_refused_by_a_basic_only_provider() {
    let stack = LocalStack::start(StackOptions::default()).await;
    let user = login_then_expired(&stack).await;
    stack.provider.set_knobs(|k| k.client_auth = ClientAuth::BasicOnly);
    let resp = stack.fetch_credentials(&user.access_token, &user.user_id, None).await;
    assert_eq!(
        resp.status(),
        409,
        "invalid_client: the client is dead, not the provider"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_errors_with_200_mark_a_dead_grant_and_comma_scopes_are_kept_spaced() {
    let stack = LocalStack::start(StackOptions {
        dialect: Dialect::Github,
        ..StackOptions::default()
    })
    .await;
    stack.provider.set_knobs(|k| k.dialect = ProviderDialect::Github);
    let user = login_then_expired(&stack).await;
    let resp = stack.fetch_credentials(&user.access_token, &user.user_id, None).await;
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["scope"], "openid profile email",
        "GitHub's commas, stored the RFC way: {body}"
    );

    // Refused with HTTP 200 and bad_refresh_token: re-authentication, not a retry.
    stack.clock.advance(3600);
    stack.provider.fail_next(&[Failure::InvalidGrant]);
    let resp = stack.fetch_credentials(&user.access_token, &user.user_id, None).await;
    assert_eq!(resp.status(), 409);
    assert_eq!(stack.provider.counters().refreshes, 2, "not retried");
}

/// The control for the dialect: the same 200-with-error answers read as the standard dialect are
/// not tokens and not a refusal, so the credential is not declared dead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_refusal_read_as_standard_is_not_a_dead_grant() {
    let stack = LocalStack::start(StackOptions::default()).await;
    stack.provider.set_knobs(|k| k.dialect = ProviderDialect::Github);
    let user = login_then_expired(&stack).await;
    stack.provider.fail_next(&[Failure::InvalidGrant]);
    let resp = stack.fetch_credentials(&user.access_token, &user.user_id, None).await;
    assert_eq!(resp.status(), 503, "an answer it cannot read, not a refusal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_user_tokens_come_from_authed_user_and_ok_false_is_a_dead_grant() {
    let stack = LocalStack::start(StackOptions {
        dialect: Dialect::Slack,
        ..StackOptions::default()
    })
    .await;
    stack.provider.set_knobs(|k| k.dialect = ProviderDialect::Slack);
    let user = stack.login().await;
    let token = access_token_of(stack.fetch_credentials(&user.access_token, &user.user_id, None).await).await;
    assert_ne!(token, "xoxb-bot-token-not-the-users", "the user's token, not the bot's");
    assert!(stack.provider.issued_secrets().contains(&token));

    stack.clock.advance(3600);
    let refreshed = access_token_of(stack.fetch_credentials(&user.access_token, &user.user_id, None).await).await;
    assert_ne!(refreshed, token);

    stack.clock.advance(3600);
    stack.provider.fail_next(&[Failure::InvalidGrant]);
    let resp = stack.fetch_credentials(&user.access_token, &user.user_id, None).await;
    assert_eq!(resp.status(), 409, "ok: false, invalid_refresh_token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preset_fills_a_new_connection_and_what_the_body_sets_wins() {
    let stack = LocalStack::start(StackOptions::default()).await;
    let admin = stack.client_token(&stack.admin_key);
    let body = serde_json::json!({
        "connectionId": "con_github", "preset": "github", "clientId": "Iv1.abc", "clientSecret": "gh-secret",
        "defaultConnectionProperties": {"scope": "repo"}
    });
    let (status, created) = stack.call("POST", "/v1/connections", Some(&admin), Some(&body)).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["authenticationUrl"], "https://github.com/login/oauth/authorize");
    assert_eq!(created["tokenUrl"], "https://github.com/login/oauth/access_token");
    assert_eq!(created["dialect"], "github");
    assert_eq!(created["tokenEndpointAuthMethod"], "client_secret_post");
    assert_eq!(created["data"]["oidcUserEndpointUrl"], "https://api.github.com/user");
    assert_eq!(
        created["defaultConnectionProperties"]["scope"], "repo",
        "the body's scope wins"
    );
    assert!(created.get("clientSecret").is_none());

    let body = serde_json::json!({
        "connectionId": "con_slack", "preset": "slack", "clientId": "1.2", "clientSecret": "s",
        "dialect": "standard", "tokenEndpointAuthMethod": "client_secret_basic"
    });
    let (status, created) = stack.call("POST", "/v1/connections", Some(&admin), Some(&body)).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["dialect"], "standard", "set explicitly, over the preset");
    assert_eq!(created["tokenEndpointAuthMethod"], "client_secret_basic");

    let before = stack.state_snapshot().await;
    for (body, detail) in [
        (
            serde_json::json!({"preset": "okta", "presetParameters": {"domain": "evil.example/x?"}, "clientId": "a", "clientSecret": "b"}),
            "domain",
        ),
        (
            serde_json::json!({"preset": "okta", "clientId": "a", "clientSecret": "b"}),
            "domain",
        ),
        (
            serde_json::json!({"preset": "myspace", "clientId": "a", "clientSecret": "b"}),
            "myspace",
        ),
    ] {
        let (status, refused) = stack.call("POST", "/v1/connections", Some(&admin), Some(&body)).await;
        assert_eq!(status, 400, "{refused}");
        assert_eq!(refused["errorCode"], "invalid_preset");
        assert!(refused.to_string().contains(detail), "{refused}");
    }
    assert_eq!(stack.state_snapshot().await, before, "refused presets store nothing");
}

/// A connection whose provider wants JSON token requests (Atlassian) sends JSON, for the code
/// exchange and the refresh; the provider refuses anything else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_connections_send_json_to_a_provider_that_takes_nothing_else() {
    let stack = LocalStack::start(StackOptions {
        token_request_encoding: credvault::oauth::TokenRequestEncoding::Json,
        ..StackOptions::default()
    })
    .await;
    stack.provider.set_knobs(|k| k.strict_json_token_requests = true);
    let user = login_then_expired(&stack).await;
    access_token_of(stack.fetch_credentials(&user.access_token, &user.user_id, None).await).await;
    assert_eq!(stack.provider.counters().refreshes, 1);
}

/// The control: a form-encoding connection against the same provider is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_request_is_refused_by_a_json_only_provider() {
    let stack = LocalStack::start(StackOptions::default()).await;
    let user = login_then_expired(&stack).await;
    stack.provider.set_knobs(|k| k.strict_json_token_requests = true);
    let resp = stack.fetch_credentials(&user.access_token, &user.user_id, None).await;
    assert_eq!(resp.status(), 503);
}

/// A connection made from an issuer alone takes its client authentication from discovery: Basic when
/// listed (whatever the order), post when only that is; and a login through it then works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_picks_the_client_authentication() {
    let stack = LocalStack::start(StackOptions::default()).await;
    let admin = stack.client_token(&stack.admin_key);
    let issuer = stack.provider.issuer().to_string();
    for (client_auth, id, expected) in [
        (ClientAuth::Either, "con_discovered_either", "client_secret_basic"),
        (ClientAuth::BasicOnly, "con_discovered_basic", "client_secret_basic"),
        (ClientAuth::PostOnly, "con_discovered_post", "client_secret_post"),
    ] {
        stack.provider.set_knobs(|k| k.client_auth = client_auth);
        let body = serde_json::json!({"connectionId": id, "issuerUrl": issuer,
            "clientId": credvault_tests::fake_provider::CLIENT_ID,
            "clientSecret": credvault_tests::fake_provider::CLIENT_SECRET});
        let (status, created) = stack.call("POST", "/v1/connections", Some(&admin), Some(&body)).await;
        assert_eq!(status, 201, "{created}");
        assert_eq!(created["tokenEndpointAuthMethod"], expected, "{client_auth:?}");
        // The method works against that provider: the code exchange at the end of a login succeeds.
        let verifier = credvault::random::token(32);
        let (_, callback) = stack.login_until_callback_at(id, &verifier).await;
        let back = stack.http.get(&callback).send().await.unwrap();
        let app = url::Url::parse(&credvault_tests::stack::location(&back)).unwrap();
        assert!(
            app.query_pairs().any(|(k, _)| k == "code"),
            "{client_auth:?}: the login completed: {app}"
        );
    }
}

/// A credential's `metadata`: the fields of the provider's answers the connection allow-lists, and
/// nothing else of them.
async fn metadata_of(stack: &LocalStack, user: &credvault_tests::LoggedIn) -> Value {
    let path = format!("/v1/connections/con_demo/users/{}/credentials", encode(&user.user_id));
    let (status, body) = stack.call("GET", &path, Some(&user.access_token), None).await;
    assert_eq!(status, 200, "{body}");
    body["metadata"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_listed_answer_fields_come_back_as_metadata_and_nothing_else_does() {
    let stack = LocalStack::start(StackOptions {
        metadata_fields: vec!["instance_url".to_string()],
        ..StackOptions::default()
    })
    .await;
    let fields = |instance: Option<&str>| {
        let mut extra = serde_json::Map::new();
        if let Some(instance) = instance {
            extra.insert("instance_url".into(), serde_json::json!(instance));
        }
        // Beside it, what a provider also sends and no caller may see through metadata.
        extra.insert("signature".into(), serde_json::json!("planted-signature"));
        extra.insert("refresh_token_expires_in".into(), serde_json::json!(7776000));
        extra
    };
    stack
        .provider
        .set_knobs(|k| k.extra_token_fields = fields(Some("https://na1.example.my.salesforce.com")));
    let user = login_then_expired(&stack).await;
    let path = format!("/v1/connections/con_demo/users/{}/credentials", encode(&user.user_id));
    let (_, body) = stack.call("GET", &path, Some(&user.access_token), None).await;
    assert_eq!(
        stack.provider.counters().refreshes,
        1,
        "the login's token was born expired"
    );
    assert_eq!(
        body["metadata"],
        serde_json::json!({"instance_url": "https://na1.example.my.salesforce.com"}),
        "{body}"
    );
    assert!(!body.to_string().contains("planted-signature"));

    // A refresh that moves the instance updates it; one that names none keeps it.
    stack
        .provider
        .set_knobs(|k| k.extra_token_fields = fields(Some("https://eu5.example.my.salesforce.com")));
    stack.clock.advance(3600);
    assert_eq!(
        metadata_of(&stack, &user).await,
        serde_json::json!({"instance_url": "https://eu5.example.my.salesforce.com"})
    );
    stack.provider.set_knobs(|k| k.extra_token_fields = fields(None));
    stack.clock.advance(3600);
    assert_eq!(
        metadata_of(&stack, &user).await,
        serde_json::json!({"instance_url": "https://eu5.example.my.salesforce.com"})
    );
    assert_eq!(stack.provider.counters().refreshes, 3);

    // A connection without metadata fields returns none, whatever the provider sends.
    let plain = LocalStack::start(StackOptions::default()).await;
    plain
        .provider
        .set_knobs(|k| k.extra_token_fields = fields(Some("https://na1.example.my.salesforce.com")));
    let someone = plain.login().await;
    assert_eq!(metadata_of(&plain, &someone).await, Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_team_ids_come_from_the_top_level_beside_authed_user() {
    let stack = LocalStack::start(StackOptions {
        dialect: Dialect::Slack,
        metadata_fields: vec!["team.id".to_string(), "enterprise.id".to_string()],
        ..StackOptions::default()
    })
    .await;
    stack.provider.set_knobs(|k| {
        k.dialect = ProviderDialect::Slack;
        k.extra_token_fields = serde_json::json!({"team": {"id": "T0123", "name": "Acme"}, "enterprise": null})
            .as_object()
            .cloned()
            .unwrap();
    });
    let user = stack.login().await;
    assert_eq!(
        metadata_of(&stack, &user).await,
        serde_json::json!({"team.id": "T0123"}),
        "a null enterprise is left out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_fields_never_name_a_secret_and_presets_fill_them() {
    let stack = LocalStack::start(StackOptions::default()).await;
    let admin = stack.client_token(&stack.admin_key);
    for fields in [
        serde_json::json!(["refresh_token"]),
        serde_json::json!(["authed_user.access_token"]),
        serde_json::json!(["id_token"]),
        serde_json::json!(["Instance_URL"]),
        serde_json::json!(["a", "b", "c", "d", "e", "f", "g", "h", "i"]),
    ] {
        let body = serde_json::json!({
            "preset": "salesforce", "clientId": "sf-client", "clientSecret": "sf-secret", "metadataFields": fields,
        });
        let (status, answer) = stack.call("POST", "/v1/connections", Some(&admin), Some(&body)).await;
        assert_eq!(
            (status, answer["errorCode"].as_str()),
            (400, Some("invalid_metadata_fields")),
            "{fields}"
        );
    }
    let (_, listed) = stack.call("GET", "/v1/connections", Some(&admin), None).await;
    assert_eq!(
        listed["connections"].as_array().map(Vec::len),
        Some(1),
        "nothing was created"
    );

    for (preset, expected) in [
        ("salesforce", serde_json::json!(["instance_url"])),
        ("slack", serde_json::json!(["team.id", "enterprise.id"])),
        ("google", serde_json::json!([])),
    ] {
        // Endpoints given, so no discovery runs against the real provider.
        let body = serde_json::json!({
            "connectionId": format!("con_{preset}"), "preset": preset, "clientId": "id", "clientSecret": "secret",
            "authenticationUrl": "https://provider.example/authorize", "tokenUrl": "https://provider.example/token",
            "data": {"oidcUserEndpointUrl": "https://provider.example/userinfo"},
        });
        let (status, created) = stack.call("POST", "/v1/connections", Some(&admin), Some(&body)).await;
        assert_eq!(status, 201, "{created}");
        assert_eq!(created["metadataFields"], expected, "{preset}");
    }
}

/// GitHub OAuth App tokens come without `expires_in` and without a refresh token: they do not expire,
/// so the vault keeps serving them (a year later too) and never asks the provider.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_without_expires_in_are_served_as_long_as_they_live() {
    // A vault token that outlives the wait, so the same login's credential is asked for a year on.
    let stack = LocalStack::start(StackOptions {
        configure: |config| config.user_token_lifetime = std::time::Duration::from_secs(500 * 86_400),
        ..StackOptions::default()
    })
    .await;
    stack.provider.set_knobs(|k| {
        k.omit_expires_in = true;
        k.issue_refresh_token_on_login = false;
    });
    let user = stack.login().await;
    let path = format!("/v1/connections/con_demo/users/{}/credentials", encode(&user.user_id));
    let (status, first) = stack.call("GET", &path, Some(&user.access_token), None).await;
    assert_eq!(status, 200, "{first}");
    let year: i64 = first["expiresAt"].as_str().unwrap()[..4].parse().unwrap();
    let this_year: i64 = credvault::clock::iso8601(credvault::clock::Clock::now_secs(&stack.clock))[..4]
        .parse()
        .unwrap();
    assert!(
        year >= this_year + 9,
        "a token without expires_in counts as not expiring: {first}"
    );

    stack.clock.advance(400 * 86_400);
    let (status, later) = stack.call("GET", &path, Some(&user.access_token), None).await;
    assert_eq!(status, 200, "{later}");
    assert_eq!(
        later["accessToken"], first["accessToken"],
        "the same token, still valid"
    );
    assert_eq!(stack.provider.counters().refreshes, 0);
}

/// Salesforce answers refreshes without `expires_in`: the refreshed token counts as not expiring too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_answer_without_expires_in_is_not_refreshed_again() {
    let stack = LocalStack::start(StackOptions {
        configure: |config| config.user_token_lifetime = std::time::Duration::from_secs(500 * 86_400),
        ..StackOptions::default()
    })
    .await;
    let user = login_then_expired(&stack).await;
    stack.provider.set_knobs(|k| k.omit_expires_in = true);
    let refreshed = access_token_of(stack.fetch_credentials(&user.access_token, &user.user_id, None).await).await;
    assert_eq!(stack.provider.counters().refreshes, 1);
    stack.clock.advance(400 * 86_400);
    let later = access_token_of(stack.fetch_credentials(&user.access_token, &user.user_id, None).await).await;
    assert_eq!(later, refreshed);
    assert_eq!(stack.provider.counters().refreshes, 1, "no second refresh");
}

/// A user endpoint without `sub` names its user by `id`: GitHub's is a number, Slack's and
/// Atlassian's-style ids are strings; both become `sub`, a `sub` that is there is kept, and an id of
/// any other kind is refused (a user id is never made up from it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_endpoint_names_the_user_by_sub_or_by_a_string_or_numeric_id() {
    let answers = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let next = answers.clone();
    let app = axum::Router::new().route(
        "/user",
        axum::routing::get(move || {
            let next = next.clone();
            async move { axum::Json(next.lock().unwrap().remove(0)) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/user", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = credvault::oauth::provider::ProviderClient::new(std::time::Duration::from_secs(5), 1).unwrap();
    let token = secrecy::SecretString::from("user-endpoint-token".to_string());
    let cases = [
        (
            serde_json::json!({"id": "U024BE7LH", "name": "spengler"}),
            Some("U024BE7LH"),
        ),
        (serde_json::json!({"id": 583231}), Some("583231")),
        (serde_json::json!({"sub": "s-1", "id": "other"}), Some("s-1")),
        (serde_json::json!({"id": true}), None),
        (serde_json::json!({"id": {"nested": 1}}), None),
    ];
    for (answer, sub) in cases {
        answers.lock().unwrap().push(answer.clone());
        let claims = client.user_info(&url, &token).await;
        match sub {
            Some(sub) => assert_eq!(claims.expect("claims")["sub"], sub, "{answer}"),
            None => assert!(claims.is_err(), "{answer}"),
        }
    }
}
