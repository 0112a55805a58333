//! The SAM template against the code: the HTTP API has exactly the routes of the route table, and
//! each function's IAM policy grants exactly the actions it uses, KMS only under encryption contexts.

use std::collections::{BTreeMap, BTreeSet};

use credvault::config::RefreshTiming;
use credvault::routes::{Function, ROUTES};
use serde_json::Value;

fn template() -> Value {
    let root = credvault_tests::workspace_root();
    let out = std::process::Command::new(root.join(".venv-infra/bin/python"))
        .arg(root.join("tests/scripts/template_json.py"))
        .arg(root.join("infra/template.yaml"))
        .output()
        .expect("the infra venv exists (make bootstrap)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("template JSON")
}

fn logical_id(function: Function) -> &'static str {
    match function {
        Function::LoginCallback => "LoginCallbackFunction",
        Function::CredentialFetch => "CredentialFetchFunction",
        Function::GrantManagement => "GrantManagementFunction",
    }
}

#[test]
fn the_http_api_routes_are_exactly_the_route_table() {
    let template = template();
    let in_template: BTreeSet<(String, String, String)> = Function::ALL
        .iter()
        .flat_map(|f| {
            let events = template["Resources"][logical_id(*f)]["Properties"]["Events"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            events
                .into_values()
                .map(|e| {
                    assert_eq!(e["Type"], "HttpApi");
                    let p = &e["Properties"];
                    (
                        f.name().to_string(),
                        p["Method"].as_str().unwrap().to_string(),
                        p["Path"].as_str().unwrap().to_string(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let in_code: BTreeSet<(String, String, String)> = ROUTES
        .iter()
        .map(|r| (r.function.name().to_string(), r.method.to_string(), r.path.to_string()))
        .collect();
    let missing: Vec<_> = in_code.difference(&in_template).collect();
    let extra: Vec<_> = in_template.difference(&in_code).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing from the template: {missing:?}\nnot in the code: {extra:?}"
    );
}

fn statements(template: &Value, policy: &str) -> Vec<Value> {
    template["Resources"][policy]["Properties"]["PolicyDocument"]["Statement"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn actions(statement: &Value) -> Vec<String> {
    match &statement["Action"] {
        Value::String(a) => vec![a.clone()],
        Value::Array(list) => list.iter().filter_map(|a| a.as_str().map(String::from)).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn each_function_may_do_exactly_what_it_needs() {
    let template = template();
    let table = [
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
    ];
    let logs = ["logs:CreateLogStream", "logs:PutLogEvents"];
    let expected: BTreeMap<&str, Vec<&str>> = BTreeMap::from([
        (
            "LoginCallbackPolicy",
            [
                &table[..],
                &logs,
                &["kms:GenerateDataKey", "kms:Decrypt", "kms:Sign", "kms:GetPublicKey"],
            ]
            .concat(),
        ),
        (
            "CredentialFetchPolicy",
            [
                &table[..],
                &logs,
                &[
                    "dynamodb:Query",
                    "kms:GenerateDataKey",
                    "kms:Decrypt",
                    "kms:GetPublicKey",
                ],
            ]
            .concat(),
        ),
        (
            "GrantManagementPolicy",
            [
                &table[..],
                &logs,
                &[
                    "dynamodb:Query",
                    "kms:GenerateDataKey",
                    "kms:Decrypt",
                    "kms:GetPublicKey",
                ],
            ]
            .concat(),
        ),
    ]);
    for (policy, wanted) in expected {
        let statements = statements(&template, policy);
        assert!(!statements.is_empty(), "{policy} exists");
        let granted: BTreeSet<String> = statements.iter().flat_map(actions).collect();
        let wanted: BTreeSet<String> = wanted.into_iter().map(String::from).collect();
        assert_eq!(granted, wanted, "{policy}");
        for statement in &statements {
            assert_eq!(statement["Effect"], "Allow");
            let acts = actions(statement);
            assert!(acts.iter().all(|a| !a.contains('*')), "{policy}: no wildcard actions");
            if acts.iter().any(|a| a == "kms:Decrypt" || a == "kms:GenerateDataKey") {
                let condition = &statement["Condition"]["StringEquals"];
                assert!(
                    condition.get("kms:EncryptionContext:table").is_some(),
                    "{policy}: {statement}"
                );
                assert!(
                    condition.get("kms:EncryptionContext:attribute").is_some(),
                    "{policy}: {statement}"
                );
                assert_eq!(statement["Resource"]["Fn::GetAtt"][0], "DataKey");
            }
            if acts.iter().any(|a| a.starts_with("dynamodb:")) {
                assert_eq!(
                    statement["Resource"]["Fn::GetAtt"][0], "Table",
                    "{policy}: table actions on the table only"
                );
            }
        }
        let signs = statements.iter().flat_map(actions).any(|a| a == "kms:Sign");
        assert_eq!(signs, policy == "LoginCallbackPolicy", "{policy}: only login signs");
    }
    // Management opens client secrets of connections and nothing else.
    let grants = statements(&template, "GrantManagementPolicy");
    let kms = grants
        .iter()
        .find(|s| actions(s).contains(&"kms:Decrypt".to_string()))
        .unwrap();
    assert_eq!(
        kms["Condition"]["StringEquals"]["kms:EncryptionContext:attribute"],
        "clientSecret"
    );
    assert_eq!(
        kms["Condition"]["StringEquals"]["kms:EncryptionContext:pk"],
        "CONNECTIONS"
    );
}

#[test]
fn the_fetch_timeout_outlasts_a_lease_and_a_poll_deadline() {
    let template = template();
    let params = &template["Parameters"];
    let lease = params["LeaseSeconds"]["Default"].as_u64().unwrap();
    let poll = params["PollDeadlineSeconds"]["Default"].as_u64().unwrap();
    let timeout = template["Resources"]["CredentialFetchFunction"]["Properties"]["Timeout"]
        .as_u64()
        .unwrap();
    assert!(
        timeout > lease + poll,
        "timeout {timeout} <= lease {lease} + poll deadline {poll}"
    );
    // The template's maximums keep that true for any value an operator picks.
    let (lease_max, poll_max) = (
        params["LeaseSeconds"]["MaxValue"].as_u64().unwrap(),
        params["PollDeadlineSeconds"]["MaxValue"].as_u64().unwrap(),
    );
    assert!(timeout > lease_max + poll_max);
    // And the defaults are the code's own.
    let code = RefreshTiming::default();
    assert_eq!(
        (lease, poll),
        (code.lease_length.as_secs(), code.poll_deadline.as_secs())
    );
}

#[test]
fn the_table_has_what_the_code_expects() {
    let template = template();
    let table = &template["Resources"]["Table"]["Properties"];
    assert_eq!(
        table["TimeToLiveSpecification"]["AttributeName"],
        credvault::store::TTL_ATTRIBUTE
    );
    let keys: Vec<(&str, &str)> = table["KeySchema"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["AttributeName"].as_str().unwrap(), k["KeyType"].as_str().unwrap()))
        .collect();
    assert_eq!(keys, [("pk", "HASH"), ("sk", "RANGE")]);
    assert_eq!(
        table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"],
        true
    );
    assert_eq!(table["DeletionProtectionEnabled"], true);
    assert_eq!(
        template["Resources"]["DataKey"]["Properties"]["EnableKeyRotation"],
        true
    );
    assert_eq!(
        template["Resources"]["SigningKey"]["Properties"]["KeySpec"],
        "ECC_NIST_P256"
    );
}
