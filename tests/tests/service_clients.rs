//! Service clients and their keys: at most five, uploaded public keys work, keys are published as a
//! JWKS; and connections' user id expressions decide user ids at login without re-keying old ones.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use credvault_tests::stack::encode;
use credvault_tests::{LocalStack, StackOptions};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_limited_published_and_may_be_brought_by_the_client() {
    let stack = LocalStack::start(StackOptions::default()).await;
    let admin = stack.client_token(&stack.admin_key);
    let (client_id, first_key) = stack.new_client("keys").await;
    let keys_path = format!("/v1/clients/{client_id}/access-keys");

    // Bring your own key: only the public half is sent; the client signs with its private half.
    let pkcs8 = Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new()).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8.as_ref()).unwrap();
    let mut spki = vec![0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
    spki.extend_from_slice(pair.public_key().as_ref());
    let (status, uploaded) = stack
        .call(
            "POST",
            &keys_path,
            Some(&admin),
            Some(&json!({"publicKey": STANDARD.encode(&spki)})),
        )
        .await;
    assert_eq!(status, 201, "{uploaded}");
    assert!(
        uploaded.get("accessKey").is_none(),
        "no private key exists on the vault's side"
    );
    let own_key = format!(
        "{client_id}.{}.credvault.{}",
        uploaded["keyId"].as_str().unwrap(),
        STANDARD.encode(pkcs8.as_ref())
    );
    let (status, me) = stack
        .call(
            "GET",
            &format!("/v1/users/{client_id}/resources/x/permissions/y"),
            Some(&stack.client_token(&own_key)),
            None,
        )
        .await;
    assert_eq!(
        status, 404,
        "authenticated with the uploaded key (and has no permission): {me}"
    );

    // The JWKS publishes exactly the current keys.
    let jwks_path = format!("/v1/clients/{client_id}/.well-known/openid-configuration/jwks?kid=x");
    let (status, jwks) = stack.call("GET", &jwks_path, None, None).await;
    assert_eq!(status, 200);
    let xs: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["x"].as_str().unwrap())
        .collect();
    assert_eq!(xs.len(), 2);
    assert!(xs.contains(&URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()).as_str()));
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["kty"] == "OKP" && k["crv"] == "Ed25519" && k.get("d").is_none())
    );

    // Five at most.
    for _ in 0..3 {
        assert_eq!(stack.call("POST", &keys_path, Some(&admin), None).await.0, 201);
    }
    let (status, body) = stack.call("POST", &keys_path, Some(&admin), None).await;
    assert_eq!((status, body["errorCode"].as_str()), (400, Some("too_many_keys")));
    let (_, client) = stack
        .call("GET", &format!("/v1/clients/{client_id}"), Some(&admin), None)
        .await;
    assert_eq!(client["verificationKeys"].as_array().unwrap().len(), 5);
    assert!(
        !client.to_string().contains(first_key.rsplit('.').next().unwrap()),
        "no private key is stored or shown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_id_expression_decides_new_user_ids_and_never_rekeys_old_ones() {
    let stack = LocalStack::start(StackOptions::default()).await;
    let admin = stack.client_token(&stack.admin_key);
    let before = stack.login().await;
    assert_eq!(before.user_id, "con_demo|alice");

    let (_, mut connection) = stack.call("GET", "/v1/connections/con_demo", Some(&admin), None).await;
    connection["data"]["userIdExpression"] = json!("{email}");
    assert_eq!(
        stack
            .call("PUT", "/v1/connections/con_demo", Some(&admin), Some(&connection))
            .await
            .0,
        200
    );
    let after = stack.login().await;
    assert_eq!(after.user_id, "alice@example.com");

    // The credential stored under the old id is still there and still served.
    let old = format!("/v1/connections/con_demo/users/{}/credentials", encode(&before.user_id));
    let (status, body): (u16, Value) = stack.call("GET", &old, Some(&before.access_token), None).await;
    assert_eq!(status, 200, "{body}");
    let new = format!("/v1/connections/con_demo/users/{}/credentials", encode(&after.user_id));
    assert_eq!(stack.call("GET", &new, Some(&after.access_token), None).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_without_id_tokens_identifies_users_through_its_user_endpoint() {
    let stack = LocalStack::start(StackOptions::default()).await;
    let admin = stack.client_token(&stack.admin_key);
    let issuer = stack.provider.issuer().to_string();
    // Set up like GitHub: no issuer, a user endpoint; the provider still signs id_tokens, which the
    // vault ignores without an issuer to check them against.
    let github_like = json!({"connectionId": "con_gh", "authenticationUrl": format!("{issuer}/authorize"),
        "tokenUrl": format!("{issuer}/token"), "clientId": credvault_tests::fake_provider::CLIENT_ID,
        "clientSecret": credvault_tests::fake_provider::CLIENT_SECRET,
        "data": {"oidcUserEndpointUrl": format!("{issuer}/userinfo")}});
    assert_eq!(
        stack
            .call("POST", "/v1/connections", Some(&admin), Some(&github_like))
            .await
            .0,
        201
    );

    let verifier = credvault::random::token(32);
    let mut body = stack.start_body(&verifier);
    body["connectionId"] = json!("con_gh");
    let started: Value = stack.start_login(&body).await.json().await.unwrap();
    let consent = stack
        .http
        .get(started["authenticationUrl"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    let back = stack
        .http
        .get(credvault_tests::stack::location(&consent))
        .send()
        .await
        .unwrap();
    let app = url::Url::parse(&credvault_tests::stack::location(&back)).unwrap();
    let code = app
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("logged in");
    let request_id = started["authenticationRequestId"].as_str().unwrap();
    let tokens: Value = stack
        .exchange(request_id, &code, &verifier, credvault_tests::stack::APP_REDIRECT_URL)
        .await
        .json()
        .await
        .unwrap();
    let token = tokens["access_token"].as_str().unwrap();
    let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(token).unwrap().claims;
    let user_id = claims["sub"].as_str().unwrap();
    assert!(
        user_id.starts_with("con_gh|") && user_id["con_gh|".len()..].parse::<u64>().is_ok(),
        "{user_id}"
    );
    let path = format!("/v1/connections/con_gh/users/{}/credentials", encode(user_id));
    assert_eq!(stack.call("GET", &path, Some(token), None).await.0, 200);
}
