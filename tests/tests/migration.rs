//! The security migration over items as they were stored before the access-control rules: unpinned
//! credentials, connections without a generation, no identity ownership, no policy counters, and a
//! service client whose id lacks the `sc_` prefix.

use aws_sdk_dynamodb::types::AttributeValue;
use credvault_tests::stack::encode;
use credvault_tests::{LocalStack, StackOptions};
use serde_json::Value;

fn key(pk: &str, sk: &str) -> [(String, AttributeValue); 2] {
    [
        ("pk".to_string(), AttributeValue::S(pk.to_string())),
        ("sk".to_string(), AttributeValue::S(sk.to_string())),
    ]
}

/// Makes an item look as the previous release stored it: `remove` those attributes.
async fn strip(stack: &LocalStack, pk: &str, sk: &str, remove: &str) {
    stack
        .aws
        .dynamodb
        .update_item()
        .table_name(&stack.aws.table)
        .set_key(Some(key(pk, sk).into_iter().collect()))
        .update_expression(format!("REMOVE {remove}"))
        .send()
        .await
        .unwrap();
}

async fn delete(stack: &LocalStack, pk: &str, sk: &str) {
    stack
        .aws
        .dynamodb
        .delete_item()
        .table_name(&stack.aws.table)
        .set_key(Some(key(pk, sk).into_iter().collect()))
        .send()
        .await
        .unwrap();
}

/// Runs the migration over the stack's table; its report as JSON.
async fn migrate(stack: &LocalStack) -> Value {
    let report = credvault::migration::migrate(
        &stack.instance.table,
        &stack.instance.envelope,
        stack.instance.clock.as_ref(),
    )
    .await
    .unwrap();
    serde_json::to_value(&report).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migration_pins_claims_and_recounts_what_the_old_release_stored() {
    let stack = LocalStack::start(StackOptions::default()).await;
    stack.provider.set_knobs(|k| k.access_token_lifetime_secs = 0);
    let alice = stack.login().await;
    let path = format!("/v1/connections/con_demo/users/{}/credentials", encode(&alice.user_id));

    // The old release's shapes.
    let cred_pk = format!("CREDENTIAL#{}", stack.connection_id);
    let cred_sk = format!("USER#{}", alice.user_id);
    strip(
        &stack,
        &cred_pk,
        &cred_sk,
        "issuedTokenUrl, issuedRevocationUrl, issuedClientId, connectionGeneration",
    )
    .await;
    strip(&stack, "CONNECTIONS", "CONNECTION#con_demo", "generation").await;
    delete(&stack, &format!("IDENTITY#{}", alice.user_id), "IDENTITY").await;
    delete(&stack, "POLICY_STATS", "STATS").await;
    let legacy_client = serde_json::json!({"clientId": "legacy-backend", "name": "old", "verificationKeys": []});
    stack
        .aws
        .dynamodb
        .put_item()
        .table_name(&stack.aws.table)
        .item("pk", AttributeValue::S("CLIENTS".into()))
        .item("sk", AttributeValue::S("CLIENT#legacy-backend".into()))
        .item("id", AttributeValue::S("legacy-backend".into()))
        .item("body", AttributeValue::S(legacy_client.to_string()))
        .item("createdAtMs", AttributeValue::N("1".into()))
        .item("updatedAtMs", AttributeValue::N("1".into()))
        .send()
        .await
        .unwrap();

    // Before the migration an unpinned credential is not refreshed anywhere.
    let (status, out) = stack.call("GET", &path, Some(&alice.access_token), None).await;
    assert_eq!(
        (status, out["errorCode"].as_str()),
        (409, Some("reauthentication_required")),
        "{out}"
    );
    assert_eq!(stack.provider.counters().refreshes, 0);
    // It is now dead; log in again to have a live unpinned credential to migrate.
    stack.provider.set_knobs(|k| k.access_token_lifetime_secs = 0);
    let alice = stack.login().await;
    strip(
        &stack,
        &cred_pk,
        &cred_sk,
        "issuedTokenUrl, issuedRevocationUrl, issuedClientId, connectionGeneration",
    )
    .await;
    delete(&stack, &format!("IDENTITY#{}", alice.user_id), "IDENTITY").await;

    let report = migrate(&stack).await;
    assert_eq!(report["connectionsGivenAGeneration"], 1, "{report}");
    assert_eq!(report["credentialsPinned"], 1, "{report}");
    assert_eq!(report["identitiesClaimed"], 1, "{report}");
    assert_eq!(report["identityConflicts"], serde_json::json!([]), "{report}");
    assert_eq!(
        report["clientsWithoutPrefix"],
        serde_json::json!(["legacy-backend"]),
        "{report}"
    );
    assert_eq!(
        (report["roles"].as_i64(), report["activeRecords"].as_i64()),
        (Some(1), Some(1)),
        "{report}"
    );
    let stats = credvault::store::policy::stats(&stack.instance.table).await.unwrap();
    assert_eq!(
        (stats.roles, stats.records, stats.bytes),
        (1, 1, report["policyBytes"].as_i64().unwrap())
    );

    // Migrated: the credential refreshes at its own endpoint again.
    stack.provider.set_knobs(|k| k.access_token_lifetime_secs = 3600);
    let (status, out) = stack.call("GET", &path, Some(&alice.access_token), None).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(stack.provider.counters().refreshes, 1);
    // Running it again changes nothing.
    let before = stack.state_snapshot().await;
    let again = migrate(&stack).await;
    assert_eq!(
        (
            again["connectionsGivenAGeneration"].as_i64(),
            again["credentialsPinned"].as_i64(),
            again["identitiesClaimed"].as_i64()
        ),
        (Some(0), Some(0), Some(0))
    );
    assert_eq!(stack.state_snapshot().await, before);
}

/// A production table is far over one Scan page (1 MB, counted before the filter): the migration
/// reads every page, so a credential stored behind a megabyte of other items is pinned too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migration_reads_every_page_of_a_table_over_a_megabyte() {
    let stack = LocalStack::start(StackOptions::default()).await;
    let padding = AttributeValue::B(vec![b'x'; 100 * 1024].into());
    for i in 0..14 {
        stack
            .aws
            .dynamodb
            .put_item()
            .table_name(&stack.aws.table)
            .item("pk", AttributeValue::S(format!("BULK#{i:02}")))
            .item("sk", AttributeValue::S("padding".into()))
            .item("padding", padding.clone())
            .send()
            .await
            .unwrap();
    }
    let alice = stack.login().await;
    let cred_pk = format!("CREDENTIAL#{}", stack.connection_id);
    strip(
        &stack,
        &cred_pk,
        &format!("USER#{}", alice.user_id),
        "issuedTokenUrl, issuedRevocationUrl, issuedClientId, connectionGeneration",
    )
    .await;
    let first_page = stack
        .aws
        .dynamodb
        .scan()
        .table_name(&stack.aws.table)
        .filter_expression("begins_with(pk, :credential)")
        .expression_attribute_values(":credential", AttributeValue::S("CREDENTIAL#".into()))
        .send()
        .await
        .unwrap();
    assert!(
        first_page.items().is_empty() && first_page.last_evaluated_key.is_some_and(|k| !k.is_empty()),
        "premise: the credential is behind the first Scan page"
    );

    let report = migrate(&stack).await;
    assert_eq!(report["credentialsPinned"], 1, "{report}");
}
