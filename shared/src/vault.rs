//! The vault: a fresh provider access token for a stored credential, by the lease protocol of DESIGN §3.
//!
//! Many Lambda instances may ask at once. Exactly one claims the refresh lease (a conditional update on
//! the version it read) and calls the provider; the others poll until the version moves. New tokens are
//! committed only by the lease holder and only onto the version they were refreshed from, so a rotated
//! refresh token is never used twice, even if a lease runs out under a paused holder.

use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::SecretString;

use crate::audit::{AuditEvent, AuditSink};
use crate::clock::Clock;
use crate::config::RefreshTiming;
use crate::oauth::connection::{EndpointChange, IssuedUnder};
use crate::oauth::provider::{Delivery, ProviderClient, ProviderError};
use crate::single_flight::{SingleFlight, Turn};
use crate::store::StoreError;
use crate::store::connections::{ConnectionDirectory, ConnectionStoreError};
use crate::store::credentials::{
    CredentialItem, CredentialRepository, CredentialStatus, FailedAttempt, NewTokens, PlainTokens, RepositoryError,
    TokenSealer,
};

/// Told to callers when the provider is down and no valid token is left.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);
/// The per-credential backoff after transient provider failures: 1 s doubling to 5 minutes. Every
/// instance honours it (it is stored on the item), so a struggling provider sees one caller per
/// credential per backoff step, not every waiting request of every instance.
const FAILURE_BACKOFF_BASE: Duration = Duration::from_secs(1);
const FAILURE_BACKOFF_CAP: Duration = Duration::from_secs(300);
/// The longest the holder waits inside its lease when the provider asks to retry; a longer
/// `Retry-After` is recorded as the backoff instead.
const IN_LEASE_RETRY_CAP: Duration = Duration::from_secs(1);

/// Why the vault could not hand out a token. The HTTP edge (error.rs) gives each its answer.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("no credentials stored for this user and connection")]
    NotFound,
    #[error("the credential needs the user to log in again")]
    ReauthenticationRequired,
    /// The provider is down or backing off, and no unexpired token is stored.
    #[error("the provider is unavailable")]
    ProviderUnavailable { retry_after: Duration },
    #[error(transparent)]
    Repository(#[from] RepositoryError),
    #[error(transparent)]
    Connections(#[from] ConnectionStoreError),
    #[error("the credential kept changing during disconnect")]
    KeptChanging,
}

impl From<StoreError> for VaultError {
    fn from(err: StoreError) -> Self {
        VaultError::Repository(RepositoryError::Store(err))
    }
}

/// Instances that lost the lease poll from 20 ms, doubling to 100 ms (each wait jittered down to half):
/// a refresh takes at least one provider round trip, so polling faster buys nothing, and a waiter
/// sees the commit at most ~100 ms late. A longer cap left herds waiting up to half a second past a
/// 200 ms refresh. Only one fetch per instance and credential polls (the others wait on it,
/// single_flight.rs), so a long provider call costs each instance about ten reads a second.
const POLL_BASE: Duration = Duration::from_millis(20);
const POLL_CAP: Duration = Duration::from_millis(100);

/// An access token ready to hand out. Never carries the refresh token.
#[derive(Clone)]
pub struct FreshAccessToken {
    pub access_token: SecretString,
    /// Epoch seconds.
    pub expires_at: i64,
    /// Epoch seconds when the provider issued it: with `expires_at`, its lifetime.
    pub issued_at: i64,
    pub token_type: String,
    pub scope: Option<String>,
    /// The connection's allow-listed provider fields (`instance_url`), as last stored.
    pub metadata: crate::oauth::answer::ProviderMetadata,
    /// Whether this request made the provider call.
    pub refreshed: bool,
}

impl std::fmt::Debug for FreshAccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FreshAccessToken")
            .field("expires_at", &self.expires_at)
            .field("refreshed", &self.refreshed)
            .finish_non_exhaustive()
    }
}

/// The refresh protocol, over what it needs and nothing more: the credentials (which seal their own
/// secrets), the connections, the provider, time, its timing and the audit trail. Built once per
/// instance (instance.rs); tests build it over an in-memory repository and a test clock.
pub struct RefreshProtocol {
    pub credentials: Arc<dyn CredentialRepository>,
    pub connections: Arc<dyn ConnectionDirectory>,
    pub provider: Arc<ProviderClient>,
    pub clock: Arc<dyn Clock>,
    pub timing: RefreshTiming,
    pub audit: Arc<dyn AuditSink>,
    /// Concurrent fetches of one credential in this process: one reads and refreshes, the rest wait
    /// for its token (single_flight.rs).
    pub fetches: SingleFlight<(String, String), FreshAccessToken>,
}

/// Why a refresh is made: a fetch found the token too short-lived, or maintenance keeps an idle
/// credential's refresh token alive (audited with reason `keep_alive`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Fetch,
    KeepAlive,
}

/// What a keep-alive refresh of one credential came to (maintenance.rs counts them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeptAlive {
    /// Refreshed through the lease protocol; the next due date moved forward.
    Refreshed,
    /// Not due any more (a fetch refreshed it since the index was read), or no longer kept alive.
    NotDue,
    /// Not refreshed now: another instance holds its lease (that refresh moves the due date), or the
    /// provider is backing off. A later run finds it due again.
    Busy,
    /// Not ACTIVE (re-authentication required, being disconnected), gone, or without a refresh token:
    /// never refreshed.
    NotKept,
    /// The provider refused the refresh token: now REAUTH_REQUIRED, out of the index.
    Dead,
    /// The provider is unavailable; the failure and its backoff are recorded on the item.
    Failed,
}

/// What the lease holder's attempt came to.
enum HolderOutcome {
    Done(Result<FreshAccessToken, VaultError>),
    /// The version moved under us (a lost race): read again.
    ReadAgain,
}

impl RefreshProtocol {
    /// An access token for (connection, user) valid for at least `min_validity`, refreshing it if needed.
    /// Concurrent calls for one credential in this process share one read and one refresh: followers
    /// take the leader's token when it is valid long enough for them, and otherwise (it failed, or is
    /// too short for what they ask) run the protocol themselves.
    pub async fn fresh_access_token(
        &self,
        connection_id: &str,
        user_id: &str,
        min_validity: Duration,
    ) -> Result<FreshAccessToken, VaultError> {
        let key = (connection_id.to_string(), user_id.to_string());
        match self.fetches.join_or_lead(key).await {
            Turn::Lead(leader) => {
                let result = self.read_or_refresh(connection_id, user_id, min_validity).await;
                leader.finish(result.as_ref().ok().cloned());
                result
            }
            Turn::Joined(Some(token))
                if is_fresh_enough(token.issued_at, token.expires_at, self.clock.now_secs(), min_validity) =>
            {
                Ok(FreshAccessToken {
                    refreshed: false,
                    ..token
                })
            }
            Turn::Joined(_) => self.read_or_refresh(connection_id, user_id, min_validity).await,
        }
    }

    /// Keep-alive (maintenance.rs): refreshes the credential through the same lease protocol as a
    /// fetch, when it is still due. It never waits for another instance, never refreshes a credential
    /// that is not ACTIVE, and never calls a provider that is backing off.
    pub async fn keep_alive(&self, connection_id: &str, user_id: &str) -> Result<KeptAlive, VaultError> {
        let Some(item) = self.credentials.get(connection_id, user_id).await? else {
            return Ok(KeptAlive::NotKept);
        };
        if item.status != CredentialStatus::Active || item.refresh_token.is_none() {
            return Ok(KeptAlive::NotKept);
        }
        let now_ms = self.clock.now_millis();
        if item.keep_alive_due_at.is_none_or(|due| due > self.clock.now_secs()) {
            return Ok(KeptAlive::NotDue);
        }
        let leased = item.lease.as_ref().is_some_and(|lease| lease.expires_at_ms >= now_ms);
        let backing_off = item.next_attempt_at_ms.is_some_and(|next| next > now_ms);
        if leased || backing_off {
            return Ok(KeptAlive::Busy);
        }
        let owner = crate::random::token(16);
        let lease_until = self.clock.instant() + self.timing.lease_length;
        let lease_ms = self.timing.lease_length.as_millis() as i64;
        if !self.credentials.claim_lease(&item, &owner, now_ms, lease_ms).await? {
            return Ok(KeptAlive::Busy);
        }
        Ok(
            match self
                .refresh_as_holder(&item, &owner, lease_until, Trigger::KeepAlive)
                .await
            {
                HolderOutcome::Done(Ok(_)) => KeptAlive::Refreshed,
                HolderOutcome::Done(Err(VaultError::ReauthenticationRequired)) => KeptAlive::Dead,
                HolderOutcome::Done(Err(VaultError::ProviderUnavailable { .. })) => KeptAlive::Failed,
                HolderOutcome::Done(Err(other)) => return Err(other),
                // The version moved under the lease (a login replaced the tokens): not ours to refresh.
                HolderOutcome::ReadAgain => KeptAlive::Busy,
            },
        )
    }

    /// The lease protocol itself, for one caller.
    async fn read_or_refresh(
        &self,
        connection_id: &str,
        user_id: &str,
        min_validity: Duration,
    ) -> Result<FreshAccessToken, VaultError> {
        let timing = &self.timing;
        let deadline = self.clock.instant() + timing.poll_deadline;
        let mut first_version = None;
        let mut polls = 0u32;
        loop {
            let item = self
                .credentials
                .get(connection_id, user_id)
                .await?
                .ok_or(VaultError::NotFound)?;
            match item.status {
                CredentialStatus::Active => {}
                CredentialStatus::ReauthRequired => return Err(VaultError::ReauthenticationRequired),
                CredentialStatus::Revoking => return Err(VaultError::NotFound),
            }
            let now = self.clock.now_secs();
            if is_fresh_enough(item.access_issued_at, item.access_expires_at, now, min_validity) {
                return self.open_access_token(&item, false).await;
            }
            // Someone refreshed while we waited: theirs is as fresh as the provider makes them; take it
            // rather than refreshing again, as long as it has not actually expired.
            let first = *first_version.get_or_insert(item.token_version);
            if item.token_version > first && item.access_expires_at > now {
                return self.open_access_token(&item, false).await;
            }
            if item.refresh_token.is_none() {
                return if item.access_expires_at > now {
                    self.open_access_token(&item, false).await
                } else {
                    Err(VaultError::ReauthenticationRequired)
                };
            }
            let now_ms = self.clock.now_millis();
            // Backing off after provider failures: nobody calls the provider before the stored time.
            if let Some(next) = item.next_attempt_at_ms.filter(|next| *next > now_ms) {
                let wait = Duration::from_millis((next - now_ms).unsigned_abs());
                return self.serve_unexpired_or_unavailable(&item, wait).await;
            }
            let lease_free = item.lease.as_ref().is_none_or(|lease| lease.expires_at_ms < now_ms);
            if lease_free {
                let owner = crate::random::token(16);
                let lease_ms = timing.lease_length.as_millis() as i64;
                let lease_until = self.clock.instant() + timing.lease_length;
                if self.credentials.claim_lease(&item, &owner, now_ms, lease_ms).await? {
                    match self.refresh_as_holder(&item, &owner, lease_until, Trigger::Fetch).await {
                        HolderOutcome::Done(result) => return result,
                        HolderOutcome::ReadAgain => continue,
                    }
                }
            }
            if self.clock.instant() >= deadline {
                tracing::warn!(connection_id = %connection_id, "gave up waiting for another instance's refresh");
                return self.serve_unexpired_or_unavailable(&item, DEFAULT_RETRY_AFTER).await;
            }
            tokio::time::sleep(poll_backoff(polls)).await;
            polls += 1;
        }
    }

    /// We hold the lease on `item.token_version`: refresh with the provider and commit, or give the lease back.
    async fn refresh_as_holder(
        &self,
        item: &CredentialItem,
        owner: &str,
        lease_until: Instant,
        trigger: Trigger,
    ) -> HolderOutcome {
        let result = self.call_provider_and_commit(item, owner, lease_until, trigger).await;
        match result {
            Ok(Some(fresh)) => HolderOutcome::Done(Ok(fresh)),
            Ok(None) => HolderOutcome::ReadAgain,
            Err(RefreshFailure::Permanent { error: e, resent }) => {
                // A lost race looks like invalid_grant (another instance rotated the token): then the
                // mark, conditional on our lease and version, does not hold, and we read again.
                let reason = dead_grant_reason(item, resent);
                tracing::warn!(connection_id = %item.connection_id, user_id = %item.user_id, error = %e, reason, "provider refused the refresh token; credential needs re-authentication");
                self.declare_dead(item, owner, reason, lease_until).await
            }
            Err(RefreshFailure::EndpointChanged(change)) => {
                // Nothing was sent: the refresh token stays away from endpoints it was not issued under.
                tracing::warn!(connection_id = %item.connection_id, user_id = %item.user_id, reason = change.reason(), "the connection no longer matches what the credential was issued under; credential needs re-authentication");
                self.declare_dead(item, owner, change.reason(), lease_until).await
            }
            Err(RefreshFailure::Transient { error, delivery }) => {
                let may_have_rotated = delivery == Delivery::Unknown;
                let wait = self.failure_backoff(item, &error, delivery);
                tracing::warn!(connection_id = %item.connection_id, user_id = %item.user_id, error = %error, may_have_rotated, backoff_ms = wait.as_millis() as u64, "provider unavailable for refresh; backing off");
                let failed = FailedAttempt {
                    next_attempt_at_ms: self.clock.now_millis() + wait.as_millis() as i64,
                    may_have_rotated,
                };
                match self
                    .credentials
                    .record_failed_attempt(item, owner, failed, self.clock.now_secs())
                    .await
                {
                    Ok(_) => {}
                    // The lease then runs out on its own, and whoever takes it over treats the
                    // rotation as unconfirmed.
                    Err(e) => {
                        tracing::warn!(connection_id = %item.connection_id, error = %e, "could not record the failed refresh")
                    }
                }
                HolderOutcome::Done(self.serve_unexpired_or_unavailable(item, wait).await)
            }
            Err(RefreshFailure::Internal(e)) => {
                self.release(item, owner).await;
                HolderOutcome::Done(Err(e))
            }
            // Kept, not released: a lease that runs out is taken over with the rotation in doubt, so
            // the provider's refusal of the stored refresh token is `rotation_lost`, not a revocation.
            Err(RefreshFailure::Uncommitted(e)) => HolderOutcome::Done(Err(e)),
            Err(RefreshFailure::NoLeaseBudget) => {
                self.release(item, owner).await;
                HolderOutcome::Done(self.serve_unexpired_or_unavailable(item, DEFAULT_RETRY_AFTER).await)
            }
        }
    }

    /// The wait before anyone calls the provider for this credential again: the provider's
    /// `Retry-After` when it names a longer one, else the credential's exponential backoff. After a
    /// request whose outcome is unknown (a timeout, a reset, a 502) the provider may still be working
    /// on it: the next refresh, which sends the same refresh token, waits at least
    /// `unknown_outcome_wait`, so it is not sent while the first may still be in flight.
    fn failure_backoff(&self, item: &CredentialItem, error: &ProviderError, delivery: Delivery) -> Duration {
        let mut backoff =
            crate::random::jittered_backoff(FAILURE_BACKOFF_BASE, FAILURE_BACKOFF_CAP, item.refresh_failures);
        if delivery == Delivery::Unknown {
            backoff = backoff.max(self.timing.unknown_outcome_wait);
        }
        match error {
            ProviderError::Transient {
                retry_after: Some(asked),
                ..
            } => backoff.max((*asked).min(FAILURE_BACKOFF_CAP)),
            _ => backoff,
        }
    }

    /// Marks the credential REAUTH_REQUIRED (we hold the lease on its version) and audits why. The
    /// mark is retried while the lease lasts: a credential left ACTIVE would have its dead refresh
    /// token sent again by whoever takes the lease over.
    async fn declare_dead(
        &self,
        item: &CredentialItem,
        owner: &str,
        reason: &str,
        lease_until: Instant,
    ) -> HolderOutcome {
        let now = self.clock.now_secs();
        let marked = self
            .while_leased(
                item,
                lease_until,
                "marking the credential for re-authentication",
                || self.credentials.mark_reauth_required(item, owner, reason, now),
            )
            .await;
        match marked {
            Ok(true) => {
                let resource = crate::access::credentials_resource(&item.connection_id, &item.user_id);
                let event = AuditEvent::new("credential.reauth_required", None, &resource, Ok(())).reason(reason);
                self.audit.record(event).await;
                HolderOutcome::Done(Err(VaultError::ReauthenticationRequired))
            }
            Ok(false) => HolderOutcome::ReadAgain,
            Err(err) => HolderOutcome::Done(Err(err.into())),
        }
    }
}

/// Why the provider refused a refresh token: `rotation_lost` when a refresh may have rotated it
/// without its answer being saved (a lost answer, a holder that died with the lease: we took an
/// expired lease over, or this very refresh sent it before and was told to retry), else
/// `invalid_grant` (revoked by the user or the provider).
fn dead_grant_reason(item: &CredentialItem, resent: bool) -> &'static str {
    if resent || item.rotation_unconfirmed_at.is_some() || item.lease.is_some() {
        "rotation_lost"
    } else {
        "invalid_grant"
    }
}

enum RefreshFailure {
    /// Even a renewed lease would not cover a provider call and the commit: nothing was sent.
    NoLeaseBudget,
    /// The provider refused the refresh token; `resent`: an earlier attempt of this refresh reached
    /// the provider (which said to retry), so a provider that rotated anyway sees its own token back.
    Permanent { error: ProviderError, resent: bool },
    /// The connection no longer matches what the credential was issued under.
    EndpointChanged(EndpointChange),
    /// The provider did not give new tokens; `delivery` says whether it may have rotated anyway.
    Transient { error: ProviderError, delivery: Delivery },
    /// Nothing was sent (a read, a decrypt or the data keys failed): the lease is given back.
    Internal(VaultError),
    /// The provider answered, and its answer could not be stored before the lease ran out.
    Uncommitted(VaultError),
}

/// Is the stored access token valid long enough? A caller may ask for more validity than the provider
/// grants at all; that request is capped at half the token's lifetime, or every fetch would refresh.
fn is_fresh_enough(issued_at: i64, expires_at: i64, now: i64, min_validity: Duration) -> bool {
    let remaining = expires_at - now;
    let half_lifetime = (expires_at - issued_at) / 2;
    let wanted = (min_validity.as_secs() as i64).min(half_lifetime);
    remaining > 0 && remaining >= wanted
}

impl RefreshProtocol {
    /// `Ok(None)`: we lost the lease before committing; the caller reads again.
    async fn call_provider_and_commit(
        &self,
        item: &CredentialItem,
        owner: &str,
        lease_until: Instant,
        trigger: Trigger,
    ) -> Result<Option<FreshAccessToken>, RefreshFailure> {
        let internal = |e: VaultError| RefreshFailure::Internal(e);
        let connection = self
            .connections
            .get(&item.connection_id)
            .await
            .map_err(|e| internal(e.into()))?
            .ok_or(RefreshFailure::EndpointChanged(EndpointChange::ConnectionDeleted))?;
        IssuedUnder::token_endpoint_fits(item.issued_under.as_ref(), &connection)
            .map_err(RefreshFailure::EndpointChanged)?;
        let refresh_token = self
            .credentials
            .open_refresh_token(item)
            .await
            .map_err(|e| internal(e.into()))?
            .ok_or_else(|| internal(VaultError::ReauthenticationRequired))?;
        // Keys first: the data keys that seal the answer, before the provider is asked. After it
        // answers there is nothing left that can fail on KMS.
        let sealer = self
            .credentials
            .sealer(&item.connection_id, &item.user_id)
            .await
            .map_err(|e| internal(e.into()))?;
        let (tokens, lease_until) = match self
            .send_refresh(item, owner, lease_until, &connection, &refresh_token)
            .await?
        {
            Some(answer) => answer,
            None => return Ok(None),
        };

        // From here the provider may have rotated the refresh token: nothing but sealing (no KMS) and
        // the commit before the lease runs out. If they fail, the answer is lost, and the lease is
        // left to run out rather than released, so whoever takes it over knows the rotation is in doubt.
        let uncommitted = |e: VaultError| RefreshFailure::Uncommitted(e);
        let now = self.clock.now_secs();
        let expires_at = now + tokens.lifetime_secs();
        let scope = tokens.scope.clone().or_else(|| item.scope.clone());
        let new_tokens = seal_answer(
            sealer.as_ref(),
            &tokens,
            now,
            expires_at,
            scope.clone(),
            connection.keep_alive_due(now),
        )
        .map_err(uncommitted)?;
        let committed = self
            .commit_while_leased(item, owner, new_tokens, now, lease_until)
            .await
            .map_err(|e| uncommitted(e.into()))?;
        if !committed {
            tracing::error!(connection_id = %item.connection_id, user_id = %item.user_id, "refresh lease was taken over before commit; discarding refreshed tokens");
            return Ok(None);
        }
        tracing::info!(connection_id = %item.connection_id, user_id = %item.user_id, version = item.token_version + 1, rotated = tokens.refresh_token.is_some(), "credential refreshed");
        let resource = crate::access::credentials_resource(&item.connection_id, &item.user_id);
        let mut event = AuditEvent::new("credential.refresh", None, &resource, Ok(()));
        if trigger == Trigger::KeepAlive {
            event = event.reason("keep_alive");
        }
        self.audit.record(event).await;
        Ok(Some(FreshAccessToken {
            access_token: tokens.access_token,
            expires_at,
            issued_at: now,
            token_type: tokens.token_type,
            scope,
            // What was just stored: the answer's fields, or the stored ones when it sent none.
            metadata: if tokens.metadata.is_empty() {
                item.metadata.clone()
            } else {
                tokens.metadata
            },
            refreshed: true,
        }))
    }

    /// Sends the refresh request, again only when the provider provably did not act on it: the
    /// connection could not be made, or it answered to retry (429, 503 with `Retry-After`) within a
    /// wait the lease covers. Before every attempt the lease must cover it and the commit.
    /// `Ok(None)`: the lease is no longer ours.
    async fn send_refresh(
        &self,
        item: &CredentialItem,
        owner: &str,
        mut lease_until: Instant,
        connection: &crate::oauth::Connection,
        refresh_token: &SecretString,
    ) -> Result<Option<(crate::oauth::provider::TokenResponse, Instant)>, RefreshFailure> {
        let mut attempt = 0u32;
        // Whether an earlier attempt reached the provider (it answered "retry later").
        let mut reached_provider = false;
        loop {
            attempt += 1;
            lease_until = match self.ensure_lease_budget(item, owner, lease_until).await? {
                Some(until) => until,
                None => return Ok(None),
            };
            let error = match self.provider.refresh(connection, refresh_token).await {
                Ok(tokens) => return Ok(Some((tokens, lease_until))),
                Err(error) => error,
            };
            let Some(delivery) = error.delivery() else {
                return Err(RefreshFailure::Permanent {
                    error,
                    resent: reached_provider,
                });
            };
            match retry_pause(&error, delivery, attempt) {
                Some(pause) if attempt < self.timing.provider_attempts => {
                    reached_provider |= delivery == Delivery::RetryLater;
                    tracing::warn!(connection_id = %item.connection_id, attempt, error = %error, "provider refresh not done, trying again");
                    tokio::time::sleep(pause).await;
                }
                _ => return Err(RefreshFailure::Transient { error, delivery }),
            }
        }
    }

    /// Enough lease for the worst provider call and the commit after it: `Some(lease end)`, renewing
    /// once if needed; `None` when the lease is no longer ours (read again); an error when even a
    /// renewed lease would not cover it (nothing is sent: the answer is 503 or the unexpired token).
    async fn ensure_lease_budget(
        &self,
        item: &CredentialItem,
        owner: &str,
        lease_until: Instant,
    ) -> Result<Option<Instant>, RefreshFailure> {
        let needed = self.timing.provider_call_budget();
        if lease_until.saturating_duration_since(self.clock.instant()) >= needed {
            return Ok(Some(lease_until));
        }
        // The new end is counted from before the renewal is sent, so a slow renewal only shortens it.
        let renewed_until = self.clock.instant() + self.timing.lease_length;
        let renewed = self
            .credentials
            .renew_lease(
                item,
                owner,
                self.clock.now_millis(),
                self.timing.lease_length.as_millis() as i64,
            )
            .await
            .map_err(|e| RefreshFailure::Internal(e.into()))?;
        if !renewed {
            return Ok(None);
        }
        if renewed_until.saturating_duration_since(self.clock.instant()) >= needed {
            return Ok(Some(renewed_until));
        }
        tracing::warn!(connection_id = %item.connection_id, "not enough refresh lease left to call the provider safely; giving up this refresh");
        Err(RefreshFailure::NoLeaseBudget)
    }

    /// The commit is the one write that must not be lost: the provider may have rotated the refresh token,
    /// and the new one exists only in this process. Throttling and transient DynamoDB errors are retried
    /// while the lease is ours; the write is conditional on owner and version, so a retry of a write that
    /// did land just reports a failed condition, and the caller re-reads.
    async fn commit_while_leased(
        &self,
        item: &CredentialItem,
        owner: &str,
        tokens: NewTokens,
        now: i64,
        lease_until: Instant,
    ) -> Result<bool, StoreError> {
        self.while_leased(item, lease_until, "saving refreshed tokens", || {
            self.credentials.commit_refresh(item, owner, tokens.clone(), now)
        })
        .await
    }

    /// A write of the lease holder after the provider answered, retried on throttling and outages
    /// while the lease still covers a retry: it is all that stands between the provider's answer and
    /// what the next holder would do without it.
    async fn while_leased<T, F, Fut>(
        &self,
        item: &CredentialItem,
        lease_until: Instant,
        what: &str,
        write: F,
    ) -> Result<T, StoreError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let mut attempt = 0u32;
        loop {
            match write().await {
                // Only the transient kinds: a malformed item or a bug does not get better by trying again.
                Err(e @ (StoreError::Throttled | StoreError::Unavailable { .. })) => {
                    let pause = poll_backoff(attempt);
                    if self.clock.instant() + pause >= lease_until {
                        tracing::error!(connection_id = %item.connection_id, user_id = %item.user_id, error = %e, what, "gave up before the lease ran out");
                        return Err(e);
                    }
                    tracing::warn!(connection_id = %item.connection_id, error = %e, attempt, what, "failed, retrying");
                    tokio::time::sleep(pause).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn release(&self, item: &CredentialItem, owner: &str) {
        // Failing to release only delays the next refresh until the lease runs out.
        if let Err(e) = self.credentials.release_lease(item, owner).await {
            tracing::warn!(connection_id = %item.connection_id, error = %e, "could not release refresh lease");
        }
    }

    /// The stored token if it has not actually expired (below the requested validity, but usable), else 503.
    async fn serve_unexpired_or_unavailable(
        &self,
        item: &CredentialItem,
        retry_after: Duration,
    ) -> Result<FreshAccessToken, VaultError> {
        if item.access_expires_at > self.clock.now_secs() {
            self.open_access_token(item, false).await
        } else {
            Err(VaultError::ProviderUnavailable { retry_after })
        }
    }

    async fn open_access_token(&self, item: &CredentialItem, refreshed: bool) -> Result<FreshAccessToken, VaultError> {
        let access_token = self.credentials.open_access_token(item).await?;
        Ok(FreshAccessToken {
            access_token,
            expires_at: item.access_expires_at,
            issued_at: item.access_issued_at,
            token_type: item.token_type.clone(),
            scope: item.scope.clone(),
            metadata: item.metadata.clone(),
            refreshed,
        })
    }
}

/// The provider's answer, sealed with the keys obtained before it was asked.
fn seal_answer(
    sealer: &dyn TokenSealer,
    tokens: &crate::oauth::provider::TokenResponse,
    now: i64,
    expires_at: i64,
    scope: Option<String>,
    keep_alive_due_at: Option<i64>,
) -> Result<NewTokens, VaultError> {
    Ok(sealer.seal(PlainTokens {
        access_token: tokens.access_token.clone(),
        refresh_token: tokens.refresh_token.clone(),
        access_expires_at: expires_at,
        access_issued_at: now,
        token_type: tokens.token_type.clone(),
        scope,
        metadata: tokens.metadata.clone(),
        keep_alive_due_at,
    })?)
}

/// What a disconnect did at the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// The refresh token was revoked at the endpoint it was issued under.
    Revoked,
    /// There was nothing to revoke, or the provider has no revocation endpoint.
    NotNeeded,
    /// Not sent: the connection no longer matches what the credential was issued under.
    Skipped(EndpointChange),
}

/// Disconnect (`DELETE .../credentials`): the credential is made unusable first, its refresh token is
/// revoked at the provider (RFC 7009) when the connection has a revocation URL, then the item is
/// deleted. If the provider cannot be reached the credential stays unusable and the caller is told to
/// retry (503 with Retry-After); the retry finishes the revocation. A credential whose connection
/// changed is deleted without revoking: its refresh token goes nowhere it was not issued for.
impl RefreshProtocol {
    pub async fn disconnect(&self, connection_id: &str, user_id: &str) -> Result<Revocation, VaultError> {
        for _ in 0..3 {
            let item = self
                .credentials
                .get(connection_id, user_id)
                .await?
                .ok_or(VaultError::NotFound)?;
            let item = if item.status == CredentialStatus::Revoking {
                item
            } else {
                if !self.credentials.mark_revoking(&item, self.clock.now_secs()).await? {
                    continue;
                }
                CredentialItem {
                    status: CredentialStatus::Revoking,
                    token_version: item.token_version + 1,
                    lease: None,
                    ..item
                }
            };
            let revocation = self.revoke_refresh_token(&item).await?;
            if self.credentials.delete(&item).await? {
                tracing::info!(connection_id = %connection_id, user_id = %user_id, revocation = ?revocation, "credential disconnected");
                return Ok(revocation);
            }
        }
        Err(VaultError::KeptChanging)
    }

    async fn revoke_refresh_token(&self, item: &CredentialItem) -> Result<Revocation, VaultError> {
        if item.refresh_token.is_none() {
            return Ok(Revocation::NotNeeded);
        }
        let Some(connection) = self.connections.get(&item.connection_id).await? else {
            return Ok(Revocation::Skipped(EndpointChange::ConnectionDeleted));
        };
        let revocation_url = match IssuedUnder::revocation_endpoint(item.issued_under.as_ref(), &connection) {
            Ok(Some(url)) => url.to_string(),
            Ok(None) => return Ok(Revocation::NotNeeded),
            Err(change) => {
                tracing::warn!(connection_id = %item.connection_id, reason = change.reason(), "not revoking: the connection no longer matches what the credential was issued under");
                return Ok(Revocation::Skipped(change));
            }
        };
        let Some(refresh_token) = self.credentials.open_refresh_token(item).await? else {
            return Ok(Revocation::NotNeeded);
        };
        self.provider.revoke(&connection, &revocation_url, &refresh_token).await.map_err(|e| {
        tracing::warn!(connection_id = %item.connection_id, error = %e, "revocation at the provider failed; credential stays unusable");
        VaultError::ProviderUnavailable { retry_after: DEFAULT_RETRY_AFTER }
    })?;
        Ok(Revocation::Revoked)
    }
}

/// How long to wait before sending a refresh again after `attempt` failed, or `None` when it must not
/// be sent again: only a request that provably never reached the provider (the connection could not
/// be made), or one it asked to repeat within a wait the lease can cover. Anything else may have
/// rotated the refresh token at the provider.
fn retry_pause(error: &ProviderError, delivery: Delivery, attempt: u32) -> Option<Duration> {
    match (error, delivery) {
        (_, Delivery::NotSent) => Some(crate::oauth::provider::backoff(attempt)),
        (ProviderError::Transient { retry_after, .. }, Delivery::RetryLater) => {
            Some(retry_after.unwrap_or_else(|| crate::oauth::provider::backoff(attempt)))
                .filter(|wait| *wait <= IN_LEASE_RETRY_CAP)
        }
        _ => None,
    }
}

fn poll_backoff(polls: u32) -> Duration {
    crate::random::jittered_backoff(POLL_BASE, POLL_CAP, polls)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sent again only when the provider cannot have acted on it (a `Permanent` failure has no
    /// delivery and never gets here).
    #[test]
    fn a_refresh_is_sent_again_only_when_the_provider_cannot_have_acted() {
        let failed = |delivery, retry_after| ProviderError::Transient {
            reason: "failed".into(),
            retry_after,
            delivery,
        };
        for attempt in 1..=3 {
            let pause = retry_pause(&failed(Delivery::NotSent, None), Delivery::NotSent, attempt)
                .expect("a connection that could not be made is tried again");
            assert!(pause > Duration::ZERO && pause <= Duration::from_secs(1), "{pause:?}");
        }
        let asked = |wait| failed(Delivery::RetryLater, Some(wait));
        assert_eq!(
            retry_pause(&asked(IN_LEASE_RETRY_CAP), Delivery::RetryLater, 1),
            Some(IN_LEASE_RETRY_CAP),
            "the provider's own wait, within the lease"
        );
        let longer = IN_LEASE_RETRY_CAP + Duration::from_millis(1);
        assert_eq!(
            retry_pause(&asked(longer), Delivery::RetryLater, 1),
            None,
            "a longer wait is the credential's backoff, after the lease"
        );
        let unsaid = retry_pause(&failed(Delivery::RetryLater, None), Delivery::RetryLater, 1)
            .expect("a 429 without Retry-After waits the backoff");
        assert!(unsaid > Duration::ZERO && unsaid <= IN_LEASE_RETRY_CAP, "{unsaid:?}");
        for delivery in [Delivery::Unknown, Delivery::Refused] {
            assert_eq!(
                retry_pause(&failed(delivery, None), delivery, 1),
                None,
                "{delivery:?}: it may have rotated the token, or it refused"
            );
        }
    }

    #[test]
    fn a_fresh_token_shows_when_it_expires_but_never_the_token() {
        let token = FreshAccessToken {
            access_token: SecretString::from("planted-access-token"),
            expires_at: 1_800_000_000,
            issued_at: 1_799_996_400,
            token_type: "Bearer".into(),
            scope: Some("repo".into()),
            metadata: Default::default(),
            refreshed: true,
        };
        let shown = format!("{token:?}");
        assert!(!shown.contains("planted"), "{shown}");
        assert!(
            shown.contains("1800000000") && shown.contains("refreshed: true"),
            "{shown}"
        );
    }

    fn item(issued_at: i64, expires_at: i64) -> CredentialItem {
        CredentialItem {
            connection_id: "c".into(),
            user_id: "u".into(),
            refresh_token: None,
            access_token: Vec::new(),
            access_expires_at: expires_at,
            access_issued_at: issued_at,
            token_type: "Bearer".into(),
            scope: None,
            token_version: 1,
            lease: None,
            status: CredentialStatus::Active,
            issued_under: None,
            next_attempt_at_ms: None,
            refresh_failures: 0,
            rotation_unconfirmed_at: None,
            metadata: Default::default(),
            keep_alive_due_at: None,
        }
    }

    fn fresh(item: &CredentialItem, now: i64, min_validity: Duration) -> bool {
        is_fresh_enough(item.access_issued_at, item.access_expires_at, now, min_validity)
    }

    #[test]
    fn minimum_validity_is_honoured_up_to_half_the_token_lifetime() {
        let secs = Duration::from_secs;
        // A one-hour token issued at 0.
        let token = item(0, 3600);
        assert!(fresh(&token, 0, secs(300)));
        assert!(fresh(&token, 3300, secs(300)));
        assert!(!fresh(&token, 3301, secs(300)));
        // Asking for two hours of a one-hour token is asking for all it can give: half its lifetime.
        assert!(fresh(&token, 0, secs(7200)));
        assert!(!fresh(&token, 1801, secs(7200)));
        // An expired token is never fresh, whatever was asked.
        assert!(!fresh(&token, 3600, secs(0)));
        assert!(!fresh(&item(100, 100), 100, secs(0)));
    }
}
