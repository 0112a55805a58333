//! The management API's own rules: lost updates, bad input, write-only secrets, discovery.

use credvault_tests::{LocalStack, StackOptions};
use serde_json::{Value, json};

fn record(users: usize) -> Value {
    let users: Vec<Value> = (0..users).map(|i| json!({"userId": format!("user_{i:05}")})).collect();
    json!({"recordId": "rec_team", "name": "Team", "users": users,
        "statements": [{"roles": ["ro_team"], "resources": [{"resourceUri": "/projects/p1"}]}]})
}

/// The role `record` names: a record may only name roles that exist.
async fn team_role(stack: &LocalStack, admin: &str) {
    let role =
        json!({"roleId": "ro_team", "name": "Team", "permissions": [{"action": "projects:read", "allow": true}]});
    let (status, out) = stack.call("POST", "/v1/roles", Some(admin), Some(&role)).await;
    assert_eq!(status, 201, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_update_on_a_record_is_412() {
    let stack = LocalStack::start(StackOptions::default()).await;
    let admin = stack.client_token(&stack.admin_key);
    team_role(&stack, &admin).await;
    let (status, created) = stack.call("POST", "/v1/records", Some(&admin), Some(&record(2))).await;
    assert_eq!(status, 201);
    let read_at = created["lastUpdated"].as_str().unwrap().to_string();

    // Someone else updates it after we read it.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let put = |since: Option<String>, body: Value| {
        let mut req = stack
            .http
            .put(stack.url("/v1/records/rec_team"))
            .bearer_auth(&admin)
            .json(&body);
        if let Some(since) = since {
            req = req.header("if-unmodified-since", since);
        }
        req.send()
    };
    let theirs = put(Some(read_at.clone()), record(3)).await.unwrap();
    assert_eq!(theirs.status(), 202);
    let last_modified = theirs.headers()["last-modified"].to_str().unwrap().to_string();
    let theirs: Value = theirs.json().await.unwrap();

    // Our update, based on what we read, loses: 412, and their version stays.
    let ours = put(Some(read_at), record(1)).await.unwrap();
    assert_eq!(ours.status(), 412);
    assert_eq!(ours.json::<Value>().await.unwrap()["errorCode"], "precondition_failed");
    let (_, now) = stack.call("GET", "/v1/records/rec_team", Some(&admin), None).await;
    assert_eq!(now["users"].as_array().unwrap().len(), 3);

    // With the current version, in either date form, it goes through.
    let later_http = put(Some(last_modified), record(4)).await.unwrap();
    assert_eq!(later_http.status(), 202, "HTTP date of Last-Modified");
    let (_, current) = stack.call("GET", "/v1/records/rec_team", Some(&admin), None).await;
    let ok_iso = put(Some(current["lastUpdated"].as_str().unwrap().to_string()), record(5))
        .await
        .unwrap();
    assert_eq!(ok_iso.status(), 202, "ISO 8601 lastUpdated");
    assert_ne!(theirs["lastUpdated"], current["lastUpdated"]);
    let bad = put(Some("last tuesday".into()), record(1)).await.unwrap();
    assert_eq!(bad.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_grants_are_refused_with_clear_codes_and_store_nothing() {
    let stack = LocalStack::start(StackOptions::default()).await;
    let admin = stack.client_token(&stack.admin_key);
    let before = stack.state_snapshot().await;
    let statement = |resource: &str, roles: Value| json!([{"roles": roles, "resources": [{"resourceUri": resource}]}]);
    let cases: Vec<(&str, &str, Value, u16, &str)> = vec![
        (
            "POST",
            "/v1/records",
            json!({"name": "x", "statements": statement("/a b", json!(["ro_x"]))}),
            400,
            "invalid_resource_uri",
        ),
        (
            "POST",
            "/v1/records",
            json!({"name": "x", "statements": statement("a//b", json!(["ro_x"]))}),
            400,
            "invalid_resource_uri",
        ),
        (
            "POST",
            "/v1/records",
            json!({"name": "x", "statements": statement("/a", json!(["bad role"]))}),
            400,
            "invalid_role_id",
        ),
        (
            "POST",
            "/v1/records",
            json!({"name": "x", "statements": []}),
            400,
            "invalid_statements",
        ),
        (
            "POST",
            "/v1/records",
            json!({"name": "", "statements": statement("/a", json!(["ro_x"]))}),
            400,
            "invalid_field",
        ),
        (
            "POST",
            "/v1/records",
            json!({"name": "x", "statements": [{"roles": ["ro_x"], "resources": [{"resourceUri": "/a"}], "effect": "deny"}]}),
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/v1/records",
            json!({"recordId": "bad id!", "name": "x", "statements": statement("/a", json!(["ro_x"]))}),
            400,
            "invalid_record_id",
        ),
        (
            "POST",
            "/v1/roles",
            json!({"roleId": "ro_a", "name": "a", "permissions": [{"action": "not an action", "allow": true}]}),
            400,
            "invalid_action",
        ),
        (
            "POST",
            "/v1/roles",
            json!({"roleId": "ro_a", "name": "a", "permissions": [{"action": "a::b", "allow": true}]}),
            400,
            "invalid_action",
        ),
        (
            "POST",
            "/v1/roles",
            json!({"roleId": "ro_a", "name": "a", "permissions": [{"action": "a", "allow": true, "effect": "x"}]}),
            400,
            "invalid_json",
        ),
        (
            "POST",
            "/v1/roles",
            json!({"roleId": "ro_a", "name": "a", "permissions": []}),
            400,
            "invalid_permissions",
        ),
        (
            "POST",
            "/v1/clients",
            json!({"clientId": "sc.with.dots", "name": "x"}),
            400,
            "invalid_client_id",
        ),
        (
            "POST",
            "/v1/connections",
            json!({"connectionId": "con_x", "authenticationUrl": "http://example.com/auth", "tokenUrl": "https://example.com/token", "clientId": "c", "clientSecret": "s", "data": {"oidcUserEndpointUrl": "https://a.example/user"}}),
            400,
            "invalid_url",
        ),
        (
            "POST",
            "/v1/connections",
            json!({"connectionId": "con_x", "authenticationUrl": "https://example.com/auth", "tokenUrl": "ftp://example.com/token", "clientId": "c", "clientSecret": "s", "data": {"oidcUserEndpointUrl": "https://a.example/user"}}),
            400,
            "invalid_url",
        ),
        (
            "POST",
            "/v1/connections",
            json!({"connectionId": "con_x", "authenticationUrl": "https://example.com/auth", "tokenUrl": "https://example.com/token", "clientId": "c"}),
            400,
            "invalid_client_secret",
        ),
        (
            "POST",
            "/v1/connections",
            json!({"connectionId": "con x", "authenticationUrl": "https://example.com/auth", "tokenUrl": "https://example.com/token", "clientId": "c", "clientSecret": "s", "data": {"oidcUserEndpointUrl": "https://a.example/user"}}),
            400,
            "invalid_connection_id",
        ),
        (
            "POST",
            "/v1/connections",
            json!({"connectionId": "con_x", "type": "SAML2", "authenticationUrl": "https://example.com/auth", "tokenUrl": "https://example.com/token", "clientId": "c", "clientSecret": "s", "data": {"oidcUserEndpointUrl": "https://a.example/user"}}),
            400,
            "unsupported_connection_type",
        ),
        (
            "POST",
            "/v1/connections",
            json!({"connectionId": "con_x", "authenticationUrl": "https://example.com/auth", "tokenUrl": "https://example.com/token", "clientId": "c", "clientSecret": "s", "data": {"userIdExpression": "{sub", "oidcUserEndpointUrl": "https://a.example/user"}}),
            400,
            "invalid_user_id_expression",
        ),
        (
            "POST",
            "/v1/connections",
            json!({"connectionId": "con_demo", "authenticationUrl": "https://example.com/auth", "tokenUrl": "https://example.com/token", "clientId": "c", "clientSecret": "s", "data": {"oidcUserEndpointUrl": "https://a.example/user"}}),
            409,
            "connection_exists",
        ),
        (
            "POST",
            "/v1/clients/sc_nobody/access-keys",
            json!({"publicKey": "bm90IGEga2V5"}),
            400,
            "invalid_public_key",
        ),
        (
            "POST",
            "/v1/clients/sc_nobody/access-keys",
            Value::Null,
            404,
            "client_not_found",
        ),
        ("GET", "/v1/records?limit=0", Value::Null, 400, "invalid_limit"),
        ("GET", "/v1/records?cursor=garbage", Value::Null, 400, "invalid_cursor"),
    ];
    for (method, path, body, status, code) in cases {
        let (got, out) = stack
            .call(method, path, Some(&admin), (!body.is_null()).then_some(&body))
            .await;
        assert_eq!(
            (got, out["errorCode"].as_str()),
            (status, Some(code)),
            "{method} {path} {body}: {out}"
        );
    }
    // Malformed JSON, and a record too large (1000 users of long ids is within limits; 1001 is not).
    let raw = stack
        .http
        .post(stack.url("/v1/roles"))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body("{\"roleId\":")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    let (status, out) = stack
        .call("POST", "/v1/records", Some(&admin), Some(&record(1001)))
        .await;
    assert_eq!((status, out["errorCode"].as_str()), (413, Some("payload_too_large")));
    assert_eq!(stack.state_snapshot().await, before, "nothing stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_secrets_are_write_only_and_discovery_fills_endpoints() {
    let stack = LocalStack::start(StackOptions::default()).await;
    let admin = stack.client_token(&stack.admin_key);
    let issuer = stack.provider.issuer().to_string();
    let planted = "planted-connection-secret-77c1";
    let (status, created) = stack
        .call(
            "POST",
            "/v1/connections",
            Some(&admin),
            Some(&json!({"connectionId": "con_disc", "issuerUrl": issuer, "clientId": "x", "clientSecret": planted})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["authenticationUrl"], format!("{issuer}/authorize"));
    assert_eq!(created["tokenUrl"], format!("{issuer}/token"));
    assert_eq!(created["revocationUrl"], format!("{issuer}/revoke"));
    assert_eq!(created["data"]["userIdExpression"], "{connectionId}|{sub}");

    // Replace without a secret: the stored one stays (the demo connection still logs in and refreshes).
    let (_, demo) = stack.call("GET", "/v1/connections/con_demo", Some(&admin), None).await;
    let mut update = demo.clone();
    update["data"]["name"] = json!("Renamed");
    let (status, _) = stack
        .call("PUT", "/v1/connections/con_demo", Some(&admin), Some(&update))
        .await;
    assert_eq!(status, 200);
    stack.provider.set_knobs(|k| k.access_token_lifetime_secs = 0);
    let user = stack.login().await;
    assert_eq!(
        stack
            .fetch_credentials(&user.access_token, &user.user_id, None)
            .await
            .status(),
        200
    );

    let mut seen = String::new();
    for path in [
        "/v1/connections",
        "/v1/connections/con_disc",
        "/v1/connections/con_demo",
    ] {
        let (status, body) = stack.call("GET", path, Some(&admin), None).await;
        assert_eq!(status, 200);
        seen.push_str(&body.to_string());
    }
    assert!(seen.contains("con_disc") && seen.contains("Renamed"));
    assert!(!seen.contains(planted) && !seen.contains(credvault_tests::fake_provider::CLIENT_SECRET));
    assert!(!seen.contains("clientSecret"));
    let raw = format!("{:?}", stack.aws.scan_all().await);
    assert!(!raw.contains(planted) && !raw.contains(credvault_tests::fake_provider::CLIENT_SECRET));

    // An issuer whose discovery document names another issuer is refused.
    let (status, out) = stack
        .call("POST", "/v1/connections", Some(&admin), Some(&json!({"connectionId": "con_bad", "issuerUrl": format!("{issuer}/other"), "clientId": "x", "clientSecret": "y"})))
        .await;
    assert_eq!((status, out["errorCode"].as_str()), (400, Some("discovery_failed")));
    // Deleting a connection removes it.
    assert_eq!(
        stack
            .call("DELETE", "/v1/connections/con_disc", Some(&admin), None)
            .await
            .0,
        204
    );
    assert_eq!(
        stack
            .call("GET", "/v1/connections/con_disc", Some(&admin), None)
            .await
            .0,
        404
    );
}

/// Base64url without padding, as the listings encode their cursors (an opaque value to a client; a
/// forged one is made the same way).
fn cursor_of(sort_key: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sort_key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_page_in_id_order_and_refuse_cursors_they_did_not_give() {
    let stack = LocalStack::start(StackOptions::default()).await;
    let admin = stack.client_token(&stack.admin_key);
    for id in ["ro_c", "ro_a", "ro_e", "ro_b", "ro_d"] {
        let role = json!({"roleId": id, "name": id, "permissions": [{"action": "x:read", "allow": true}]});
        assert_eq!(stack.call("POST", "/v1/roles", Some(&admin), Some(&role)).await.0, 201);
    }
    let mut listed = Vec::new();
    let mut path = "/v1/roles?limit=2".to_string();
    loop {
        let (status, page) = stack.call("GET", &path, Some(&admin), None).await;
        assert_eq!(status, 200, "{page}");
        let roles = page["roles"].as_array().unwrap();
        assert!(roles.len() <= 2, "{page}");
        listed.extend(roles.iter().map(|r| r["roleId"].as_str().unwrap().to_string()));
        match page["pagination"]["next"]["cursor"].as_str() {
            Some(cursor) => path = format!("/v1/roles?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    // The bootstrap's admin role is there too; every role once, in id order.
    let mut expected: Vec<String> = ["ro_a", "ro_b", "ro_c", "ro_d", "ro_e", "vault:admin"]
        .map(String::from)
        .to_vec();
    expected.sort();
    assert_eq!(listed, expected);

    // A cursor is only ever a sort key of the listed kind: one naming another kind's key, or one longer
    // than any key DynamoDB holds, is refused before the store is asked.
    for forged in [
        cursor_of("CLIENT#sc_x"),
        cursor_of("RECORD#rec_x"),
        cursor_of(&format!("ROLE#{}", "x".repeat(1100))),
    ] {
        let (status, out) = stack
            .call("GET", &format!("/v1/roles?limit=2&cursor={forged}"), Some(&admin), None)
            .await;
        assert_eq!(
            (status, out["errorCode"].as_str()),
            (400, Some("invalid_cursor")),
            "{out}"
        );
    }
    // The control: a cursor made the same way from a role's own key is one the listing could have given.
    let (status, page) = stack
        .call(
            "GET",
            &format!("/v1/roles?limit=2&cursor={}", cursor_of("ROLE#ro_b")),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["roles"][0]["roleId"], "ro_c");
}

/// What the counter item says, against what the table holds: the live roles and records, and the
/// length of their stored bodies.
async fn policy_counts(stack: &LocalStack) -> ((i64, i64, i64), (i64, i64, i64)) {
    let stats = credvault::store::policy::stats(&stack.instance.table).await.unwrap();
    let mut held = (0, 0, 0);
    for item in stack.aws.scan_all().await {
        let pk = item["pk"].as_s().unwrap().as_str();
        if pk == "ROLES" || pk == "RECORDS" {
            if pk == "ROLES" {
                held.0 += 1;
            } else {
                held.1 += 1;
            }
            held.2 += item["body"].as_s().unwrap().len() as i64;
        }
    }
    ((stats.roles, stats.records, stats.bytes), held)
}

/// Sets the counters directly (as if the table were near, at, or past a limit), keeping the version.
async fn set_policy_counts(stack: &LocalStack, roles: i64, records: i64, bytes: i64) {
    use aws_sdk_dynamodb::types::AttributeValue;
    stack
        .aws
        .dynamodb
        .update_item()
        .table_name(&stack.aws.table)
        .key("pk", AttributeValue::S("POLICY_STATS".into()))
        .key("sk", AttributeValue::S("STATS".into()))
        .update_expression("SET roleCount = :r, recordCount = :c, policyBytes = :b")
        .expression_attribute_values(":r", AttributeValue::N(roles.to_string()))
        .expression_attribute_values(":c", AttributeValue::N(records.to_string()))
        .expression_attribute_values(":b", AttributeValue::N(bytes.to_string()))
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_counters_follow_every_write_and_only_growth_needs_room() {
    let stack = &LocalStack::start(StackOptions::default()).await;
    let admin = stack.client_token(&stack.admin_key);
    let role = |actions: usize| {
        let permissions: Vec<Value> = (0..actions)
            .map(|i| json!({"action": format!("things:action{i:03}"), "allow": true}))
            .collect();
        json!({"roleId": "ro_counted", "name": "counted", "permissions": permissions})
    };
    let (stats, held) = policy_counts(stack).await;
    assert_eq!(stats, held, "the bootstrap's role and record are counted");
    let at_start = held;

    // Created, grown, shrunk: each write moves the bytes by what the stored body changed.
    assert_eq!(
        stack.call("POST", "/v1/roles", Some(&admin), Some(&role(2))).await.0,
        201
    );
    let (stats, held) = policy_counts(stack).await;
    assert_eq!((stats, held.0), (held, at_start.0 + 1));
    for actions in [40, 5] {
        let (status, out) = stack
            .call("PUT", "/v1/roles/ro_counted", Some(&admin), Some(&role(actions)))
            .await;
        assert_eq!(status, 200, "{out}");
        let (stats, held) = policy_counts(stack).await;
        assert_eq!(stats, held, "after the replace with {actions} permissions");
    }

    // At the role limit a replace still goes through (it adds no role); past the size limit (limits can
    // be lowered under a full table) one that does not grow the policy does too, and a delete frees.
    let limits = credvault::store::policy::POLICY_LIMITS;
    let (_, held) = policy_counts(stack).await;
    set_policy_counts(stack, limits.max_roles, held.1, held.2).await;
    let (status, out) = stack
        .call("PUT", "/v1/roles/ro_counted", Some(&admin), Some(&role(4)))
        .await;
    assert_eq!(status, 200, "a replace at the role limit: {out}");
    let (_, held) = policy_counts(stack).await;
    set_policy_counts(stack, held.0, held.1, limits.max_bytes + 1_000).await;
    let (status, out) = stack
        .call("PUT", "/v1/roles/ro_counted", Some(&admin), Some(&role(4)))
        .await;
    assert_eq!(status, 200, "a replace of the same size past the size limit: {out}");
    let (status, out) = stack
        .call("PUT", "/v1/roles/ro_counted", Some(&admin), Some(&role(5)))
        .await;
    assert_eq!(
        (status, out["errorCode"].as_str()),
        (400, Some("policy_size_limit_reached")),
        "but not one that grows it: {out}"
    );
    let (_, held) = policy_counts(stack).await;
    set_policy_counts(stack, held.0, held.1, held.2).await;

    // The delete takes the role and what it counted away again.
    let (status, out) = stack.call("DELETE", "/v1/roles/ro_counted", Some(&admin), None).await;
    assert_eq!(status, 204, "{out}");
    assert_eq!(
        stack.call("GET", "/v1/roles/ro_counted", Some(&admin), None).await.0,
        404
    );
    let (stats, held) = policy_counts(stack).await;
    assert_eq!((stats, held), (at_start, at_start));

    // The documented bound is 16 MiB of bodies: a policy 4 KiB short of it still takes a small role.
    set_policy_counts(stack, at_start.0, at_start.1, 16 * 1024 * 1024 - 4096).await;
    let (status, out) = stack.call("POST", "/v1/roles", Some(&admin), Some(&role(2))).await;
    assert_eq!(status, 201, "a small role just under 16 MiB: {out}");
}
