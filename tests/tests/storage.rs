//! What lands in DynamoDB: no plaintext secret anywhere, and ciphertexts bound to their item and
//! attribute.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use credvault::oauth::pkce::s256_challenge;
use credvault::store::credentials;
use credvault_tests::access_token_of;
use credvault_tests::aws::TestAws;
use credvault_tests::stack::location;
use credvault_tests::{LocalStack, StackOptions};
use secrecy::ExposeSecret;
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

fn credential_key(stack: &LocalStack, user: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (
            "pk".to_string(),
            AttributeValue::S(credentials::pk(&stack.connection_id)),
        ),
        ("sk".to_string(), AttributeValue::S(credentials::sk(user))),
    ])
}

/// One attribute of a stored credential, raw.
async fn read_attribute(stack: &LocalStack, user: &str, attribute: &str) -> AttributeValue {
    stack
        .raw_credential(user)
        .await
        .expect("stored credential")
        .remove(attribute)
        .unwrap_or_else(|| panic!("no {attribute} on {user}'s credential"))
}

/// Overwrites one attribute of an existing credential, as someone with write access to the table could.
async fn write_attribute(stack: &LocalStack, user: &str, attribute: &str, value: AttributeValue) {
    stack
        .aws
        .dynamodb
        .update_item()
        .table_name(&stack.aws.table)
        .set_key(Some(credential_key(stack, user)))
        .update_expression("SET #a = :v")
        .condition_expression("attribute_exists(pk)")
        .expression_attribute_names("#a", attribute)
        .expression_attribute_values(":v", value)
        .send()
        .await
        .expect("write attribute");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ciphertext_copied_onto_another_users_item_does_not_decrypt() {
    let stack = LocalStack::start(StackOptions::default()).await;
    let alice = stack.login().await;
    stack.provider.set_knobs(|k| k.subject = "bob".into());
    let bob = stack.login().await;
    assert_ne!(alice.user_id, bob.user_id);

    // Warm the data-key cache with alice's key first: the cache must not let the copy through either.
    let alice_token = access_token_of(stack.fetch_credentials(&alice.access_token, &alice.user_id, None).await).await;
    let bob_token = access_token_of(stack.fetch_credentials(&bob.access_token, &bob.user_id, None).await).await;
    let alice_sealed = read_attribute(&stack, &alice.user_id, "accessToken").await;
    let bob_sealed = read_attribute(&stack, &bob.user_id, "accessToken").await;
    assert_ne!(alice_sealed, bob_sealed);

    // The envelope opens a ciphertext only under the context of its own item and attribute.
    let sealed = alice_sealed.as_b().unwrap().as_ref();
    let ctx =
        |user: &str, attribute| credentials::context(&stack.instance.table, &stack.connection_id, user, attribute);
    let opened = stack
        .instance
        .envelope
        .open_str(&ctx(&alice.user_id, credentials::ATTR_ACCESS_TOKEN), sealed)
        .await
        .expect("opens in its own place");
    assert_eq!(opened.expose_secret(), alice_token);
    for (user, attribute) in [
        (&bob.user_id, credentials::ATTR_ACCESS_TOKEN),
        (&alice.user_id, credentials::ATTR_REFRESH_TOKEN),
    ] {
        assert!(
            stack
                .instance
                .envelope
                .open_str(&ctx(user, attribute), sealed)
                .await
                .is_err(),
            "alice's access token opened as {user}'s {attribute}"
        );
    }

    write_attribute(&stack, &bob.user_id, "accessToken", alice_sealed).await;
    let resp = stack.fetch_credentials(&bob.access_token, &bob.user_id, None).await;
    assert_eq!(resp.status(), 500);
    let body = resp.text().await.unwrap();
    assert!(!body.contains(&alice_token), "never the other user's token");
    assert!(body.contains("internal_error"));

    // The control: the same write putting bob's own ciphertext back makes his credential open again,
    // so the refusal above was the binding, not the write.
    write_attribute(&stack, &bob.user_id, "accessToken", bob_sealed).await;
    assert_eq!(
        access_token_of(stack.fetch_credentials(&bob.access_token, &bob.user_id, None).await).await,
        bob_token
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ciphertext_moved_to_another_attribute_of_its_item_does_not_decrypt() {
    let stack = LocalStack::start(StackOptions::default()).await;
    let carol = stack.login().await;
    let sealed_refresh = read_attribute(&stack, &carol.user_id, "refreshToken").await;
    let sealed_access = read_attribute(&stack, &carol.user_id, "accessToken").await;
    write_attribute(&stack, &carol.user_id, "refreshToken", sealed_access).await;
    // Age the token to force a refresh: the refresh token (really the access token's ciphertext) must not open.
    stack.clock.advance(3400);
    let resp = stack.fetch_credentials(&carol.access_token, &carol.user_id, None).await;
    assert_eq!(resp.status(), 500);
    assert_eq!(stack.provider.counters().refreshes, 0, "nothing reached the provider");
    assert!(
        stack.credential(&carol.user_id).await.unwrap().lease.is_none(),
        "lease released after the failure"
    );

    // The control: the refresh token's own ciphertext, written back the same way, refreshes.
    write_attribute(&stack, &carol.user_id, "refreshToken", sealed_refresh).await;
    let resp = stack.fetch_credentials(&carol.access_token, &carol.user_id, None).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        stack.provider.counters().refreshes,
        1,
        "the restored refresh token was used"
    );
    assert_eq!(stack.provider.counters().reuse_detected, 0);
}

/// The harness's "every item" checks see every item: a table over DynamoDB's 1 MB Scan page is read
/// to its last page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_all_reads_every_page_of_a_table_over_a_megabyte() {
    let aws = TestAws::fresh().await;
    let padding = AttributeValue::B(vec![b'x'; 100 * 1024].into());
    let expected: Vec<String> = (0..14).map(|i| format!("BULK#{i:02}")).collect();
    for pk in &expected {
        aws.dynamodb
            .put_item()
            .table_name(&aws.table)
            .item("pk", AttributeValue::S(pk.clone()))
            .item("sk", AttributeValue::S("padding".into()))
            .item("padding", padding.clone())
            .send()
            .await
            .expect("put item");
    }
    let first_page = aws.dynamodb.scan().table_name(&aws.table).send().await.expect("scan");
    assert!(
        first_page.last_evaluated_key.as_ref().is_some_and(|k| !k.is_empty()),
        "premise: one Scan page does not hold the whole table"
    );
    assert!(first_page.items().len() < expected.len());

    let mut seen: Vec<String> = aws
        .scan_all()
        .await
        .iter()
        .map(|item| item["pk"].as_s().unwrap().clone())
        .collect();
    seen.sort();
    assert_eq!(seen, expected, "every item, each once");
}
