//! The attacks of the security review, each tried for real against the local stack by the caller with
//! the least permission that could attempt it. Each asserts that the attack fails and that nothing
//! stored changed (`state_snapshot`: every item but audit events).

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use credvault_tests::stack::{APP_REDIRECT_URL, encode, location};
use credvault_tests::{FakeProvider, LocalStack, StackOptions};
use serde_json::{Value, json};

/// A change to a token's header and claims before it is signed.
type Adjust = fn(&mut Value, &mut Value);

async fn as_admin(stack: &LocalStack, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let admin = stack.client_token(&stack.admin_key);
    stack.call(method, path, Some(&admin), body).await
}

/// A role with `permissions`, and a record giving it to `subject` on `resource` (made by the admin).
async fn give(stack: &LocalStack, subject: &str, role_id: &str, permissions: Value, resource: &str) {
    let role = json!({"roleId": role_id, "name": role_id, "permissions": permissions});
    let (status, out) = as_admin(stack, "POST", "/v1/roles", Some(&role)).await;
    assert!(status == 201 || status == 409, "{out}");
    let record = json!({"recordId": format!("rec_{role_id}_{subject}"), "name": "grant", "users": [{"userId": subject}],
        "statements": [{"roles": [role_id], "resources": [{"resourceUri": resource}]}]});
    let (status, out) = as_admin(stack, "POST", "/v1/records", Some(&record)).await;
    assert_eq!(status, 201, "{out}");
}

/// The user's own fetch answers 409: the credential may not be refreshed where its connection points now.
async fn assert_needs_reauthentication(stack: &LocalStack, user: &credvault_tests::LoggedIn) {
    let path = credentials_path(stack, &user.user_id);
    let (status, out) = stack.call("GET", &path, Some(&user.access_token), None).await;
    assert_eq!(
        (status, out["errorCode"].as_str()),
        (409, Some("reauthentication_required")),
        "{out}"
    );
}

fn credentials_path(stack: &LocalStack, user_id: &str) -> String {
    format!(
        "/v1/connections/{}/users/{}/credentials",
        stack.connection_id,
        encode(user_id)
    )
}

/// The whole browser login through `connection_id`; returns the app redirect's query (a `code`, or an
/// `error`).
async fn login_outcome(stack: &LocalStack, connection_id: &str) -> BTreeMap<String, String> {
    let verifier = credvault::random::token(32);
    let (_, callback) = stack.login_until_callback_at(connection_id, &verifier).await;
    let back = stack.http.get(&callback).send().await.unwrap();
    assert_eq!(back.status(), 302);
    let app = url::Url::parse(&location(&back)).unwrap();
    assert!(app.as_str().starts_with(APP_REDIRECT_URL));
    app.query_pairs().into_owned().collect()
}

async fn audit_reasons(stack: &LocalStack, action: &str) -> Vec<String> {
    stack.audit_flushed().await;
    let (status, events) = as_admin(stack, "GET", "/v1/audit?limit=100", None).await;
    assert_eq!(status, 200, "{events}");
    events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == action)
        .map(|e| e["reason"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Attack 1: a client allowed only to update one record makes itself administrator with it (or with a
/// new record), then reads a credential. Every variant is refused, and the client still cannot read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_writer_cannot_grant_itself_what_it_does_not_hold() {
    let stack = &LocalStack::start(StackOptions::default()).await;
    let alice = stack.login().await;
    let (writer_id, writer_key) = stack.new_client("record writer").await;
    give(
        stack,
        &writer_id,
        "ro_writer",
        json!([{"action": "records:*", "allow": true}]),
        "Records",
    )
    .await;
    give(
        stack,
        "sc_someone",
        "ro_reader",
        json!([{"action": "connections:credentials:read", "allow": true}]),
        "Connections/con_demo",
    )
    .await;
    let writer = stack.client_token(&writer_key);
    let before = stack.state_snapshot().await;

    let escalations = [
        ("vault:admin", "*", "administrators_only"),
        ("ro_reader", "Connections/con_demo", "cannot_grant"),
        ("ro_reader", "*", "cannot_grant"),
        ("ro_writer", "*", "cannot_grant"),
    ];
    for (role, resource, code) in escalations {
        let body = json!({"name": "mine", "users": [{"userId": writer_id}],
            "statements": [{"roles": [role], "resources": [{"resourceUri": resource}]}]});
        let path = "/v1/records/rec_ro_reader_sc_someone";
        let (status, out) = stack.call("PUT", path, Some(&writer), Some(&body)).await;
        assert_eq!(
            (status, out["errorCode"].as_str()),
            (403, Some(code)),
            "PUT {role} on {resource}: {out}"
        );
        let (status, out) = stack.call("POST", "/v1/records", Some(&writer), Some(&body)).await;
        assert_eq!(
            (status, out["errorCode"].as_str()),
            (403, Some(code)),
            "POST {role} on {resource}: {out}"
        );
    }
    assert_eq!(stack.state_snapshot().await, before, "nothing stored changed");

    // Widening a role others hold to everything is the same attack through the role.
    give(
        stack,
        &writer_id,
        "ro_role_editor",
        json!([{"action": "roles:*", "allow": true}]),
        "Roles",
    )
    .await;
    let before = stack.state_snapshot().await;
    let wider = json!({"name": "reader", "permissions": [{"action": "*", "allow": true}]});
    let (status, out) = stack
        .call("PUT", "/v1/roles/ro_reader", Some(&writer), Some(&wider))
        .await;
    assert_eq!(
        (status, out["errorCode"].as_str()),
        (403, Some("cannot_grant")),
        "{out}"
    );
    for (method, path) in [("PUT", "/v1/roles/vault:admin"), ("DELETE", "/v1/roles/vault:admin")] {
        let (status, out) = as_admin(stack, method, path, Some(&wider)).await;
        assert_eq!(
            (status, out["errorCode"].as_str()),
            (403, Some("built_in_role")),
            "{method} {path}: {out}"
        );
    }
    assert_eq!(stack.state_snapshot().await, before, "nothing stored changed");
    let (status, _) = stack
        .call("GET", &credentials_path(stack, &alice.user_id), Some(&writer), None)
        .await;
    assert_eq!(status, 403);
}

/// Attack 2: the id_token the app shows around is not a bearer token anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_token_is_not_a_bearer_token() {
    let stack = &LocalStack::start(StackOptions::default()).await;
    let alice = stack.login().await;
    let header = jsonwebtoken::decode_header(&alice.id_token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(&alice.id_token)
        .unwrap()
        .claims;
    assert_eq!(claims["aud"], "app_default", "the id_token's audience is the app");
    assert_ne!(claims["aud"], stack.config.audience.as_str());
    let lifetime = stack.config.user_token_lifetime.as_secs() as i64;
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        lifetime,
        "it lives as long as the access token"
    );
    assert_eq!(alice.expires_in as i64, lifetime);
    let before = stack.state_snapshot().await;
    for path in [
        credentials_path(stack, &alice.user_id),
        "/api/session/credentials".to_string(),
        format!(
            "/v1/users/{}/resources/Connections/permissions/connections:read",
            encode(&alice.user_id)
        ),
    ] {
        let (status, out) = stack.call("GET", &path, Some(&alice.id_token), None).await;
        assert_eq!(status, 401, "{path}: {out}");
    }
    let (status, _) = stack
        .call(
            "DELETE",
            &credentials_path(stack, &alice.user_id),
            Some(&alice.id_token),
            None,
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(stack.state_snapshot().await, before);
    // The access token of the same login is the one that works.
    assert_eq!(
        stack
            .call(
                "GET",
                &credentials_path(stack, &alice.user_id),
                Some(&alice.access_token),
                None
            )
            .await
            .0,
        200
    );
    // And an app may not claim the vault's own audience as its id, to make the two look alike.
    let verifier = credvault::random::token(32);
    let (request_id, callback) = stack.login_until_callback(&verifier).await;
    let back = stack.http.get(&callback).send().await.unwrap();
    let app = url::Url::parse(&location(&back)).unwrap();
    let code = app.query_pairs().find(|(k, _)| k == "code").unwrap().1.to_string();
    let resp = stack
        .http
        .post(stack.url(&format!("/api/authentication/{request_id}/tokens")))
        .json(
            &json!({"grant_type": "authorization_code", "code": code, "code_verifier": verifier,
            "redirect_uri": APP_REDIRECT_URL, "client_id": stack.config.audience}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.json::<Value>().await.unwrap()["errorCode"], "invalid_client");
}

/// The same attack when the vault's audience is a plain name (`CREDVAULT_AUDIENCE`), which is also the
/// shape of an application id: the app may still not take it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_may_not_take_a_plain_vault_audience_as_its_id() {
    fn plain_audience(config: &mut credvault::Config) {
        config.audience = "credvault-api".into();
    }
    let stack = &LocalStack::start(StackOptions {
        configure: plain_audience,
        ..StackOptions::default()
    })
    .await;
    let verifier = credvault::random::token(32);
    let (request_id, callback) = stack.login_until_callback(&verifier).await;
    let back = stack.http.get(&callback).send().await.unwrap();
    let app = url::Url::parse(&location(&back)).unwrap();
    let code = app.query_pairs().find(|(k, _)| k == "code").unwrap().1.to_string();
    let exchange = |client_id: &'static str| {
        stack
            .http
            .post(stack.url(&format!("/api/authentication/{request_id}/tokens")))
            .json(
                &json!({"grant_type": "authorization_code", "code": code, "code_verifier": verifier,
                "redirect_uri": APP_REDIRECT_URL, "client_id": client_id}),
            )
            .send()
    };
    let resp = exchange("credvault-api").await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.json::<Value>().await.unwrap()["errorCode"], "invalid_client");
    // The refusal spent nothing: the same code still makes an app's tokens, which work here.
    let resp = exchange("app_default").await.unwrap();
    assert_eq!(resp.status(), 200);
    let access_token = resp.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let me = jsonwebtoken::dangerous::insecure_decode::<Value>(&access_token)
        .unwrap()
        .claims;
    assert_eq!(me["aud"], "credvault-api");
    let (status, _) = stack
        .call(
            "GET",
            &credentials_path(stack, me["sub"].as_str().unwrap()),
            Some(&access_token),
            None,
        )
        .await;
    assert_eq!(status, 200);
}

/// Attack 3: a provider subject equal to a service client's id does not make its owner that client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_subject_cannot_become_a_service_client() {
    let stack = &LocalStack::start(StackOptions::default()).await;
    let (client_id, _) = stack.new_client("powerful backend").await;
    give(
        stack,
        &client_id,
        "ro_reader",
        json!([{"action": "connections:credentials:read", "allow": true}]),
        "Connections",
    )
    .await;
    let (_, mut connection) = as_admin(stack, "GET", "/v1/connections/con_demo", None).await;
    connection["data"]["userIdExpression"] = json!("{sub}");
    assert_eq!(
        as_admin(stack, "PUT", "/v1/connections/con_demo", Some(&connection))
            .await
            .0,
        200
    );
    stack.provider.set_knobs(|k| k.subject = client_id.clone());
    let before = stack.state_snapshot().await;
    let outcome = login_outcome(stack, "con_demo").await;
    assert_eq!(
        outcome.get("error").map(String::as_str),
        Some("invalid_user_id"),
        "{outcome:?}"
    );
    assert!(!outcome.contains_key("code"));
    assert_eq!(
        stack.state_snapshot().await,
        before,
        "no credential, no identity stored"
    );
}

/// Attack 3, the other half: the same user id made by a second connection is not the first one's user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_id_belongs_to_the_connection_that_made_it_first() {
    let stack = &LocalStack::start(StackOptions::default()).await;
    stack.add_connection("con_other").await;
    for connection in ["con_demo", "con_other"] {
        let path = format!("/v1/connections/{connection}");
        let (_, mut body) = as_admin(stack, "GET", &path, None).await;
        body["data"]["userIdExpression"] = json!("{sub}");
        assert_eq!(as_admin(stack, "PUT", &path, Some(&body)).await.0, 200);
    }
    let alice = stack.login().await;
    assert_eq!(alice.user_id, "alice");
    // Someone whose account at the other provider has the same subject logs in there.
    let before = stack.state_snapshot().await;
    let outcome = login_outcome(stack, "con_other").await;
    assert_eq!(
        outcome.get("error").map(String::as_str),
        Some("identity_conflict"),
        "{outcome:?}"
    );
    assert_eq!(stack.state_snapshot().await, before);
    assert_eq!(audit_reasons(stack, "login.refused").await, ["identity_conflict"]);
    // Near-identical ids are other users: no prefix, case or encoding trick reads alice's credential.
    stack.provider.set_knobs(|k| k.subject = "alice2".into());
    let alice2 = stack.login().await;
    for near in ["alice", "Alice", "alice%20", "alic", " alice"] {
        let (status, _) = stack
            .call("GET", &credentials_path(stack, near), Some(&alice2.access_token), None)
            .await;
        assert_eq!(status, 403, "alice2 reading {near:?}");
        let (status, _) = stack
            .call(
                "DELETE",
                &credentials_path(stack, near),
                Some(&alice2.access_token),
                None,
            )
            .await;
        assert_eq!(status, 403, "alice2 deleting {near:?}");
    }
    assert_eq!(
        stack
            .call(
                "GET",
                &credentials_path(stack, "alice"),
                Some(&alice.access_token),
                None
            )
            .await
            .0,
        200
    );
    // Until then, the id in the other connection is nobody alice's token may reach: refused before
    // anything is looked up there.
    let other_path = "/v1/connections/con_other/users/alice/credentials";
    for method in ["GET", "DELETE"] {
        let (status, _) = stack.call(method, other_path, Some(&alice.access_token), None).await;
        assert_eq!(status, 403, "{method} before the link");
    }
    // An operator links the other connection to the id: now its login makes the same user, whose
    // token opens the credential stored through either connection.
    credvault::store::identities::link_checked(&stack.instance.table, "alice", "con_other")
        .await
        .unwrap();
    stack.provider.set_knobs(|k| k.subject = "alice".into());
    let outcome = login_outcome(stack, "con_other").await;
    assert!(outcome.contains_key("code"), "{outcome:?}");
    assert_eq!(
        stack.call("GET", other_path, Some(&alice.access_token), None).await.0,
        200
    );
    assert!(
        credvault::store::identities::link_checked(&stack.instance.table, "nobody", "con_other")
            .await
            .is_err(),
        "linking an id that never logged in makes no owner"
    );
    // The operator's ids are input too: either one malformed is refused before anything is looked up.
    let too_long = "a".repeat(credvault::oauth::connection::MAX_USER_ID_LEN + 1);
    for (user_id, connection_id) in [
        ("", "con_other"),
        (too_long.as_str(), "con_other"),
        ("alice", "con/other"),
    ] {
        let refused = credvault::store::identities::link_checked(&stack.instance.table, user_id, connection_id).await;
        assert!(
            matches!(refused, Err(credvault::store::identities::LinkError::InvalidId)),
            "{connection_id} {}: {refused:?}",
            user_id.len()
        );
    }
}

/// Attack 3, by email: an `{email}` user id needs the provider to vouch for the address; otherwise
/// whoever registers someone's address at a careless provider would become them here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_user_id_needs_a_verified_email() {
    let stack = &LocalStack::start(StackOptions::default()).await;
    let (_, mut connection) = as_admin(stack, "GET", "/v1/connections/con_demo", None).await;
    connection["data"]["userIdExpression"] = json!("{email}");
    assert_eq!(
        as_admin(stack, "PUT", "/v1/connections/con_demo", Some(&connection))
            .await
            .0,
        200
    );
    let before = stack.state_snapshot().await;
    for verified in [None, Some(false)] {
        stack.provider.set_knobs(|k| k.email_verified = verified);
        let outcome = login_outcome(stack, "con_demo").await;
        assert_eq!(
            outcome.get("error").map(String::as_str),
            Some("unverified_email"),
            "{verified:?}: {outcome:?}"
        );
    }
    assert_eq!(stack.state_snapshot().await, before);
    stack.provider.set_knobs(|k| k.email_verified = Some(true));
    assert_eq!(stack.login().await.user_id, "alice@example.com");
}

/// Attack 4: whoever may update a connection cannot steer its client secret or its users' refresh
/// tokens to an endpoint of their own, by editing it or by deleting and re-creating it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_tokens_and_client_secrets_stay_with_the_endpoints_they_were_issued_for() {
    let stack = &LocalStack::start(StackOptions::default()).await;
    let evil = FakeProvider::start().await;
    stack.provider.set_knobs(|k| k.access_token_lifetime_secs = 0);
    let alice = stack.login().await;
    let (editor_id, editor_key) = stack.new_client("connection editor").await;
    give(
        stack,
        &editor_id,
        "ro_editor",
        json!([{"action": "connections:update", "allow": true},
        {"action": "connections:read", "allow": true}]),
        "Connections/con_demo",
    )
    .await;
    let editor = stack.client_token(&editor_key);
    let (_, connection) = stack.call("GET", "/v1/connections/con_demo", Some(&editor), None).await;
    let stored_refresh = stack.stored_refresh_token(&alice.user_id).await.unwrap();

    // Without the secret, no endpoint that receives it may change.
    let before = stack.state_snapshot().await;
    for (field, value) in [
        ("tokenUrl", format!("{}/token", evil.issuer())),
        ("revocationUrl", format!("{}/revoke", evil.issuer())),
    ] {
        let mut steered = connection.clone();
        steered[field] = json!(value);
        let (status, out) = stack
            .call("PUT", "/v1/connections/con_demo", Some(&editor), Some(&steered))
            .await;
        assert_eq!(
            (status, out["errorCode"].as_str()),
            (400, Some("client_secret_required")),
            "{field}: {out}"
        );
    }
    assert_eq!(stack.state_snapshot().await, before, "nothing stored changed");

    // With a secret of their own, the connection changes, but the credential was issued elsewhere:
    // the fetch answers 409 without calling any token endpoint.
    let mut steered = connection.clone();
    steered["tokenUrl"] = json!(format!("{}/token", evil.issuer()));
    steered["revocationUrl"] = json!(format!("{}/revoke", evil.issuer()));
    steered["clientSecret"] = json!("the attacker's own secret");
    assert_eq!(
        stack
            .call("PUT", "/v1/connections/con_demo", Some(&editor), Some(&steered))
            .await
            .0,
        200
    );
    assert_needs_reauthentication(stack, &alice).await;
    assert_eq!(
        evil.counters().refreshes,
        0,
        "the refresh token never went to the new endpoint"
    );
    assert_eq!(stack.provider.counters().refreshes, 0);
    assert_eq!(
        audit_reasons(stack, "credential.reauth_required").await,
        ["endpoint_changed"]
    );
    // Disconnect deletes without revoking at the new revocation endpoint.
    let (status, _) = stack
        .call(
            "DELETE",
            &credentials_path(stack, &alice.user_id),
            Some(&alice.access_token),
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(evil.counters().revocations, 0);
    assert_eq!(
        audit_reasons(stack, "credential.disconnect").await,
        ["endpoint_changed"]
    );
    assert!(!evil.refresh_tokens_presented().contains(&stored_refresh));
}

/// Attack 4, by deletion: a connection deleted and created again with the same id (and the very same
/// endpoints) is a new generation: credentials of the old one are not sent to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_connection_is_a_new_generation() {
    let stack = &LocalStack::start(StackOptions::default()).await;
    stack.provider.set_knobs(|k| k.access_token_lifetime_secs = 0);
    let alice = stack.login().await;
    let (_, connection) = as_admin(stack, "GET", "/v1/connections/con_demo", None).await;
    assert_eq!(as_admin(stack, "DELETE", "/v1/connections/con_demo", None).await.0, 204);
    let mut again = connection.clone();
    again["clientSecret"] = json!(credvault_tests::fake_provider::CLIENT_SECRET);
    assert_eq!(as_admin(stack, "POST", "/v1/connections", Some(&again)).await.0, 201);
    assert_needs_reauthentication(stack, &alice).await;
    assert_eq!(stack.provider.counters().refreshes, 0);
    assert_eq!(
        audit_reasons(stack, "credential.reauth_required").await,
        ["connection_replaced"]
    );
    // The new connection does not inherit the old one's users: it could point anywhere. Alice's next
    // login through it is refused until the operator links her id to the new generation.
    stack.provider.set_knobs(|k| k.access_token_lifetime_secs = 3600);
    let outcome = login_outcome(stack, "con_demo").await;
    assert_eq!(
        outcome.get("error").map(String::as_str),
        Some("identity_conflict"),
        "{outcome:?}"
    );
    credvault::store::identities::link_checked(&stack.instance.table, &alice.user_id, "con_demo")
        .await
        .unwrap();
    let again = stack.login().await;
    assert_eq!(
        stack
            .call(
                "GET",
                &credentials_path(stack, &again.user_id),
                Some(&again.access_token),
                None
            )
            .await
            .0,
        200
    );
}

/// Attack 7: service-client tokens must look exactly like the SDKs make them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_client_tokens_need_iat_and_a_bounded_lifetime() {
    let stack = &LocalStack::start(StackOptions::default()).await;
    let (_, key) = stack.new_client("backend").await;
    let base = stack.base_url.clone();
    let path = "/v1/clients";
    let token = |adjust: Adjust| credvault_tests::service_client::client_token(&key, &base, adjust);
    let before = stack.state_snapshot().await;
    // (case, the change, what the 401 says: each rule refuses by itself)
    let cases: [(&str, Adjust, &str); 6] = [
        (
            "no iat",
            |_, c| {
                c.as_object_mut().unwrap().remove("iat");
            },
            "the token is not valid",
        ),
        (
            "ten-year lifetime",
            |_, c| c["exp"] = json!(c["iat"].as_i64().unwrap() + 10 * 365 * 86_400),
            "the token's lifetime is longer than a service-client token may have",
        ),
        (
            "issued two days ago",
            |_, c| {
                let now = c["iat"].as_i64().unwrap();
                c["iat"] = json!(now - 2 * 86_400);
                c["exp"] = json!(now + 3600);
            },
            "the token's lifetime is longer than a service-client token may have",
        ),
        (
            "issued in the future",
            |_, c| {
                let now = c["iat"].as_i64().unwrap();
                c["iat"] = json!(now + 600);
                c["exp"] = json!(now + 3600);
            },
            "the token was issued in the future",
        ),
        (
            "expired",
            |_, c| {
                let now = c["iat"].as_i64().unwrap();
                c["iat"] = json!(now - 7200);
                c["exp"] = json!(now - 3600);
            },
            "the token has expired",
        ),
        (
            "another audience",
            |_, c| c["aud"] = json!("other.accounts.authress.io"),
            "the token is for another audience",
        ),
    ];
    let admin_key = stack.admin_key.clone();
    let refused = |bad: String, case: String, detail: &'static str| async move {
        let (status, out) = stack.call("POST", path, Some(&bad), Some(&json!({"name": "x"}))).await;
        assert_eq!(
            (status, out["errorCode"].as_str(), out["detail"].as_str()),
            (401, Some("unauthorized"), Some(detail)),
            "{case}: {out}"
        );
    };
    for (case, adjust, detail) in cases {
        let bad = credvault_tests::service_client::client_token(&admin_key, &base, adjust);
        refused(bad, case.to_string(), detail).await;
    }
    // The administrator's own token with one bit of its signature changed.
    let good = credvault_tests::service_client::client_token(&admin_key, &base, |_, _| {});
    let (input, signature) = good.rsplit_once('.').unwrap();
    let mut signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
    signature[10] ^= 0x01;
    let forged = format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature));
    refused(
        forged,
        "a changed signature".into(),
        "the token's signature is not valid",
    )
    .await;
    assert_eq!(stack.state_snapshot().await, before);
    // The control: what the SDK makes (24 h) is accepted.
    let (status, _) = stack.call("GET", path, Some(&token(|_, _| {})), None).await;
    assert_eq!(status, 403, "authenticated (the backend has no grant to list clients)");
}

/// Attack 8: the policy snapshot every instance loads is bounded; deleted records leave it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_snapshot_is_bounded_in_count_and_size() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let stack = &LocalStack::start(StackOptions::default()).await;
    let stats = |roles: i64, records: i64, bytes: i64| async move {
        stack
            .aws
            .dynamodb
            .put_item()
            .table_name(&stack.aws.table)
            .item("pk", AttributeValue::S("POLICY_STATS".into()))
            .item("sk", AttributeValue::S("STATS".into()))
            .item("roleCount", AttributeValue::N(roles.to_string()))
            .item("recordCount", AttributeValue::N(records.to_string()))
            .item("policyBytes", AttributeValue::N(bytes.to_string()))
            .send()
            .await
            .unwrap();
    };
    let limits = credvault::store::policy::POLICY_LIMITS;
    let counted = credvault::store::policy::stats(&stack.instance.table).await.unwrap();
    let (counted_roles, counted_records, counted_bytes) = (counted.roles, counted.records, counted.bytes);
    assert_eq!(
        (counted_roles, counted_records),
        (1, 1),
        "the bootstrap's admin role and record are counted"
    );
    assert!(counted_bytes > 0);

    let role = json!({"roleId": "ro_x", "name": "x", "permissions": [{"action": "x:read", "allow": true}]});
    let record = json!({"recordId": "rec_x", "name": "x", "users": [{"userId": "u1"}],
        "statements": [{"roles": ["vault:admin"], "resources": [{"resourceUri": "Things/t1"}]}]});
    stats(limits.max_roles, 1, counted_bytes).await;
    let before = stack.state_snapshot().await;
    let (status, out) = as_admin(stack, "POST", "/v1/roles", Some(&role)).await;
    assert_eq!(
        (status, out["errorCode"].as_str()),
        (400, Some("role_limit_reached")),
        "{out}"
    );
    stats(1, limits.max_records, counted_bytes).await;
    let (status, out) = as_admin(stack, "POST", "/v1/records", Some(&record)).await;
    assert_eq!(
        (status, out["errorCode"].as_str()),
        (400, Some("record_limit_reached")),
        "{out}"
    );
    stats(1, 1, limits.max_bytes - 10).await;
    let (status, out) = as_admin(stack, "POST", "/v1/records", Some(&record)).await;
    assert_eq!(
        (status, out["errorCode"].as_str()),
        (400, Some("policy_size_limit_reached")),
        "{out}"
    );
    let mut before_without_stats = before.clone();
    before_without_stats.retain(|i| !i.contains("POLICY_STATS"));
    let mut after = stack.state_snapshot().await;
    after.retain(|i| !i.contains("POLICY_STATS"));
    assert_eq!(after, before_without_stats, "no role or record stored");

    // Within the limits: created, counted, and a deletion gives the room back and sets a TTL.
    stats(1, 1, counted_bytes).await;
    assert_eq!(as_admin(stack, "POST", "/v1/records", Some(&record)).await.0, 201);
    assert_eq!(
        credvault::store::policy::stats(&stack.instance.table)
            .await
            .unwrap()
            .records,
        2
    );
    assert_eq!(as_admin(stack, "DELETE", "/v1/records/rec_x", None).await.0, 204);
    let after_delete = credvault::store::policy::stats(&stack.instance.table).await.unwrap();
    assert_eq!(
        (after_delete.roles, after_delete.records, after_delete.bytes),
        (1, 1, counted_bytes)
    );
    let raw = stack.aws.scan_all().await;
    let deleted = raw
        .iter()
        .find(|i| i.get("sk").and_then(|v| v.as_s().ok()).map(String::as_str) == Some("RECORD#rec_x"))
        .expect("a deleted record stays readable for a while");
    assert_eq!(
        deleted["pk"].as_s().unwrap(),
        "DELETED_RECORDS",
        "in its own partition, which no policy load reads"
    );
    let ttl: i64 = deleted[credvault::store::TTL_ATTRIBUTE]
        .as_n()
        .unwrap()
        .parse()
        .unwrap();
    let now = stack.instance.clock.now_secs();
    let thirty_days = 30 * 86_400;
    assert!(
        (thirty_days - 60..=thirty_days).contains(&(ttl - now)),
        "readable for the documented 30 days: {} s",
        ttl - now
    );
    let (status, shown) = as_admin(stack, "GET", "/v1/records/rec_x", None).await;
    assert_eq!((status, shown["status"].as_str()), (200, Some("DELETED")));
    let (status, _) = as_admin(stack, "PUT", "/v1/records/rec_x", Some(&record)).await;
    assert_eq!(status, 404, "a deleted record cannot be revived by an update");
}

/// Attack 9: ids and cursors of any length get a 4xx before a store call, and an outage is never a 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlong_ids_are_4xx_and_store_failures_are_never_400() {
    let stack = &LocalStack::start(StackOptions {
        aws_proxy: true,
        ..StackOptions::default()
    })
    .await;
    let long = "x".repeat(5000);
    let client_prefix = format!("sc_{long}");
    // A service-client token whose unverified issuer names an enormous client id: 401, not 500.
    let forged = credvault_tests::service_client::client_token(&stack.admin_key, &stack.base_url.clone(), |_, c| {
        let iss = c["iss"].as_str().unwrap().to_string();
        let (prefix, _) = iss.rsplit_once('/').unwrap();
        c["iss"] = json!(format!("{prefix}/{}", "sc_".to_string() + &"y".repeat(5000)));
    });
    let (status, _) = stack.call("GET", "/v1/clients", Some(&forged), None).await;
    assert_eq!(status, 401);
    let before = stack.state_snapshot().await;
    let admin = stack.client_token(&stack.admin_key);
    for path in [
        format!("/v1/connections/{long}"),
        format!("/v1/clients/{client_prefix}"),
        format!("/v1/clients/{client_prefix}/.well-known/openid-configuration/jwks"),
        format!("/v1/roles/{long}"),
        format!("/v1/records/{long}"),
        format!("/v1/connections/con_demo/users/{long}/credentials"),
        format!("/v1/connections/{long}/users/u1/credentials"),
        format!("/v1/users/{long}/resources/Things/permissions/things:read"),
        format!("/v1/records?cursor={long}"),
        format!("/v1/audit?caller={long}"),
        format!("/api/callback/{long}?state=s&code=c"),
        format!("/api/callback/con_demo?state={long}&code=c"),
    ] {
        let (status, out) = stack.call("GET", &path, Some(&admin), None).await;
        assert!(
            (400..500).contains(&status),
            "GET {}...: {status} {out}",
            &path[..60.min(path.len())]
        );
    }
    let (status, _) = stack
        .call(
            "POST",
            &format!("/api/authentication/{long}/tokens"),
            None,
            Some(&json!({"grant_type": "authorization_code",
            "code": "c", "code_verifier": "v".repeat(43), "redirect_uri": APP_REDIRECT_URL})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(stack.state_snapshot().await, before);

    // A listing whose store is throttled is a 503 with Retry-After, never "invalid_cursor".
    let proxy = stack.aws_proxy.as_ref().unwrap();
    proxy.throttle("Query", 0, 3);
    let resp = stack
        .http
        .get(stack.url("/v1/connections"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert_eq!(resp.json::<Value>().await.unwrap()["errorCode"], "throttled");
}

/// Review finding: a new access key on a client is the power to act as that client, so `clients:update`
/// alone must not reach the administrator's keys (nor delete them, nor re-make a deleted client id
/// that records still name).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managing_a_clients_keys_needs_what_the_client_holds() {
    let stack = &LocalStack::start(StackOptions::default()).await;
    let (manager_id, manager_key) = stack.new_client("client manager").await;
    give(
        stack,
        &manager_id,
        "ro_clients",
        json!([{"action": "clients:*", "allow": true}]),
        "Clients",
    )
    .await;
    let manager = stack.client_token(&manager_key);
    let admin_id = stack.admin_key.split('.').next().unwrap().to_string();
    let (_, admin_client) = as_admin(stack, "GET", &format!("/v1/clients/{admin_id}"), None).await;
    let admin_key_id = admin_client["verificationKeys"][0]["keyId"]
        .as_str()
        .unwrap()
        .to_string();
    let before = stack.state_snapshot().await;

    let keys = format!("/v1/clients/{admin_id}/access-keys");
    let (status, out) = stack.call("POST", &keys, Some(&manager), None).await;
    assert_eq!(
        (status, out["errorCode"].as_str()),
        (403, Some("administrators_only")),
        "{out}"
    );
    assert!(out.get("accessKey").is_none());
    let public = json!({"publicKey": "MCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE="});
    let (status, _) = stack.call("POST", &keys, Some(&manager), Some(&public)).await;
    assert_eq!(status, 403, "an uploaded public key is the same power");
    let (status, _) = stack
        .call("DELETE", &format!("{keys}/{admin_key_id}"), Some(&manager), None)
        .await;
    assert_eq!(status, 403, "nor may it lock the administrator out");
    assert_eq!(stack.state_snapshot().await, before, "nothing stored changed");

    // A client whose grants the manager could not give: it may not delete it (an administrator may),
    // nor make its id again afterwards and so inherit them.
    let (reader_id, _) = stack.new_client("reader").await;
    give(
        stack,
        &reader_id,
        "ro_reader",
        json!([{"action": "connections:credentials:read", "allow": true}]),
        "Connections",
    )
    .await;
    let reader_path = format!("/v1/clients/{reader_id}");
    let (status, out) = stack.call("DELETE", &reader_path, Some(&manager), None).await;
    assert_eq!(
        (status, out["errorCode"].as_str()),
        (403, Some("cannot_grant")),
        "{out}"
    );
    assert_eq!(as_admin(stack, "DELETE", &reader_path, None).await.0, 204);
    let again = json!({"clientId": reader_id, "name": "me now"});
    let (status, out) = stack.call("POST", "/v1/clients", Some(&manager), Some(&again)).await;
    assert_eq!(
        (status, out["errorCode"].as_str()),
        (403, Some("cannot_grant")),
        "{out}"
    );
    // Keys are the power to be a client with whatever it is given later, so a key planted on a new,
    // empty client would act with an administrator's later grant: only administrators manage keys...
    let (status, fresh) = stack
        .call("POST", "/v1/clients", Some(&manager), Some(&json!({"name": "fresh"})))
        .await;
    assert_eq!(status, 201, "{fresh}");
    let fresh_keys = format!("/v1/clients/{}/access-keys", fresh["clientId"].as_str().unwrap());
    let (status, out) = stack.call("POST", &fresh_keys, Some(&manager), None).await;
    assert_eq!(
        (status, out["errorCode"].as_str()),
        (403, Some("administrators_only")),
        "{out}"
    );
    // ...and each client its own, to rotate them.
    let own_keys = format!("/v1/clients/{manager_id}/access-keys");
    assert_eq!(stack.call("POST", &own_keys, Some(&manager), None).await.0, 201);
}

/// Review finding: two grant changes that are each allowed alone (a role that gives nothing named in a
/// record; the role widened while no record names it) must not race into one that is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_a_role_change_against_a_record_write_gives_nothing() {
    let stack = &LocalStack::start(StackOptions::default()).await;
    let (attacker_id, attacker_key) = stack.new_client("racer").await;
    give(
        stack,
        &attacker_id,
        "ro_grants",
        json!([{"action": "roles:*", "allow": true},
        {"action": "records:*", "allow": true}]),
        "*",
    )
    .await;
    let attacker = stack.client_token(&attacker_key);
    let everything = ResourceCheck::new(stack, &attacker_id);
    for round in 0..8 {
        let role_id = format!("ro_race_{round}");
        let empty = json!({"roleId": role_id, "name": "nothing", "permissions": [{"action": "*", "allow": false}]});
        assert_eq!(
            stack.call("POST", "/v1/roles", Some(&attacker), Some(&empty)).await.0,
            201
        );
        let record = json!({"recordId": format!("rec_race_{round}"), "name": "mine", "users": [{"userId": attacker_id}],
            "statements": [{"roles": [role_id], "resources": [{"resourceUri": "*"}]}]});
        let widened = json!({"name": "everything", "permissions": [{"action": "*", "allow": true, "grant": true, "delegate": true}]});
        let role_path = format!("/v1/roles/{role_id}");
        let ((record_status, _), (role_status, _)) = tokio::join!(
            stack.call("POST", "/v1/records", Some(&attacker), Some(&record)),
            stack.call("PUT", &role_path, Some(&attacker), Some(&widened)),
        );
        assert!(
            !(record_status == 201 && role_status == 200),
            "round {round}: both writes landed (record {record_status}, role {role_status})"
        );
        assert!(
            !everything.holds_everything().await,
            "round {round}: the racer holds * on *"
        );
    }
}

/// Whether a subject holds `*` on `*`, asked as the administrator through the permission check.
struct ResourceCheck<'a> {
    stack: &'a LocalStack,
    subject: String,
}

impl<'a> ResourceCheck<'a> {
    fn new(stack: &'a LocalStack, subject: &str) -> Self {
        Self {
            stack,
            subject: subject.to_string(),
        }
    }

    async fn holds_everything(&self) -> bool {
        let path = format!(
            "/v1/users/{}/resources/Clients/permissions/clients:read",
            encode(&self.subject)
        );
        let (status, out) = as_admin(self.stack, "GET", &path, None).await;
        assert!(status == 200 || status == 404, "{out}");
        status == 200
    }
}

/// Review finding: whoever may update a connection could re-point who its logins are (its issuer,
/// client, user endpoint or id expression) and log in as any of its users; those are for administrators.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_administrators_decide_who_a_connections_logins_are() {
    let stack = &LocalStack::start(StackOptions::default()).await;
    let (editor_id, editor_key) = stack.new_client("connection editor").await;
    give(
        stack,
        &editor_id,
        "ro_editor",
        json!([{"action": "connections:*", "allow": true}]),
        "Connections",
    )
    .await;
    let editor = stack.client_token(&editor_key);
    let (_, connection) = stack.call("GET", "/v1/connections/con_demo", Some(&editor), None).await;
    let before = stack.state_snapshot().await;
    for (field, value) in [
        ("issuerUrl", json!("https://evil.example")),
        ("clientId", json!("attacker-client")),
    ] {
        let mut changed = connection.clone();
        changed[field] = value;
        changed["clientSecret"] = json!("the attacker's own secret");
        let (status, out) = stack
            .call("PUT", "/v1/connections/con_demo", Some(&editor), Some(&changed))
            .await;
        assert_eq!(
            (status, out["errorCode"].as_str()),
            (403, Some("administrators_only")),
            "{field}: {out}"
        );
    }
    for expression in ["{name}", "{connectionId}|{email}"] {
        let mut changed = connection.clone();
        changed["data"]["userIdExpression"] = json!(expression);
        let (status, out) = stack
            .call("PUT", "/v1/connections/con_demo", Some(&editor), Some(&changed))
            .await;
        assert_eq!(
            (status, out["errorCode"].as_str()),
            (403, Some("administrators_only")),
            "{expression}: {out}"
        );
    }
    // A new connection whose ids are not its own (`{sub}`) could claim ids other grants already name.
    let mut outside = connection.clone();
    outside["connectionId"] = json!("con_new");
    outside["clientSecret"] = json!("s");
    outside["data"]["userIdExpression"] = json!("{sub}");
    let (status, out) = stack
        .call("POST", "/v1/connections", Some(&editor), Some(&outside))
        .await;
    assert_eq!(
        (status, out["errorCode"].as_str()),
        (403, Some("administrators_only")),
        "{out}"
    );
    assert_eq!(stack.state_snapshot().await, before, "nothing stored changed");
    // An expression that only looks like it starts in the connection's namespace (`{connectionId}o|`
    // makes `con_demo|...` from a connection `con_dem`), and a chosen connection id (perhaps one a
    // deleted connection had), are for administrators too.
    let mut lookalike = outside.clone();
    lookalike["connectionId"] = json!("con_dem");
    lookalike["data"]["userIdExpression"] = json!("{connectionId}o|{sub}");
    let (status, out) = stack
        .call("POST", "/v1/connections", Some(&editor), Some(&lookalike))
        .await;
    assert_eq!(
        (status, out["errorCode"].as_str()),
        (403, Some("administrators_only")),
        "{out}"
    );
    let mut chosen = outside.clone();
    chosen["data"]["userIdExpression"] = json!("{connectionId}|{sub}");
    let (status, out) = stack
        .call("POST", "/v1/connections", Some(&editor), Some(&chosen))
        .await;
    assert_eq!(
        (status, out["errorCode"].as_str()),
        (403, Some("administrators_only")),
        "{out}"
    );
    // Without an issuer, the token endpoint decides who logs in (its access token is what the user
    // endpoint is asked about): moving it is for administrators, even with a secret of one's own.
    let issuer = stack.provider.issuer().to_string();
    let github_like = json!({"connectionId": "con_gh", "authenticationUrl": format!("{issuer}/authorize"),
        "tokenUrl": format!("{issuer}/token"), "clientId": "gh-client", "clientSecret": "gh-secret",
        "data": {"oidcUserEndpointUrl": format!("{issuer}/userinfo")}});
    assert_eq!(
        as_admin(stack, "POST", "/v1/connections", Some(&github_like)).await.0,
        201
    );
    let before_move = stack.state_snapshot().await;
    let mut moved = github_like.clone();
    moved["tokenUrl"] = json!("https://evil.example/token");
    moved["clientSecret"] = json!("the attacker's own secret");
    let (status, out) = stack
        .call("PUT", "/v1/connections/con_gh", Some(&editor), Some(&moved))
        .await;
    assert_eq!(
        (status, out["errorCode"].as_str()),
        (403, Some("administrators_only")),
        "{out}"
    );
    assert_eq!(
        stack.state_snapshot().await,
        before_move,
        "the refused move changed nothing"
    );
    // What does not decide identities stays the editor's: scopes, the name, a new secret.
    let mut scopes = connection.clone();
    scopes["defaultConnectionProperties"]["scope"] = json!("openid");
    assert_eq!(
        stack
            .call("PUT", "/v1/connections/con_demo", Some(&editor), Some(&scopes))
            .await
            .0,
        200
    );
}

/// Review findings: a filtered audit listing finds sparse matches under many other events, and an id
/// that percent-decodes to several segments names no item (nor another item's resource in the trail).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_filters_find_sparse_events_and_encoded_ids_name_nothing() {
    let stack = &LocalStack::start(StackOptions::default()).await;
    let alice = stack.login().await;
    let (target_id, target_key) = stack.new_client("target").await;
    let (noise_id, noise_key) = stack.new_client("noise").await;
    let path = credentials_path(stack, &alice.user_id);
    let (target, noise) = (stack.client_token(&target_key), stack.client_token(&noise_key));
    for _ in 0..3 {
        assert_eq!(stack.call("GET", &path, Some(&target), None).await.0, 403);
    }
    for _ in 0..120 {
        assert_eq!(stack.call("GET", &path, Some(&noise), None).await.0, 403);
    }
    stack.audit_flushed().await;
    let (status, page) = as_admin(stack, "GET", &format!("/v1/audit?caller={target_id}&limit=3"), None).await;
    assert_eq!(status, 200, "{page}");
    let mut found = page["events"].as_array().unwrap().len();
    let mut cursor = page["pagination"]["next"]["cursor"].as_str().map(String::from);
    while let Some(c) = cursor {
        let (_, page) = as_admin(
            stack,
            "GET",
            &format!("/v1/audit?caller={target_id}&limit=3&cursor={c}"),
            None,
        )
        .await;
        found += page["events"].as_array().unwrap().len();
        cursor = page["pagination"]["next"]["cursor"].as_str().map(String::from);
    }
    assert_eq!(found, 3, "every event of the caller, however many others there are");
    let _ = noise_id;

    let sneaky = format!(
        "/v1/connections/con_demo{}",
        encode(&format!("/Users/{}/Credentials", alice.user_id))
    );
    let (status, out) = stack.call("DELETE", &sneaky, Some(&noise), None).await;
    assert_eq!(
        (status, out["errorCode"].as_str()),
        (404, Some("connection_not_found")),
        "{out}"
    );
    let resource = format!("Connections/con_demo/Users/{}/Credentials", alice.user_id);
    stack.audit_flushed().await;
    let (_, events) = as_admin(
        stack,
        "GET",
        &format!("/v1/audit?resource={}&limit=100", encode(&resource)),
        None,
    )
    .await;
    assert!(
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["action"] != "connection.delete"),
        "{events}"
    );
}
