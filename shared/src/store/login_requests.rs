//! The login request: what `POST /api/authentication` started and the provider callback finishes.
//! Keyed by the `state` sent to the provider, consumed exactly once by a conditional delete.

use std::fmt;

use super::{Consumed, Item, StoreError, TTL_ATTRIBUTE, Table, b, classify, get_b, get_n, get_s, n, s};
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

pub async fn put(table: &Table, request: LoginRequest) -> Result<(), StoreError> {
    table
        .client
        .put_item()
        .table_name(&table.name)
        .item("pk", s(pk(&request.state)))
        .item("sk", s(SK))
        .item("authenticationRequestId", s(request.authentication_request_id))
        .item("connectionId", s(request.connection_id))
        .item("redirectUrl", s(request.redirect_url))
        .item("appCodeChallenge", s(request.app_code_challenge))
        .item(ATTR_PROVIDER_VERIFIER, b(request.provider_code_verifier))
        .item("nonce", s(request.nonce))
        .item("expiresAt", n(request.expires_at))
        .item(TTL_ATTRIBUTE, n(request.expires_at))
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
            Consumed::Taken(item) => ConsumeOutcome::Consumed(from_item(state, &item)?),
            Consumed::Refused(None) => ConsumeOutcome::Unknown,
            Consumed::Refused(Some(old)) if get_s(&old, "connectionId")? != connection_id => {
                ConsumeOutcome::ForeignConnection
            }
            Consumed::Refused(Some(_)) => ConsumeOutcome::Expired,
        },
    )
}

fn from_item(state: &str, item: &Item) -> Result<LoginRequest, StoreError> {
    Ok(LoginRequest {
        state: state.to_string(),
        authentication_request_id: get_s(item, "authenticationRequestId")?,
        connection_id: get_s(item, "connectionId")?,
        redirect_url: get_s(item, "redirectUrl")?,
        app_code_challenge: get_s(item, "appCodeChallenge")?,
        provider_code_verifier: get_b(item, ATTR_PROVIDER_VERIFIER)?,
        nonce: get_s(item, "nonce")?,
        expires_at: get_n(item, "expiresAt")?,
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
}
