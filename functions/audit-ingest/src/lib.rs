//! audit-ingest: the audit events of credential reads, from credential-fetch's log into the table.
//!
//! credential-fetch writes each read's event as one JSON line on its log before it answers the read
//! (`credvault::audit`, `AuditTrail::around_read`), so a read waits for no DynamoDB write. A CloudWatch
//! Logs subscription on that log group, filtered to those lines, hands them here in batches; each
//! event is stored under its own key, so a batch delivered twice stores nothing twice, and a line can
//! add an event to the trail but never rewrite one. A batch that cannot be stored whole fails the
//! invocation: Lambda retries it, then hands it to the failure queue, which raises an alarm
//! (infra/template.yaml).

use std::sync::Arc;

use aws_lambda_events::event::cloudwatch_logs::LogsEvent;
use credvault::audit::{AuditTrail, parse_log_line};
use credvault::store::StoreError;

/// How many events of a batch are stored at once.
const CONCURRENT_WRITES: usize = 16;

/// The log group the events must come from: credential-fetch's. A batch from any other group (a
/// subscription added by mistake, on a log whose lines the vault does not vouch for) is refused.
pub struct AuditSource {
    pub log_group: String,
}

impl AuditSource {
    pub fn from_env() -> Result<Self, IngestError> {
        std::env::var("CREDVAULT_AUDIT_LOG_GROUP")
            .ok()
            .filter(|group| !group.is_empty())
            .map(|log_group| Self { log_group })
            .ok_or(IngestError::NoLogGroup)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("CREDVAULT_AUDIT_LOG_GROUP is not set")]
    NoLogGroup,
    #[error("a batch from log group {0}, not the credential-fetch log")]
    OtherLogGroup(String),
    #[error("an audit event was not stored; the batch is retried")]
    Store(#[source] StoreError),
    #[error("a write of the batch did not finish")]
    Join(#[source] tokio::task::JoinError),
}

/// What one batch came to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Ingested {
    /// Events stored (or found stored by an earlier delivery).
    pub stored: usize,
    /// Lines that are not audit lines as the vault writes them; logged, never stored.
    pub skipped: usize,
}

/// Stores every audit event of one subscription batch, `Err` unless all of them are stored.
pub async fn handle(trail: &Arc<AuditTrail>, source: &AuditSource, event: LogsEvent) -> Result<Ingested, IngestError> {
    let data = event.aws_logs.data;
    // CloudWatch Logs sends one of these when the subscription is made, to check the destination.
    if data.message_type == "CONTROL_MESSAGE" {
        return Ok(Ingested::default());
    }
    if data.log_group != source.log_group {
        tracing::error!(log_group = %data.log_group, "audit lines from another log group refused");
        return Err(IngestError::OtherLogGroup(data.log_group));
    }
    let mut ingested = Ingested::default();
    let mut events = Vec::new();
    for entry in &data.log_events {
        match parse_log_line(&entry.message) {
            Some(event) => events.push(event),
            None => {
                ingested.skipped += 1;
                // The id only: the line's text is not the vault's and is not repeated.
                tracing::warn!(log_event_id = %entry.id, "a log line that is not an audit line; skipped");
            }
        }
    }
    for chunk in events.chunks(CONCURRENT_WRITES) {
        let mut writes = tokio::task::JoinSet::new();
        for (event, at_ms) in chunk.iter().cloned() {
            let trail = Arc::clone(trail);
            writes.spawn(async move { trail.store_logged(&event, at_ms).await });
        }
        while let Some(done) = writes.join_next().await {
            done.map_err(IngestError::Join)?.map_err(IngestError::Store)?;
            ingested.stored += 1;
        }
    }
    tracing::info!(
        stored = ingested.stored,
        skipped = ingested.skipped,
        "audit lines stored"
    );
    Ok(ingested)
}
