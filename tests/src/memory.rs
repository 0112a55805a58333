//! In-memory stand-ins for the refresh protocol's capabilities: a credential repository with the same
//! conditional writes as the DynamoDB one (store/credentials.rs), a connection directory and an audit
//! sink that collects events. With the test clock they make lease races deterministic: a test decides
//! exactly which instance holds the lease when, without moto and without waiting.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use credvault::audit::{AuditEvent, AuditSink};
use credvault::oauth::Connection;
use credvault::oauth::connection::IssuedUnder;
use credvault::store::StoreError;
use credvault::store::connections::{ConnectionDirectory, ConnectionStoreError};
use credvault::store::credentials::{
    BoxFuture, CredentialItem, CredentialRepository, CredentialStatus, FailedAttempt, NewTokens, PlainTokens,
    RefreshLease, RepositoryError, TokenSealer,
};
use secrecy::{ExposeSecret, SecretString};

/// Credentials by (connection, user). "Sealing" is the identity: these tests are about the protocol.
#[derive(Default)]
pub struct MemoryCredentials {
    items: Mutex<HashMap<(String, String), CredentialItem>>,
    /// Every write that landed, in order, for assertions (`claim`, `commit`, ...).
    pub writes: Mutex<Vec<&'static str>>,
    /// Every write its condition refused, in order: a conditional write DynamoDB bills all the same.
    pub refused: Mutex<Vec<&'static str>>,
    /// Run once when the next lease claim lands: a test makes the claim "slow" by moving its clock.
    pub claim_takes: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    /// The same for the next renewal.
    pub renewal_takes: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    /// How many reads (`get`) were made: what waiting on another instance's lease costs.
    pub reads: std::sync::atomic::AtomicUsize,
    /// The next read waits this long before it answers: a slow GetItem, so that concurrent fetches
    /// of the same credential in this instance join it.
    pub read_takes: Mutex<Option<std::time::Duration>>,
    /// The next this many writes of a kind (`mark_reauth`, `commit`, ...) are throttled, as DynamoDB
    /// does under load: the SDK-level fault the emulator cannot make on demand.
    pub throttle_next: Mutex<HashMap<&'static str, u32>>,
    /// Another instance's change to the stored item, landing just before the next write of a kind
    /// (`mark_revoking`, ...) is checked: the race between a read and the write made on it.
    #[allow(clippy::type_complexity)]
    pub lands_first: Mutex<HashMap<&'static str, Box<dyn FnOnce(&mut CredentialItem) + Send>>>,
}

impl MemoryCredentials {
    pub fn item(&self, connection_id: &str, user_id: &str) -> Option<CredentialItem> {
        self.lock()
            .get(&(connection_id.to_string(), user_id.to_string()))
            .cloned()
    }

    /// Overwrites the stored item (a test sets up a state no write of the protocol makes).
    pub fn replace_item(&self, item: CredentialItem) {
        self.lock()
            .insert((item.connection_id.clone(), item.user_id.clone()), item);
    }

    /// The stored refresh token, in the clear.
    pub fn refresh_token(&self, connection_id: &str, user_id: &str) -> Option<String> {
        let item = self.item(connection_id, user_id)?;
        String::from_utf8(item.refresh_token?).ok()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), CredentialItem>> {
        self.items.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `change` when `condition` holds for the stored item; `Ok(false)` otherwise.
    fn conditional(
        &self,
        item: &CredentialItem,
        what: &'static str,
        condition: impl FnOnce(&CredentialItem) -> bool,
        change: impl FnOnce(&mut CredentialItem),
    ) -> Result<bool, StoreError> {
        if let Some(left) = self
            .throttle_next
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(what)
            .filter(|left| **left > 0)
        {
            *left -= 1;
            return Err(StoreError::Throttled);
        }
        let first = self.lands_first.lock().unwrap_or_else(|p| p.into_inner()).remove(what);
        let mut items = self.lock();
        let key = (item.connection_id.clone(), item.user_id.clone());
        if let (Some(other), Some(stored)) = (first, items.get_mut(&key)) {
            other(stored);
        }
        match items.get_mut(&key) {
            Some(stored) if condition(stored) => {
                change(stored);
                self.writes.lock().unwrap_or_else(|p| p.into_inner()).push(what);
                Ok(true)
            }
            _ => {
                self.refused.lock().unwrap_or_else(|p| p.into_inner()).push(what);
                Ok(false)
            }
        }
    }
}

fn apply_tokens(stored: &mut CredentialItem, tokens: NewTokens) {
    stored.access_token = tokens.access_token;
    if tokens.refresh_token.is_some() {
        stored.refresh_token = tokens.refresh_token;
    }
    stored.access_expires_at = tokens.access_expires_at;
    stored.access_issued_at = tokens.access_issued_at;
    stored.token_type = tokens.token_type;
    if tokens.scope.is_some() {
        stored.scope = tokens.scope;
    }
    if !tokens.metadata.is_empty() {
        stored.metadata = tokens.metadata;
    }
    // A saved answer ends any backoff and confirms whatever rotation was in doubt.
    stored.next_attempt_at_ms = None;
    stored.refresh_failures = 0;
    stored.rotation_unconfirmed_at = None;
    stored.keep_alive_due_at = tokens.keep_alive_due_at;
}

/// "Seals" by keeping the bytes: these tests are about the protocol, not the encryption.
struct IdentitySealer;

impl TokenSealer for IdentitySealer {
    fn seal(&self, tokens: PlainTokens) -> Result<NewTokens, RepositoryError> {
        Ok(NewTokens {
            access_token: tokens.access_token.expose_secret().as_bytes().to_vec(),
            refresh_token: tokens.refresh_token.map(|t| t.expose_secret().as_bytes().to_vec()),
            access_expires_at: tokens.access_expires_at,
            access_issued_at: tokens.access_issued_at,
            token_type: tokens.token_type,
            scope: tokens.scope,
            metadata: tokens.metadata,
            keep_alive_due_at: tokens.keep_alive_due_at,
        })
    }
}

fn ready<'a, T: Send + 'a>(value: T) -> BoxFuture<'a, T> {
    Box::pin(async move { value })
}

impl CredentialRepository for MemoryCredentials {
    fn get<'a>(
        &'a self,
        connection_id: &'a str,
        user_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<CredentialItem>, StoreError>> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let wait = self.read_takes.lock().unwrap_or_else(|p| p.into_inner()).take();
        Box::pin(async move {
            if let Some(wait) = wait {
                tokio::time::sleep(wait).await;
            }
            Ok(self.item(connection_id, user_id))
        })
    }

    fn claim_lease<'a>(
        &'a self,
        item: &'a CredentialItem,
        owner: &'a str,
        now_ms: i64,
        lease_ms: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        // The same condition as CLAIM_LEASE: the version read, usable, and no live lease. Taking over
        // an expired lease puts the rotation in doubt, as the DynamoDB claim does.
        let took_over = item.lease.is_some();
        let claimed = self.conditional(
            item,
            "claim",
            |s| {
                s.token_version == item.token_version
                    && s.status == CredentialStatus::Active
                    && s.lease.as_ref().is_none_or(|l| l.expires_at_ms < now_ms)
                    && s.next_attempt_at_ms.is_none_or(|next| next <= now_ms)
            },
            |s| {
                s.lease = Some(RefreshLease {
                    owner: owner.to_string(),
                    expires_at_ms: now_ms + lease_ms,
                });
                if took_over {
                    s.rotation_unconfirmed_at.get_or_insert(now_ms / 1000);
                }
            },
        );
        if let Some(advance) = self.claim_takes.lock().unwrap_or_else(|p| p.into_inner()).take() {
            advance();
        }
        ready(claimed)
    }

    fn commit_refresh<'a>(
        &'a self,
        item: &'a CredentialItem,
        owner: &'a str,
        tokens: NewTokens,
        _now_secs: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        // COMMIT_REFRESH: only the holder, only onto the version it refreshed from.
        ready(self.conditional(
            item,
            "commit",
            |s| s.lease.as_ref().is_some_and(|l| l.owner == owner) && s.token_version == item.token_version,
            |s| {
                apply_tokens(s, tokens);
                s.token_version += 1;
                s.lease = None;
            },
        ))
    }

    fn renew_lease<'a>(
        &'a self,
        item: &'a CredentialItem,
        owner: &'a str,
        now_ms: i64,
        lease_ms: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        // RENEW_LEASE: our own lease, on the version we claimed.
        if let Some(advance) = self.renewal_takes.lock().unwrap_or_else(|p| p.into_inner()).take() {
            advance();
        }
        ready(self.conditional(
            item,
            "renew",
            |s| s.lease.as_ref().is_some_and(|l| l.owner == owner) && s.token_version == item.token_version,
            |s| {
                s.lease = Some(RefreshLease {
                    owner: owner.to_string(),
                    expires_at_ms: now_ms + lease_ms,
                })
            },
        ))
    }

    fn release_lease<'a>(
        &'a self,
        item: &'a CredentialItem,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        ready(self.conditional(
            item,
            "release",
            |s| s.lease.as_ref().is_some_and(|l| l.owner == owner),
            |s| s.lease = None,
        ))
    }

    fn record_failed_attempt<'a>(
        &'a self,
        item: &'a CredentialItem,
        owner: &'a str,
        failed: FailedAttempt,
        now_secs: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        // RECORD_FAILURE: our own lease on the version we claimed.
        ready(self.conditional(
            item,
            "record_failure",
            |s| s.lease.as_ref().is_some_and(|l| l.owner == owner) && s.token_version == item.token_version,
            |s| {
                s.next_attempt_at_ms = Some(failed.next_attempt_at_ms);
                s.refresh_failures = item.refresh_failures.saturating_add(1);
                if failed.may_have_rotated {
                    s.rotation_unconfirmed_at.get_or_insert(now_secs);
                }
                s.lease = None;
            },
        ))
    }

    fn mark_reauth_required<'a>(
        &'a self,
        item: &'a CredentialItem,
        owner: &'a str,
        _reason: &'a str,
        _now_secs: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        ready(self.conditional(
            item,
            "mark_reauth",
            |s| s.lease.as_ref().is_some_and(|l| l.owner == owner) && s.token_version == item.token_version,
            |s| {
                s.status = CredentialStatus::ReauthRequired;
                s.lease = None;
                s.keep_alive_due_at = None;
            },
        ))
    }

    fn mark_revoking<'a>(
        &'a self,
        item: &'a CredentialItem,
        _now_secs: i64,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        ready(self.conditional(
            item,
            "mark_revoking",
            |s| s.token_version == item.token_version,
            |s| {
                s.status = CredentialStatus::Revoking;
                s.token_version += 1;
                s.lease = None;
                s.keep_alive_due_at = None;
            },
        ))
    }

    fn delete<'a>(&'a self, item: &'a CredentialItem) -> BoxFuture<'a, Result<bool, StoreError>> {
        let mut items = self.lock();
        let key = (item.connection_id.clone(), item.user_id.clone());
        let removed = items.get(&key).is_some_and(|s| s.token_version == item.token_version);
        if removed {
            items.remove(&key);
        }
        ready(Ok(removed))
    }

    fn save_after_login<'a>(
        &'a self,
        connection_id: &'a str,
        user_id: &'a str,
        previous: Option<&'a CredentialItem>,
        tokens: NewTokens,
        issued: &'a IssuedUnder,
        _now_secs: i64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let mut items = self.lock();
        let key = (connection_id.to_string(), user_id.to_string());
        let result = match (previous, items.get_mut(&key)) {
            (None, None) => {
                items.insert(
                    key,
                    CredentialItem {
                        connection_id: connection_id.to_string(),
                        user_id: user_id.to_string(),
                        refresh_token: tokens.refresh_token,
                        access_token: tokens.access_token,
                        access_expires_at: tokens.access_expires_at,
                        access_issued_at: tokens.access_issued_at,
                        token_type: tokens.token_type,
                        scope: tokens.scope,
                        token_version: 1,
                        lease: None,
                        status: CredentialStatus::Active,
                        issued_under: Some(issued.clone()),
                        next_attempt_at_ms: None,
                        refresh_failures: 0,
                        rotation_unconfirmed_at: None,
                        keep_alive_due_at: tokens.keep_alive_due_at,
                        metadata: tokens.metadata,
                    },
                );
                Ok(())
            }
            (Some(prev), Some(stored)) if stored.token_version == prev.token_version => {
                if tokens.refresh_token.is_none() && stored.issued_under.as_ref() != Some(issued) {
                    stored.refresh_token = None;
                }
                apply_tokens(stored, tokens);
                stored.token_version += 1;
                stored.status = CredentialStatus::Active;
                stored.lease = None;
                stored.issued_under = Some(issued.clone());
                Ok(())
            }
            _ => Err(StoreError::ConditionFailed(None)),
        };
        ready(result)
    }

    fn sealer<'a>(
        &'a self,
        _connection_id: &'a str,
        _user_id: &'a str,
    ) -> BoxFuture<'a, Result<Box<dyn TokenSealer>, RepositoryError>> {
        ready(Ok(Box::new(IdentitySealer) as Box<dyn TokenSealer>))
    }

    fn open_access_token<'a>(
        &'a self,
        item: &'a CredentialItem,
    ) -> BoxFuture<'a, Result<SecretString, RepositoryError>> {
        ready(Ok(SecretString::from(
            String::from_utf8_lossy(&item.access_token).into_owned(),
        )))
    }

    fn open_refresh_token<'a>(
        &'a self,
        item: &'a CredentialItem,
    ) -> BoxFuture<'a, Result<Option<SecretString>, RepositoryError>> {
        ready(Ok(item
            .refresh_token
            .as_ref()
            .map(|t| SecretString::from(String::from_utf8_lossy(t).into_owned()))))
    }
}

/// A fixed set of connections.
#[derive(Default)]
pub struct MemoryConnections {
    pub connections: Mutex<HashMap<String, Connection>>,
}

impl ConnectionDirectory for MemoryConnections {
    fn get<'a>(&'a self, connection_id: &'a str) -> BoxFuture<'a, Result<Option<Connection>, ConnectionStoreError>> {
        let found = self
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(connection_id)
            .cloned();
        ready(Ok(found))
    }
}

/// Audit events, collected.
#[derive(Default, Clone)]
pub struct CollectedAudit {
    pub events: Arc<Mutex<Vec<AuditEvent>>>,
}

impl CollectedAudit {
    pub fn actions(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|e| e.action.clone())
            .collect()
    }
}

impl AuditSink for CollectedAudit {
    fn record(&self, event: AuditEvent) -> BoxFuture<'_, ()> {
        self.events.lock().unwrap_or_else(|p| p.into_inner()).push(event);
        ready(())
    }
}
