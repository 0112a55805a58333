//! Keep-alive: refreshes credentials nobody fetched for their connection's `keepAliveDays`, so
//! providers that expire idle refresh tokens (Microsoft after 90 days, Google after 6 months, Atlassian
//! after 90) do not. The credential-maintenance function runs this on a schedule.
//!
//! - Candidates come from the sparse `keepAlive` index (store/keep_alive.rs), most overdue first, never
//!   from a table scan.
//! - Each is refreshed by the same lease protocol as a fetch (`RefreshProtocol::keep_alive`), so a
//!   keep-alive and a fetch of one credential never both spend its refresh token. A credential that is
//!   not ACTIVE is never refreshed (it is not even in the index).
//! - A run is bounded in credentials examined, refreshes at once and time. Where it stops it stores a
//!   cursor, and the next run goes on from there; a run that reaches the end clears it.
//! - Every refresh is audited (`credential.refresh`, reason `keep_alive`).

use std::sync::Arc;

use crate::clock::Clock;
use crate::config::KeepAliveLimits;
use crate::store::keep_alive::{self, Cursor, DueCredential, Position, SHARDS};
use crate::store::{StoreError, Table};
use crate::vault::{KeptAlive, RefreshProtocol};

/// Index entries read per query: enough for a few rounds of refreshes, little to throw away when a
/// run stops.
const PAGE: usize = 100;

/// What one run did, as the function returns it (and logs it).
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    /// Due credentials the index gave and the run looked at.
    pub examined: usize,
    pub refreshed: usize,
    /// A fetch refreshed it since the index was read.
    pub not_due: usize,
    /// Leased by another instance, or backing off: a later run sees it again.
    pub busy: usize,
    /// Not ACTIVE or gone.
    pub not_kept: usize,
    /// The provider refused its refresh token: now REAUTH_REQUIRED.
    pub dead: usize,
    /// The provider was unavailable (recorded on the item, with its backoff).
    pub failed: usize,
    /// DynamoDB or KMS failed for it.
    pub errors: usize,
    /// Queries of the index this run made.
    pub index_queries: usize,
    /// It went through every shard (and cleared the cursor); `false`: it stopped at a bound.
    pub complete: bool,
}

impl RunReport {
    /// `None`: the refresh's task panicked.
    fn count(&mut self, outcome: Option<&Result<KeptAlive, crate::vault::VaultError>>) {
        self.examined += 1;
        match outcome {
            Some(Ok(KeptAlive::Refreshed)) => self.refreshed += 1,
            Some(Ok(KeptAlive::NotDue)) => self.not_due += 1,
            Some(Ok(KeptAlive::Busy)) => self.busy += 1,
            Some(Ok(KeptAlive::NotKept)) => self.not_kept += 1,
            Some(Ok(KeptAlive::Dead)) => self.dead += 1,
            Some(Ok(KeptAlive::Failed)) => self.failed += 1,
            Some(Err(_)) | None => self.errors += 1,
        }
    }
}

/// The keep-alive run, over what it needs: the table (index and cursor), the refresh protocol, time,
/// and its bounds.
pub struct KeepAlive {
    pub table: Table,
    pub refresh: Arc<RefreshProtocol>,
    pub clock: Arc<dyn Clock>,
    pub limits: KeepAliveLimits,
}

impl KeepAlive {
    /// One run: from the stored cursor through the shards, refreshing what is due now.
    pub async fn run(&self) -> Result<RunReport, StoreError> {
        let started = self.clock.instant();
        // Due means due when the run began: what a run's own refreshes make due later waits.
        let now = self.clock.now_secs();
        let mut report = RunReport::default();
        let mut cursor = keep_alive::load_cursor(&self.table).await?;
        while cursor.shard < SHARDS {
            loop {
                if self.at_a_bound(&report, started) {
                    keep_alive::save_cursor(&self.table, &cursor, self.clock.now_secs()).await?;
                    return Ok(report);
                }
                let room = (self.limits.max_credentials - report.examined).min(PAGE);
                let page =
                    keep_alive::due_page(&self.table, cursor.shard, now, cursor.after.as_ref(), room as i32).await?;
                report.index_queries += 1;
                let exhausted = page.entries.len() < room || !page.more;
                for batch in page.entries.chunks(self.limits.concurrency) {
                    if self.at_a_bound(&report, started) {
                        keep_alive::save_cursor(&self.table, &cursor, self.clock.now_secs()).await?;
                        return Ok(report);
                    }
                    for outcome in self.keep_alive_all(batch).await {
                        report.count(outcome.as_ref());
                    }
                    cursor.after = batch.last().map(|(position, _)| position.clone());
                }
                if exhausted {
                    break;
                }
            }
            cursor = Cursor {
                shard: cursor.shard + 1,
                after: None,
            };
        }
        keep_alive::clear_cursor(&self.table).await?;
        report.complete = true;
        tracing::info!(?report, "keep-alive run complete");
        Ok(report)
    }

    /// No more credentials this run, or not enough time left for a refresh to finish (a lease bounds one).
    fn at_a_bound(&self, report: &RunReport, started: std::time::Instant) -> bool {
        let elapsed = self.clock.instant().saturating_duration_since(started);
        report.examined >= self.limits.max_credentials
            || elapsed + self.refresh.timing.lease_length > self.limits.time_budget
    }

    /// Keeps a batch alive at once; each outcome in the batch's order (`None`: its task panicked).
    async fn keep_alive_all(
        &self,
        batch: &[(Position, DueCredential)],
    ) -> Vec<Option<Result<KeptAlive, crate::vault::VaultError>>> {
        let mut tasks = tokio::task::JoinSet::new();
        for (index, (_, due)) in batch.iter().enumerate() {
            let refresh = Arc::clone(&self.refresh);
            let due = due.clone();
            tasks.spawn(async move {
                let outcome = refresh.keep_alive(&due.connection_id, &due.user_id).await;
                if let Err(error) = &outcome {
                    tracing::warn!(connection_id = %due.connection_id, user_id = %due.user_id, %error, "keep-alive refresh failed");
                }
                (index, outcome)
            });
        }
        let mut outcomes: Vec<Option<Result<KeptAlive, crate::vault::VaultError>>> =
            batch.iter().map(|_| None).collect();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((index, outcome)) => {
                    if let Some(slot) = outcomes.get_mut(index) {
                        *slot = Some(outcome);
                    }
                }
                Err(panicked) => tracing::error!(error = %panicked, "a keep-alive refresh panicked"),
            }
        }
        outcomes
    }
}
