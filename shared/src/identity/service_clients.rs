//! Service clients: backends that call the vault with an EdDSA JWT signed by one of their access keys,
//! as the Authress SDK's `ServiceClientTokenProvider` makes it. Here: the stored shape, its public keys
//! and the verification of a client's token. Making clients and their keys is management
//! (`management/service_clients.rs`).

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};

use super::caller::{AuthenticationError, Caller};
use crate::clock::Clock;
use crate::ids::is_valid_client_id;
use crate::store::documents::{self, Kind};
use crate::store::{StoreError, Table};

/// DER prefix of an Ed25519 SubjectPublicKeyInfo, before the 32 key bytes.
const ED25519_SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
const CLOCK_LEEWAY_SECS: u64 = 30;
/// The longest-lived token the pinned Authress SDKs make: `exp = iat + 86400` in both the JavaScript
/// SDK (`@authress/sdk` 2.3.127, serviceClientTokenProvider.js) and the Python SDK (`authress`
/// 3.1.126, service_client_token_provider.py). A token meant to live longer is refused.
pub const MAX_CLIENT_TOKEN_LIFETIME_SECS: i64 = 86_400;
/// Python computes `iat` and `exp` from two clock readings, each truncated to the second.
const LIFETIME_ROUNDING_SECS: i64 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerificationKey {
    pub key_id: String,
    /// Base64 DER SubjectPublicKeyInfo of an Ed25519 key.
    pub public_key: String,
    pub generation_date: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceClient {
    #[serde(default)]
    pub client_id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub verification_keys: Vec<VerificationKey>,
}

/// The raw 32-byte Ed25519 key of a base64 SPKI, if it is one.
pub fn ed25519_key_from_spki(spki_b64: &str) -> Option<[u8; 32]> {
    let der = STANDARD.decode(spki_b64).ok()?;
    let raw = der.strip_prefix(&ED25519_SPKI_PREFIX)?;
    raw.try_into().ok()
}

/// The base64 SPKI of a raw 32-byte Ed25519 public key: the form keys are stored in.
pub fn ed25519_spki(raw_public_key: &[u8]) -> String {
    let mut spki = ED25519_SPKI_PREFIX.to_vec();
    spki.extend_from_slice(raw_public_key);
    STANDARD.encode(spki)
}

/// The JWKS of one client's keys.
pub fn client_jwks(client: &ServiceClient) -> serde_json::Value {
    let keys: Vec<_> = client
        .verification_keys
        .iter()
        .filter_map(|k| {
            let raw = ed25519_key_from_spki(&k.public_key)?;
            Some(serde_json::json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": k.key_id, "x": URL_SAFE_NO_PAD.encode(raw)}))
        })
        .collect();
    serde_json::json!({ "keys": keys })
}

/// The client with this id; `None` for an id no client can have.
pub async fn load_client(table: &Table, client_id: &str) -> Result<Option<ServiceClient>, StoreError> {
    if !is_valid_client_id(client_id) {
        return Ok(None);
    }
    let Some(doc) = documents::get(table, Kind::Client, client_id).await? else {
        return Ok(None);
    };
    serde_json::from_value(doc.body)
        .map(Some)
        .map_err(|e| StoreError::Malformed(format!("stored client: {e}")))
}

/// Every claim is required: `jsonwebtoken` does not itself insist on `iat`.
#[derive(Deserialize)]
struct ClientClaims {
    sub: String,
    iat: i64,
    exp: i64,
}

/// Is the token's lifetime one the SDKs make, and was it issued neither in the future nor too long ago?
fn acceptable_lifetime(iat: i64, exp: i64, now: i64) -> Result<(), &'static str> {
    let leeway = CLOCK_LEEWAY_SECS as i64;
    if iat > now + leeway {
        return Err("the token was issued in the future");
    }
    if exp - iat > MAX_CLIENT_TOKEN_LIFETIME_SECS + LIFETIME_ROUNDING_SECS {
        return Err("the token's lifetime is longer than a service-client token may have");
    }
    if now - iat > MAX_CLIENT_TOKEN_LIFETIME_SECS + leeway {
        return Err("the token was issued too long ago");
    }
    Ok(())
}

/// Verifies a service-client JWT: `iss` names the client under this vault, `sub` is that client,
/// `kid` is one of its current keys (read on every request, so a deleted key stops at once), the EdDSA
/// signature holds, `exp` has not passed, and `aud` is this account (`account_audience`) or the vault
/// itself (`issuer`).
pub async fn verify(
    table: &Table,
    clock: &dyn Clock,
    issuer: &str,
    account_audience: &str,
    token: &str,
    kid: &str,
) -> Result<Caller, AuthenticationError> {
    let unverified: serde_json::Value = jsonwebtoken::dangerous::insecure_decode_claims(token)
        .map_err(|_| AuthenticationError::Refused("the token is not a valid JWT"))?;
    let iss = unverified.get("iss").and_then(|v| v.as_str()).unwrap_or_default();
    let prefix = format!("{issuer}/v1/clients/");
    let client_id = iss
        .strip_prefix(&prefix)
        .and_then(|c| percent_decode_str(c).decode_utf8().ok())
        .map(|c| c.into_owned())
        .filter(|c| is_valid_client_id(c))
        .ok_or(AuthenticationError::Refused(
            "the token was not issued for a client of this vault",
        ))?;
    let client = load_client(table, &client_id)
        .await?
        .ok_or(AuthenticationError::Refused("the token's client does not exist"))?;
    let key = client
        .verification_keys
        .iter()
        .find(|k| k.key_id == kid)
        .and_then(|k| ed25519_key_from_spki(&k.public_key))
        .ok_or(AuthenticationError::Refused(
            "the token was not signed by a current key of its client",
        ))?;
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&[iss]);
    validation.set_audience(&[account_audience, issuer]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "sub", "aud"]);
    validation.leeway = CLOCK_LEEWAY_SECS;
    let decoding =
        DecodingKey::from_ed_components(&URL_SAFE_NO_PAD.encode(key)).map_err(AuthenticationError::StoredKey)?;
    let data = jsonwebtoken::decode::<ClientClaims>(token, &decoding, &validation).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind;
        AuthenticationError::Refused(match e.kind() {
            ErrorKind::ExpiredSignature => "the token has expired",
            ErrorKind::InvalidAudience => "the token is for another audience",
            ErrorKind::InvalidSignature => "the token's signature is not valid",
            _ => "the token is not valid",
        })
    })?;
    acceptable_lifetime(data.claims.iat, data.claims.exp, clock.now_secs()).map_err(AuthenticationError::Refused)?;
    // The SDK verifier's own rule: the client in `iss` must be the subject.
    if data.claims.sub != client_id {
        return Err(AuthenticationError::Refused(
            "the token's subject is not the client in its issuer",
        ));
    }
    Ok(Caller::ServiceClient { client_id })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_lifetimes_are_bounded_by_what_the_sdks_make() {
        let now = 1_000_000;
        assert_eq!(
            acceptable_lifetime(now, now + 86_400, now),
            Ok(()),
            "what the SDKs make"
        );
        assert_eq!(acceptable_lifetime(now, now + 86_401, now), Ok(()), "Python's rounding");
        assert!(acceptable_lifetime(now, now + 86_402, now).is_err());
        assert!(acceptable_lifetime(now, now + 10 * 365 * 86_400, now).is_err());
        assert_eq!(
            acceptable_lifetime(now - 23 * 3600, now + 3600, now),
            Ok(()),
            "a cached SDK token"
        );
        // Too old by itself: a lifetime the SDKs make, issued a day and the leeway ago (its `exp`
        // then lies just inside the expiry check's own leeway).
        let too_old = Err("the token was issued too long ago");
        assert_eq!(
            acceptable_lifetime(now - 86_430, now - 29, now),
            Ok(()),
            "as old as may be"
        );
        assert_eq!(acceptable_lifetime(now - 86_431, now - 30, now), too_old);
        assert_eq!(
            acceptable_lifetime(now + 30, now + 60, now),
            Ok(()),
            "within the leeway"
        );
        assert!(acceptable_lifetime(now + 31, now + 60, now).is_err(), "from the future");
    }

    #[test]
    fn spki_round_trips_a_raw_key() {
        let raw = [7u8; 32];
        assert_eq!(ed25519_key_from_spki(&ed25519_spki(&raw)), Some(raw));
        assert!(ed25519_key_from_spki("bm90IGEga2V5").is_none());
    }
}
