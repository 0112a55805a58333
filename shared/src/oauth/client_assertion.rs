//! `private_key_jwt` client authentication (RFC 7523 §2.2, OIDC Core §9): instead of a shared secret,
//! the vault sends a short-lived JWT about itself, signed with the client's private key. The key is a
//! PKCS#8 EC P-256 (ES256) or RSA (RS256) key, given as the connection's write-only `clientSecret` and
//! stored sealed like any client secret.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeyPair as RsaKeyPair;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, RSA_PKCS1_SHA256};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::json;

/// How long an assertion is good for: one request, with room for clock skew, and no more.
pub const ASSERTION_LIFETIME_SECS: u64 = 60;
/// RFC 7523 §2.2.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A client's signing key.
pub enum AssertionKey {
    Es256(EcdsaKeyPair),
    Rs256(RsaKeyPair),
}

impl AssertionKey {
    /// The key in `text`: a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), or its base64 DER.
    /// `None` for anything else, including encrypted or PKCS#1 keys.
    pub fn parse(text: &str) -> Option<Self> {
        let body: String = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let der = STANDARD.decode(body).ok()?;
        if let Ok(ec) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der) {
            return Some(AssertionKey::Es256(ec));
        }
        RsaKeyPair::from_pkcs8(&der).ok().map(AssertionKey::Rs256)
    }

    fn alg(&self) -> &'static str {
        match self {
            AssertionKey::Es256(_) => "ES256",
            AssertionKey::Rs256(_) => "RS256",
        }
    }

    fn sign(&self, message: &[u8]) -> Option<Vec<u8>> {
        let rng = SystemRandom::new();
        match self {
            AssertionKey::Es256(key) => key.sign(&rng, message).ok().map(|s| s.as_ref().to_vec()),
            AssertionKey::Rs256(key) => {
                let mut signature = vec![0; key.public_modulus_len()];
                key.sign(&RSA_PKCS1_SHA256, &rng, message, &mut signature).ok()?;
                Some(signature)
            }
        }
    }
}

/// A fresh assertion of `client_id` for `audience` (the endpoint it is sent to): `iss` and `sub` the
/// client, a new `jti`, issued `now` (epoch seconds) and expiring a minute later; `kid` names the key
/// when the provider holds several.
pub fn assertion(key: &AssertionKey, client_id: &str, audience: &str, kid: Option<&str>, now: u64) -> Option<String> {
    let mut header = json!({"alg": key.alg(), "typ": "JWT"});
    if let Some(kid) = kid {
        header["kid"] = json!(kid);
    }
    let claims = json!({
        "iss": client_id, "sub": client_id, "aud": audience, "jti": crate::random::token(16),
        "iat": now, "exp": now + ASSERTION_LIFETIME_SECS,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = key.sign(signing_input.as_bytes())?;
    Some(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, KeyPair, UnparsedPublicKey};

    fn ec_pem() -> (String, Vec<u8>) {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new()).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            STANDARD.encode(pkcs8.as_ref())
        );
        (pem, pair.public_key().as_ref().to_vec())
    }

    #[test]
    fn an_es256_assertion_names_the_client_and_the_audience_and_verifies() {
        let (pem, public) = ec_pem();
        let key = AssertionKey::parse(&pem).expect("PKCS#8 PEM");
        let jwt = assertion(
            &key,
            "client-1",
            "https://login.example.com/token",
            Some("key-1"),
            1_000,
        )
        .unwrap();
        let parts: Vec<&str> = jwt.split('.').collect();
        let header: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(header, json!({"alg": "ES256", "typ": "JWT", "kid": "key-1"}));
        assert_eq!(
            (claims["iss"].as_str(), claims["sub"].as_str()),
            (Some("client-1"), Some("client-1"))
        );
        assert_eq!(claims["aud"], "https://login.example.com/token");
        assert_eq!(
            (claims["iat"].as_u64(), claims["exp"].as_u64()),
            (Some(1_000), Some(1_060))
        );
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &public)
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
            .expect("the signature verifies with the client's public key");
        // Every assertion is new: a provider refuses a jti it has seen.
        let again = assertion(&key, "client-1", "https://login.example.com/token", None, 1_000).unwrap();
        let jti = |jwt: &str| {
            let part = jwt.split('.').nth(1).unwrap().to_string();
            serde_json::from_slice::<serde_json::Value>(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()["jti"].clone()
        };
        assert_ne!(jti(&jwt), jti(&again));
    }

    #[test]
    fn only_pkcs8_private_keys_are_keys() {
        let (pem, _) = ec_pem();
        let der_b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        assert!(
            AssertionKey::parse(&der_b64).is_some(),
            "base64 DER without the PEM lines"
        );
        for not_a_key in [
            "",
            "a shared secret",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
        ] {
            assert!(AssertionKey::parse(not_a_key).is_none(), "{not_a_key}");
        }
    }
}
