//! credential-events: the table's DynamoDB Stream in, lifecycle events out (shared/src/lifecycle.rs).
//! Lambda hands it batches of stream records, filtered to credential items by the event source
//! mapping (infra/template.yaml); each transition becomes one event on EventBridge.
//!
//! Order is kept per batch: events are published in record order, ten at a time, and the first batch
//! EventBridge does not take ends the invocation with that batch's first record reported as failed
//! (`ReportBatchItemFailures`), so Lambda retries from there and nothing after it is published out of
//! order. A retried record yields the same event id (the stream record's), for consumers to drop.

use credvault::lifecycle::{BATCH, LifecycleEvent, PublishError, StreamRecord, event_of};
use lambda_http::lambda_runtime::LambdaEvent;
use serde_json::{Value, json};

/// Where the events go: EventBridge (`credvault::lifecycle::EventPublisher`) in a deployment.
pub trait EventSink: Send + Sync {
    fn publish<'a>(
        &'a self,
        events: &'a [LifecycleEvent],
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), PublishError>> + Send + 'a>>;
}

impl EventSink for credvault::lifecycle::EventPublisher {
    fn publish<'a>(
        &'a self,
        events: &'a [LifecycleEvent],
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), PublishError>> + Send + 'a>> {
        Box::pin(credvault::lifecycle::EventPublisher::publish(self, events))
    }
}

/// One batch of stream records: the events of its transitions, published in order; the answer names
/// the record to retry from, if any.
pub async fn handle(sink: &dyn EventSink, event: LambdaEvent<Value>) -> Result<Value, lambda_http::Error> {
    let records = event.payload["Records"].as_array().cloned().unwrap_or_default();
    // (sequence number, event) in record order.
    let mut pending: Vec<(String, LifecycleEvent)> = Vec::new();
    for raw in records {
        match serde_json::from_value::<StreamRecord>(raw) {
            Ok(record) => {
                if let Some(event) = event_of(&record) {
                    let sequence = record.dynamodb.sequence_number.clone().unwrap_or_default();
                    pending.push((sequence, event));
                }
            }
            // Nothing later can make it readable: retrying would hold the shard forever.
            Err(error) => tracing::error!(%error, "a stream record that is not a DynamoDB record; skipped"),
        }
    }
    for batch in pending.chunks(BATCH) {
        let events: Vec<LifecycleEvent> = batch.iter().map(|(_, e)| e.clone()).collect();
        if let Err(error) = sink.publish(&events).await {
            tracing::warn!(%error, "lifecycle events not published; the batch is retried from its first record");
            let first = batch.first().map(|(sequence, _)| sequence.clone()).unwrap_or_default();
            return Ok(json!({"batchItemFailures": [{"itemIdentifier": first}]}));
        }
        for event in &events {
            tracing::info!(event_id = %event.event_id, kind = event.kind.as_str(), connection_id = %event.connection_id, "lifecycle event published");
        }
    }
    Ok(json!({"batchItemFailures": []}))
}
