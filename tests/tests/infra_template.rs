//! The SAM template against the code: the HTTP API has exactly the routes of the routers, and
//! each function's IAM policy grants exactly the actions it uses, KMS only under encryption contexts.
//! The data key's policy and the IAM policies are evaluated together, as AWS does for a caller in the
//! key's own account, over every encryption context a role could ask for.

use std::collections::{BTreeMap, BTreeSet};

use credvault::config::RefreshTiming;
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

fn logical_id(function: &str) -> &'static str {
    match function {
        "login-callback" => "LoginCallbackFunction",
        "credential-fetch" => "CredentialFetchFunction",
        "grant-management" => "GrantManagementFunction",
        other => panic!("no SAM function for {other}"),
    }
}

/// The routes come from the functions' routers themselves (the same ones Lambda serves).
#[test]
fn the_http_api_routes_are_exactly_the_routes_of_the_routers() {
    let template = template();
    let in_template: BTreeSet<(String, String, String)> = credvault_tests::gateway::functions()
        .iter()
        .flat_map(|(function, _)| {
            let events = template["Resources"][logical_id(function)]["Properties"]["Events"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            events
                .into_values()
                .map(|e| {
                    assert_eq!(e["Type"], "HttpApi");
                    let p = &e["Properties"];
                    (
                        function.to_string(),
                        p["Method"].as_str().unwrap().to_string(),
                        p["Path"].as_str().unwrap().to_string(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let in_code: BTreeSet<(String, String, String)> = credvault_tests::gateway::operations()
        .into_iter()
        .map(|(function, method, path)| (function.to_string(), method, path))
        .collect();
    assert!(in_code.len() > 30, "the routers list their routes: {in_code:?}");
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
        // The stream processor reads the stream and puts events, and touches no item and no key.
        (
            "CredentialEventsPolicy",
            [
                &logs[..],
                &[
                    "dynamodb:DescribeStream",
                    "dynamodb:GetRecords",
                    "dynamodb:GetShardIterator",
                    "dynamodb:ListStreams",
                    "events:PutEvents",
                ],
            ]
            .concat(),
        ),
        // Webhooks read their one signing secret and take from their queue: no table, no key.
        (
            "CredentialWebhooksPolicy",
            [
                &logs[..],
                &[
                    "secretsmanager:GetSecretValue",
                    "sqs:ReceiveMessage",
                    "sqs:DeleteMessage",
                    "sqs:GetQueueAttributes",
                ],
            ]
            .concat(),
        ),
        // audit-ingest adds audit events and sends a batch it could not store to its dead letters.
        (
            "AuditIngestPolicy",
            [&logs[..], &["dynamodb:PutItem", "sqs:SendMessage"]].concat(),
        ),
        // Keep-alive verifies no token: no GetPublicKey.
        (
            "CredentialMaintenancePolicy",
            [
                &table[..],
                &logs,
                &["dynamodb:Query", "kms:GenerateDataKey", "kms:Decrypt"],
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
                let partition = ["StringEquals", "StringLike"]
                    .iter()
                    .any(|op| statement["Condition"][op].get("kms:EncryptionContext:pk").is_some());
                assert!(partition, "{policy}: {statement}");
                assert_eq!(statement["Resource"]["Fn::GetAtt"][0], "DataKey");
            }
            if acts.iter().any(|a| a.starts_with("dynamodb:")) {
                let resource = symbols(&statement["Resource"]);
                let on_index = resource == [KEEP_ALIVE_INDEX_ARN] && acts == ["dynamodb:Query"];
                let on_stream =
                    resource == ["${Table.StreamArn}"] && acts.iter().all(|a| STREAM_ACTIONS.contains(&a.as_str()));
                // ListStreams has no resource of its own.
                let list_streams = resource == ["*"] && acts == ["dynamodb:ListStreams"];
                assert!(
                    resource == ["${Table.Arn}"] || on_index || on_stream || list_streams,
                    "{policy}: table actions on the table (or Query on the keep-alive index, reads of its stream) only: {statement}"
                );
            }
            if acts.iter().any(|a| a.starts_with("secretsmanager:")) {
                assert_eq!(
                    symbols(&statement["Resource"]),
                    ["${WebhookSigningSecret}"],
                    "{policy}: the one secret"
                );
            }
            if acts.iter().any(|a| a.starts_with("sqs:")) {
                let queue = if policy == "AuditIngestPolicy" {
                    "${AuditIngestDeadLetters.Arn}"
                } else {
                    "${WebhookQueue.Arn}"
                };
                assert_eq!(symbols(&statement["Resource"]), [queue], "{policy}: the one queue");
            }
            if acts.iter().any(|a| a.starts_with("events:")) {
                assert_eq!(
                    symbols(&statement["Resource"]),
                    ["arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/${EventBusName}"],
                    "{policy}: events on the one bus"
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
    // The sparse keep-alive index, exactly as store/keep_alive.rs queries it.
    use credvault::store::keep_alive;
    let indexes = table["GlobalSecondaryIndexes"].as_array().unwrap();
    assert_eq!(indexes.len(), 1);
    let index = &indexes[0];
    assert_eq!(index["IndexName"], keep_alive::INDEX);
    let index_keys: Vec<(&str, &str)> = index["KeySchema"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["AttributeName"].as_str().unwrap(), k["KeyType"].as_str().unwrap()))
        .collect();
    assert_eq!(
        index_keys,
        [(keep_alive::ATTR_SHARD, "HASH"), (keep_alive::ATTR_DUE, "RANGE")]
    );
    assert_eq!(index["Projection"]["ProjectionType"], "KEYS_ONLY");
    let types: BTreeMap<&str, &str> = table["AttributeDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["AttributeName"].as_str().unwrap(),
                a["AttributeType"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        types,
        BTreeMap::from([
            ("pk", "S"),
            ("sk", "S"),
            (keep_alive::ATTR_SHARD, "S"),
            (keep_alive::ATTR_DUE, "N")
        ])
    );
    assert_eq!(
        template["Resources"]["SigningKey"]["Properties"]["KeySpec"],
        "ECC_NIST_P256"
    );
}

/// A template value as a comparable string: `Ref X` is `${X}`, `Fn::GetAtt [X, A]` is `${X.A}` and
/// `Fn::Sub` keeps its text, so values compare symbolically without deploying anything.
fn symbol(value: &Value) -> String {
    let unresolved = || panic!("cannot resolve {value} symbolically");
    match value {
        Value::String(s) => s.clone(),
        Value::Object(o) if o.len() == 1 => match o.iter().next().unwrap() {
            (f, Value::String(name)) if f == "Ref" => format!("${{{name}}}"),
            (f, Value::String(path)) if f == "Fn::GetAtt" => format!("${{{path}}}"),
            (f, Value::Array(parts)) if f == "Fn::GetAtt" => {
                let parts: Vec<&str> = parts.iter().map(|p| p.as_str().unwrap()).collect();
                format!("${{{}}}", parts.join("."))
            }
            (f, Value::String(text)) if f == "Fn::Sub" => text.clone(),
            _ => unresolved(),
        },
        _ => unresolved(),
    }
}

/// A policy element that may be one value or a list of them.
fn symbols(value: &Value) -> Vec<String> {
    match value {
        Value::Null => Vec::new(),
        Value::Array(list) => list.iter().map(symbol).collect(),
        other => vec![symbol(other)],
    }
}

/// IAM's `StringLike`: `*` is any run of characters, `?` any one.
fn glob(pattern: &str, text: &str) -> bool {
    fn go(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('*', rest)) => (0..=t.len()).any(|i| go(rest, &t[i..])),
            Some(('?', rest)) => !t.is_empty() && go(rest, &t[1..]),
            Some((c, rest)) => t.first() == Some(c) && go(rest, &t[1..]),
        }
    }
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    go(&p, &t)
}

/// The request context: condition key (lower case, as IAM compares key names) to its values.
type Context = BTreeMap<String, Vec<String>>;

/// A statement's Condition block: every operator and every key must hold (AND), any listed value may
/// match (OR), and a single-valued operator on a key the request lacks does not hold.
fn condition_holds(condition: &Value, context: &Context) -> bool {
    let Some(operators) = condition.as_object() else {
        return condition.is_null();
    };
    operators.iter().all(|(operator, keys)| {
        keys.as_object().unwrap().iter().all(|(key, wanted)| {
            let wanted = symbols(wanted);
            let got = context.get(&key.to_lowercase());
            let matches = |value: &String| match operator.rsplit(':').next().unwrap() {
                "StringEquals" => wanted.contains(value),
                "StringLike" => wanted.iter().any(|w| glob(w, value)),
                other => panic!("the evaluator does not know {other}"),
            };
            if operator.starts_with("ForAllValues:") {
                got.is_none_or(|values| values.iter().all(matches))
            } else if operator.contains(':') {
                panic!("the evaluator does not know {operator}")
            } else {
                matches!(got.map(Vec::as_slice), Some([value]) if matches(value))
            }
        })
    })
}

/// Whether `statement` covers this principal (None for an identity policy), action, resource and
/// context, whatever its effect.
fn statement_covers(
    statement: &Value,
    principal: Option<&str>,
    action: &str,
    resource: &str,
    context: &Context,
) -> bool {
    for unsupported in ["NotAction", "NotResource", "NotPrincipal"] {
        assert!(
            statement.get(unsupported).is_none(),
            "the evaluator does not know {unsupported}"
        );
    }
    let action = action.to_lowercase();
    let acts = symbols(&statement["Action"]);
    let resources = symbols(&statement["Resource"]);
    let principal_matches = match principal {
        None => statement.get("Principal").is_none(),
        Some(p) => match &statement["Principal"] {
            Value::String(any) => any == "*",
            named => symbols(&named["AWS"]).iter().any(|n| n == "*" || n == p),
        },
    };
    principal_matches
        && acts.iter().any(|a| glob(&a.to_lowercase(), &action))
        && resources.iter().any(|r| glob(r, resource))
        && condition_holds(&statement["Condition"], context)
}

const ACCOUNT_ROOT: &str = "arn:${AWS::Partition}:iam::${AWS::AccountId}:root";

/// Every identity-policy statement that applies to `role`: the IAM policies attached to it. Inline
/// and managed policies elsewhere would escape the evaluator, so there must be none.
fn role_statements(template: &Value, role: &str) -> Vec<Value> {
    let resources = template["Resources"].as_object().unwrap();
    let properties = &resources[role]["Properties"];
    for elsewhere in ["Policies", "ManagedPolicyArns", "PermissionsBoundary"] {
        assert!(
            properties.get(elsewhere).is_none(),
            "{role}: {elsewhere} escapes the evaluator"
        );
    }
    resources
        .iter()
        .filter(|(_, r)| {
            let attached = symbols(&r["Properties"]["Roles"]);
            r["Type"].as_str().is_some_and(|t| t.starts_with("AWS::IAM::"))
                && attached.contains(&format!("${{{role}}}"))
        })
        .flat_map(|(id, _)| {
            let statements = statements(template, id);
            assert!(!statements.is_empty(), "{id} has statements");
            statements
        })
        .collect()
}

/// Same-account access to a KMS key: no explicit deny, and the key policy allows the role itself, or
/// allows the account (which lets IAM decide) and the role's IAM policy allows it.
fn kms_allowed(template: &Value, key: &str, role: &str, action: &str, context: &Context) -> bool {
    let key_policy = template["Resources"][key]["Properties"]["KeyPolicy"]["Statement"]
        .as_array()
        .unwrap();
    let iam = role_statements(template, role);
    let (me, key_arn) = (format!("${{{role}.Arn}}"), format!("${{{key}.Arn}}"));
    let key_says = |effect: &str, principal: &str| {
        key_policy
            .iter()
            .any(|s| s["Effect"] == effect && statement_covers(s, Some(principal), action, &key_arn, context))
    };
    let iam_says = |effect: &str| {
        iam.iter()
            .any(|s| s["Effect"] == effect && statement_covers(s, None, action, &key_arn, context))
    };
    let denied = key_says("Deny", &me) || key_says("Deny", ACCOUNT_ROOT) || iam_says("Deny");
    !denied && (key_says("Allow", &me) || (key_says("Allow", ACCOUNT_ROOT) && iam_says("Allow")))
}

/// The evaluator itself, on policies whose answers AWS documents.
#[test]
fn the_evaluator_follows_aws_policy_evaluation() {
    use serde_json::json;
    assert!(glob("CREDENTIAL#*", "CREDENTIAL#con_a") && glob("a?c", "abc") && glob("*", ""));
    assert!(!glob("CREDENTIAL#*", "CREDENTIAL") && !glob("LOGIN", "LOGIN#abc"));
    let context = |pairs: &[(&str, &str)]| -> Context {
        pairs
            .iter()
            .map(|(k, v)| (k.to_lowercase(), vec![v.to_string()]))
            .collect()
    };
    let ctx = context(&[
        ("kms:EncryptionContext:pk", "CONNECTIONS"),
        ("kms:EncryptionContext:attribute", "clientSecret"),
    ]);
    let holds = |condition: Value| condition_holds(&condition, &ctx);
    assert!(holds(
        json!({"StringEquals": {"kms:EncryptionContext:attribute": ["accessToken", "clientSecret"]}})
    ));
    assert!(!holds(
        json!({"StringEquals": {"kms:EncryptionContext:pk": "CONNECTIONS", "kms:EncryptionContext:attribute": "accessToken"}})
    ));
    assert!(
        !holds(json!({"StringEquals": {"kms:EncryptionContext:table": "t"}})),
        "a missing key fails"
    );
    assert!(!holds(
        json!({"StringEquals": {"kms:EncryptionContext:pk": "CONNECTIONS"}, "StringLike": {"kms:EncryptionContext:attribute": "x*"}})
    ));
    assert!(
        holds(json!({"ForAllValues:StringLike": {"dynamodb:LeadingKeys": "X#*"}})),
        "ForAllValues of nothing holds"
    );
    let leading = |pk: &str| context(&[("dynamodb:LeadingKeys", pk)]);
    let only_credentials = json!({"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["CREDENTIAL#*"]}});
    assert!(condition_holds(&only_credentials, &leading("CREDENTIAL#con_a")));
    assert!(!condition_holds(&only_credentials, &leading("CONNECTIONS")));
    // The account root with a crypto action hands the decision to IAM; naming the role decides alone;
    // a deny anywhere wins.
    let allow = |principal: Option<Value>, action: &str| {
        let mut s = json!({"Effect": "Allow", "Action": action, "Resource": "*"});
        if let Some(p) = principal {
            s["Principal"] = json!({"AWS": p});
        }
        s
    };
    let root = json!({"Fn::Sub": ACCOUNT_ROOT});
    let role = json!({"Fn::GetAtt": ["R", "Arn"]});
    let with = |key: Vec<Value>, iam: Vec<Value>| {
        json!({"Resources": {
            "K": {"Type": "AWS::KMS::Key", "Properties": {"KeyPolicy": {"Statement": key}}},
            "R": {"Type": "AWS::IAM::Role", "Properties": {}},
            "P": {"Type": "AWS::IAM::Policy", "Properties": {"Roles": [{"Ref": "R"}], "PolicyDocument": {"Statement": iam}}},
        }})
    };
    let decrypt = |template: &Value| kms_allowed(template, "K", "R", "kms:Decrypt", &ctx);
    let logs = allow(None, "logs:PutLogEvents");
    assert!(!decrypt(&with(
        vec![allow(Some(root.clone()), "kms:Describe*")],
        vec![allow(None, "kms:*")]
    )));
    assert!(decrypt(&with(
        vec![allow(Some(root.clone()), "kms:*")],
        vec![allow(None, "kms:Decrypt")]
    )));
    assert!(!decrypt(&with(
        vec![allow(Some(root.clone()), "kms:*")],
        vec![logs.clone()]
    )));
    assert!(decrypt(&with(
        vec![allow(Some(role.clone()), "kms:Decrypt")],
        vec![logs.clone()]
    )));
    let mut deny = allow(None, "kms:*");
    deny["Effect"] = json!("Deny");
    assert!(!decrypt(&with(vec![allow(Some(role), "kms:Decrypt")], vec![deny])));
}

const ROLES: [&str; 7] = [
    "LoginCallbackRole",
    "CredentialFetchRole",
    "GrantManagementRole",
    "CredentialMaintenanceRole",
    "CredentialEventsRole",
    "CredentialWebhooksRole",
    "AuditIngestRole",
];

/// Reads of the table's stream (credential-events): they touch no item.
const STREAM_ACTIONS: [&str; 3] = [
    "dynamodb:DescribeStream",
    "dynamodb:GetRecords",
    "dynamodb:GetShardIterator",
];

/// The keep-alive index, as IAM names it (store/keep_alive.rs `INDEX`).
const KEEP_ALIVE_INDEX_ARN: &str = "${Table.Arn}/index/keepAlive";

#[test]
fn each_role_opens_exactly_the_encryption_contexts_it_needs() {
    let template = template();
    let this_table = symbol(&serde_json::json!({"Ref": "Table"}));
    let actions = [
        "kms:GenerateDataKey",
        "kms:Decrypt",
        "kms:Encrypt",
        "kms:ReEncryptFrom",
        "kms:ReEncryptTo",
        "kms:GenerateDataKeyWithoutPlaintext",
        "kms:CreateGrant",
    ];
    let attributes = [
        "providerCodeVerifier",
        "accessToken",
        "refreshToken",
        "clientSecret",
        "somethingElse",
    ];
    let partitions = [
        "LOGIN",
        "LOGIN#abc",
        "CREDENTIAL#con_a",
        "CONNECTIONS",
        "ROLES",
        "OTHER",
    ];
    let (generate, decrypt) = ("kms:GenerateDataKey", "kms:Decrypt");
    let (verifier, credential) = ("LOGIN", "CREDENTIAL#con_a");
    let expected: BTreeMap<&str, BTreeSet<(&str, &str, &str)>> = BTreeMap::from([
        (
            "LoginCallbackRole",
            BTreeSet::from([
                (generate, "providerCodeVerifier", verifier),
                (generate, "accessToken", credential),
                (generate, "refreshToken", credential),
                (decrypt, "providerCodeVerifier", verifier),
                (decrypt, "clientSecret", "CONNECTIONS"),
            ]),
        ),
        (
            "CredentialFetchRole",
            BTreeSet::from([
                (generate, "accessToken", credential),
                (generate, "refreshToken", credential),
                (decrypt, "accessToken", credential),
                (decrypt, "refreshToken", credential),
                (decrypt, "clientSecret", "CONNECTIONS"),
            ]),
        ),
        (
            "GrantManagementRole",
            BTreeSet::from([
                (generate, "clientSecret", "CONNECTIONS"),
                (decrypt, "clientSecret", "CONNECTIONS"),
            ]),
        ),
        // Events are made from the stream's images without opening anything; webhooks open nothing.
        ("CredentialEventsRole", BTreeSet::new()),
        ("CredentialWebhooksRole", BTreeSet::new()),
        // Audit lines hold no secret: audit-ingest opens nothing.
        ("AuditIngestRole", BTreeSet::new()),
        // A keep-alive refresh is a fetch's refresh: the same contexts.
        (
            "CredentialMaintenanceRole",
            BTreeSet::from([
                (generate, "accessToken", credential),
                (generate, "refreshToken", credential),
                (decrypt, "accessToken", credential),
                (decrypt, "refreshToken", credential),
                (decrypt, "clientSecret", "CONNECTIONS"),
            ]),
        ),
    ]);
    for role in ROLES {
        for table in [this_table.as_str(), "another-table"] {
            let mut allowed = BTreeSet::new();
            for action in actions {
                for attribute in attributes {
                    for pk in partitions {
                        let context: Context = [("table", table), ("pk", pk), ("sk", "ITEM"), ("attribute", attribute)]
                            .into_iter()
                            .map(|(k, v)| (format!("kms:encryptioncontext:{k}"), vec![v.to_string()]))
                            .collect();
                        if kms_allowed(&template, "DataKey", role, action, &context) {
                            allowed.insert((action, attribute, pk));
                        }
                    }
                }
            }
            let wanted = if table == this_table {
                expected[role].clone()
            } else {
                BTreeSet::new()
            };
            let extra: Vec<_> = allowed.difference(&wanted).collect();
            let missing: Vec<_> = wanted.difference(&allowed).collect();
            assert!(
                extra.is_empty() && missing.is_empty(),
                "{role} on table {table}\nallowed but not needed: {extra:?}\nneeded but denied: {missing:?}"
            );
        }
    }
    // The account's own statement administers the key and uses it for nothing: not even CreateGrant,
    // with which any principal IAM allows it could give itself Decrypt.
    let key_policy = template["Resources"]["DataKey"]["Properties"]["KeyPolicy"]["Statement"]
        .as_array()
        .unwrap();
    for statement in key_policy {
        if symbols(&statement["Principal"]["AWS"])
            .iter()
            .any(|p| p == ACCOUNT_ROOT)
        {
            for action in actions.iter() {
                let covered = symbols(&statement["Action"])
                    .iter()
                    .any(|a| glob(&a.to_lowercase(), &action.to_lowercase()));
                assert!(!covered, "the account root may not {action}");
            }
        }
    }
}

/// The (action, partition pattern) pairs a policy grants on the table, from `dynamodb:LeadingKeys`.
fn table_grants(template: &Value, policy: &str) -> BTreeSet<(String, String)> {
    let mut grants = BTreeSet::new();
    for statement in statements(template, policy) {
        let acts: Vec<String> = actions(&statement)
            .into_iter()
            .filter(|a| a.starts_with("dynamodb:"))
            .filter(|a| !STREAM_ACTIONS.contains(&a.as_str()) && a != "dynamodb:ListStreams")
            .collect();
        if acts.is_empty() {
            continue;
        }
        assert_eq!(statement["Effect"], "Allow", "{policy}: {statement}");
        assert_eq!(acts.len(), actions(&statement).len(), "{policy}: table actions apart");
        let resource = symbols(&statement["Resource"]);
        let on_index = resource == [KEEP_ALIVE_INDEX_ARN];
        assert!(resource == ["${Table.Arn}"] || on_index, "{policy}: {statement}");
        let condition = statement["Condition"]
            .as_object()
            .unwrap_or_else(|| panic!("{policy}: every table statement names its partitions: {statement}"));
        assert_eq!(condition.len(), 1, "{policy}: one condition operator: {statement}");
        let (operator, keys) = condition.iter().next().unwrap();
        let keys = keys.as_object().unwrap();
        assert_eq!(
            keys.keys().collect::<Vec<_>>(),
            ["dynamodb:LeadingKeys"],
            "{policy}: {statement}"
        );
        let partitions = symbols(&keys["dynamodb:LeadingKeys"]);
        match operator.as_str() {
            "ForAllValues:StringEquals" => {}
            "ForAllValues:StringLike" => {}
            other => panic!("{policy}: {other} on dynamodb:LeadingKeys"),
        }
        for partition in partitions {
            assert!(!partition.contains('?'), "{policy}: {partition}");
            if operator.ends_with("StringEquals") {
                assert!(!partition.contains('*'), "{policy}: {partition} is not a pattern here");
            }
            for act in &acts {
                let partition = if on_index {
                    format!("index keepAlive: {partition}")
                } else {
                    partition.clone()
                };
                grants.insert((act.clone(), partition));
            }
        }
    }
    grants
}

#[test]
fn each_function_touches_only_its_partitions() {
    let template = template();
    fn grant(actions: &[&str], partitions: &[&str]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for a in actions {
            for p in partitions {
                out.push((format!("dynamodb:{a}"), p.to_string()));
            }
        }
        out
    }
    let expected: BTreeMap<&str, Vec<Vec<(String, String)>>> = BTreeMap::from([
        (
            "LoginCallbackPolicy",
            vec![
                grant(&["GetItem"], &["CONNECTIONS"]),
                grant(&["PutItem", "DeleteItem"], &["LOGIN#*", "VAULT_CODE#*"]),
                grant(&["GetItem", "PutItem", "UpdateItem"], &["CREDENTIAL#*", "IDENTITY#*"]),
                grant(&["PutItem"], &["AUDIT#*"]),
            ],
        ),
        (
            "CredentialFetchPolicy",
            vec![
                grant(&["GetItem", "UpdateItem", "DeleteItem"], &["CREDENTIAL#*"]),
                grant(&["GetItem"], &["CONNECTIONS", "CLIENTS", "POLICY_STATS", "IDENTITY#*"]),
                grant(&["Query"], &["ROLES", "RECORDS"]),
                grant(&["PutItem"], &["AUDIT#*"]),
            ],
        ),
        (
            "GrantManagementPolicy",
            vec![
                grant(
                    &["GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query"],
                    &["CONNECTIONS", "CLIENTS", "ROLES", "RECORDS"],
                ),
                grant(&["GetItem", "PutItem", "UpdateItem"], &["POLICY_STATS", "IDENTITY#*"]),
                grant(&["GetItem", "PutItem"], &["DELETED_RECORDS"]),
                grant(&["PutItem", "Query"], &["AUDIT#*"]),
            ],
        ),
        ("CredentialEventsPolicy", vec![]),
        ("CredentialWebhooksPolicy", vec![]),
        ("AuditIngestPolicy", vec![grant(&["PutItem"], &["AUDIT#*"])]),
        (
            "CredentialMaintenancePolicy",
            vec![
                grant(&["GetItem", "UpdateItem"], &["CREDENTIAL#*"]),
                grant(&["GetItem"], &["CONNECTIONS"]),
                grant(&["GetItem", "PutItem", "DeleteItem"], &["MAINTENANCE"]),
                grant(&["Query"], &["index keepAlive: KEEPALIVE#*"]),
                grant(&["PutItem"], &["AUDIT#*"]),
            ],
        ),
    ]);
    for (policy, wanted) in expected {
        let wanted: BTreeSet<(String, String)> = wanted.into_iter().flatten().collect();
        let granted = table_grants(&template, policy);
        let extra: Vec<_> = granted.difference(&wanted).collect();
        let missing: Vec<_> = wanted.difference(&granted).collect();
        assert!(
            extra.is_empty() && missing.is_empty(),
            "{policy}\ngranted but not needed: {extra:?}\nneeded but not granted: {missing:?}"
        );
    }
}

#[test]
fn the_api_stage_throttles_by_default() {
    let template = template();
    let settings = &template["Resources"]["HttpApi"]["Properties"]["DefaultRouteSettings"];
    for (setting, parameter) in [
        ("ThrottlingBurstLimit", "ApiThrottlingBurstLimit"),
        ("ThrottlingRateLimit", "ApiThrottlingRateLimit"),
    ] {
        assert_eq!(settings[setting], serde_json::json!({"Ref": parameter}), "{setting}");
        let p = &template["Parameters"][parameter];
        assert_eq!(p["Type"], "Number", "{parameter}");
        assert!(
            p["Default"].as_u64().is_some_and(|d| d > 0),
            "{parameter} has a default"
        );
        assert!(
            p["MinValue"].as_u64().is_some_and(|m| m > 0),
            "{parameter} never blocks all"
        );
        assert!(p["Description"].as_str().is_some_and(|d| !d.is_empty()), "{parameter}");
    }
}

/// The HTTP API answers browser preflights itself: with the origins the functions are given, and the
/// methods, headers, credentials and cache time the code allows (`shared/src/cors.rs`).
#[test]
fn the_api_cors_configuration_is_what_the_code_allows() {
    use serde_json::json;
    let template = template();
    let cors = &template["Resources"]["HttpApi"]["Properties"]["CorsConfiguration"]["Fn::If"];
    assert_eq!(cors[0], "AllowBrowserApps", "{cors}");
    assert_eq!(
        cors[2],
        json!({"Ref": "AWS::NoValue"}),
        "no CORS at all without origins"
    );
    let on = &cors[1];
    assert_eq!(
        on["AllowOrigins"],
        json!({"Fn::Split": [",", {"Ref": "AllowedOrigins"}]})
    );
    assert_eq!(
        template["Globals"]["Function"]["Environment"]["Variables"]["CREDVAULT_ALLOWED_ORIGINS"],
        json!({"Ref": "AllowedOrigins"}),
        "the functions allow the origins the API does"
    );
    let lower = |v: &Value| -> BTreeSet<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| h.as_str())
            .map(str::to_ascii_lowercase)
            .collect()
    };
    let headers: BTreeSet<String> = credvault::cors::ALLOWED_HEADERS.iter().map(|h| h.to_string()).collect();
    assert_eq!(lower(&on["AllowHeaders"]), headers);
    let methods: BTreeSet<String> = credvault::cors::ALLOWED_METHODS
        .iter()
        .map(|m| m.as_str().to_ascii_lowercase())
        .collect();
    assert_eq!(lower(&on["AllowMethods"]), methods);
    assert_eq!(on["AllowCredentials"], json!(credvault::cors::ALLOW_CREDENTIALS));
    assert_eq!(on["MaxAge"], json!(credvault::cors::MAX_AGE.as_secs()));
    assert_eq!(
        template["Conditions"]["AllowBrowserApps"],
        json!({"Fn::Not": [{"Fn::Equals": [{"Ref": "AllowedOrigins"}, ""]}]})
    );
}

/// The schedule invokes the maintenance function, one run at a time, without retries (the next run
/// resumes), and a run's time budget plus the longest lease fits in the function's timeout.
#[test]
fn the_keep_alive_schedule_runs_one_bounded_run_at_a_time() {
    let template = template();
    let resources = &template["Resources"];
    let schedule = &resources["KeepAliveSchedule"];
    assert_eq!(schedule["Type"], "AWS::Scheduler::Schedule");
    let target = &schedule["Properties"]["Target"];
    assert_eq!(target["Arn"]["Fn::GetAtt"][0], "CredentialMaintenanceFunction");
    assert_eq!(target["RetryPolicy"]["MaximumRetryAttempts"], 0);
    assert_eq!(target["RoleArn"]["Fn::GetAtt"][0], "KeepAliveSchedulerRole");
    let invoke = &resources["KeepAliveSchedulerRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][0];
    assert_eq!(invoke["Action"], "lambda:InvokeFunction");
    assert_eq!(invoke["Resource"]["Fn::GetAtt"][0], "CredentialMaintenanceFunction");
    let function = &resources["CredentialMaintenanceFunction"]["Properties"];
    assert_eq!(function["ReservedConcurrentExecutions"], 1, "runs share one cursor");
    let budget: u64 = function["Environment"]["Variables"]["CREDVAULT_KEEP_ALIVE_TIME_BUDGET_SECONDS"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let lease_max = template["Parameters"]["LeaseSeconds"]["MaxValue"].as_u64().unwrap();
    let timeout = function["Timeout"].as_u64().unwrap();
    assert!(
        budget + lease_max < timeout,
        "budget {budget} + lease {lease_max} < timeout {timeout}"
    );
    // The code's own defaults are what the template sets.
    let limits = credvault::config::KeepAliveLimits::default();
    assert_eq!(limits.time_budget.as_secs(), budget);
    assert_eq!(
        template["Parameters"]["KeepAliveMaxCredentials"]["Default"].as_u64(),
        Some(limits.max_credentials as u64)
    );
}

/// Lifecycle events come from the table's stream (both images, so transitions can be read), only of
/// credential items, with failed batches retried from their first record; webhooks exist only when
/// asked for and take the bus's credvault events.
#[test]
fn lifecycle_events_come_from_the_stream_and_webhooks_only_when_asked() {
    let template = template();
    let resources = &template["Resources"];
    assert_eq!(
        resources["Table"]["Properties"]["StreamSpecification"]["StreamViewType"],
        "NEW_AND_OLD_IMAGES"
    );
    let function = &resources["CredentialEventsFunction"]["Properties"];
    assert_eq!(
        function["Environment"]["Variables"]["CREDVAULT_EVENT_BUS"]["Ref"],
        "EventBusName"
    );
    let source = &function["Events"]["CredentialChanges"]["Properties"];
    assert_eq!(function["Events"]["CredentialChanges"]["Type"], "DynamoDB");
    assert_eq!(
        source["Stream"]["Fn::GetAtt"],
        serde_json::json!(["Table", "StreamArn"])
    );
    assert_eq!(
        source["FunctionResponseTypes"],
        serde_json::json!(["ReportBatchItemFailures"])
    );
    assert_eq!(source["StartingPosition"], "TRIM_HORIZON");
    let pattern: Value =
        serde_json::from_str(source["FilterCriteria"]["Filters"][0]["Pattern"].as_str().unwrap()).unwrap();
    assert_eq!(
        pattern,
        serde_json::json!({"dynamodb": {"Keys": {"pk": {"S": [{"prefix": "CREDENTIAL#"}]}}}})
    );
    // Everything of the webhooks exists only with a WebhookUrl.
    let webhook_resources: Vec<&String> = resources
        .as_object()
        .unwrap()
        .keys()
        .filter(|id| id.contains("Webhook"))
        .collect();
    assert!(webhook_resources.len() >= 8, "{webhook_resources:?}");
    for webhook in webhook_resources {
        assert_eq!(resources[webhook]["Condition"], "DeliverWebhooks", "{webhook}");
    }
    let rule = &resources["WebhookRule"]["Properties"];
    assert_eq!(
        rule["EventPattern"]["source"],
        serde_json::json!([credvault::lifecycle::SOURCE])
    );
    assert_eq!(rule["EventBusName"]["Ref"], "EventBusName");
    assert_eq!(
        rule["EventPattern"]["account"],
        serde_json::json!([{"Ref": "AWS::AccountId"}])
    );
    let target = &rule["Targets"][0];
    assert_eq!(target["Arn"]["Fn::GetAtt"][0], "WebhookQueue");
    assert_eq!(target["DeadLetterConfig"]["Arn"]["Fn::GetAtt"][0], "WebhookDeadLetters");
    // The queue hands the function its messages, a failed one coming back after more than the
    // function's timeout (a batch of deliveries one after the other), until the dead-letter queue.
    let function = &resources["CredentialWebhooksFunction"]["Properties"];
    let source = &function["Events"]["Webhooks"];
    assert_eq!(source["Type"], "SQS");
    assert_eq!(source["Properties"]["Queue"]["Fn::GetAtt"][0], "WebhookQueue");
    assert_eq!(
        source["Properties"]["FunctionResponseTypes"],
        serde_json::json!(["ReportBatchItemFailures"])
    );
    let batch = source["Properties"]["BatchSize"].as_u64().unwrap();
    let timeout = function["Timeout"].as_u64().unwrap();
    assert!(
        timeout > batch * credential_webhooks::DELIVERY_TIMEOUT.as_secs(),
        "a whole batch fits the timeout"
    );
    let queue = &resources["WebhookQueue"]["Properties"];
    assert!(queue["VisibilityTimeout"].as_u64().unwrap() >= 6 * timeout, "{queue}");
    assert_eq!(
        queue["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0],
        "WebhookDeadLetters"
    );
    let env = &function["Environment"]["Variables"];
    assert_eq!(env["CREDVAULT_WEBHOOK_URL"]["Ref"], "WebhookUrl");
    assert_eq!(env["CREDVAULT_WEBHOOK_SECRET_ARN"]["Ref"], "WebhookSigningSecret");
    assert!(
        env.get("CREDVAULT_INSECURE_ALLOW_HTTP_LOOPBACK").is_none(),
        "a deployment never posts to loopback"
    );
    assert_eq!(
        resources["WebhookSigningSecret"]["Properties"]["SecretString"]["Ref"],
        "WebhookSecret"
    );
    // Only a principal tagged as credential-events may put credvault events on the bus, and only
    // CredentialEventsRole carries the tag.
    let deny = &resources["LifecycleEventsSenderOnly"]["Properties"];
    assert_eq!(deny["EventBusName"]["Ref"], "EventBusName");
    let statement = &deny["Statement"];
    assert_eq!(
        (&statement["Effect"], &statement["Principal"], &statement["Action"]),
        (
            &serde_json::json!("Deny"),
            &serde_json::json!("*"),
            &serde_json::json!("events:PutEvents")
        )
    );
    assert_eq!(
        statement["Condition"]["StringEquals"]["events:source"],
        credvault::lifecycle::SOURCE
    );
    let tag = &statement["Condition"]["StringNotEquals"];
    assert_eq!(tag["aws:PrincipalTag/credvault-component"], "credential-events");
    let tagged: Vec<&String> = resources
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, r)| {
            r["Properties"]["Tags"]
                .as_array()
                .is_some_and(|tags| tags.iter().any(|t| t["Key"] == "credvault-component"))
        })
        .map(|(id, _)| id)
        .collect();
    assert_eq!(tagged, ["CredentialEventsRole"]);
    assert_eq!(template["Parameters"]["WebhookSecret"]["NoEcho"], true);
    // The parameter's shortest secret is the shortest the function accepts.
    let pattern = template["Parameters"]["WebhookSecret"]["AllowedPattern"]
        .as_str()
        .unwrap();
    assert!(
        pattern.contains(&format!("{{{},", credential_webhooks::signature::MIN_SECRET_LEN)),
        "{pattern}"
    );
}

/// The audit of reads: credential-fetch's log, and only its audit lines, reach audit-ingest, which
/// only CloudWatch Logs may invoke for that log group and which takes batches of that group only; a
/// batch it cannot store goes to alarmed dead letters; and no log level drops the lines.
#[test]
fn read_audit_lines_go_from_the_fetch_log_to_audit_ingest_only() {
    let template = template();
    let resources = &template["Resources"];
    let subscription = &resources["AuditLinesSubscription"];
    assert_eq!(subscription["Type"], "AWS::Logs::SubscriptionFilter");
    let filter = &subscription["Properties"];
    assert_eq!(symbol(&filter["LogGroupName"]), "${CredentialFetchLogs}");
    assert_eq!(symbol(&filter["DestinationArn"]), "${AuditIngestFunction.Arn}");
    assert_eq!(
        filter["FilterPattern"],
        format!("{{ $.credvaultAudit = {} }}", credvault::audit::LOG_LINE_VERSION),
        "the key and value of credvault::audit::log_line"
    );
    // The pattern selects exactly the lines the vault writes as audit lines.
    let event = credvault::audit::AuditEvent::new(
        "credential.read",
        Some("u1"),
        "Connections/c/Users/u1/Credentials",
        Ok(()),
    );
    let line: Value = serde_json::from_str(&credvault::audit::log_line(&event, 1)).unwrap();
    assert_eq!(
        line["credvaultAudit"],
        serde_json::json!(credvault::audit::LOG_LINE_VERSION)
    );

    let permission = &resources["AuditIngestInvokePermission"]["Properties"];
    assert_eq!(permission["Principal"], "logs.amazonaws.com");
    assert_eq!(permission["Action"], "lambda:InvokeFunction");
    assert_eq!(symbol(&permission["SourceArn"]), "${CredentialFetchLogs.Arn}");
    assert_eq!(symbol(&permission["SourceAccount"]), "${AWS::AccountId}");

    let function = &resources["AuditIngestFunction"]["Properties"];
    assert_eq!(
        symbol(&function["Environment"]["Variables"]["CREDVAULT_AUDIT_LOG_GROUP"]),
        "${CredentialFetchLogs}",
        "audit-ingest takes the batches of the log group it is subscribed to"
    );
    assert_eq!(
        symbol(&function["DeadLetterQueue"]["TargetArn"]),
        "${AuditIngestDeadLetters.Arn}"
    );
    let alarm = &resources["AuditIngestDeadLettersAlarm"]["Properties"];
    assert_eq!(
        symbol(&alarm["Dimensions"][0]["Value"]),
        "${AuditIngestDeadLetters.QueueName}"
    );

    // Lambda's filter keeps the INFO lines: the level every function gets, which credential-fetch
    // does not override, is one credential-fetch starts with.
    let logging = &template["Globals"]["Function"]["LoggingConfig"];
    assert_eq!(logging["LogFormat"], "JSON", "no logged value can start a line");
    let level = logging["ApplicationLogLevel"].as_str();
    assert!(credvault::audit::check_log_level(level).is_ok(), "{level:?}");
    assert!(
        resources["CredentialFetchFunction"]["Properties"]
            .get("LoggingConfig")
            .is_none()
    );
}
