//! The credential item: one per (connection, user), holding the sealed provider tokens and the state of
//! the refresh protocol (`tokenVersion`, the lease, `status`). The protocol itself is in `vault.rs`.

use std::fmt;

use super::keep_alive::{ATTR_DUE as ATTR_KEEP_ALIVE_DUE, ATTR_SHARD as ATTR_KEEP_ALIVE_SHARD};
use super::{StoreError, Table, b, classify, condition_outcome, n, opt_n, s};
use aws_sdk_dynamodb::types::AttributeValue;

use crate::crypto::EncryptionContext;
use crate::oauth::answer::ProviderMetadata;
use crate::oauth::connection::IssuedUnder;

pub const ATTR_REFRESH_TOKEN: &str = "refreshToken";
pub const ATTR_ACCESS_TOKEN: &str = "accessToken";

/// A lease may be claimed when it is the version we read, the credential is usable, no live lease
/// exists, and no backoff is running: a claimer that read the item before another instance recorded a
/// failed refresh must not call the provider right after it.
const CLAIM_LEASE: &str = "tokenVersion = :v AND #status = :active \
     AND (attribute_not_exists(leaseOwner) OR leaseExpiresAtMs < :now) \
     AND (attribute_not_exists(nextAttemptAtMs) OR nextAttemptAtMs <= :now)";
/// New tokens land only from the lease holder, and only on the version they were refreshed from.
const COMMIT_REFRESH: &str = "leaseOwner = :me AND tokenVersion = :v";
/// A holder extends its own lease on the version it claimed, never one another instance took over.
const RENEW_LEASE: &str = "leaseOwner = :me AND tokenVersion = :v";
/// Only the owner releases a lease (Nango's lock was released by anyone).
const RELEASE_LEASE: &str = "leaseOwner = :me";
/// A failed attempt is recorded by the holder, on the version it tried.
const RECORD_FAILURE: &str = "leaseOwner = :me AND tokenVersion = :v";
/// The refresh-protocol state a commit or a login clears: the backoff after failures, and the mark
/// that a refresh may have rotated the token without its answer being saved.
const ATTR_NEXT_ATTEMPT: &str = "nextAttemptAtMs";
const ATTR_FAILURES: &str = "refreshFailures";
const ATTR_UNCONFIRMED: &str = "rotationUnconfirmedAt";
/// A credential is declared dead only by the holder that saw the provider refuse this very version.
const MARK_REAUTH: &str = "leaseOwner = :me AND tokenVersion = :v";
const CREATE: &str = "attribute_not_exists(pk)";
/// Disconnect steps apply to the version they read; a refresh that lands in between wins and is redone.
const SAME_VERSION: &str = "tokenVersion = :v";
/// A login replaces the tokens of exactly the version it read.
const REPLACE_AFTER_LOGIN: &str = "tokenVersion = :v";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialStatus {
    Active,
    ReauthRequired,
    /// Being disconnected: unusable, kept only until the provider has revoked its refresh token.
    Revoking,
}

impl CredentialStatus {
    fn as_str(self) -> &'static str {
        match self {
            CredentialStatus::Active => "ACTIVE",
            CredentialStatus::ReauthRequired => "REAUTH_REQUIRED",
            CredentialStatus::Revoking => "REVOKING",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshLease {
    pub owner: String,
    pub expires_at_ms: i64,
}

/// The stored credential. Token fields hold ciphertexts; `Debug` shows only their presence.
#[derive(Clone)]
pub struct CredentialItem {
    pub connection_id: String,
    pub user_id: String,
    pub refresh_token: Option<Vec<u8>>,
    pub access_token: Vec<u8>,
    /// Epoch seconds.
    pub access_expires_at: i64,
    /// Epoch seconds when the access token was obtained: with the expiry, its full lifetime.
    pub access_issued_at: i64,
    pub token_type: String,
    pub scope: Option<String>,
    pub token_version: i64,
    pub lease: Option<RefreshLease>,
    pub status: CredentialStatus,
    /// The endpoints, client and connection generation its refresh token was issued under; `None`
    /// for items stored before credentials recorded them (until `migrate-security` pins them).
    pub issued_under: Option<IssuedUnder>,
    /// The refresh backoff: after transient provider failures no instance calls the provider before
    /// this (epoch ms). The issue's `nextAttemptAt`.
    pub next_attempt_at_ms: Option<i64>,
    /// Transient provider failures since the last success: the exponent of the backoff.
    pub refresh_failures: u32,
    /// Set (epoch seconds) when a refresh may have reached the provider without its answer being
    /// saved: a holder lost the answer, or died holding the lease. If the provider then refuses the
    /// refresh token, the rotation was lost (`rotation_lost`), not revoked by the user.
    pub rotation_unconfirmed_at: Option<i64>,
    /// The connection's allow-listed fields of the provider's last answer that carried them
    /// (`instance_url`, `team.id`): plain text, never a secret.
    pub metadata: ProviderMetadata,
    /// When a keep-alive refresh is due (epoch seconds; store/keep_alive.rs): only on ACTIVE
    /// credentials of connections with `keepAliveDays`.
    pub keep_alive_due_at: Option<i64>,
}

/// A transient provider failure, recorded by the lease holder as it gives the lease back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailedAttempt {
    /// No provider call before this (epoch ms).
    pub next_attempt_at_ms: i64,
    /// The request was sent and no trustworthy answer came back.
    pub may_have_rotated: bool,
}

impl fmt::Debug for CredentialItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialItem")
            .field("connection_id", &self.connection_id)
            .field("user_id", &self.user_id)
            .field("has_refresh_token", &self.refresh_token.is_some())
            .field("access_expires_at", &self.access_expires_at)
            .field("token_version", &self.token_version)
            .field("lease", &self.lease)
            .field("status", &self.status)
            .field("issued_under", &self.issued_under)
            .field("next_attempt_at_ms", &self.next_attempt_at_ms)
            .field("refresh_failures", &self.refresh_failures)
            .field("rotation_unconfirmed_at", &self.rotation_unconfirmed_at)
            .field("metadata", &self.metadata)
            .field("keep_alive_due_at", &self.keep_alive_due_at)
            .finish()
    }
}

/// New sealed tokens to write, from a login or a refresh.
#[derive(Clone)]
pub struct NewTokens {
    pub access_token: Vec<u8>,
    /// `None` keeps the stored refresh token (providers often send none on refresh or re-login).
    pub refresh_token: Option<Vec<u8>>,
    pub access_expires_at: i64,
    pub access_issued_at: i64,
    pub token_type: String,
    pub scope: Option<String>,
    /// Empty: a refresh keeps the stored metadata; a login removes it.
    pub metadata: ProviderMetadata,
    /// When these tokens are due for a keep-alive refresh; `None`: the connection has none.
    pub keep_alive_due_at: Option<i64>,
}

/// The credential item exactly as DynamoDB holds it: the one place its attribute names are spelled.
/// Reads and first writes go through serde_dynamo; the update expressions of this module name the same
/// attributes, and a unit test checks that every name they use is one of these.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredCredential {
    pk: String,
    sk: String,
    connection_id: String,
    user_id: String,
    #[serde(default, with = "serde_bytes", skip_serializing_if = "Option::is_none")]
    refresh_token: Option<Vec<u8>>,
    #[serde(with = "serde_bytes")]
    access_token: Vec<u8>,
    access_expires_at: i64,
    access_issued_at: i64,
    token_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_scope: Option<String>,
    token_version: i64,
    status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reauth_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lease_owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lease_expires_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next_attempt_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_failures: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rotation_unconfirmed_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    issued_token_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    issued_revocation_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    issued_client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    connection_generation: Option<String>,
    #[serde(default, skip_serializing_if = "ProviderMetadata::is_empty")]
    provider_metadata: ProviderMetadata,
    /// The sparse keep-alive index's keys (store/keep_alive.rs): both or neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    keep_alive_shard: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    keep_alive_due_at: Option<i64>,
    #[serde(default)]
    created_at: i64,
    #[serde(default)]
    updated_at: i64,
}

impl StoredCredential {
    fn into_credential(self) -> Result<CredentialItem, StoreError> {
        let status = match self.status.as_str() {
            "ACTIVE" => CredentialStatus::Active,
            "REAUTH_REQUIRED" => CredentialStatus::ReauthRequired,
            "REVOKING" => CredentialStatus::Revoking,
            other => return Err(StoreError::Malformed(format!("unknown status {other}"))),
        };
        let lease = match (self.lease_owner, self.lease_expires_at_ms) {
            (Some(owner), Some(expires_at_ms)) => Some(RefreshLease { owner, expires_at_ms }),
            _ => None,
        };
        let issued_under = match (self.issued_token_url, self.issued_client_id, self.connection_generation) {
            (Some(token_url), Some(client_id), Some(connection_generation)) => Some(IssuedUnder {
                token_url,
                revocation_url: self.issued_revocation_url,
                client_id,
                connection_generation,
            }),
            _ => None,
        };
        Ok(CredentialItem {
            connection_id: self.connection_id,
            user_id: self.user_id,
            refresh_token: self.refresh_token,
            access_token: self.access_token,
            access_expires_at: self.access_expires_at,
            access_issued_at: self.access_issued_at,
            token_type: self.token_type,
            scope: self.token_scope,
            token_version: self.token_version,
            lease,
            status,
            issued_under,
            next_attempt_at_ms: self.next_attempt_at_ms,
            refresh_failures: self.refresh_failures.unwrap_or(0),
            rotation_unconfirmed_at: self.rotation_unconfirmed_at,
            metadata: self.provider_metadata,
            keep_alive_due_at: self.keep_alive_due_at,
        })
    }
}

const ATTR_METADATA: &str = "providerMetadata";

/// Metadata as a DynamoDB map of strings.
fn metadata_value(metadata: &ProviderMetadata) -> AttributeValue {
    AttributeValue::M(metadata.iter().map(|(k, v)| (k.clone(), s(v))).collect())
}

const ATTR_REVOCATION_URL: &str = "issuedRevocationUrl";

/// The `SET` clauses and values that pin a credential to what its tokens were issued under.
fn pin_values(
    issued: &IssuedUnder,
) -> (
    Vec<&'static str>,
    Vec<&'static str>,
    Vec<(&'static str, AttributeValue)>,
) {
    let mut set = vec![
        "issuedTokenUrl = :pin_token",
        "issuedClientId = :pin_client",
        "connectionGeneration = :pin_generation",
    ];
    let mut remove = Vec::new();
    let mut values = vec![
        (":pin_token", s(&issued.token_url)),
        (":pin_client", s(&issued.client_id)),
        (":pin_generation", s(&issued.connection_generation)),
    ];
    match &issued.revocation_url {
        Some(url) => {
            set.push("issuedRevocationUrl = :pin_revocation");
            values.push((":pin_revocation", s(url)));
        }
        None => remove.push(ATTR_REVOCATION_URL),
    }
    (set, remove, values)
}

/// Records what an existing credential was issued under (the security migration: items stored
/// before pins existed are pinned to their connection as it is at migration time).
pub async fn pin(table: &Table, item: &CredentialItem, issued: &IssuedUnder) -> Result<bool, StoreError> {
    let (set, remove, values) = pin_values(issued);
    let mut expr = format!("SET {}", set.join(", "));
    if !remove.is_empty() {
        expr.push_str(&format!(" REMOVE {}", remove.join(", ")));
    }
    let mut req = update_of(table, item)
        .update_expression(expr)
        .condition_expression(SAME_VERSION)
        .expression_attribute_values(":v", n(item.token_version));
    for (name, value) in values {
        req = req.expression_attribute_values(name, value);
    }
    condition_outcome("UpdateItem", req.send().await)
}

pub fn pk(connection_id: &str) -> String {
    format!("CREDENTIAL#{connection_id}")
}

pub fn sk(user_id: &str) -> String {
    format!("USER#{user_id}")
}

pub fn context(table: &Table, connection_id: &str, user_id: &str, attribute: &'static str) -> EncryptionContext {
    table.context(&pk(connection_id), &sk(user_id), attribute)
}

/// Consistent read: the refresh protocol decides on the latest committed version.
pub async fn get(table: &Table, connection_id: &str, user_id: &str) -> Result<Option<CredentialItem>, StoreError> {
    let out = table
        .client
        .get_item()
        .table_name(&table.name)
        .key("pk", s(pk(connection_id)))
        .key("sk", s(sk(user_id)))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| classify("GetItem", e))?;
    out.item.map(from_item).transpose()
}

/// Every credential with its creation time, by a Scan: for the one-off security migration only (no
/// request path scans the table).
pub async fn scan_all(table: &Table) -> Result<Vec<(i64, CredentialItem)>, StoreError> {
    let mut all = Vec::new();
    let mut start = None;
    loop {
        let out = table
            .client
            .scan()
            .table_name(&table.name)
            .filter_expression("begins_with(pk, :credential)")
            .expression_attribute_values(":credential", s("CREDENTIAL#"))
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| classify("Scan", e))?;
        for item in out.items.unwrap_or_default() {
            let created_at = opt_n(&item, "createdAt")?.unwrap_or_default();
            all.push((created_at, from_item(item)?));
        }
        match out.last_evaluated_key {
            Some(key) if !key.is_empty() => start = Some(key),
            _ => return Ok(all),
        }
    }
}

fn from_item(item: super::Item) -> Result<CredentialItem, StoreError> {
    super::parse_item::<StoredCredential>(item)?.into_credential()
}

/// Stores the tokens of a login. Creates the item, or replaces the tokens of the version `previous`
/// read, making it ACTIVE again and dropping any lease (the new tokens supersede a refresh in flight).
pub async fn save_after_login(
    table: &Table,
    connection_id: &str,
    user_id: &str,
    previous: Option<&CredentialItem>,
    tokens: NewTokens,
    issued: &IssuedUnder,
    now_secs: i64,
) -> Result<(), StoreError> {
    match previous {
        None => {
            let stored = StoredCredential {
                pk: pk(connection_id),
                sk: sk(user_id),
                connection_id: connection_id.to_string(),
                user_id: user_id.to_string(),
                refresh_token: tokens.refresh_token,
                access_token: tokens.access_token,
                access_expires_at: tokens.access_expires_at,
                access_issued_at: tokens.access_issued_at,
                token_type: tokens.token_type,
                token_scope: tokens.scope,
                token_version: 1,
                status: CredentialStatus::Active.as_str().to_string(),
                reauth_reason: None,
                lease_owner: None,
                lease_expires_at_ms: None,
                next_attempt_at_ms: None,
                refresh_failures: None,
                rotation_unconfirmed_at: None,
                issued_token_url: Some(issued.token_url.clone()),
                issued_revocation_url: issued.revocation_url.clone(),
                issued_client_id: Some(issued.client_id.clone()),
                connection_generation: Some(issued.connection_generation.clone()),
                provider_metadata: tokens.metadata,
                keep_alive_shard: tokens
                    .keep_alive_due_at
                    .map(|_| super::keep_alive::shard_of(connection_id, user_id)),
                keep_alive_due_at: tokens.keep_alive_due_at,
                created_at: now_secs,
                updated_at: now_secs,
            };
            let item =
                serde_dynamo::to_item(stored).map_err(|e| StoreError::Malformed(format!("credential item: {e}")))?;
            let req = table
                .client
                .put_item()
                .table_name(&table.name)
                .set_item(Some(item))
                .condition_expression(CREATE);
            req.send().await.map_err(|e| classify("PutItem", e))?;
        }
        Some(prev) => {
            let mut set = vec![
                "accessToken = :at",
                "accessExpiresAt = :exp",
                "accessIssuedAt = :iat",
                "tokenType = :tt",
                "tokenVersion = :next",
                "#status = :active",
                "updatedAt = :now",
            ];
            let mut remove = vec![
                "leaseOwner",
                "leaseExpiresAtMs",
                "reauthReason",
                ATTR_NEXT_ATTEMPT,
                ATTR_FAILURES,
                ATTR_UNCONFIRMED,
            ];
            // A login's tokens were issued under the connection as it is now.
            let (pin_set, pin_remove, pin_values) = pin_values(issued);
            set.extend(pin_set);
            remove.extend(pin_remove);
            let mut req = table
                .client
                .update_item()
                .table_name(&table.name)
                .key("pk", s(pk(connection_id)))
                .key("sk", s(sk(user_id)))
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":at", b(tokens.access_token))
                .expression_attribute_values(":exp", n(tokens.access_expires_at))
                .expression_attribute_values(":iat", n(tokens.access_issued_at))
                .expression_attribute_values(":tt", s(tokens.token_type))
                .expression_attribute_values(":next", n(prev.token_version + 1))
                .expression_attribute_values(":v", n(prev.token_version))
                .expression_attribute_values(":active", s(CredentialStatus::Active.as_str()))
                .expression_attribute_values(":now", n(now_secs))
                .condition_expression(REPLACE_AFTER_LOGIN);
            for (name, value) in pin_values {
                req = req.expression_attribute_values(name, value);
            }
            match tokens.refresh_token {
                Some(rt) => {
                    set.push("refreshToken = :rt");
                    req = req.expression_attribute_values(":rt", b(rt));
                }
                // The stored refresh token was issued under other endpoints: it is not re-pinned to
                // these (a login the new endpoint answered without one must not inherit it).
                None if prev.issued_under.as_ref() != Some(issued) => remove.push(ATTR_REFRESH_TOKEN),
                None => {}
            }
            match tokens.scope {
                Some(scope) => {
                    set.push("tokenScope = :scope");
                    req = req.expression_attribute_values(":scope", s(scope));
                }
                None => remove.push("tokenScope"),
            }
            // A login's answer replaces all of it: metadata of an earlier login does not linger.
            if tokens.metadata.is_empty() {
                remove.push(ATTR_METADATA);
            } else {
                set.push("providerMetadata = :meta");
                req = req.expression_attribute_values(":meta", metadata_value(&tokens.metadata));
            }
            req = keep_alive_clauses(
                req,
                &mut set,
                &mut remove,
                connection_id,
                user_id,
                tokens.keep_alive_due_at,
            );
            let expr = format!("SET {} REMOVE {}", set.join(", "), remove.join(", "));
            req.update_expression(expr)
                .send()
                .await
                .map_err(|e| classify("UpdateItem", e))?;
        }
    }
    Ok(())
}

/// The keep-alive index entry of new tokens: set when they are due some day (the connection keeps its
/// credentials alive), removed otherwise, so the sparse index holds exactly the credentials to keep.
fn keep_alive_clauses(
    mut req: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
    set: &mut Vec<&'static str>,
    remove: &mut Vec<&'static str>,
    connection_id: &str,
    user_id: &str,
    due_at: Option<i64>,
) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
    match due_at {
        Some(due_at) => {
            set.push("keepAliveShard = :ka_shard");
            set.push("keepAliveDueAt = :ka_due");
            for (name, value) in super::keep_alive::index_values(connection_id, user_id, due_at) {
                req = req.expression_attribute_values(name, value);
            }
        }
        None => remove.extend([ATTR_KEEP_ALIVE_SHARD, ATTR_KEEP_ALIVE_DUE]),
    }
    req
}

/// An UpdateItem on `item`'s own key; each caller adds its expression and named condition.
fn update_of(
    table: &Table,
    item: &CredentialItem,
) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
    table
        .client
        .update_item()
        .table_name(&table.name)
        .key("pk", s(pk(&item.connection_id)))
        .key("sk", s(sk(&item.user_id)))
}

/// Tries to take the refresh lease on `version`. `Ok(false)`: someone else holds it or the version moved.
pub async fn claim_lease(
    table: &Table,
    item: &CredentialItem,
    owner: &str,
    now_ms: i64,
    lease_ms: i64,
) -> Result<bool, StoreError> {
    // A lease that ran out was neither committed nor given back: its holder died or stalled, maybe
    // after the provider rotated the token.
    let update = if item.lease.is_some() {
        "SET leaseOwner = :me, leaseExpiresAtMs = :until, rotationUnconfirmedAt = if_not_exists(rotationUnconfirmedAt, :now_s)"
    } else {
        "SET leaseOwner = :me, leaseExpiresAtMs = :until"
    };
    let mut req = update_of(table, item)
        .update_expression(update)
        .condition_expression(CLAIM_LEASE)
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":me", s(owner))
        .expression_attribute_values(":until", n(now_ms + lease_ms))
        .expression_attribute_values(":v", n(item.token_version))
        .expression_attribute_values(":active", s(CredentialStatus::Active.as_str()))
        .expression_attribute_values(":now", n(now_ms));
    if item.lease.is_some() {
        req = req.expression_attribute_values(":now_s", n(now_ms / 1000));
    }
    condition_outcome("UpdateItem", req.send().await)
}

/// Commits refreshed tokens as `version + 1` and drops the lease. `Ok(false)`: we no longer own the
/// lease on that version, so our tokens must not land.
pub async fn commit_refresh(
    table: &Table,
    item: &CredentialItem,
    owner: &str,
    tokens: NewTokens,
    now_secs: i64,
) -> Result<bool, StoreError> {
    let mut set = vec![
        "accessToken = :at",
        "accessExpiresAt = :exp",
        "accessIssuedAt = :iat",
        "tokenType = :tt",
        "tokenVersion = :next",
        "updatedAt = :now",
    ];
    let mut req = update_of(table, item)
        .condition_expression(COMMIT_REFRESH)
        .expression_attribute_values(":me", s(owner))
        .expression_attribute_values(":v", n(item.token_version))
        .expression_attribute_values(":next", n(item.token_version + 1))
        .expression_attribute_values(":at", b(tokens.access_token))
        .expression_attribute_values(":exp", n(tokens.access_expires_at))
        .expression_attribute_values(":iat", n(tokens.access_issued_at))
        .expression_attribute_values(":tt", s(tokens.token_type))
        .expression_attribute_values(":now", n(now_secs));
    if let Some(rt) = tokens.refresh_token {
        set.push("refreshToken = :rt");
        req = req.expression_attribute_values(":rt", b(rt));
    }
    if let Some(scope) = tokens.scope {
        set.push("tokenScope = :scope");
        req = req.expression_attribute_values(":scope", s(scope));
    }
    // A refresh answer without the fields (most providers send them only at login) keeps them.
    if !tokens.metadata.is_empty() {
        set.push("providerMetadata = :meta");
        req = req.expression_attribute_values(":meta", metadata_value(&tokens.metadata));
    }
    let mut remove = vec![
        "leaseOwner",
        "leaseExpiresAtMs",
        ATTR_NEXT_ATTEMPT,
        ATTR_FAILURES,
        ATTR_UNCONFIRMED,
    ];
    req = keep_alive_clauses(
        req,
        &mut set,
        &mut remove,
        &item.connection_id,
        &item.user_id,
        tokens.keep_alive_due_at,
    );
    let expr = format!("SET {} REMOVE {}", set.join(", "), remove.join(", "));
    condition_outcome("UpdateItem", req.update_expression(expr).send().await)
}

/// Gives the lease back after a transient provider failure, recording the backoff (one more failure)
/// and, when the request may have reached the provider, that a rotation may be unconfirmed.
/// `Ok(false)`: the lease on that version is no longer ours.
pub async fn record_failed_attempt(
    table: &Table,
    item: &CredentialItem,
    owner: &str,
    failed: FailedAttempt,
    now_secs: i64,
) -> Result<bool, StoreError> {
    let mut update = format!("SET {ATTR_NEXT_ATTEMPT} = :next, {ATTR_FAILURES} = :failures");
    if failed.may_have_rotated {
        update.push_str(&format!(
            ", {ATTR_UNCONFIRMED} = if_not_exists({ATTR_UNCONFIRMED}, :now)"
        ));
    }
    update.push_str(" REMOVE leaseOwner, leaseExpiresAtMs");
    let mut req = update_of(table, item)
        .update_expression(update)
        .condition_expression(RECORD_FAILURE)
        .expression_attribute_values(":me", s(owner))
        .expression_attribute_values(":v", n(item.token_version))
        .expression_attribute_values(":next", n(failed.next_attempt_at_ms))
        .expression_attribute_values(":failures", n(i64::from(item.refresh_failures.saturating_add(1))));
    if failed.may_have_rotated {
        req = req.expression_attribute_values(":now", n(now_secs));
    }
    condition_outcome("UpdateItem", req.send().await)
}

/// Extends our lease to `now_ms + lease_ms`. `Ok(false)`: it is no longer ours on that version.
pub async fn renew_lease(
    table: &Table,
    item: &CredentialItem,
    owner: &str,
    now_ms: i64,
    lease_ms: i64,
) -> Result<bool, StoreError> {
    let result = update_of(table, item)
        .update_expression("SET leaseExpiresAtMs = :until")
        .condition_expression(RENEW_LEASE)
        .expression_attribute_values(":me", s(owner))
        .expression_attribute_values(":v", n(item.token_version))
        .expression_attribute_values(":until", n(now_ms + lease_ms))
        .send()
        .await;
    condition_outcome("UpdateItem", result)
}

/// Gives the lease back after a failed refresh so the next fetch can try at once.
pub async fn release_lease(table: &Table, item: &CredentialItem, owner: &str) -> Result<bool, StoreError> {
    let result = update_of(table, item)
        .update_expression("REMOVE leaseOwner, leaseExpiresAtMs")
        .condition_expression(RELEASE_LEASE)
        .expression_attribute_values(":me", s(owner))
        .send()
        .await;
    condition_outcome("UpdateItem", result)
}

/// Marks the credential dead after the provider refused its refresh token; drops the lease.
pub async fn mark_reauth_required(
    table: &Table,
    item: &CredentialItem,
    owner: &str,
    reason: &str,
    now_secs: i64,
) -> Result<bool, StoreError> {
    let result = update_of(table, item)
        .update_expression(
            "SET #status = :dead, reauthReason = :reason, updatedAt = :now REMOVE leaseOwner, leaseExpiresAtMs, keepAliveShard, keepAliveDueAt",
        )
        .expression_attribute_values(":reason", s(reason))
        .condition_expression(MARK_REAUTH)
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":dead", s(CredentialStatus::ReauthRequired.as_str()))
        .expression_attribute_values(":me", s(owner))
        .expression_attribute_values(":v", n(item.token_version))
        .expression_attribute_values(":now", n(now_secs))
        .send()
        .await;
    condition_outcome("UpdateItem", result)
}

/// First step of a disconnect: the credential becomes unusable at once (no fetch returns it, no refresh
/// can start, a refresh in flight cannot commit), while its refresh token waits for revocation.
pub async fn mark_revoking(table: &Table, item: &CredentialItem, now_secs: i64) -> Result<bool, StoreError> {
    let result = update_of(table, item)
        .update_expression(
            "SET #status = :revoking, tokenVersion = :next, updatedAt = :now REMOVE leaseOwner, leaseExpiresAtMs, keepAliveShard, keepAliveDueAt",
        )
        .condition_expression(SAME_VERSION)
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":revoking", s(CredentialStatus::Revoking.as_str()))
        .expression_attribute_values(":v", n(item.token_version))
        .expression_attribute_values(":next", n(item.token_version + 1))
        .expression_attribute_values(":now", n(now_secs))
        .send()
        .await;
    condition_outcome("UpdateItem", result)
}

/// Last step of a disconnect: the item goes, if nothing changed it since it was read.
pub async fn delete(table: &Table, item: &CredentialItem) -> Result<bool, StoreError> {
    let result = table
        .client
        .delete_item()
        .table_name(&table.name)
        .key("pk", s(pk(&item.connection_id)))
        .key("sk", s(sk(&item.user_id)))
        .condition_expression(SAME_VERSION)
        .expression_attribute_values(":v", n(item.token_version))
        .send()
        .await;
    condition_outcome("DeleteItem", result)
}

/// A boxed future: what the repository traits return, so protocols can hold them as `dyn`.
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// What the repository can fail with: the store, or the sealing of a secret.
#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] crate::crypto::CryptoError),
}

/// Tokens of a login or a refresh, in the clear, before the repository seals them.
pub struct PlainTokens {
    pub access_token: secrecy::SecretString,
    pub refresh_token: Option<secrecy::SecretString>,
    pub access_expires_at: i64,
    pub access_issued_at: i64,
    pub token_type: String,
    pub scope: Option<String>,
    pub metadata: ProviderMetadata,
    pub keep_alive_due_at: Option<i64>,
}

/// Where credentials live, with their secrets sealed: the refresh protocol (vault.rs) and the login go
/// through it and never see a ciphertext or an encryption context. Every state change is one of the
/// conditional writes of this module; `Ok(false)` means its condition did not hold.
pub trait CredentialRepository: Send + Sync + 'static {
    /// A consistent read.
    fn get<'a>(
        &'a self,
        connection_id: &'a str,
        user_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<CredentialItem>, StoreError>>;
    fn claim_lease<'a>(
        &'a self,
        item: &'a CredentialItem,
        owner: &'a str,
        now_ms: i64,
        lease_ms: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    fn commit_refresh<'a>(
        &'a self,
        item: &'a CredentialItem,
        owner: &'a str,
        tokens: NewTokens,
        now_secs: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Extends the holder's own lease (before a provider call the rest of it would not cover).
    fn renew_lease<'a>(
        &'a self,
        item: &'a CredentialItem,
        owner: &'a str,
        now_ms: i64,
        lease_ms: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    fn release_lease<'a>(&'a self, item: &'a CredentialItem, owner: &'a str)
    -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Gives the lease back after a transient provider failure, recording the backoff.
    fn record_failed_attempt<'a>(
        &'a self,
        item: &'a CredentialItem,
        owner: &'a str,
        failed: FailedAttempt,
        now_secs: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    fn mark_reauth_required<'a>(
        &'a self,
        item: &'a CredentialItem,
        owner: &'a str,
        reason: &'a str,
        now_secs: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    fn mark_revoking<'a>(&'a self, item: &'a CredentialItem, now_secs: i64) -> BoxFuture<'a, Result<bool, StoreError>>;
    fn delete<'a>(&'a self, item: &'a CredentialItem) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Stores a login's tokens onto the version `previous` read (or as a new item).
    fn save_after_login<'a>(
        &'a self,
        connection_id: &'a str,
        user_id: &'a str,
        previous: Option<&'a CredentialItem>,
        tokens: NewTokens,
        issued: &'a IssuedUnder,
        now_secs: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// The data keys to seal new tokens for the credential of (connection, user), obtained now: the
    /// refresh protocol takes them before the provider call, so sealing its answer needs no KMS.
    fn sealer<'a>(
        &'a self,
        connection_id: &'a str,
        user_id: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn TokenSealer>, RepositoryError>>;
    fn open_access_token<'a>(
        &'a self,
        item: &'a CredentialItem,
    ) -> BoxFuture<'a, Result<secrecy::SecretString, RepositoryError>>;
    fn open_refresh_token<'a>(
        &'a self,
        item: &'a CredentialItem,
    ) -> BoxFuture<'a, Result<Option<secrecy::SecretString>, RepositoryError>>;
}

/// The credentials in DynamoDB, sealed by KMS envelope encryption bound to each item and attribute.
pub struct DynamoCredentials {
    table: Table,
    envelope: std::sync::Arc<crate::crypto::Envelope>,
}

impl DynamoCredentials {
    pub fn new(table: Table, envelope: std::sync::Arc<crate::crypto::Envelope>) -> Self {
        Self { table, envelope }
    }
}

impl CredentialRepository for DynamoCredentials {
    fn get<'a>(
        &'a self,
        connection_id: &'a str,
        user_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<CredentialItem>, StoreError>> {
        Box::pin(get(&self.table, connection_id, user_id))
    }

    fn claim_lease<'a>(
        &'a self,
        item: &'a CredentialItem,
        owner: &'a str,
        now_ms: i64,
        lease_ms: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(claim_lease(&self.table, item, owner, now_ms, lease_ms))
    }

    fn commit_refresh<'a>(
        &'a self,
        item: &'a CredentialItem,
        owner: &'a str,
        tokens: NewTokens,
        now_secs: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(commit_refresh(&self.table, item, owner, tokens, now_secs))
    }

    fn renew_lease<'a>(
        &'a self,
        item: &'a CredentialItem,
        owner: &'a str,
        now_ms: i64,
        lease_ms: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(renew_lease(&self.table, item, owner, now_ms, lease_ms))
    }

    fn release_lease<'a>(
        &'a self,
        item: &'a CredentialItem,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(release_lease(&self.table, item, owner))
    }

    fn record_failed_attempt<'a>(
        &'a self,
        item: &'a CredentialItem,
        owner: &'a str,
        failed: FailedAttempt,
        now_secs: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(record_failed_attempt(&self.table, item, owner, failed, now_secs))
    }

    fn mark_reauth_required<'a>(
        &'a self,
        item: &'a CredentialItem,
        owner: &'a str,
        reason: &'a str,
        now_secs: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(mark_reauth_required(&self.table, item, owner, reason, now_secs))
    }

    fn mark_revoking<'a>(&'a self, item: &'a CredentialItem, now_secs: i64) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(mark_revoking(&self.table, item, now_secs))
    }

    fn delete<'a>(&'a self, item: &'a CredentialItem) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(delete(&self.table, item))
    }

    fn save_after_login<'a>(
        &'a self,
        connection_id: &'a str,
        user_id: &'a str,
        previous: Option<&'a CredentialItem>,
        tokens: NewTokens,
        issued: &'a IssuedUnder,
        now_secs: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(save_after_login(
            &self.table,
            connection_id,
            user_id,
            previous,
            tokens,
            issued,
            now_secs,
        ))
    }

    fn sealer<'a>(
        &'a self,
        connection_id: &'a str,
        user_id: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn TokenSealer>, RepositoryError>> {
        Box::pin(async move {
            let access = context(&self.table, connection_id, user_id, ATTR_ACCESS_TOKEN);
            let refresh = context(&self.table, connection_id, user_id, ATTR_REFRESH_TOKEN);
            let sealer: Box<dyn TokenSealer> = Box::new(EnvelopeSealer {
                access: self.envelope.sealer(&access).await?,
                refresh: self.envelope.sealer(&refresh).await?,
            });
            Ok(sealer)
        })
    }

    fn open_access_token<'a>(
        &'a self,
        item: &'a CredentialItem,
    ) -> BoxFuture<'a, Result<secrecy::SecretString, RepositoryError>> {
        Box::pin(async move {
            let ctx = context(&self.table, &item.connection_id, &item.user_id, ATTR_ACCESS_TOKEN);
            Ok(self.envelope.open_str(&ctx, &item.access_token).await?)
        })
    }

    fn open_refresh_token<'a>(
        &'a self,
        item: &'a CredentialItem,
    ) -> BoxFuture<'a, Result<Option<secrecy::SecretString>, RepositoryError>> {
        Box::pin(async move {
            let Some(sealed) = &item.refresh_token else {
                return Ok(None);
            };
            let ctx = context(&self.table, &item.connection_id, &item.user_id, ATTR_REFRESH_TOKEN);
            Ok(Some(self.envelope.open_str(&ctx, sealed).await?))
        })
    }
}

/// Seals a credential's new tokens with data keys obtained beforehand: no KMS call, so nothing
/// between a provider's answer and the commit can fail on KMS.
pub trait TokenSealer: Send + Sync {
    fn seal(&self, tokens: PlainTokens) -> Result<NewTokens, RepositoryError>;
}

/// The sealers of one credential's two secret attributes.
struct EnvelopeSealer {
    access: crate::crypto::Sealer,
    refresh: crate::crypto::Sealer,
}

impl TokenSealer for EnvelopeSealer {
    fn seal(&self, tokens: PlainTokens) -> Result<NewTokens, RepositoryError> {
        use secrecy::ExposeSecret;
        let access_token = self.access.seal(tokens.access_token.expose_secret().as_bytes())?;
        let refresh_token = match &tokens.refresh_token {
            Some(rt) => Some(self.refresh.seal(rt.expose_secret().as_bytes())?),
            None => None,
        };
        Ok(NewTokens {
            access_token,
            refresh_token,
            access_expires_at: tokens.access_expires_at,
            access_issued_at: tokens.access_issued_at,
            token_type: tokens.token_type,
            scope: tokens.scope,
            metadata: tokens.metadata,
            keep_alive_due_at: tokens.keep_alive_due_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every attribute a credential item can have, as serde_dynamo writes it.
    fn attribute_names() -> std::collections::BTreeSet<String> {
        let full = StoredCredential {
            pk: "p".into(),
            sk: "s".into(),
            connection_id: "c".into(),
            user_id: "u".into(),
            refresh_token: Some(vec![1]),
            access_token: vec![2],
            access_expires_at: 3,
            access_issued_at: 4,
            token_type: "Bearer".into(),
            token_scope: Some("x".into()),
            token_version: 1,
            status: "ACTIVE".into(),
            reauth_reason: Some("r".into()),
            lease_owner: Some("o".into()),
            lease_expires_at_ms: Some(5),
            next_attempt_at_ms: Some(6),
            refresh_failures: Some(7),
            rotation_unconfirmed_at: Some(8),
            issued_token_url: Some("t".into()),
            issued_revocation_url: Some("v".into()),
            issued_client_id: Some("i".into()),
            connection_generation: Some("g".into()),
            provider_metadata: [("instance_url".to_string(), "https://x".to_string())].into(),
            keep_alive_shard: Some("KEEPALIVE#00".into()),
            keep_alive_due_at: Some(11),
            created_at: 9,
            updated_at: 10,
        };
        let item: super::super::Item = serde_dynamo::to_item(full).unwrap();
        item.into_keys().collect()
    }

    #[test]
    fn the_named_conditions_and_attribute_constants_name_only_attributes_of_the_item() {
        let names = attribute_names();
        let keywords = ["AND", "OR", "NOT", "attribute_not_exists", "attribute_exists"];
        for expression in [
            CLAIM_LEASE,
            COMMIT_REFRESH,
            RENEW_LEASE,
            RELEASE_LEASE,
            RECORD_FAILURE,
            MARK_REAUTH,
            CREATE,
            SAME_VERSION,
            REPLACE_AFTER_LOGIN,
        ] {
            let words = expression
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '#'))
                .filter(|w| !w.is_empty() && !w.starts_with(':') && !w.starts_with('#'))
                .filter(|w| !keywords.contains(w));
            for word in words {
                assert!(
                    names.contains(word),
                    "{word:?} in {expression:?} is no attribute of the item"
                );
            }
        }
        for constant in [
            ATTR_REFRESH_TOKEN,
            ATTR_ACCESS_TOKEN,
            ATTR_NEXT_ATTEMPT,
            ATTR_FAILURES,
            ATTR_UNCONFIRMED,
            ATTR_REVOCATION_URL,
        ] {
            assert!(names.contains(constant), "{constant:?} is no attribute of the item");
        }
    }

    /// A credential item as stored, refresh token and all, with `status`.
    fn stored(status: &str) -> StoredCredential {
        StoredCredential {
            pk: pk("con_a"),
            sk: sk("con_a|u"),
            connection_id: "con_a".into(),
            user_id: "con_a|u".into(),
            refresh_token: None,
            access_token: vec![0, 159, 255],
            access_expires_at: 100,
            access_issued_at: 40,
            token_type: "Bearer".into(),
            token_scope: None,
            token_version: 3,
            status: status.into(),
            reauth_reason: None,
            lease_owner: Some("me".into()),
            lease_expires_at_ms: Some(1_000),
            next_attempt_at_ms: None,
            refresh_failures: Some(2),
            rotation_unconfirmed_at: None,
            issued_token_url: Some("https://p.example/token".into()),
            issued_revocation_url: None,
            issued_client_id: Some("client".into()),
            connection_generation: Some("gen".into()),
            provider_metadata: Default::default(),
            keep_alive_shard: None,
            keep_alive_due_at: None,
            created_at: 1,
            updated_at: 2,
        }
    }

    #[test]
    fn an_item_reads_back_as_it_was_written_and_a_bad_status_is_refused() {
        let item: super::super::Item = serde_dynamo::to_item(stored("REAUTH_REQUIRED")).unwrap();
        assert!(
            matches!(item.get(ATTR_ACCESS_TOKEN), Some(AttributeValue::B(_))),
            "binary, not a list"
        );
        assert!(!item.contains_key(ATTR_REFRESH_TOKEN), "absent, not null");
        let read = from_item(item).unwrap();
        assert_eq!(read.access_token, vec![0, 159, 255]);
        assert_eq!(read.status, CredentialStatus::ReauthRequired);
        assert_eq!(
            read.lease,
            Some(RefreshLease {
                owner: "me".into(),
                expires_at_ms: 1_000
            })
        );
        assert_eq!(read.refresh_failures, 2);
        assert_eq!(
            read.issued_under.map(|i| i.connection_generation).as_deref(),
            Some("gen")
        );

        let bad: super::super::Item = serde_dynamo::to_item(stored("ACTIVE-ish")).unwrap();
        assert!(matches!(from_item(bad), Err(StoreError::Malformed(_))));
    }

    /// What a log line of a credential shows: whose it is, its state and its lease, and whether a
    /// refresh token is held, never the sealed bytes of either token.
    #[test]
    fn debug_shows_the_state_of_a_credential_but_no_ciphertext() {
        let mut with_refresh = stored("ACTIVE");
        with_refresh.refresh_token = Some(vec![201, 202, 203]);
        let item = from_item(serde_dynamo::to_item(with_refresh).unwrap()).unwrap();
        let shown = format!("{item:?}");
        for expected in [
            r#"user_id: "con_a|u""#,
            "has_refresh_token: true",
            "token_version: 3",
            "status: Active",
            r#"owner: "me""#,
            "refresh_failures: 2",
        ] {
            assert!(shown.contains(expected), "{expected} not in {shown}");
        }
        for sealed_byte in ["159", "255", "201", "202", "203"] {
            assert!(!shown.contains(sealed_byte), "{sealed_byte} in {shown}");
        }
    }
}
