//! `private_key_jwt` client authentication (RFC 7523 §2.2, OIDC Core §9): instead of a shared secret,
//! the vault sends a short-lived JWT about itself, signed with the client's private key. The key is a
//! PKCS#8 EC P-256 (ES256) or RSA (RS256) key, given as the connection's write-only `clientSecret` and
//! stored sealed like any client secret.
//!
//! Microsoft Entra's certificate credentials name the key by its certificate: the assertion's header
//! carries the certificate's thumbprints, `x5t#S256` (SHA-256 of its DER, what Entra documents now) and
//! `x5t` (SHA-1, what it documented before). The certificate is public; the vault only hashes it.

use aws_lc_rs::digest::{SHA1_FOR_LEGACY_USE_ONLY, SHA256, digest};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeyPair as RsaKeyPair;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA256};
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

    /// The public key's bytes as a certificate's SubjectPublicKeyInfo holds them (the EC point, or the
    /// RSAPublicKey DER): a certificate for this key contains them verbatim.
    fn public_key_bytes(&self) -> Vec<u8> {
        match self {
            AssertionKey::Es256(key) => key.public_key().as_ref().to_vec(),
            AssertionKey::Rs256(key) => key.public_key().as_ref().to_vec(),
        }
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

/// An X.509 certificate of the client's key (PEM), whose thumbprints name the key in assertions.
pub struct ClientCertificate {
    der: Vec<u8>,
}

impl ClientCertificate {
    /// The one certificate in `pem` (`-----BEGIN CERTIFICATE-----`), if it is one and it holds `key`'s
    /// public key. The vault does not parse X.509: it checks the PEM framing, that the DER is a
    /// SEQUENCE, and that the key's public bytes are in it, which catches a certificate of another key.
    pub fn parse(pem: &str, key: &AssertionKey) -> Option<Self> {
        let pem = pem.trim();
        let body = pem
            .strip_prefix("-----BEGIN CERTIFICATE-----")?
            .strip_suffix("-----END CERTIFICATE-----")?;
        let base64: String = body.split_whitespace().collect();
        let der = STANDARD.decode(base64).ok()?;
        let public = key.public_key_bytes();
        let holds_key = der.windows(public.len()).any(|w| w == public.as_slice());
        (der.first() == Some(&0x30) && holds_key).then_some(Self { der })
    }

    /// `x5t#S256`: base64url SHA-256 of the DER (RFC 7515 §4.1.8).
    pub fn thumbprint_sha256(&self) -> String {
        URL_SAFE_NO_PAD.encode(digest(&SHA256, &self.der))
    }

    /// `x5t`: base64url SHA-1 of the DER (RFC 7515 §4.1.7), for providers that read only that.
    pub fn thumbprint_sha1(&self) -> String {
        URL_SAFE_NO_PAD.encode(digest(&SHA1_FOR_LEGACY_USE_ONLY, &self.der))
    }
}

/// How an assertion's header names the key: by `kid`, by its certificate's thumbprints, or both.
#[derive(Default)]
pub struct KeyName<'a> {
    pub kid: Option<&'a str>,
    pub certificate: Option<&'a ClientCertificate>,
}

/// A fresh assertion of `client_id` for `audience` (the endpoint it is sent to): `iss` and `sub` the
/// client, a new `jti`, issued `now` (epoch seconds) and expiring a minute later; `name` says which
/// key signed it when the provider holds several.
pub fn assertion(key: &AssertionKey, client_id: &str, audience: &str, name: &KeyName, now: u64) -> Option<String> {
    let mut header = json!({"alg": key.alg(), "typ": "JWT"});
    if let Some(kid) = name.kid {
        header["kid"] = json!(kid);
    }
    if let Some(certificate) = name.certificate {
        header["x5t#S256"] = json!(certificate.thumbprint_sha256());
        header["x5t"] = json!(certificate.thumbprint_sha1());
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
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};

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
            &KeyName {
                kid: Some("key-1"),
                certificate: None,
            },
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
        let again = assertion(
            &key,
            "client-1",
            "https://login.example.com/token",
            &KeyName::default(),
            1_000,
        )
        .unwrap();
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

    const FIXTURE_KEY: &str = include_str!("testdata/entra-test-client.key.pem");
    const FIXTURE_CERTIFICATE: &str = include_str!("testdata/entra-test-client.cert.pem");
    const OTHER_KEYS_CERTIFICATE: &str = include_str!("testdata/entra-other.cert.pem");

    /// Hex fingerprint (as `openssl x509 -fingerprint` prints it) to base64url.
    fn from_hex(fingerprint: &str) -> String {
        let bytes: Vec<u8> = fingerprint
            .split(':')
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect();
        URL_SAFE_NO_PAD.encode(bytes)
    }

    #[test]
    fn a_certificate_names_its_key_by_the_thumbprints_openssl_computes() {
        let key = AssertionKey::parse(FIXTURE_KEY).expect("fixture key");
        let certificate = ClientCertificate::parse(FIXTURE_CERTIFICATE, &key).expect("its certificate");
        // From `openssl x509 -noout -fingerprint -sha256` and `-sha1` (testdata/README.md).
        assert_eq!(
            certificate.thumbprint_sha256(),
            from_hex("62:3B:F0:93:7D:11:7F:23:0E:E2:4E:2F:51:C0:C4:EA:8D:14:D2:18:E0:52:4C:0B:F7:F7:C8:5D:79:CE:5A:DE")
        );
        assert_eq!(
            certificate.thumbprint_sha1(),
            from_hex("94:D4:DE:FD:2B:EF:32:FD:3E:06:6D:0D:1C:7F:B1:D2:6A:18:BC:61")
        );
        let jwt = assertion(
            &key,
            "app",
            "https://login.example.com/token",
            &KeyName {
                kid: None,
                certificate: Some(&certificate),
            },
            1_000,
        )
        .unwrap();
        let header: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(jwt.split('.').next().unwrap()).unwrap()).unwrap();
        assert_eq!(header["x5t#S256"], certificate.thumbprint_sha256());
        assert_eq!(header["x5t"], certificate.thumbprint_sha1());
        assert!(header.get("kid").is_none());
    }

    #[test]
    fn only_a_certificate_of_the_key_itself_is_accepted() {
        let key = AssertionKey::parse(FIXTURE_KEY).unwrap();
        assert!(
            ClientCertificate::parse(OTHER_KEYS_CERTIFICATE, &key).is_none(),
            "another key's certificate"
        );
        for not_a_certificate in [
            "",
            FIXTURE_KEY,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
            "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----",
        ] {
            assert!(
                ClientCertificate::parse(not_a_certificate, &key).is_none(),
                "{not_a_certificate}"
            );
        }
    }
}
