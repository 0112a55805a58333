//! The login request: what `POST /api/authentication` started and the provider callback finishes.
//! Keyed by the `state` sent to the provider, consumed exactly once by a conditional delete.

use std::fmt;

use super::{Consumed, Item, StoreError, Table, classify, n, s};
use crate::crypto::{EncryptionContext, LOGIN_VERIFIER_SCOPE, PartitionScope};

/// The verifiers' KMS scope (see `crypto::envelope`), which fixes the items' layout: every login
/// request's pk is `LOGIN#<digest of its state>`.
pub const VERIFIER_KMS_SCOPE: PartitionScope = LOGIN_VERIFIER_SCOPE;
const PARTITION: &str = VERIFIER_KMS_SCOPE.partition;
const SK: &str = VERIFIER_KMS_SCOPE.sk;
pub const ATTR_PROVIDER_VERIFIER: &str = VERIFIER_KMS_SCOPE.attribute;

/// Consumed only by the callback of its own connection, and only before it expires.
const CONSUME: &str = "attribute_exists(pk) AND connectionId = :connection AND expiresAt > :now";

pub struct LoginRequest {
    pub state: String,
    pub authentication_request_id: String,
    pub connection_id: String,
    pub redirect_url: String,
    /// The app's S256 code challenge, checked at the vault token exchange.
    pub app_code_challenge: String,
    /// The vault's own PKCE verifier towards the provider, sealed.
    pub provider_code_verifier: Vec<u8>,
    pub nonce: String,
    /// The `scope` the authorization request asked for: RFC 6749 §5.1 lets a token answer leave
    /// `scope` out when it granted exactly that.
    pub requested_scope: Option<String>,
    /// Epoch seconds.
    pub expires_at: i64,
}

impl fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginRequest")
            .field("authentication_request_id", &self.authentication_request_id)
            .field("connection_id", &self.connection_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

pub fn pk(state: &str) -> String {
    format!("{PARTITION}#{}", super::secret_digest(state))
}

/// The verifier's item context; its KMS scope is `VERIFIER_KMS_SCOPE` (see `crypto::envelope`).
pub fn verifier_context(table: &Table, state: &str) -> EncryptionContext {
    table.context(&pk(state), SK, ATTR_PROVIDER_VERIFIER)
}

/// The login request item exactly as DynamoDB holds it (serde_dynamo): the one place its attribute
/// names are spelled. The condition above and the TTL name the same attributes.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredLoginRequest {
    pk: String,
    sk: String,
    authentication_request_id: String,
    connection_id: String,
    redirect_url: String,
    app_code_challenge: String,
    /// `ATTR_PROVIDER_VERIFIER`, a unit test checks.
    #[serde(with = "serde_bytes")]
    provider_code_verifier: Vec<u8>,
    nonce: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    requested_scope: Option<String>,
    expires_at: i64,
    /// `TTL_ATTRIBUTE`: DynamoDB deletes the request once it can no longer be used.
    delete_after: i64,
}

pub async fn put(table: &Table, request: LoginRequest) -> Result<(), StoreError> {
    let item = super::to_item(StoredLoginRequest {
        pk: pk(&request.state),
        sk: SK.to_string(),
        authentication_request_id: request.authentication_request_id,
        connection_id: request.connection_id,
        redirect_url: request.redirect_url,
        app_code_challenge: request.app_code_challenge,
        provider_code_verifier: request.provider_code_verifier,
        nonce: request.nonce,
        requested_scope: request.requested_scope,
        expires_at: request.expires_at,
        delete_after: request.expires_at,
    })?;
    table
        .client
        .put_item()
        .table_name(&table.name)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(pk)")
        .send()
        .await
        .map_err(|e| classify("PutItem", e))?;
    Ok(())
}

#[derive(Debug)]
pub enum ConsumeOutcome {
    Consumed(LoginRequest),
    /// No such request: never made, or already consumed (a replay).
    Unknown,
    /// The request belongs to another connection's callback (a mix-up attempt); left untouched.
    ForeignConnection,
    Expired,
}

pub async fn consume(
    table: &Table,
    state: &str,
    connection_id: &str,
    now_secs: i64,
) -> Result<ConsumeOutcome, StoreError> {
    let values = vec![(":connection", s(connection_id)), (":now", n(now_secs))];
    Ok(
        match super::consume_once(table, &pk(state), SK, CONSUME, values).await? {
            Consumed::Taken(item) => ConsumeOutcome::Consumed(from_item(state, item)?),
            Consumed::Refused(None) => ConsumeOutcome::Unknown,
            Consumed::Refused(Some(old)) => {
                if from_item(state, old)?.connection_id != connection_id {
                    ConsumeOutcome::ForeignConnection
                } else {
                    ConsumeOutcome::Expired
                }
            }
        },
    )
}

fn from_item(state: &str, item: Item) -> Result<LoginRequest, StoreError> {
    let stored: StoredLoginRequest = super::parse_item(item)?;
    Ok(LoginRequest {
        state: state.to_string(),
        authentication_request_id: stored.authentication_request_id,
        connection_id: stored.connection_id,
        redirect_url: stored.redirect_url,
        app_code_challenge: stored.app_code_challenge,
        provider_code_verifier: stored.provider_code_verifier,
        nonce: stored.nonce,
        requested_scope: stored.requested_scope,
        expires_at: stored.expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Table {
        use aws_sdk_dynamodb::config::{BehaviorVersion, Region};
        let conf = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .build();
        Table::new(aws_sdk_dynamodb::Client::from_conf(conf), "credvault-test")
    }

    #[test]
    fn verifiers_are_scoped_to_the_login_partition_in_kms_and_to_their_item_otherwise() {
        let (a, b) = (
            verifier_context(&table(), "state-a"),
            verifier_context(&table(), "state-b"),
        );
        assert_eq!(a.pk, pk("state-a"));
        assert_ne!(a.pk, b.pk);
        assert_eq!((a.kms_pk(), b.kms_pk()), ("LOGIN", "LOGIN"));
        assert_eq!((a.sk.as_str(), a.attribute), (SK, ATTR_PROVIDER_VERIFIER));
    }

    #[test]
    fn the_item_names_the_attributes_the_kms_scope_ttl_and_condition_name() {
        let item = crate::store::to_item(StoredLoginRequest {
            pk: pk("state"),
            sk: SK.into(),
            authentication_request_id: "rid".into(),
            connection_id: "con_a".into(),
            redirect_url: "https://app/cb".into(),
            app_code_challenge: "challenge".into(),
            provider_code_verifier: vec![1, 2, 3],
            nonce: "nonce".into(),
            requested_scope: Some("openid".into()),
            expires_at: 100,
            delete_after: 100,
        })
        .unwrap();
        assert!(
            item[ATTR_PROVIDER_VERIFIER].as_b().is_ok(),
            "the sealed verifier is binary"
        );
        assert_eq!(item[crate::store::TTL_ATTRIBUTE].as_n().map(String::as_str), Ok("100"));
        for name in ["connectionId", "expiresAt"] {
            assert!(CONSUME.contains(name) && item.contains_key(name), "{name}");
        }
        let back = from_item("state", item).unwrap();
        assert_eq!(
            (back.provider_code_verifier, back.connection_id.as_str()),
            (vec![1, 2, 3], "con_a")
        );
    }
}
