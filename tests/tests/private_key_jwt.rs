//! `private_key_jwt` (RFC 7523): the vault authenticates with assertions signed by the client's
//! PKCS#8 key, at the token endpoint and at revocation, against a provider that accepts nothing else
//! and checks signature, audience, lifetime and `jti`. The key is write-only like any client secret.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use credvault::oauth::client_auth::TokenEndpointAuthMethod;
use credvault_tests::access_token_of;
use credvault_tests::fake_provider::ClientAuth;
use credvault_tests::{LocalStack, StackOptions};
use serde_json::json;

/// A new EC P-256 key: its PKCS#8 PEM, and its public point as JWK `x`, `y`.
fn client_key() -> (String, (String, String)) {
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
    let point = pair.public_key().as_ref();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        STANDARD.encode(pkcs8.as_ref())
    );
    (
        pem,
        (
            URL_SAFE_NO_PAD.encode(&point[1..33]),
            URL_SAFE_NO_PAD.encode(&point[33..65]),
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assertions_log_in_refresh_and_revoke_at_a_provider_that_takes_nothing_else() {
    let (pem, public) = client_key();
    let stack = LocalStack::start(StackOptions {
        token_endpoint_auth_method: TokenEndpointAuthMethod::PrivateKeyJwt,
        client_secret: pem.clone(),
        ..StackOptions::default()
    })
    .await;
    stack.provider.set_knobs(|k| {
        k.client_auth = ClientAuth::PrivateKeyJwtOnly;
        k.client_assertion_key = Some(public.clone());
        k.access_token_lifetime_secs = 0;
    });
    let user = stack.login().await;
    stack.provider.set_knobs(|k| k.access_token_lifetime_secs = 3600);
    let token = access_token_of(stack.fetch_credentials(&user.access_token, &user.user_id, None).await).await;
    assert!(stack.provider.issued_secrets().contains(&token));
    assert_eq!(stack.provider.counters().refreshes, 1);

    // Revoked with an assertion made for /revoke.
    stack.disconnect_and_expect_revoked(&user).await;
}

/// The control: another key's assertions are refused, so the signature is what let the test above in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_assertion_signed_by_another_key_is_refused() {
    let (pem, _) = client_key();
    let (_, someone_else) = client_key();
    let stack = LocalStack::start(StackOptions {
        token_endpoint_auth_method: TokenEndpointAuthMethod::PrivateKeyJwt,
        client_secret: pem,
        ..StackOptions::default()
    })
    .await;
    stack.provider.set_knobs(|k| {
        k.client_auth = ClientAuth::PrivateKeyJwtOnly;
        k.client_assertion_key = Some(someone_else);
    });
    let verifier = credvault::random::token(32);
    let (_, callback) = stack.login_until_callback(&verifier).await;
    let back = stack.http.get(&callback).send().await.unwrap();
    let location = credvault_tests::stack::location(&back);
    assert!(
        location.contains("error=server_error"),
        "the code exchange was refused: {location}"
    );
    assert_eq!(stack.provider.counters().code_exchanges, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_is_checked_write_only_and_never_turned_into_a_secret_sent_in_a_body() {
    let stack = LocalStack::start(StackOptions::default()).await;
    let admin = stack.client_token(&stack.admin_key);
    let (pem, _) = client_key();
    let body = |secret: &str, kid: Option<&str>| {
        let mut body = json!({
            "connectionId": "con_entra", "clientId": "entra-app", "clientSecret": secret,
            "tokenEndpointAuthMethod": "private_key_jwt",
            "authenticationUrl": "https://login.example.com/authorize", "tokenUrl": "https://login.example.com/token",
            "data": {"oidcUserEndpointUrl": "https://login.example.com/userinfo"},
        });
        if let Some(kid) = kid {
            body["clientAssertionKid"] = json!(kid);
        }
        body
    };
    let (status, refused) = stack
        .call(
            "POST",
            "/v1/connections",
            Some(&admin),
            Some(&body("a shared secret", None)),
        )
        .await;
    assert_eq!(
        (status, refused["errorCode"].as_str()),
        (400, Some("invalid_client_key")),
        "{refused}"
    );

    let (status, created) = stack
        .call(
            "POST",
            "/v1/connections",
            Some(&admin),
            Some(&body(&pem, Some("cert-2026"))),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["tokenEndpointAuthMethod"], "private_key_jwt");
    assert_eq!(created["clientAssertionKid"], "cert-2026");
    let pem_body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let (_, shown) = stack.call("GET", "/v1/connections/con_entra", Some(&admin), None).await;
    assert!(
        !shown.to_string().contains(&pem_body[..40]),
        "the key is write-only: {shown}"
    );

    // Switching to a method that sends the secret in the body needs a secret given for it.
    let mut switch = body(&pem, None);
    switch["tokenEndpointAuthMethod"] = json!("client_secret_post");
    switch.as_object_mut().unwrap().remove("clientSecret");
    let (status, refused) = stack
        .call("PUT", "/v1/connections/con_entra", Some(&admin), Some(&switch))
        .await;
    assert_eq!(
        (status, refused["errorCode"].as_str()),
        (400, Some("client_secret_required")),
        "{refused}"
    );

    // A kid without private_key_jwt means nothing, and is refused rather than ignored.
    let mut stray = body("a shared secret", Some("cert-2026"));
    stray["tokenEndpointAuthMethod"] = json!("client_secret_post");
    stray["connectionId"] = json!("con_stray");
    let (status, refused) = stack.call("POST", "/v1/connections", Some(&admin), Some(&stray)).await;
    assert_eq!(
        (status, refused["errorCode"].as_str()),
        (400, Some("invalid_field")),
        "{refused}"
    );
}

const FIXTURES: &str = "shared/src/oauth/testdata";

fn fixture(name: &str) -> String {
    std::fs::read_to_string(credvault_tests::workspace_root().join(FIXTURES).join(name)).expect("fixture")
}

/// `openssl x509 -noout -fingerprint -sha256` of the fixture certificate, as base64url (`x5t#S256`).
fn fixture_thumbprint() -> String {
    const HEX: &str = "62:3B:F0:93:7D:11:7F:23:0E:E2:4E:2F:51:C0:C4:EA:8D:14:D2:18:E0:52:4C:0B:F7:F7:C8:5D:79:CE:5A:DE";
    URL_SAFE_NO_PAD.encode(
        HEX.split(':')
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect::<Vec<u8>>(),
    )
}

/// The fixture key's public point as JWK `x`, `y`.
fn fixture_public_key() -> (String, String) {
    let pem = fixture("entra-test-client.key.pem");
    let der = STANDARD
        .decode(pem.lines().filter(|l| !l.starts_with("-----")).collect::<String>())
        .unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der).unwrap();
    let point = pair.public_key().as_ref();
    (
        URL_SAFE_NO_PAD.encode(&point[1..33]),
        URL_SAFE_NO_PAD.encode(&point[33..65]),
    )
}

/// Microsoft Entra's certificate credentials: the provider knows the client's certificate, not a
/// `kid`, and takes only assertions whose `x5t#S256` is that certificate's thumbprint. A connection
/// given the certificate logs in, refreshes and revokes; the same key without it is refused; and a
/// certificate of another key is refused when the connection is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_credential_names_the_key_by_its_thumbprint_as_entra_wants() {
    let stack = LocalStack::start(StackOptions::default()).await;
    stack.provider.set_knobs(|k| {
        k.client_auth = ClientAuth::PrivateKeyJwtOnly;
        k.client_assertion_key = Some(fixture_public_key());
        k.client_assertion_x5t_s256 = Some(fixture_thumbprint());
        k.access_token_lifetime_secs = 0;
    });
    let admin = stack.client_token(&stack.admin_key);
    let issuer = stack.provider.issuer().to_string();
    let body = |id: &str, certificate: Option<String>| {
        let mut body = json!({
            "connectionId": id, "clientId": credvault_tests::fake_provider::CLIENT_ID,
            "clientSecret": fixture("entra-test-client.key.pem"),
            "tokenEndpointAuthMethod": "private_key_jwt",
            "authenticationUrl": format!("{issuer}/authorize"), "tokenUrl": format!("{issuer}/token"),
            "revocationUrl": format!("{issuer}/revoke"),
            "data": {"oidcUserEndpointUrl": format!("{issuer}/userinfo")},
        });
        if let Some(certificate) = certificate {
            body["clientAssertionCertificate"] = json!(certificate);
        }
        body
    };
    let certificate = fixture("entra-test-client.cert.pem");
    let (status, created) = stack
        .call(
            "POST",
            "/v1/connections",
            Some(&admin),
            Some(&body("con_entra", Some(certificate.clone()))),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["clientAssertionCertificate"], certificate, "public, so shown");

    let user = stack.login_at("con_entra").await;
    stack.provider.set_knobs(|k| k.access_token_lifetime_secs = 3600);
    let path = format!(
        "/v1/connections/con_entra/users/{}/credentials",
        credvault_tests::stack::encode(&user.user_id)
    );
    let (status, fetched) = stack.call("GET", &path, Some(&user.access_token), None).await;
    assert_eq!(status, 200, "{fetched}");
    assert_eq!(stack.provider.counters().refreshes, 1);
    let revocations = stack.provider.counters().revocations;
    let (status, _) = stack.call("DELETE", &path, Some(&user.access_token), None).await;
    assert_eq!(status, 204);
    assert_eq!(stack.provider.counters().revocations, revocations + 1);

    // The control: the same key, without the certificate, is refused by this provider.
    let (status, created) = stack
        .call(
            "POST",
            "/v1/connections",
            Some(&admin),
            Some(&body("con_entra_kid", None)),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let verifier = credvault::random::token(32);
    let (_, callback) = stack.login_until_callback_at("con_entra_kid", &verifier).await;
    let back = stack.http.get(&callback).send().await.unwrap();
    assert!(
        credvault_tests::stack::location(&back).contains("error=server_error"),
        "no thumbprint, no tokens"
    );

    // A certificate of another key, or no certificate at all, is refused when written.
    for (wrong, why) in [
        (fixture("entra-other.cert.pem"), "another key's certificate"),
        (fixture("entra-test-client.key.pem"), "the key itself"),
        ("x".repeat(9000), "too long"),
    ] {
        let (status, refused) = stack
            .call(
                "PUT",
                "/v1/connections/con_entra_kid",
                Some(&admin),
                Some(&body("con_entra_kid", Some(wrong))),
            )
            .await;
        assert_eq!(
            (status, refused["errorCode"].as_str()),
            (400, Some("invalid_client_certificate")),
            "{why}: {refused}"
        );
    }
}
