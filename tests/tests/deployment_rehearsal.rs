//! The deployment rehearsal: the SAM template is translated to CloudFormation (aws-sam-translator, as
//! `sam deploy` does), created as a stack in moto's CloudFormation, and the vault then runs against the
//! table and keys that stack made, read from its outputs: login, refresh, a granted service-client
//! fetch, and a keep-alive run through the stack's index. This shows the template gives the code what
//! it expects (names, key types, key schema, index, TTL).

use std::collections::BTreeMap;

use credvault_tests::aws::TestAws;
use credvault_tests::stack::encode;
use credvault_tests::{LocalStack, StackOptions};
use serde_json::{Value, json};

/// Resource types moto's CloudFormation skips; the README names them and why that is acceptable.
const NOT_EMULATED: &[&str] = &[
    "AWS::ApiGatewayV2::Api",
    "AWS::ApiGatewayV2::Stage",
    "AWS::CloudWatch::Alarm",
    "AWS::Events::EventBusPolicy",
    "AWS::Lambda::EventInvokeConfig",
    "AWS::Logs::MetricFilter",
    "AWS::Logs::SubscriptionFilter",
    "AWS::Scheduler::Schedule",
];

fn deploy(endpoint: &str, stack_name: &str) -> Value {
    let root = credvault_tests::workspace_root();
    let dir = std::env::temp_dir().join(format!("credvault-rehearsal-{stack_name}"));
    std::fs::create_dir_all(&dir).unwrap();
    let bucket = format!("{}-code", stack_name.to_lowercase());
    let translated = std::process::Command::new(root.join(".venv-infra/bin/python"))
        .arg(root.join("tests/scripts/translate_template.py"))
        .args([
            root.join("infra/template.yaml").to_str().unwrap(),
            &bucket,
            "functions.zip",
            "--for-moto",
        ])
        .output()
        .expect("aws-sam-translator runs");
    assert!(
        translated.status.success(),
        "{}",
        String::from_utf8_lossy(&translated.stderr)
    );
    let cfn = dir.join("cloudformation.json");
    std::fs::write(&cfn, &translated.stdout).unwrap();
    let parameters =
        json!({"IssuerUrl": "https://vault.example.com", "AllowedRedirectUrls": "https://app.example.com/after-login"});
    let created = std::process::Command::new(root.join(".venv/bin/python"))
        .arg(root.join("tests/scripts/create_stack.py"))
        .args([
            endpoint,
            stack_name,
            cfn.to_str().unwrap(),
            &parameters.to_string(),
            &bucket,
            "functions.zip",
        ])
        .output()
        .expect("boto3 creates the stack");
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    serde_json::from_slice(&created.stdout).expect("stack JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vault_runs_on_what_the_template_creates() {
    let endpoint = credvault_tests::moto::endpoint();
    let stack_name = format!("credvault{}", credvault::random::token(6).replace(['-', '_'], "x"));
    let deployed = deploy(&endpoint, &stack_name);
    assert_eq!(deployed["status"], "CREATE_COMPLETE", "{deployed}");
    let not_created: Vec<&str> = deployed["notCreated"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    assert!(
        not_created.iter().all(|t| NOT_EMULATED.contains(t)),
        "moto skipped more than the README says: {not_created:?}"
    );
    // Webhooks are optional, and the rehearsal asks for none.
    assert_eq!(
        deployed["conditionalNotCreated"],
        json!([
            "CredentialWebhooksFunction",
            "CredentialWebhooksFunctionWebhooks",
            "CredentialWebhooksLogs",
            "CredentialWebhooksPolicy",
            "CredentialWebhooksRole",
            "WebhookDeadLetters",
            "WebhookDeadLettersAlarm",
            "WebhookQueue",
            "WebhookQueuesPolicy",
            "WebhookRule",
            "WebhookSigningSecret"
        ]),
        "{deployed}"
    );
    let created: BTreeMap<String, Value> = serde_json::from_value(deployed["created"].clone()).unwrap();
    for resource in [
        "Table",
        "DataKey",
        "SigningKey",
        "LoginCallbackFunction",
        "CredentialFetchFunction",
        "GrantManagementFunction",
        "CredentialMaintenanceFunction",
        "CredentialMaintenancePolicy",
        "CredentialEventsFunction",
        "CredentialEventsPolicy",
        "LoginCallbackPolicy",
    ] {
        assert!(created.contains_key(resource), "{resource} was created");
    }
    let outputs = &deployed["outputs"];
    let (table, data_key, signing_key) = (
        outputs["TableName"].as_str().unwrap(),
        outputs["DataKeyId"].as_str().unwrap(),
        outputs["SigningKeyId"].as_str().unwrap(),
    );
    assert!(table.starts_with(&stack_name));
    // moto's CloudFormation cannot make asymmetric keys: the signing key alone is made through the KMS
    // API from the template's KeySpec and KeyUsage (README, "Deployment rehearsal").
    assert_eq!(
        deployed["substituted"].as_object().unwrap().keys().collect::<Vec<_>>(),
        ["SigningKey"]
    );

    // The vault against exactly those resources.
    let existing = TestAws::existing(&endpoint, table, data_key, signing_key);
    let stack = LocalStack::start(StackOptions {
        existing_resources: Some(existing),
        keep_alive_days: Some(30),
        ..StackOptions::default()
    })
    .await;
    stack.provider.set_knobs(|k| k.access_token_lifetime_secs = 0);
    let user = stack.login().await;
    stack.provider.set_knobs(|k| k.access_token_lifetime_secs = 3600);
    assert_eq!(
        stack
            .fetch_credentials(&user.access_token, &user.user_id, None)
            .await
            .status(),
        200
    );
    assert_eq!(
        stack.provider.counters().refreshes,
        1,
        "refreshed and committed in the deployed table"
    );

    let (client_id, key) = stack.new_client("rehearsal backend").await;
    let admin = stack.client_token(&stack.admin_key);
    let role = json!({"roleId": "ro_r", "name": "r", "permissions": [{"action": "connections:credentials:read", "allow": true}]});
    assert_eq!(stack.call("POST", "/v1/roles", Some(&admin), Some(&role)).await.0, 201);
    let record = json!({"recordId": "rec_r", "name": "r", "users": [{"userId": client_id}],
        "statements": [{"roles": ["ro_r"], "resources": [{"resourceUri": "Connections/con_demo"}]}]});
    assert_eq!(
        stack.call("POST", "/v1/records", Some(&admin), Some(&record)).await.0,
        201
    );
    let path = format!("/v1/connections/con_demo/users/{}/credentials", encode(&user.user_id));
    assert_eq!(
        stack.call("GET", &path, Some(&stack.client_token(&key)), None).await.0,
        200
    );

    // Keep-alive on the deployed table: its keepAlive index is the one the code queries.
    stack.clock.advance(31 * 86_400);
    let event = lambda_http::lambda_runtime::LambdaEvent::new(json!({}), Default::default());
    let report = credential_maintenance::handle(&stack.instance.keep_alive(), event)
        .await
        .expect("a keep-alive run on the deployed table");
    assert_eq!(
        (report["refreshed"].as_u64(), report["complete"].as_bool()),
        (Some(1), Some(true)),
        "{report}"
    );
    assert_eq!(stack.provider.counters().refreshes, 2);
}
