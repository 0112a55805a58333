//! Everything the vault logs while logging users in, refreshing, failing and refusing contains none
//! of the secrets that passed through it. One test per binary: the log capture is process-wide.

use credvault_tests::stack::{APP_REDIRECT_URL, location};
use credvault_tests::{Failure, LocalStack, StackOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_of_login_refresh_and_failures_hold_no_secret() {
    let logs = credvault_tests::logs::capture();
    let stack = LocalStack::start(StackOptions::default()).await;
    // Error bodies of the token endpoint quote the refresh token and client secret they were sent, as
    // some providers' debugging output does: whatever of them the vault logged would show below.
    stack.provider.set_knobs(|k| k.echo_secrets_in_errors = true);

    // A login, with the codes and verifier of its browser leg kept for the search.
    stack.provider.set_knobs(|k| k.access_token_lifetime_secs = 0);
    let verifier = credvault::random::token(32);
    let (request_id, callback) = stack.login_until_callback(&verifier).await;
    let state = url::Url::parse(&callback)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let back = stack.http.get(&callback).send().await.unwrap();
    let app = url::Url::parse(&location(&back)).unwrap();
    let vault_code = app.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    // A wrong verifier first: refusals are logged too.
    stack
        .exchange(
            &request_id,
            &vault_code,
            &credvault::random::token(32),
            APP_REDIRECT_URL,
        )
        .await;
    let tokens: serde_json::Value = stack
        .exchange(&request_id, &vault_code, &verifier, APP_REDIRECT_URL)
        .await
        .json()
        .await
        .unwrap();
    let vault_token = tokens["access_token"].as_str().unwrap().to_string();
    let user_id = "con_demo|alice";

    // Refresh with rotation, an outage, a dead grant.
    stack.provider.set_knobs(|k| k.access_token_lifetime_secs = 3600);
    assert_eq!(stack.fetch_credentials(&vault_token, user_id, None).await.status(), 200);
    // Token exchange: the user's own, and refused ones (a bogus subject, an actor without the grant).
    let (_, stranger_key) = stack.new_client("stranger").await;
    let stranger = stack.client_token(&stranger_key);
    let exchange = |subject: String, actor: Option<String>| {
        let mut form = vec![
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange".to_string(),
            ),
            ("subject_token", subject),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:access_token".to_string(),
            ),
            ("audience", "con_demo".to_string()),
        ];
        if let Some(actor) = actor {
            form.push(("actor_token", actor));
            form.push(("actor_token_type", "urn:ietf:params:oauth:token-type:jwt".to_string()));
        }
        stack
            .http
            .post(stack.url("/api/authentication/oauth/tokens"))
            .form(&form)
            .send()
    };
    assert_eq!(exchange(vault_token.clone(), None).await.unwrap().status(), 200);
    assert_eq!(
        exchange("planted-bogus-subject-token".into(), None)
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        exchange(vault_token.clone(), Some(stranger.clone()))
            .await
            .unwrap()
            .status(),
        400
    );
    stack.provider.fail_next(&[Failure::Status(503)]);
    stack.clock.advance(3400);
    assert_eq!(stack.fetch_credentials(&vault_token, user_id, None).await.status(), 200);
    // Past the backoff that outage set (its outcome was unknown: a lease length).
    stack
        .clock
        .advance(stack.config.refresh.lease_length.as_secs() as i64 + 1);
    stack.provider.fail_next(&[Failure::InvalidGrant]);
    assert_eq!(stack.fetch_credentials(&vault_token, user_id, None).await.status(), 409);
    // A bad bearer token and a replayed callback.
    assert_eq!(
        stack
            .fetch_credentials(&format!("{vault_token}x"), user_id, None)
            .await
            .status(),
        401
    );
    assert_eq!(stack.http.get(&callback).send().await.unwrap().status(), 400);

    // The service side: an access key made, a connection with a secret created, a disconnect.
    let (_, access_key) = stack.new_client("logged backend").await;
    let admin = stack.client_token(&stack.admin_key);
    let connection = serde_json::json!({"connectionId": "con_logged", "authenticationUrl": "https://a.example/auth",
        "tokenUrl": "https://a.example/token", "clientId": "c", "clientSecret": "planted-api-connection-secret",
        "data": {"oidcUserEndpointUrl": "https://a.example/user"}});
    assert_eq!(
        stack
            .call("POST", "/v1/connections", Some(&admin), Some(&connection))
            .await
            .0,
        201
    );
    let credential = format!(
        "/v1/connections/con_demo/users/{}/credentials",
        credvault_tests::stack::encode(user_id)
    );
    assert_eq!(stack.call("DELETE", &credential, Some(&vault_token), None).await.0, 204);

    let mut planted = stack.provider.issued_secrets();
    let private_part = |key: &str| key.rsplit('.').next().unwrap_or_default().to_string();
    planted.extend([
        private_part(&access_key),
        private_part(&stack.admin_key),
        "planted-api-connection-secret".to_string(),
        "planted-bogus-subject-token".to_string(),
        stranger.clone(),
        private_part(&stranger_key),
    ]);
    planted.extend([
        vault_code,
        verifier,
        state,
        vault_token,
        tokens["id_token"].as_str().unwrap().to_string(),
    ]);
    assert!(
        planted.iter().filter(|s| s.starts_with("rt-")).count() >= 2,
        "a rotated refresh token was issued"
    );
    let text = logs.contents();
    assert!(
        text.contains("credential refreshed"),
        "the capture saw the vault's own log lines"
    );
    assert!(text.contains("provider refused the refresh token"));
    for secret in &planted {
        assert!(!text.contains(secret.as_str()), "a secret reached the logs");
    }
}
