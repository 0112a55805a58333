//! Service-side access: who may read a credential and manage grants, with service-client tokens signed
//! as the Authress SDK signs them, over the local gateway.

use std::time::Duration;

use credvault_tests::service_client::client_token;
use credvault_tests::stack::encode;
use credvault_tests::{LocalStack, StackOptions};
use serde_json::{Value, json};

/// A change to a token's header and claims before it is signed.
type Adjust = fn(&mut Value, &mut Value);

/// Grants change at most a second late in these stacks (the deployed default is 10 s).
fn options() -> StackOptions {
    StackOptions {
        instances: 2,
        configure: |c| c.grant_cache_max_age = Duration::from_secs(1),
        ..StackOptions::default()
    }
}

async fn grant(stack: &LocalStack, record_id: &str, user: &str, role: &str, resource: &str) {
    let admin = stack.client_token(&stack.admin_key);
    let body = json!({"recordId": record_id, "name": record_id, "users": [{"userId": user}],
        "statements": [{"roles": [role], "resources": [{"resourceUri": resource}]}]});
    let (status, out) = stack.call("POST", "/v1/records", Some(&admin), Some(&body)).await;
    assert_eq!(status, 201, "{out}");
}

async fn reader_role(stack: &LocalStack) {
    let admin = stack.client_token(&stack.admin_key);
    let body = json!({"roleId": "ro_reader", "name": "Credential reader",
        "permissions": [{"action": "connections:credentials:read", "allow": true}]});
    let (status, out) = stack.call("POST", "/v1/roles", Some(&admin), Some(&body)).await;
    assert_eq!(status, 201, "{out}");
}

/// Waits out the grant cache bound, then one more fetch.
async fn after_bound() {
    tokio::time::sleep(Duration::from_millis(1100)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_fetch_authorization_matrix() {
    let stack = LocalStack::start(options()).await;
    let alice = stack.login().await;
    stack.provider.set_knobs(|k| k.subject = "bob".into());
    let bob = stack.login().await;
    reader_role(&stack).await;
    let path = format!("/v1/connections/con_demo/users/{}/credentials", encode(&alice.user_id));
    let fetch = |bearer: Option<String>| {
        let path = path.clone();
        let stack = &stack;
        async move { stack.call("GET", &path, bearer.as_deref(), None).await.0 }
    };

    assert_eq!(fetch(None).await, 401, "anonymous");
    assert_eq!(fetch(Some(alice.access_token.clone())).await, 200, "user self");
    assert_eq!(fetch(Some(bob.access_token.clone())).await, 403, "other user");

    let (exact_id, exact_key) = stack.new_client("exact").await;
    let (parent_id, parent_key) = stack.new_client("parent").await;
    let (wild_id, wild_key) = stack.new_client("wildcard").await;
    let (_, none_key) = stack.new_client("no grant").await;
    assert_eq!(
        fetch(Some(stack.client_token(&none_key))).await,
        403,
        "client without grant"
    );

    grant(
        &stack,
        "rec_exact",
        &exact_id,
        "ro_reader",
        &format!("Connections/con_demo/Users/{}/Credentials", alice.user_id),
    )
    .await;
    grant(&stack, "rec_parent", &parent_id, "ro_reader", "Connections/con_demo").await;
    grant(
        &stack,
        "rec_wild",
        &wild_id,
        "ro_reader",
        "Connections/*/Users/*/Credentials",
    )
    .await;
    after_bound().await;
    for (case, key) in [
        ("exact grant", &exact_key),
        ("parent grant", &parent_key),
        ("wildcard grant", &wild_key),
    ] {
        assert_eq!(fetch(Some(stack.client_token(key))).await, 200, "{case}");
    }
    // The exact grant covers alice only.
    let bob_path = format!("/v1/connections/con_demo/users/{}/credentials", encode(&bob.user_id));
    assert_eq!(
        stack
            .call("GET", &bob_path, Some(&stack.client_token(&exact_key)), None)
            .await
            .0,
        403
    );
    assert_eq!(
        stack
            .call("GET", &bob_path, Some(&stack.client_token(&parent_key)), None)
            .await
            .0,
        200
    );

    // Revocations: record deleted, role changed, key deleted.
    let admin = stack.client_token(&stack.admin_key);
    assert_eq!(
        stack
            .call("DELETE", "/v1/records/rec_exact", Some(&admin), None)
            .await
            .0,
        204
    );
    let weaker = json!({"name": "Credential reader", "permissions": [{"action": "connections:read", "allow": true}]});
    assert_eq!(
        stack
            .call("PUT", "/v1/roles/ro_reader", Some(&admin), Some(&weaker))
            .await
            .0,
        200
    );
    let client = stack
        .call("GET", &format!("/v1/clients/{wild_id}"), Some(&admin), None)
        .await
        .1;
    let key_id = client["verificationKeys"][0]["keyId"].as_str().unwrap().to_string();
    assert_eq!(
        stack
            .call(
                "DELETE",
                &format!("/v1/clients/{wild_id}/access-keys/{key_id}"),
                Some(&admin),
                None
            )
            .await
            .0,
        204
    );
    assert_eq!(
        fetch(Some(stack.client_token(&wild_key))).await,
        401,
        "a deleted key stops at once"
    );
    after_bound().await;
    assert_eq!(
        fetch(Some(stack.client_token(&exact_key))).await,
        403,
        "after record deletion"
    );
    assert_eq!(
        fetch(Some(stack.client_token(&parent_key))).await,
        403,
        "after role change"
    );
    assert_eq!(
        fetch(Some(alice.access_token.clone())).await,
        200,
        "the user keeps access to their own"
    );
}

/// The revocation bound itself: a grant revoked by another instance (here the stack's own, which no
/// request is routed to) leaves the serving instance's cached policy alone, so the revoked grant is
/// still honoured there, but only until the cache is `grant_cache_max_age` old. The test clock ages
/// the cache; nothing waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_revoked_elsewhere_stops_working_once_the_cache_bound_has_passed() {
    let stack = LocalStack::start(StackOptions {
        instances: 1,
        ..StackOptions::default()
    })
    .await;
    let bound = stack.config.grant_cache_max_age;
    assert!(
        bound >= Duration::from_secs(2),
        "the deployed default, long enough to see the cache"
    );
    let alice = stack.login().await;
    let (client_id, key) = stack.new_client("backend").await;
    reader_role(&stack).await;
    grant(&stack, "rec_backend", &client_id, "ro_reader", "Connections/con_demo").await;
    let path = format!("/v1/connections/con_demo/users/{}/credentials", encode(&alice.user_id));
    let fetch = || async { stack.call("GET", &path, Some(&stack.client_token(&key)), None).await.0 };
    // The serving instance made the grant itself, so its next check sees it (and caches the policy).
    assert_eq!(fetch().await, 200, "granted");

    stack
        .instance
        .access_admin()
        .delete_record("rec_backend")
        .await
        .expect("revoke through another instance");
    assert_eq!(
        fetch().await,
        200,
        "premise: the serving instance still answers from the policy it cached before the revocation"
    );
    stack.clock.advance(bound.as_secs() as i64 + 1);
    assert_eq!(fetch().await, 403, "past the bound the revocation holds");
    assert_eq!(
        stack.call("GET", &path, Some(&alice.access_token), None).await.0,
        200,
        "the user keeps access to their own"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_client_tokens_are_verified_strictly() {
    let stack = LocalStack::start(options()).await;
    let alice = stack.login().await;
    let (client_id, key) = stack.new_client("backend").await;
    reader_role(&stack).await;
    grant(&stack, "rec_backend", &client_id, "ro_reader", "Connections/con_demo").await;
    after_bound().await;
    let path = format!("/v1/connections/con_demo/users/{}/credentials", encode(&alice.user_id));
    let base = stack.base_url.clone();
    let with = |adjust: Adjust| client_token(&key, &base, adjust);

    assert_eq!(
        stack.call("GET", &path, Some(&with(|_, _| {})), None).await.0,
        200,
        "the control"
    );
    let cases: [(&str, Adjust); 8] = [
        ("expired", |_, c| c["exp"] = json!(c["iat"].as_i64().unwrap() - 3600)),
        ("other audience", |_, c| c["aud"] = json!("other.accounts.authress.io")),
        ("foreign issuer", |_, c| {
            c["iss"] = json!(
                c["iss"]
                    .as_str()
                    .unwrap()
                    .replace("http://127.0.0.1", "https://evil.example")
            )
        }),
        ("sub is not the issuer's client", |_, c| {
            c["sub"] = json!("sc_someone_else")
        }),
        ("issuer names another client", |_, c| {
            let iss = c["iss"].as_str().unwrap().rsplit_once('/').unwrap().0.to_string();
            c["iss"] = json!(format!("{iss}/sc_someone_else"));
        }),
        ("unknown kid", |h, _| h["kid"] = json!("nokey")),
        ("alg none", |h, _| h["alg"] = json!("none")),
        ("no exp", |_, c| {
            c.as_object_mut().unwrap().remove("exp");
        }),
    ];
    for (case, adjust) in cases {
        assert_eq!(
            stack.call("GET", &path, Some(&with(adjust)), None).await.0,
            401,
            "{case}"
        );
    }
    // A key of another client presented under this client's name.
    let (_, other_key) = stack.new_client("other").await;
    let other_private = other_key.rsplit('.').next().unwrap();
    let forged = key.rsplit_once('.').unwrap().0.to_string() + "." + other_private;
    assert_eq!(
        stack
            .call("GET", &path, Some(&client_token(&forged, &base, |_, _| {})), None)
            .await
            .0,
        401,
        "wrong key"
    );
    // Deleting the client stops it at once.
    let admin = stack.client_token(&stack.admin_key);
    assert_eq!(
        stack
            .call("DELETE", &format!("/v1/clients/{client_id}"), Some(&admin), None)
            .await
            .0,
        204
    );
    assert_eq!(
        stack.call("GET", &path, Some(&with(|_, _| {})), None).await.0,
        401,
        "deleted client"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn management_routes_need_their_permissions() {
    let stack = LocalStack::start(options()).await;
    let user = stack.login().await;
    let (_, plain_key) = stack.new_client("no rights").await;
    let plain = stack.client_token(&plain_key);
    let admin = stack.client_token(&stack.admin_key);
    let routes: [(&str, &str, Option<Value>); 12] = [
        ("GET", "/v1/connections", None),
        (
            "POST",
            "/v1/connections",
            Some(
                json!({"connectionId": "con_x", "authenticationUrl": "https://a.example/auth", "tokenUrl": "https://a.example/token", "clientId": "c", "clientSecret": "s", "data": {"oidcUserEndpointUrl": "https://a.example/user"}}),
            ),
        ),
        ("GET", "/v1/connections/con_demo", None),
        ("GET", "/v1/clients", None),
        ("POST", "/v1/clients", Some(json!({"name": "x"}))),
        ("GET", "/v1/roles", None),
        (
            "POST",
            "/v1/roles",
            Some(json!({"roleId": "ro_x", "name": "x", "permissions": [{"action": "a:b", "allow": true}]})),
        ),
        ("GET", "/v1/records", None),
        (
            "POST",
            "/v1/records",
            Some(
                json!({"name": "x", "users": [{"userId": "u"}], "statements": [{"roles": ["ro_x"], "resources": [{"resourceUri": "a/b"}]}]}),
            ),
        ),
        ("GET", "/v1/users/someone/resources/a%2Fb/permissions/a:b", None),
        ("DELETE", "/v1/connections/con_demo", None),
        (
            "PUT",
            "/v1/roles/vault:admin",
            Some(json!({"name": "x", "permissions": [{"action": "*", "allow": true}]})),
        ),
    ];
    for (method, path, body) in &routes {
        let (status, _) = stack.call(method, path, None, body.as_ref()).await;
        assert_eq!(status, 401, "anonymous {method} {path}");
        let (status, _) = stack.call(method, path, Some(&plain), body.as_ref()).await;
        assert_eq!(status, 403, "client without grant {method} {path}");
        let (status, _) = stack.call(method, path, Some(&user.access_token), body.as_ref()).await;
        assert_eq!(status, 403, "user without grant {method} {path}");
    }
    // The administrator may do all of it (except the last two, which would break the rest of the test).
    for (method, path, body) in &routes[..10] {
        let (status, out) = stack.call(method, path, Some(&admin), body.as_ref()).await;
        assert!(
            matches!(status, 200 | 201 | 404),
            "admin {method} {path}: {status} {out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permission_checks_answer_allowed_and_denied() {
    let stack = LocalStack::start(options()).await;
    let admin = stack.client_token(&stack.admin_key);
    let role = json!({"roleId": "ro_docs", "name": "Docs", "permissions": [{"action": "documents:*", "allow": true}]});
    assert_eq!(stack.call("POST", "/v1/roles", Some(&admin), Some(&role)).await.0, 201);
    grant(&stack, "rec_docs", "user_1", "ro_docs", "/orgs/acme/documents").await;
    let check = |user: &str, resource: &str, permission: &str| {
        format!(
            "/v1/users/{user}/resources/{}/permissions/{permission}",
            encode(resource)
        )
    };
    assert_eq!(
        stack
            .call(
                "GET",
                &check("user_1", "/orgs/acme/documents/d1", "documents:read"),
                Some(&admin),
                None
            )
            .await
            .0,
        200
    );
    assert_eq!(
        stack
            .call(
                "GET",
                &check("user_1", "/orgs/other/documents/d1", "documents:read"),
                Some(&admin),
                None
            )
            .await
            .0,
        404
    );
    assert_eq!(
        stack
            .call(
                "GET",
                &check("user_1", "/orgs/acme/documents/d1", "billing:read"),
                Some(&admin),
                None
            )
            .await
            .0,
        404
    );
    assert_eq!(
        stack
            .call(
                "GET",
                &check("user_2", "/orgs/acme/documents/d1", "documents:read"),
                Some(&admin),
                None
            )
            .await
            .0,
        404
    );
    let (status, body) = stack
        .call(
            "GET",
            &check("user_1", "bad uri with spaces", "documents:read"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(
        (status, body["errorCode"].as_str()),
        (400, Some("invalid_resource_uri"))
    );
    let (status, body) = stack
        .call("GET", &check("user_1", "/orgs", "not an action"), Some(&admin), None)
        .await;
    assert_eq!((status, body["errorCode"].as_str()), (400, Some("invalid_action")));
}
