//! Disconnect: the provider's refresh token is revoked (RFC 7009) once, and nothing is fetchable after;
//! a provider outage leaves the credential unusable and the caller retrying.

use std::time::Duration;

use credvault_tests::stack::encode;
use credvault_tests::{LocalStack, StackOptions};
use serde_json::{Value, json};

fn path(user_id: &str) -> String {
    format!("/v1/connections/con_demo/users/{}/credentials", encode(user_id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_revokes_at_the_provider_once_and_leaves_nothing_fetchable() {
    let stack = LocalStack::start(StackOptions::default()).await;
    let user = stack.login().await;
    let refresh_token = stack.stored_refresh_token(&user.user_id).await.unwrap();
    assert!(stack.provider.refresh_token_is_live(&refresh_token));

    let (status, _) = stack
        .call("DELETE", &path(&user.user_id), Some(&user.access_token), None)
        .await;
    assert_eq!(status, 204);
    assert_eq!(stack.provider.counters().revocations, 1);
    assert!(
        !stack.provider.refresh_token_is_live(&refresh_token),
        "revoked at the provider"
    );
    let (status, body) = stack
        .call("GET", &path(&user.user_id), Some(&user.access_token), None)
        .await;
    assert_eq!(
        (status, body["errorCode"].as_str()),
        (404, Some("credentials_not_found"))
    );
    assert!(stack.credential(&user.user_id).await.is_none(), "the item is gone");
    let (status, _) = stack
        .call("DELETE", &path(&user.user_id), Some(&user.access_token), None)
        .await;
    assert_eq!(status, 404, "nothing left to disconnect");
    assert_eq!(stack.provider.counters().revocations, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_outage_during_disconnect_leaves_the_credential_unusable_until_a_retry_finishes() {
    let stack = LocalStack::start(StackOptions::default()).await;
    let user = stack.login().await;
    let refresh_token = stack.stored_refresh_token(&user.user_id).await.unwrap();
    stack.provider.set_knobs(|k| k.failing_revocations = 3);

    let resp = stack
        .http
        .delete(stack.url(&path(&user.user_id)))
        .bearer_auth(&user.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().get("retry-after").is_some());
    assert_eq!(resp.json::<Value>().await.unwrap()["errorCode"], "provider_unavailable");
    assert_eq!(stack.provider.counters().revocations, 3, "bounded retries");
    assert_eq!(
        stack
            .call("GET", &path(&user.user_id), Some(&user.access_token), None)
            .await
            .0,
        404,
        "already unusable"
    );
    assert!(stack.provider.refresh_token_is_live(&refresh_token));

    // The provider is back: the retry revokes and deletes.
    let (status, _) = stack
        .call("DELETE", &path(&user.user_id), Some(&user.access_token), None)
        .await;
    assert_eq!(status, 204);
    assert!(!stack.provider.refresh_token_is_live(&refresh_token));
    assert!(stack.credential(&user.user_id).await.is_none());
}

/// A revocation endpoint that says to come back (429) is tried again and the disconnect completes;
/// one that refuses the request (400) is not asked again: retrying cannot change its answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_answered_429_is_retried_and_one_answered_400_is_not() {
    let stack = LocalStack::start(StackOptions::default()).await;
    let user = stack.login().await;
    stack.provider.set_knobs(|k| {
        k.failing_revocations = 1;
        k.revocation_failure_status = 429;
    });
    let (status, _) = stack
        .call("DELETE", &path(&user.user_id), Some(&user.access_token), None)
        .await;
    assert_eq!(status, 204);
    assert_eq!(stack.provider.counters().revocations, 2, "asked again after the 429");

    let other = stack.login_as("bob").await;
    let refresh_token = stack.stored_refresh_token(&other.user_id).await.unwrap();
    stack.provider.set_knobs(|k| {
        k.failing_revocations = 1;
        k.revocation_failure_status = 400;
    });
    let (status, body) = stack
        .call("DELETE", &path(&other.user_id), Some(&other.access_token), None)
        .await;
    assert_eq!(
        stack.provider.counters().revocations,
        3,
        "a 400 is not asked again: {status} {body}"
    );
    assert_ne!(status, 204, "{body}");
    assert!(stack.provider.refresh_token_is_live(&refresh_token));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_user_or_a_caller_with_the_delete_grant_may_disconnect() {
    let stack = LocalStack::start(StackOptions {
        configure: |c| c.grant_cache_max_age = Duration::from_secs(1),
        ..StackOptions::default()
    })
    .await;
    let alice = stack.login().await;
    stack.provider.set_knobs(|k| k.subject = "bob".into());
    let bob = stack.login().await;
    assert_eq!(stack.call("DELETE", &path(&alice.user_id), None, None).await.0, 401);
    assert_eq!(
        stack
            .call("DELETE", &path(&alice.user_id), Some(&bob.access_token), None)
            .await
            .0,
        403
    );

    let (client_id, key) = stack.new_client("janitor").await;
    let reader = stack.client_token(&key);
    let admin = stack.client_token(&stack.admin_key);
    let role = json!({"roleId": "ro_read_only", "name": "Read", "permissions": [{"action": "connections:credentials:read", "allow": true}]});
    assert_eq!(stack.call("POST", "/v1/roles", Some(&admin), Some(&role)).await.0, 201);
    let record = json!({"recordId": "rec_janitor", "name": "janitor", "users": [{"userId": client_id}],
        "statements": [{"roles": ["ro_read_only"], "resources": [{"resourceUri": "Connections/con_demo"}]}]});
    assert_eq!(
        stack.call("POST", "/v1/records", Some(&admin), Some(&record)).await.0,
        201
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        stack.call("DELETE", &path(&alice.user_id), Some(&reader), None).await.0,
        403,
        "read is not delete"
    );

    let role =
        json!({"name": "Read and delete", "permissions": [{"action": "connections:credentials:*", "allow": true}]});
    assert_eq!(
        stack
            .call("PUT", "/v1/roles/ro_read_only", Some(&admin), Some(&role))
            .await
            .0,
        200
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        stack.call("DELETE", &path(&alice.user_id), Some(&reader), None).await.0,
        204
    );
    assert!(stack.credential(&alice.user_id).await.is_none());
    assert!(
        stack.credential(&bob.user_id).await.is_some(),
        "bob's credential is untouched"
    );
}
