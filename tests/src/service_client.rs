//! Acting as a service client from Rust tests: signing the EdDSA JWT exactly as the Authress SDK's
//! `ServiceClientTokenProvider` does from an access key `clientId.keyId.accountId.<base64 PKCS#8>`.

use aws_lc_rs::signature::Ed25519KeyPair;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

/// A token for `access_key` against the vault at `base_url`; `adjust` may change header or claims.
pub fn client_token(access_key: &str, base_url: &str, adjust: impl FnOnce(&mut Value, &mut Value)) -> String {
    let parts: Vec<&str> = access_key.split('.').collect();
    let (client_id, key_id, account_id, private) = (parts[0], parts[1], parts[2], parts[3]);
    let now = credvault::clock::unix_secs(std::time::SystemTime::now());
    let mut header = json!({"alg": "EdDSA", "kid": key_id, "typ": "at+jwt"});
    let mut claims = json!({
        "aud": format!("{account_id}.accounts.authress.io"),
        "iss": format!("{base_url}/v1/clients/{}", crate::stack::encode(client_id)),
        "sub": client_id, "client_id": client_id, "iat": now, "exp": now + 86_400, "scope": "openid",
    });
    adjust(&mut header, &mut claims);
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let pkcs8 = STANDARD.decode(private).expect("base64 private key");
    let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8).expect("Ed25519 PKCS#8");
    format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(pair.sign(input.as_bytes()).as_ref())
    )
}
