//! The audit trail: each credential read, refresh, re-authentication transition, disconnect and grant
//! change is an event an administrator can read back, filtered by credential or caller, with no secret.

use credvault_tests::stack::encode;
use credvault_tests::{Failure, LocalStack, StackOptions};
use serde_json::{Value, json};

fn actions(events: &Value) -> Vec<String> {
    events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{}:{}", e["action"].as_str().unwrap(), e["outcome"].as_str().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_audited_action_is_recorded_and_readable_without_secrets() {
    let stack = LocalStack::start(StackOptions::default()).await;
    let admin = stack.client_token(&stack.admin_key);
    stack.provider.set_knobs(|k| k.access_token_lifetime_secs = 0);
    let user = stack.login().await;
    stack.provider.set_knobs(|k| k.access_token_lifetime_secs = 3600);
    let credential = format!("/v1/connections/con_demo/users/{}/credentials", encode(&user.user_id));

    assert_eq!(
        stack.call("GET", &credential, Some(&user.access_token), None).await.0,
        200
    ); // refreshes
    assert_eq!(
        stack.call("GET", &credential, Some(&user.access_token), None).await.0,
        200
    ); // served from store
    let (client_id, key) = stack.new_client("curious").await;
    assert_eq!(
        stack
            .call("GET", &credential, Some(&stack.client_token(&key)), None)
            .await
            .0,
        403
    );
    let role = json!({"roleId": "ro_audited", "name": "x", "permissions": [{"action": "a:b", "allow": true}]});
    assert_eq!(stack.call("POST", "/v1/roles", Some(&admin), Some(&role)).await.0, 201);
    stack.clock.advance(3500);
    stack.provider.fail_next(&[Failure::InvalidGrant]);
    assert_eq!(
        stack.call("GET", &credential, Some(&user.access_token), None).await.0,
        409
    );
    assert_eq!(
        stack
            .call("DELETE", &credential, Some(&user.access_token), None)
            .await
            .0,
        204
    );

    let query = format!(
        "/v1/audit?connectionId=con_demo&userId={}&limit=50",
        encode(&user.user_id)
    );
    let (status, events) = stack.call("GET", &query, Some(&admin), None).await;
    assert_eq!(status, 200, "{events}");
    let seen = actions(&events);
    // Newest first. A read is stamped when it starts (its event is written while it reads), so the
    // refresh or re-authentication it caused comes after it.
    let expected = [
        "credential.disconnect:ok",
        "credential.reauth_required:ok",
        "credential.read:reauthentication_required",
        "credential.read:forbidden",
        "credential.read:ok",
        "credential.refresh:ok",
        "credential.read:ok",
        "credential.store:ok",
    ];
    assert_eq!(seen, expected, "{events}");
    let reads: Vec<&Value> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "credential.read" && e["outcome"] == "ok")
        .collect();
    assert_eq!(reads[0]["refreshed"], false);
    assert_eq!(reads[1]["refreshed"], true);
    assert_eq!(reads[0]["caller"], user.user_id.as_str());

    let (_, by_caller) = stack
        .call("GET", &format!("/v1/audit?caller={client_id}"), Some(&admin), None)
        .await;
    assert_eq!(actions(&by_caller), ["credential.read:forbidden"]);
    let (_, grants) = stack.call("GET", "/v1/audit?resource=Roles", Some(&admin), None).await;
    assert!(actions(&grants).contains(&"role.create:ok".to_string()), "{grants}");

    // Paging walks the whole trail without repeats.
    let mut cursor: Option<String> = None;
    let mut ids = Vec::new();
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/audit?limit=3&cursor={c}"),
            None => "/v1/audit?limit=3".to_string(),
        };
        let (status, page) = stack.call("GET", &path, Some(&admin), None).await;
        assert_eq!(status, 200);
        ids.extend(
            page["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["eventId"].as_str().unwrap().to_string()),
        );
        match page["pagination"]["next"]["cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len());
    assert!(ids.len() >= expected.len() + 2);

    // Only administrators read it, and it holds no secret.
    assert_eq!(
        stack
            .call("GET", "/v1/audit", Some(&stack.client_token(&key)), None)
            .await
            .0,
        403
    );
    assert_eq!(
        stack.call("GET", "/v1/audit", Some(&user.access_token), None).await.0,
        403
    );
    let (_, everything) = stack.call("GET", "/v1/audit?limit=100", Some(&admin), None).await;
    let text = everything.to_string();
    for secret in stack
        .provider
        .issued_secrets()
        .iter()
        .chain([&user.access_token, &stack.admin_key, &key])
    {
        assert!(!text.contains(secret.as_str()), "an audit event holds a secret");
    }
}
