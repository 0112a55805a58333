//! Unguessable identifiers and secrets (state, nonce, PKCE verifiers, vault codes, lease owners).

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// `bytes` random bytes, base64url without padding. 32 bytes gives 256 bits: enough for any secret here.
pub fn token(bytes: usize) -> String {
    URL_SAFE_NO_PAD.encode(random_bytes(bytes))
}

pub fn random_bytes(len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    // SystemRandom reads the OS generator; it only fails if the OS has none, which Lambda always has.
    if SystemRandom::new().fill(&mut buf).is_err() {
        panic!("the operating system random generator is unavailable");
    }
    buf
}

/// A random fraction in [0, 1), for jitter.
pub fn unit_fraction() -> f64 {
    let b = random_bytes(8);
    let n = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    (n >> 11) as f64 / (1u64 << 53) as f64
}

/// Exponential backoff with jitter: `base * 2^step`, capped at `cap`, then a random half to all of it,
/// so instances that failed together do not retry together. The one backoff of the vault (provider
/// retries, refresh polls, commit retries).
pub fn jittered_backoff(base: std::time::Duration, cap: std::time::Duration, step: u32) -> std::time::Duration {
    let ceiling = (base * 2u32.saturating_pow(step.min(16))).min(cap);
    ceiling.mul_f64(0.5 + unit_fraction() / 2.0)
}

/// Could `value` be a `token` this vault made? Base64url, at most 64 characters: checked before an id
/// from a request reaches a store call.
pub fn is_token_shaped(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}
