//! Webhook signatures in the Standard Webhooks format (https://www.standardwebhooks.com/): the
//! receiver recomputes HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}.{body}` with its copy of the
//! secret and compares it, in constant time, with the `webhook-signature` header `v1,<base64>`.
//! Signing the id and the time with the body lets a receiver drop replays (an id seen before, or a
//! timestamp far from its clock) as well as forgeries.

use aws_lc_rs::hmac;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};

/// The template asks for at least 32 characters (`WebhookSecret`); a shorter key is refused here too.
pub const MIN_SECRET_LEN: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the webhook signing secret must be at least {MIN_SECRET_LEN} bytes")]
pub struct WeakSecret;

/// Signs webhooks with the shared secret; its `Debug` never shows the key.
pub struct WebhookSigner {
    key: hmac::Key,
}

impl std::fmt::Debug for WebhookSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSigner { key: [redacted] }")
    }
}

impl WebhookSigner {
    /// The key is the secret's UTF-8 bytes, as the README tells receivers.
    pub fn new(secret: &SecretString) -> Result<Self, WeakSecret> {
        let bytes = secret.expose_secret().as_bytes();
        if bytes.len() < MIN_SECRET_LEN {
            return Err(WeakSecret);
        }
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, bytes),
        })
    }

    /// The `webhook-signature` header value for one message.
    pub fn signature(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut context = hmac::Context::with_key(&self.key);
        context.update(id.as_bytes());
        context.update(b".");
        context.update(timestamp.to_string().as_bytes());
        context.update(b".");
        context.update(body);
        let tag = context.sign();
        format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(tag.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(secret: &str) -> WebhookSigner {
        WebhookSigner::new(&SecretString::from(secret.to_string())).expect("long enough")
    }

    /// Known answer, computed independently:
    /// `printf '%s' 'msg_1.1700000000.{"a":1}' | openssl dgst -sha256 -hmac '0123456789abcdef0123456789abcdef' -binary | base64`
    #[test]
    fn the_signature_is_hmac_sha256_over_id_timestamp_and_body() {
        let signature = signer("0123456789abcdef0123456789abcdef").signature("msg_1", 1_700_000_000, br#"{"a":1}"#);
        assert_eq!(signature, "v1,rkwp5YuvdrMkcu0ZhuMsXoTg44mHAr1Q0+FFgFpXsjY=");
    }

    #[test]
    fn any_change_of_id_time_body_or_key_changes_it() {
        let s = signer("0123456789abcdef0123456789abcdef");
        let base = s.signature("msg_1", 1_700_000_000, b"{}");
        assert_ne!(base, s.signature("msg_2", 1_700_000_000, b"{}"));
        assert_ne!(base, s.signature("msg_1", 1_700_000_001, b"{}"));
        assert_ne!(base, s.signature("msg_1", 1_700_000_000, b"{ }"));
        assert_ne!(
            base,
            signer("0123456789abcdef0123456789abcdeF").signature("msg_1", 1_700_000_000, b"{}")
        );
    }

    #[test]
    fn short_secrets_are_refused_and_debug_hides_the_key() {
        let secret = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            WebhookSigner::new(&SecretString::from(secret[..31].to_string())).unwrap_err(),
            WeakSecret
        );
        let debug = format!("{:?}", signer(secret));
        assert!(!debug.contains("0123"), "{debug}");
    }
}
