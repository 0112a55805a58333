//! Vault user tokens: every way a bad token can arrive is a 401, and a good token only opens its own
//! user's credential.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use credvault::identity::{SigningKey, UserTokens};
use credvault_tests::{LocalStack, StackOptions};
use serde_json::{Value, json};

/// Issues a token with the stack's own KMS key but the given issuer, audience and clock.
async fn token_from(stack: &LocalStack, key_id: &str, issuer: &str, audience: &str, offset_secs: i64) -> String {
    let tokens = UserTokens::new(
        SigningKey::new(stack.aws.kms.clone(), key_id.to_string()),
        issuer.to_string(),
        audience.to_string(),
        Duration::from_secs(600),
        Arc::new(credvault_tests::clock::TestClock::with_offset(offset_secs)),
    );
    tokens
        .issue_access("con_demo|alice", "con_demo", "app_default", "openid")
        .await
        .unwrap()
        .token
}

fn with_parts(header: &Value, payload: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

/// Asserts a 401 and gives back its `detail`, which names the rule that refused the token.
async fn assert_unauthorized(stack: &LocalStack, bearer: Option<&str>, case: &str) -> String {
    let mut req = stack
        .http
        .get(stack.url("/v1/connections/con_demo/users/con_demo%7Calice/credentials"));
    if let Some(b) = bearer {
        req = req.header("authorization", format!("Bearer {b}"));
    }
    let resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 401, "{case}");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["errorCode"], "unauthorized", "{case}");
    body["detail"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_bad_token_is_refused_with_401() {
    let stack = LocalStack::start(StackOptions::default()).await;
    let alice = stack.login().await;
    let (issuer, audience, key_id) = (
        stack.base_url.clone(),
        stack.config.audience.clone(),
        stack.aws.signing_key_id.clone(),
    );
    // The control: a token made the same way, unmodified, is accepted.
    let good = token_from(&stack, &key_id, &issuer, &audience, 0).await;
    assert_eq!(stack.fetch_credentials(&good, &alice.user_id, None).await.status(), 200);

    assert_unauthorized(&stack, None, "no token").await;
    assert_eq!(
        assert_unauthorized(&stack, Some("not-a-jwt"), "garbage").await,
        "the token is not a valid JWT"
    );
    assert_eq!(
        assert_unauthorized(
            &stack,
            Some(&token_from(&stack, &key_id, &issuer, &audience, -7200).await),
            "expired",
        )
        .await,
        "the token has expired"
    );
    assert_eq!(
        assert_unauthorized(
            &stack,
            Some(&token_from(&stack, &key_id, "https://evil.example", &audience, 0).await),
            "iss",
        )
        .await,
        "the token was issued by someone else"
    );
    assert_eq!(
        assert_unauthorized(
            &stack,
            Some(&token_from(&stack, &key_id, &issuer, "someone-else", 0).await),
            "aud",
        )
        .await,
        "the token is for another audience"
    );

    let [h, p, s]: [&str; 3] = good.split('.').collect::<Vec<_>>().try_into().unwrap();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap();
    let payload: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap();
    let kid = header["kid"].as_str().unwrap().to_string();

    // Every claim of an access token, signed by the vault's own key, but typed as an id_token (`JWT`):
    // only the access-token type authenticates.
    let signer = SigningKey::new(stack.aws.kms.clone(), key_id.clone());
    for typ in [json!("JWT"), Value::Null] {
        let mut typed = header.clone();
        typed["typ"] = typ.clone();
        if typ.is_null() {
            typed.as_object_mut().unwrap().remove("typ");
        }
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(typed.to_string()),
            URL_SAFE_NO_PAD.encode(payload.to_string())
        );
        let signature = signer.sign(input.as_bytes()).await.unwrap();
        let retyped = format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature));
        assert_unauthorized(&stack, Some(&retyped), &format!("typ {typ}")).await;
    }

    let none = with_parts(&json!({"alg": "none", "kid": kid}), &payload, b"");
    assert_unauthorized(&stack, Some(&none), "alg none").await;
    assert_unauthorized(&stack, Some(&format!("{h}.{p}.")), "empty signature").await;

    let mut sig = URL_SAFE_NO_PAD.decode(s).unwrap();
    sig[10] ^= 0x01;
    assert_eq!(
        assert_unauthorized(
            &stack,
            Some(&format!("{h}.{p}.{}", URL_SAFE_NO_PAD.encode(&sig))),
            "bad signature",
        )
        .await,
        "the token's signature is not valid"
    );
    let mut other_user = payload.clone();
    other_user["sub"] = json!("con_demo|mallory");
    assert_unauthorized(
        &stack,
        Some(&format!("{h}.{}.{s}", URL_SAFE_NO_PAD.encode(other_user.to_string()))),
        "tampered",
    )
    .await;

    // A token signed by another KMS key: its kid is not ours.
    let other_key = stack
        .aws
        .kms
        .create_key()
        .key_usage(aws_sdk_kms::types::KeyUsageType::SignVerify)
        .key_spec(aws_sdk_kms::types::KeySpec::EccNistP256)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap()
        .key_id;
    assert_unauthorized(
        &stack,
        Some(&token_from(&stack, &other_key, &issuer, &audience, 0).await),
        "unknown kid",
    )
    .await;
    // ... and the same foreign signature presented under our kid.
    let foreign = token_from(&stack, &other_key, &issuer, &audience, 0).await;
    let foreign_sig = foreign.rsplit('.').next().unwrap();
    let foreign_payload = foreign.split('.').nth(1).unwrap();
    assert_unauthorized(
        &stack,
        Some(&format!("{h}.{foreign_payload}.{foreign_sig}")),
        "foreign signature",
    )
    .await;

    // HS256 "signed" with the public key, the classic algorithm-confusion forgery.
    let jwks: Value = stack
        .http
        .get(stack.url("/.well-known/openid-configuration/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for secret in [
        jwks["keys"][0]["x"].as_str().unwrap().to_string(),
        jwks["keys"][0].to_string(),
    ] {
        let header = json!({"alg": "HS256", "typ": "JWT", "kid": kid});
        let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), p);
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
        let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
        assert_unauthorized(
            &stack,
            Some(&format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))),
            "HS256",
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_cannot_read_another_users_credential() {
    let stack = LocalStack::start(StackOptions::default()).await;
    let alice = stack.login().await;
    stack.provider.set_knobs(|k| k.subject = "bob".into());
    let bob = stack.login().await;

    let resp = stack.fetch_credentials(&alice.access_token, &bob.user_id, None).await;
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.json::<Value>().await.unwrap()["errorCode"], "forbidden");
    // A user id that does not exist is refused the same way: no probing for who has credentials.
    assert_eq!(
        stack
            .fetch_credentials(&alice.access_token, "con_demo|nobody", None)
            .await
            .status(),
        403
    );
    // Their own: allowed; their own id at a connection it does not belong to: refused, since that
    // would be another person's credential if that connection ever made the same id.
    assert_eq!(
        stack
            .fetch_credentials(&bob.access_token, &bob.user_id, None)
            .await
            .status(),
        200
    );
    let elsewhere = format!(
        "/v1/connections/con_other/users/{}/credentials",
        credvault_tests::stack::encode(&bob.user_id)
    );
    let resp = stack
        .http
        .get(stack.url(&elsewhere))
        .bearer_auth(&bob.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.json::<Value>().await.unwrap()["errorCode"], "forbidden");
    assert_eq!(stack.provider.counters().refreshes, 0);
}
