//! The local stand-in for credential-fetch's log group and its CloudWatch Logs subscription: the
//! audit lines the vault's instances write (`credvault::audit::AuditLog`) are batched, packed as
//! CloudWatch Logs packs a subscription's batch (JSON, gzip, base64: `aws_lambda_events`' own
//! `LogsEvent`, unpacked by the same type on the way in) and handed to audit-ingest's handler, which
//! stores them in the table as it does on AWS. Delivery is at once here, where CloudWatch takes
//! seconds; a test that reads the trail after a read waits for `flushed` first.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use audit_ingest::AuditSource;
use aws_lambda_events::event::cloudwatch_logs::{AwsLogs, LogData, LogsEvent};
use credvault::audit::{AuditLog, AuditTrail};
use serde_json::json;
use tokio::sync::{mpsc, watch};

/// The log group name the local subscription claims its batches come from.
pub const LOG_GROUP: &str = "/aws/lambda/credvault-local-credential-fetch";

/// At most this many lines go in one batch, as CloudWatch Logs bounds a subscription's batch.
const MAX_BATCH: usize = 500;

/// How often a batch is handed over before it counts as failed (Lambda's asynchronous invocation
/// makes two retries before its failure destination).
const ATTEMPTS: u32 = 3;

pub struct LogSubscription {
    lines: mpsc::UnboundedSender<String>,
    written: AtomicU64,
    /// Lines handed to audit-ingest so far, stored or given up on.
    delivered: watch::Receiver<u64>,
}

impl LogSubscription {
    /// Delivers to audit-ingest over `trail` (its own table client, as its own function has).
    pub fn start(trail: Arc<AuditTrail>) -> Arc<Self> {
        let (lines, mut queued) = mpsc::unbounded_channel::<String>();
        let (delivered_tx, delivered) = watch::channel(0u64);
        let source = AuditSource {
            log_group: LOG_GROUP.to_string(),
        };
        tokio::spawn(async move {
            let mut sequence = 0u64;
            while let Some(first) = queued.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match queued.try_recv() {
                        Ok(line) => batch.push(line),
                        Err(_) => break,
                    }
                }
                let event = packed(&batch, &mut sequence);
                for attempt in 1..=ATTEMPTS {
                    match audit_ingest::handle(&trail, &source, event.clone()).await {
                        Ok(_) => break,
                        Err(error) if attempt < ATTEMPTS => {
                            tracing::warn!(%error, attempt, "audit batch not ingested; retried");
                            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                        }
                        Err(error) => tracing::error!(%error, "audit batch not ingested; given up"),
                    }
                }
                delivered_tx.send_modify(|n| *n += batch.len() as u64);
            }
        });
        Arc::new(Self {
            lines,
            written: AtomicU64::new(0),
            delivered,
        })
    }

    /// Waits until every line written so far has been handed to audit-ingest.
    pub async fn flushed(&self) {
        let written = self.written.load(Ordering::SeqCst);
        let mut delivered = self.delivered.clone();
        tokio::time::timeout(Duration::from_secs(30), delivered.wait_for(|n| *n >= written))
            .await
            .expect("the audit lines reach audit-ingest")
            .expect("the log subscription runs");
    }

    /// Lines written so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::SeqCst)
    }
}

impl AuditLog for LogSubscription {
    fn write_line(&self, line: &str) -> std::io::Result<()> {
        self.written.fetch_add(1, Ordering::SeqCst);
        self.lines
            .send(line.to_string())
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the log subscription stopped"))
    }
}

/// A batch as the subscription hands it to its Lambda function, unpacked by `LogsEvent`'s own serde
/// from the text, as the Lambda runtime unpacks it for audit-ingest.
pub fn packed(lines: &[String], sequence: &mut u64) -> LogsEvent {
    serde_json::from_str(&wire(lines, sequence).to_string()).expect("unpacked as the Lambda runtime unpacks it")
}

/// A batch as CloudWatch Logs sends it to a subscribed function: `{"awslogs": {"data": ...}}`, the
/// data the batch's JSON, gzipped, in base64.
pub fn wire(lines: &[String], sequence: &mut u64) -> serde_json::Value {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let log_events: Vec<serde_json::Value> = lines
        .iter()
        .map(|message| {
            *sequence += 1;
            json!({"id": format!("{:056}", *sequence), "timestamp": now_ms, "message": message})
        })
        .collect();
    let data: LogData = serde_json::from_value(json!({
        "owner": "000000000000",
        "logGroup": LOG_GROUP,
        "logStream": "2026/12/02/[$LATEST]local",
        "subscriptionFilters": ["credvault-audit-lines"],
        "messageType": "DATA_MESSAGE",
        "logEvents": log_events,
    }))
    .expect("a subscription batch");
    let mut logs = AwsLogs::default();
    logs.data = data;
    let mut event = LogsEvent::default();
    event.aws_logs = logs;
    let mut wire = serde_json::to_value(&event).expect("packed as CloudWatch Logs packs it");
    // The crate's serializer leaves out base64's padding, which CloudWatch Logs sends (and the
    // crate's own deserializer requires).
    let mut data = wire["awslogs"]["data"]
        .as_str()
        .expect("gzip and base64, as on AWS")
        .to_string();
    while data.len() % 4 != 0 {
        data.push('=');
    }
    wire["awslogs"]["data"] = json!(data);
    wire
}
