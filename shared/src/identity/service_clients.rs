//! Service clients: backends that call the vault with an EdDSA JWT signed by one of their access keys,
//! as the Authress SDK's `ServiceClientTokenProvider` makes it. Only public keys are stored; a key made
//! here is returned once, inside an Authress-format access key, and forgotten.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use percent_encoding::percent_decode_str;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::Caller;
use crate::access::admin::Authority;
use crate::error::ApiError;
use crate::services::Services;
use crate::store::documents::{self, Kind};

/// Authress allows five active keys per client.
pub const MAX_KEYS: usize = 5;
/// DER prefix of an Ed25519 SubjectPublicKeyInfo, before the 32 key bytes.
const ED25519_SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
const CLOCK_LEEWAY_SECS: u64 = 30;
/// The longest-lived token the pinned Authress SDKs make: `exp = iat + 86400` in both the JavaScript
/// SDK (`@authress/sdk` 2.3.127, serviceClientTokenProvider.js) and the Python SDK (`authress`
/// 3.1.126, service_client_token_provider.py). A token meant to live longer is refused.
pub const MAX_CLIENT_TOKEN_LIFETIME_SECS: i64 = 86_400;
/// Python computes `iat` and `exp` from two clock readings, each truncated to the second.
const LIFETIME_ROUNDING_SECS: i64 = 1;
/// Every service client id starts with this, and no user id may: the two namespaces never meet.
pub const CLIENT_ID_PREFIX: &str = "sc_";

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

/// A new key pair: the public key as base64 SPKI, and the Authress access key
/// `clientId.keyId.accountId.<base64 PKCS#8>` holding the private key.
pub fn generate_access_key(
    client_id: &str,
    key_id: &str,
    account_id: &str,
) -> Result<(String, SecretString), ApiError> {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new())
        .map_err(|_| ApiError::internal("key generation failed"))?;
    let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8.as_ref())
        .map_err(|_| ApiError::internal("key generation failed"))?;
    let mut spki = ED25519_SPKI_PREFIX.to_vec();
    spki.extend_from_slice(pair.public_key().as_ref());
    let access_key = format!("{client_id}.{key_id}.{account_id}.{}", STANDARD.encode(pkcs8.as_ref()));
    Ok((STANDARD.encode(spki), SecretString::from(access_key)))
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

pub async fn load_client(services: &Services, client_id: &str) -> Result<Option<ServiceClient>, ApiError> {
    if !is_valid_client_id(client_id) {
        return Ok(None);
    }
    let Some(doc) = documents::get(&services.table, Kind::Client, client_id).await? else {
        return Ok(None);
    };
    serde_json::from_value(doc.body)
        .map(Some)
        .map_err(|e| ApiError::internal(format!("stored client: {e}")))
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
/// signature holds, `exp` has not passed, and `aud` is this account.
pub async fn verify(services: &Services, token: &str, kid: &str) -> Result<Caller, ApiError> {
    let unverified: serde_json::Value = jsonwebtoken::dangerous::insecure_decode_claims(token)
        .map_err(|_| ApiError::Unauthorized("the token is not a valid JWT"))?;
    let iss = unverified.get("iss").and_then(|v| v.as_str()).unwrap_or_default();
    let prefix = format!("{}/v1/clients/", services.config.issuer);
    let client_id = iss
        .strip_prefix(&prefix)
        .and_then(|c| percent_decode_str(c).decode_utf8().ok())
        .map(|c| c.into_owned())
        .filter(|c| is_valid_client_id(c))
        .ok_or(ApiError::Unauthorized(
            "the token was not issued for a client of this vault",
        ))?;
    let client = load_client(services, &client_id)
        .await?
        .ok_or(ApiError::Unauthorized("the token's client does not exist"))?;
    let key = client
        .verification_keys
        .iter()
        .find(|k| k.key_id == kid)
        .and_then(|k| ed25519_key_from_spki(&k.public_key))
        .ok_or(ApiError::Unauthorized(
            "the token was not signed by a current key of its client",
        ))?;
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&[iss]);
    validation.set_audience(&[services.config.account_audience(), services.config.issuer.clone()]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "sub", "aud"]);
    validation.leeway = CLOCK_LEEWAY_SECS;
    let decoding = DecodingKey::from_ed_components(&URL_SAFE_NO_PAD.encode(key)).map_err(ApiError::internal)?;
    let data = jsonwebtoken::decode::<ClientClaims>(token, &decoding, &validation).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind;
        ApiError::Unauthorized(match e.kind() {
            ErrorKind::ExpiredSignature => "the token has expired",
            ErrorKind::InvalidAudience => "the token is for another audience",
            ErrorKind::InvalidSignature => "the token's signature is not valid",
            _ => "the token is not valid",
        })
    })?;
    acceptable_lifetime(data.claims.iat, data.claims.exp, services.clock.now_secs()).map_err(ApiError::Unauthorized)?;
    // The SDK verifier's own rule: the client in `iss` must be the subject.
    if data.claims.sub != client_id {
        return Err(ApiError::Unauthorized(
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
        assert!(
            acceptable_lifetime(now - 86_400 - 31, now + 10, now).is_err(),
            "too old"
        );
        assert_eq!(
            acceptable_lifetime(now + 30, now + 60, now),
            Ok(()),
            "within the leeway"
        );
        assert!(acceptable_lifetime(now + 31, now + 60, now).is_err(), "from the future");
    }

    #[test]
    fn client_ids_carry_the_client_prefix() {
        assert!(is_valid_client_id("sc_backend"));
        for bad in ["backend", "SC_backend", "sc_a.b", "", &format!("sc_{}", "x".repeat(62))] {
            assert!(!is_valid_client_id(bad), "{bad}");
        }
    }

    #[test]
    fn access_keys_have_the_authress_format_and_a_matching_public_key() {
        use secrecy::ExposeSecret;
        let (public, access) = generate_access_key("sc_a", "kid1", "acct").unwrap();
        let parts: Vec<&str> = access.expose_secret().split('.').collect();
        assert_eq!(&parts[..3], ["sc_a", "kid1", "acct"]);
        assert!(
            parts[3].starts_with("MC4CAQAwBQYDK2VwBCIEI"),
            "48-byte PKCS#8 v1 Ed25519"
        );
        let pkcs8 = STANDARD.decode(parts[3]).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8).unwrap();
        assert_eq!(ed25519_key_from_spki(&public).unwrap(), pair.public_key().as_ref());
        assert!(ed25519_key_from_spki("bm90IGEga2V5").is_none());
    }
}

/// `POST /v1/clients` and `PUT /v1/clients/{clientId}` bodies: keys are managed by their own routes.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientInput {
    #[serde(default)]
    pub client_id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
}

fn validate_input(input: &ClientInput) -> Result<(), ApiError> {
    if input.name.trim().is_empty() || input.name.len() > 128 || input.name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_field",
            "name must be 1 to 128 printable characters",
        ));
    }
    if input.description.as_ref().is_some_and(|d| d.len() > 1024) {
        return Err(ApiError::bad_request(
            "invalid_field",
            "description is at most 1024 characters",
        ));
    }
    Ok(())
}

/// Client ids go into access keys, which split on `.`, and into the token issuer URL; they carry the
/// client prefix, which no user id may start with.
pub fn is_valid_client_id(id: &str) -> bool {
    crate::access::model::is_valid_id(id) && !id.contains('.') && id.len() <= 64 && id.starts_with(CLIENT_ID_PREFIX)
}

/// Makes a client. An id chosen by the caller may be one that active records still name (a client
/// deleted and made again): the caller then becomes whatever those records give, so the delegation
/// rules decide, as for its keys.
pub async fn create_client(
    services: &Services,
    authority: Authority<'_>,
    input: ClientInput,
) -> Result<ServiceClient, ApiError> {
    validate_input(&input)?;
    let client_id = input
        .client_id
        .clone()
        .unwrap_or_else(|| format!("sc_{}", crate::random::token(12).replace('-', "x")));
    if !is_valid_client_id(&client_id) {
        return Err(ApiError::bad_request(
            "invalid_client_id",
            "clientId must start with sc_ and be at most 64 characters of [a-zA-Z0-9-_:@|~]",
        ));
    }
    if let (Authority::Caller(caller), Some(_)) = (authority, &input.client_id) {
        crate::access::admin::authorize_client_identity(services, caller, &client_id).await?;
    }
    let client = ServiceClient {
        client_id: client_id.clone(),
        name: input.name,
        description: input.description,
        verification_keys: Vec::new(),
    };
    let body = serde_json::to_value(&client).map_err(ApiError::internal)?;
    if !documents::create(
        &services.table,
        Kind::Client,
        &client_id,
        &body,
        services.clock.now_millis(),
    )
    .await?
    {
        return Err(ApiError::Conflict {
            code: "client_exists",
            detail: "a client with this id exists already".into(),
        });
    }
    Ok(client)
}

pub async fn update_client(
    services: &Services,
    client_id: &str,
    input: ClientInput,
) -> Result<ServiceClient, ApiError> {
    validate_input(&input)?;
    change_client(services, client_id, |client| {
        client.name = input.name.clone();
        client.description = input.description.clone();
        Ok(())
    })
    .await
}

/// What `POST /v1/clients/{clientId}/access-keys` returns: the private key only when the vault made it.
#[derive(Debug)]
pub struct NewAccessKey {
    pub key: VerificationKey,
    pub access_key: Option<SecretString>,
}

/// Adds a key: made here (the private key is returned once), or the caller's own public key. A new key
/// is the power to act as the client, now and later (see `admin::authorize_key_management`).
pub async fn add_key(
    services: &Services,
    authority: Authority<'_>,
    client_id: &str,
    uploaded_public_key: Option<String>,
) -> Result<NewAccessKey, ApiError> {
    if let Authority::Caller(caller) = authority {
        crate::access::admin::authorize_key_management(services, caller, client_id).await?;
    }
    let key_id = crate::random::token(9).replace(['-', '_'], "x");
    let (public_key, access_key) = match uploaded_public_key {
        Some(public) => {
            if public.len() > 256 || ed25519_key_from_spki(&public).is_none() {
                return Err(ApiError::bad_request(
                    "invalid_public_key",
                    "publicKey must be a base64 DER Ed25519 public key",
                ));
            }
            (public, None)
        }
        None => {
            let (public, access) = generate_access_key(client_id, &key_id, &services.config.account_id)?;
            (public, Some(access))
        }
    };
    let key = VerificationKey {
        key_id,
        public_key,
        generation_date: crate::clock::iso8601(services.clock.now_secs()),
    };
    let added = key.clone();
    change_client(services, client_id, move |client| {
        if client.verification_keys.len() >= MAX_KEYS {
            return Err(ApiError::bad_request(
                "too_many_keys",
                "a client has at most 5 access keys; delete one first",
            ));
        }
        client.verification_keys.push(added.clone());
        Ok(())
    })
    .await?;
    Ok(NewAccessKey { key, access_key })
}

/// Deletes a key; held to the same rule as adding one, or anyone with `clients:update` could lock an
/// administrator out.
pub async fn delete_key(
    services: &Services,
    authority: Authority<'_>,
    client_id: &str,
    key_id: &str,
) -> Result<(), ApiError> {
    if let Authority::Caller(caller) = authority {
        crate::access::admin::authorize_key_management(services, caller, client_id).await?;
    }
    change_client(services, client_id, |client| {
        let before = client.verification_keys.len();
        client.verification_keys.retain(|k| k.key_id != key_id);
        if client.verification_keys.len() == before {
            return Err(ApiError::not_found("access_key_not_found", "no such access key"));
        }
        Ok(())
    })
    .await
    .map(|_| ())
}

async fn load_document(services: &Services, client_id: &str) -> Result<Option<documents::Document>, ApiError> {
    if !is_valid_client_id(client_id) {
        return Ok(None);
    }
    Ok(documents::get(&services.table, Kind::Client, client_id).await?)
}

/// Read-modify-write of a client, conditional on the version read; retried when another change won.
async fn change_client(
    services: &Services,
    client_id: &str,
    change: impl Fn(&mut ServiceClient) -> Result<(), ApiError>,
) -> Result<ServiceClient, ApiError> {
    for _ in 0..5 {
        let doc = load_document(services, client_id)
            .await?
            .ok_or_else(|| ApiError::not_found("client_not_found", "no such service client"))?;
        let mut client: ServiceClient =
            serde_json::from_value(doc.body).map_err(|e| ApiError::internal(format!("stored client: {e}")))?;
        change(&mut client)?;
        let body = serde_json::to_value(&client).map_err(ApiError::internal)?;
        let now = services.clock.now_millis().max(doc.updated_at_ms + 1);
        match documents::replace(
            &services.table,
            Kind::Client,
            client_id,
            &body,
            Some(doc.updated_at_ms),
            now,
        )
        .await?
        {
            documents::ReplaceOutcome::Replaced(_) => return Ok(client),
            documents::ReplaceOutcome::NotFound => {
                return Err(ApiError::not_found("client_not_found", "no such service client"));
            }
            documents::ReplaceOutcome::Conflict => continue,
        }
    }
    Err(ApiError::internal("service client kept changing"))
}

/// The client as the API shows it: public keys only.
pub fn present(client: &ServiceClient) -> serde_json::Value {
    serde_json::to_value(client).unwrap_or_default()
}
