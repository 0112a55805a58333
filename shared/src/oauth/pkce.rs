//! PKCE (RFC 7636), S256 only: the vault's own verifier towards providers, and checking the app's.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};

/// A PKCE verifier. Not `Clone`, redacted in `Debug`: it is as good as the code it protects.
pub struct PkceVerifier(SecretString);

impl PkceVerifier {
    /// 32 random bytes -> 43 base64url characters, the RFC's recommended form.
    pub fn generate() -> Self {
        Self(SecretString::from(crate::random::token(32)))
    }

    pub fn from_secret(secret: SecretString) -> Self {
        Self(secret)
    }

    pub fn secret(&self) -> &str {
        self.0.expose_secret()
    }

    pub fn challenge(&self) -> String {
        s256_challenge(self.secret())
    }
}

impl fmt::Debug for PkceVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PkceVerifier([redacted])")
    }
}

/// `base64url(SHA-256(verifier))`, the S256 transformation.
pub fn s256_challenge(verifier: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// An S256 challenge is exactly 43 base64url characters (a 32-byte digest).
pub fn is_valid_s256_challenge(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        && URL_SAFE_NO_PAD.decode(challenge).is_ok_and(|d| d.len() == 32)
}

/// Verifiers are not held to RFC 7636's 128-character maximum: the Authress login SDK makes longer ones.
pub fn is_plausible_verifier(verifier: &str) -> bool {
    (43..=512).contains(&verifier.len()) && verifier.bytes().all(|c| c.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b_vector() {
        assert_eq!(
            s256_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn generated_verifiers_make_valid_challenges_and_hide_in_debug() {
        let v = PkceVerifier::generate();
        assert!(is_valid_s256_challenge(&v.challenge()));
        assert!(is_plausible_verifier(v.secret()));
        assert!(!format!("{v:?}").contains(v.secret()));
    }

    #[test]
    fn malformed_challenges_are_refused() {
        assert!(!is_valid_s256_challenge("short"));
        assert!(!is_valid_s256_challenge(&"a".repeat(44)));
        assert!(!is_valid_s256_challenge("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+cM"));
    }
}
