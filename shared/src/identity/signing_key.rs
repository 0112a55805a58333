//! The KMS asymmetric key (ECC_NIST_P256, SIGN_VERIFY) that signs vault user tokens. The private key
//! never leaves KMS; the public key is published as a JWK.

use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{MessageType, SigningAlgorithmSpec};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::DecodingKey;
use serde_json::json;
use tokio::sync::OnceCell;

/// Why the signing key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SigningKeyError {
    /// A KMS call for the signing key failed (throttled, unavailable or otherwise).
    #[error("KMS {operation} failed")]
    Kms {
        operation: &'static str,
        failure: crate::aws_failure::Failure,
        #[source]
        source: crate::aws_failure::Source,
    },
    #[error("the signing key is not an ECC_NIST_P256 key")]
    WrongKeyType,
    #[error("KMS returned a malformed signature")]
    BadSignature,
}

/// DER prefix of a P-256 SubjectPublicKeyInfo, up to the uncompressed point's 0x04.
const P256_SPKI_PREFIX: [u8; 27] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
];

/// The public half, as JWS verifiers need it.
pub struct PublicSigningKey {
    pub kid: String,
    pub x: String,
    pub y: String,
    pub decoding_key: DecodingKey,
}

pub struct SigningKey {
    kms: aws_sdk_kms::Client,
    key_id: String,
    public: OnceCell<PublicSigningKey>,
}

impl SigningKey {
    pub fn new(kms: aws_sdk_kms::Client, key_id: String) -> Self {
        Self {
            kms,
            key_id,
            public: OnceCell::new(),
        }
    }

    /// Fetched from KMS once per instance.
    pub async fn public(&self) -> Result<&PublicSigningKey, SigningKeyError> {
        self.public
            .get_or_try_init(|| async {
                let out = self
                    .kms
                    .get_public_key()
                    .key_id(&self.key_id)
                    .send()
                    .await
                    .map_err(|e| SigningKeyError::Kms {
                        operation: "GetPublicKey",
                        failure: crate::aws_failure::classify(&e),
                        source: Box::new(e),
                    })?;
                let spki = out.public_key.ok_or(SigningKeyError::WrongKeyType)?.into_inner();
                let (x, y) = p256_point_from_spki(&spki).ok_or(SigningKeyError::WrongKeyType)?;
                let x = URL_SAFE_NO_PAD.encode(x);
                let y = URL_SAFE_NO_PAD.encode(y);
                let decoding_key =
                    DecodingKey::from_ec_components(&x, &y).map_err(|_| SigningKeyError::WrongKeyType)?;
                Ok(PublicSigningKey {
                    kid: jwk_thumbprint(&x, &y),
                    x,
                    y,
                    decoding_key,
                })
            })
            .await
    }

    /// The JWKS document for `/.well-known/openid-configuration/jwks`.
    pub async fn jwks(&self) -> Result<serde_json::Value, SigningKeyError> {
        let key = self.public().await?;
        Ok(
            json!({"keys": [{"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": key.kid, "x": key.x, "y": key.y}]}),
        )
    }

    /// ES256 signature of `message` as JWS wants it: raw `r || s`, not the DER KMS returns.
    pub async fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SigningKeyError> {
        let out = self
            .kms
            .sign()
            .key_id(&self.key_id)
            .message(Blob::new(message.to_vec()))
            .message_type(MessageType::Raw)
            .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
            .send()
            .await
            .map_err(|e| SigningKeyError::Kms {
                operation: "Sign",
                failure: crate::aws_failure::classify(&e),
                source: Box::new(e),
            })?;
        let der = out.signature.ok_or(SigningKeyError::BadSignature)?.into_inner();
        der_signature_to_raw(&der)
            .map(|raw| raw.to_vec())
            .ok_or(SigningKeyError::BadSignature)
    }
}

/// The P-256 point (x, y) of a DER SubjectPublicKeyInfo, as KMS GetPublicKey returns it.
pub fn p256_point_from_spki(spki: &[u8]) -> Option<([u8; 32], [u8; 32])> {
    let point = spki.strip_prefix(&P256_SPKI_PREFIX)?;
    if point.len() != 64 {
        return None;
    }
    let mut x = [0u8; 32];
    let mut y = [0u8; 32];
    x.copy_from_slice(&point[..32]);
    y.copy_from_slice(&point[32..]);
    Some((x, y))
}

/// Converts a DER `SEQUENCE { INTEGER r, INTEGER s }` into fixed-width `r || s` (32 bytes each).
pub fn der_signature_to_raw(der: &[u8]) -> Option<[u8; 64]> {
    let (tag, rest) = der.split_first()?;
    if *tag != 0x30 {
        return None;
    }
    let (len, rest) = der_length(rest)?;
    if rest.len() != len {
        return None;
    }
    let (r, rest) = der_integer(rest)?;
    let (s, rest) = der_integer(rest)?;
    if !rest.is_empty() {
        return None;
    }
    let mut out = [0u8; 64];
    out[32 - r.len()..32].copy_from_slice(r);
    out[64 - s.len()..].copy_from_slice(s);
    Some(out)
}

/// A DER length in its short form, the only one a P-256 signature has: two INTEGERs of at most 33
/// bytes make a SEQUENCE of at most 70, under the 128 where the long form begins.
fn der_length(input: &[u8]) -> Option<(usize, &[u8])> {
    let (&first, rest) = input.split_first()?;
    (first <= 0x7f).then_some((first as usize, rest))
}

/// One positive INTEGER, without its sign-padding zero bytes; at most 32 bytes of value.
fn der_integer(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag != 0x02 {
        return None;
    }
    let (len, rest) = der_length(rest)?;
    if len == 0 || rest.len() < len {
        return None;
    }
    let (mut value, rest) = rest.split_at(len);
    while value.len() > 1 && value[0] == 0 {
        value = &value[1..];
    }
    (value.len() <= 32).then_some((value, rest))
}

/// RFC 7638 thumbprint of the EC public JWK: a stable `kid` that changes when the key does.
fn jwk_thumbprint(x: &str, y: &str) -> String {
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED, EcdsaKeyPair, KeyPair, UnparsedPublicKey,
    };

    #[test]
    fn der_signatures_convert_to_verifiable_raw_signatures() {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).unwrap();
        let public = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, pair.public_key().as_ref().to_vec());
        // Many signatures, so r or s with a high bit (DER sign padding) and short values both occur.
        for i in 0..200u32 {
            let msg = i.to_be_bytes();
            let der = pair.sign(&rng, &msg).unwrap();
            let raw = der_signature_to_raw(der.as_ref()).expect("valid DER");
            public.verify(&msg, &raw).expect("raw signature verifies");
        }
    }

    #[test]
    fn malformed_der_is_refused() {
        assert!(der_signature_to_raw(&[]).is_none());
        assert!(der_signature_to_raw(&[0x30, 0x02, 0x02, 0x00]).is_none());
        assert!(der_signature_to_raw(&[0x31, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01]).is_none());
        assert!(der_signature_to_raw(&[0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01]).is_some());
        // The long form of the same length is no P-256 signature's encoding.
        assert!(der_signature_to_raw(&[0x30, 0x81, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01]).is_none());
    }

    #[test]
    fn spki_point_is_extracted() {
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend((0..64).map(|i| i as u8));
        let (x, y) = p256_point_from_spki(&spki).unwrap();
        assert_eq!(x[0], 0);
        assert_eq!(y[0], 32);
        assert!(p256_point_from_spki(&spki[..90]).is_none());
    }

    #[test]
    fn integers_that_are_empty_or_overrun_the_signature_are_refused() {
        // r claims five bytes where four are left: refused, not read past the end.
        assert!(der_signature_to_raw(&[0x30, 0x06, 0x02, 0x05, 0x01, 0x02, 0x01, 0x01]).is_none());
        // A zero-length INTEGER is no number.
        assert!(der_signature_to_raw(&[0x30, 0x05, 0x02, 0x00, 0x02, 0x01, 0x01]).is_none());
    }

    /// The `kid` is the RFC 7638 thumbprint, so a verifier can check it and it changes with the key:
    /// here for the P-256 key of RFC 7515 appendix A.3, the expected value computed by Python's
    /// hashlib over the canonical JSON.
    #[test]
    fn the_kid_is_the_rfc_7638_thumbprint() {
        let (x, y) = (
            "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
        );
        assert_eq!(jwk_thumbprint(x, y), "oKIywvGUpTVTyxMQ3bwIIeQUudfr_CkLMjCE19ECD-U");
        assert_ne!(jwk_thumbprint(y, x), jwk_thumbprint(x, y));
    }
}
