//! What lands in DynamoDB: no plaintext secret anywhere, and ciphertexts bound to their item.

use aws_sdk_dynamodb::types::AttributeValue;
use credvault::oauth::pkce::s256_challenge;
use credvault_tests::stack::location;
use credvault_tests::{LocalStack, StackOptions};
use serde_json::Value;

/// Every string value and every binary value of an item, as text, for searching.
fn attribute_texts(item: &credvault::store::Item) -> Vec<String> {
    fn walk(v: &AttributeValue, out: &mut Vec<String>) {
        match v {
            AttributeValue::S(s) | AttributeValue::N(s) => out.push(s.clone()),
            AttributeValue::B(b) => out.push(String::from_utf8_lossy(b.as_ref()).into_owned()),
            AttributeValue::M(m) => m.values().for_each(|v| walk(v, out)),
            AttributeValue::L(l) => l.iter().for_each(|v| walk(v, out)),
            AttributeValue::Ss(ss) => out.extend(ss.iter().cloned()),
            _ => {}
        }
    }
    let mut out = item.keys().cloned().collect::<Vec<_>>();
    item.values().for_each(|v| walk(v, &mut out));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_items_hold_no_plaintext_token_verifier_code_or_client_secret() {
    let stack = LocalStack::start(StackOptions::default()).await;
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

    // A login left half-way: its request item holds the vault's PKCE verifier, and a vault code
    // that was issued but not yet exchanged.
    let verifier = credvault::random::token(32);
    let started: Value = stack
        .start_login(&stack.start_body(&verifier))
        .await
        .json()
        .await
        .unwrap();
    let auth_url = url::Url::parse(started["authenticationUrl"].as_str().unwrap()).unwrap();
    let provider_challenge = auth_url
        .query_pairs()
        .find(|(k, _)| k == "code_challenge")
        .unwrap()
        .1
        .into_owned();
    let state = auth_url
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let verifier2 = credvault::random::token(32);
    let (_, callback) = stack.login_until_callback(&verifier2).await;
    let back = stack.http.get(&callback).send().await.unwrap();
    let app = url::Url::parse(&location(&back)).unwrap();
    let vault_code = app.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();

    let mut planted = stack.provider.issued_secrets();
    planted.extend([vault_code, state, verifier, verifier2, user.access_token.clone()]);
    assert!(planted.iter().any(|s| s.starts_with("rt-")) && planted.iter().any(|s| s.starts_with("at-")));

    let items = stack.aws.scan_all().await;
    let kinds: Vec<String> = items
        .iter()
        .filter_map(|i| i.get("pk")?.as_s().ok()?.split('#').next().map(String::from))
        .collect();
    for kind in ["CREDENTIAL", "CONNECTIONS", "LOGIN", "VAULT_CODE"] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "expected a {kind} item among {kinds:?}"
        );
    }
    for item in &items {
        for text in attribute_texts(item) {
            for secret in &planted {
                assert!(
                    !text.contains(secret.as_str()),
                    "a stored attribute contains a planted secret"
                );
            }
            // The vault's own PKCE verifier is not stored in the clear either.
            assert_ne!(s256_challenge(&text), provider_challenge);
        }
    }
}

async fn copy_attribute(stack: &LocalStack, from_user: &str, to_user: &str, attribute: &str) {
    let key = |user: &str| {
        [
            (
                "pk".to_string(),
                AttributeValue::S(credvault::store::credentials::pk(&stack.connection_id)),
            ),
            (
                "sk".to_string(),
                AttributeValue::S(credvault::store::credentials::sk(user)),
            ),
        ]
        .into_iter()
        .collect::<std::collections::HashMap<_, _>>()
    };
    let source = stack
        .aws
        .dynamodb
        .get_item()
        .table_name(&stack.aws.table)
        .set_key(Some(key(from_user)))
        .send()
        .await;
    let value = source.unwrap().item.unwrap().remove(attribute).unwrap();
    stack
        .aws
        .dynamodb
        .update_item()
        .table_name(&stack.aws.table)
        .set_key(Some(key(to_user)))
        .update_expression("SET #a = :v")
        .condition_expression("attribute_exists(pk)")
        .expression_attribute_names("#a", attribute)
        .expression_attribute_values(":v", value)
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ciphertext_copied_onto_another_users_item_does_not_decrypt() {
    let stack = LocalStack::start(StackOptions::default()).await;
    let alice = stack.login().await;
    stack.provider.set_knobs(|k| k.subject = "bob".into());
    let bob = stack.login().await;
    assert_ne!(alice.user_id, bob.user_id);

    // Warm the data-key cache with alice's key first: the cache must not let the copy through either.
    let alice_token = stack.fetch_credentials(&alice.access_token, &alice.user_id, None).await;
    let alice_token = alice_token.json::<Value>().await.unwrap()["accessToken"]
        .as_str()
        .unwrap()
        .to_string();
    copy_attribute(&stack, &alice.user_id, &bob.user_id, "accessToken").await;

    let resp = stack.fetch_credentials(&bob.access_token, &bob.user_id, None).await;
    assert_eq!(resp.status(), 500);
    let body = resp.text().await.unwrap();
    assert!(!body.contains(&alice_token), "never the other user's token");
    assert!(body.contains("internal_error"));

    // The same ciphertext moved to another attribute of the same item fails too.
    let stack2 = LocalStack::start(StackOptions::default()).await;
    let carol = stack2.login().await;
    copy_attribute(&stack2, &carol.user_id, &carol.user_id, "accessToken").await; // sanity: same place decrypts
    assert_eq!(
        stack2
            .fetch_credentials(&carol.access_token, &carol.user_id, None)
            .await
            .status(),
        200
    );
    let item = stack2
        .aws
        .scan_all()
        .await
        .into_iter()
        .find(|i| i.contains_key("refreshToken"))
        .unwrap();
    let sealed_access = item["accessToken"].clone();
    stack2
        .aws
        .dynamodb
        .update_item()
        .table_name(&stack2.aws.table)
        .key("pk", item["pk"].clone())
        .key("sk", item["sk"].clone())
        .update_expression("SET refreshToken = :v")
        .expression_attribute_values(":v", sealed_access)
        .send()
        .await
        .unwrap();
    // Age the token to force a refresh: the refresh token (really the access token's ciphertext) must not open.
    stack2.clock.advance(3400);
    let resp = stack2
        .fetch_credentials(&carol.access_token, &carol.user_id, None)
        .await;
    assert_eq!(resp.status(), 500);
    assert_eq!(stack2.provider.counters().refreshes, 0, "nothing reached the provider");
    assert!(
        stack2.credential(&carol.user_id).await.unwrap().lease.is_none(),
        "lease released after the failure"
    );
}
