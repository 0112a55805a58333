//! The audit trail: every credential read, refresh, re-authentication transition, disconnect and
//! change to connections, clients, roles and records, as a structured event in DynamoDB (kept for the
//! retention period by TTL) and as a JSON log line. Events name who, what and the outcome; never a
//! secret.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use crate::clock::Clock;
use crate::store::credentials::BoxFuture;
use crate::store::{Filter, StoreError, Table, classify, s};

/// Events are spread over this many partitions (`AUDIT#0` .. `AUDIT#15`), newest last by sort key
/// in each: DynamoDB takes about 1,000 writes a second per partition, so the trail takes 16,000.
const SHARDS: usize = 16;

/// How deep one listing reads a shard for a filter before it answers with what it has and a cursor.
const MAX_PAGES_PER_SHARD: usize = 8;

fn partition(event_id: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, event_id.as_bytes());
    format!("AUDIT#{}", usize::from(digest.as_ref()[0]) % SHARDS)
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    pub event_id: String,
    pub time: String,
    /// `credential.read`, `credential.refresh`, `credential.reauth_required`, `credential.disconnect`,
    /// `connection.create`, `client.key.delete`, `record.update`, ...
    pub action: String,
    /// The caller's subject; `None` for the vault's own actions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    /// The user a caller acted for, when that is not the caller itself: the subject of a token
    /// exchange whose actor is the caller.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
    /// What was acted on, as a resource URI (`Connections/con_a/Users/u1/Credentials`, `Roles/ro_x`).
    pub resource: String,
    /// `ok`, or the `errorCode` of the refusal.
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refreshed: Option<bool>,
    /// Why the vault acted, where that matters: `endpoint_changed`, `invalid_grant`, `identity_conflict`, ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl AuditEvent {
    /// `outcome` is `Ok(())`, or `Err` with the `errorCode` the request was refused with.
    pub fn new(action: &str, caller: Option<&str>, resource: &str, outcome: Result<(), &str>) -> Self {
        Self {
            event_id: crate::random::token(9),
            time: String::new(),
            action: action.to_string(),
            caller: caller.map(String::from),
            on_behalf_of: None,
            resource: resource.to_string(),
            outcome: outcome.err().unwrap_or("ok").to_string(),
            refreshed: None,
            reason: None,
        }
    }

    pub fn reason(mut self, reason: &str) -> Self {
        self.reason = Some(reason.to_string());
        self
    }

    pub fn on_behalf_of(mut self, user_id: &str) -> Self {
        self.on_behalf_of = Some(user_id.to_string());
        self
    }

    pub fn refreshed(mut self, refreshed: bool) -> Self {
        self.refreshed = Some(refreshed);
        self
    }
}

/// Where audit events go: the protocols hold one, so their tests can collect events in memory.
pub trait AuditSink: Send + Sync + 'static {
    fn record(&self, event: AuditEvent) -> BoxFuture<'_, ()>;
}

/// The audit trail in the table (kept `retention` by TTL, spread over `SHARDS` partitions) and the log.
pub struct AuditTrail {
    table: Table,
    clock: Arc<dyn Clock>,
    retention: Duration,
}

impl AuditTrail {
    pub fn new(table: Table, clock: Arc<dyn Clock>, retention: Duration) -> Self {
        Self {
            table,
            clock,
            retention,
        }
    }

    /// Writes the event to the log and to the table. A failed table write is logged and does not fail
    /// the request it describes: the log line still holds the event.
    pub async fn write(&self, mut event: AuditEvent) {
        let now_ms = self.clock.now_millis();
        event.time = crate::clock::iso8601_millis(now_ms);
        tracing::info!(audit = %json!(event), "audit event");
        self.put(&event, now_ms, Write::New).await;
    }
}

impl AuditSink for AuditTrail {
    fn record(&self, event: AuditEvent) -> BoxFuture<'_, ()> {
        Box::pin(self.write(event))
    }
}

/// Whether a table write makes a new event or settles the outcome of one written before it was known.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Write {
    New,
    Settle,
}

/// The outcome an event is written with while its work still runs: what a warm read ends in.
const EXPECTED_OUTCOME: &str = "ok";

/// An audit event exactly as DynamoDB holds it (serde_dynamo): the one place its attribute names
/// are spelled besides the settle condition and the listing's filters, which name the same.
#[derive(Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredAuditEvent {
    pk: String,
    /// `{timeMs:015}#{eventId}`: newest last within a partition.
    sk: String,
    action: String,
    resource: String,
    outcome: String,
    time_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    caller: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    on_behalf_of: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refreshed: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// Set on the write that settles an event's outcome (see `while_reading`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    settled: Option<bool>,
    /// `TTL_ATTRIBUTE`, a unit test checks.
    delete_after: i64,
}

impl AuditTrail {
    async fn put(&self, event: &AuditEvent, at_ms: i64, write: Write) {
        let retention_secs = self.retention.as_secs() as i64;
        let stored = StoredAuditEvent {
            pk: partition(&event.event_id),
            sk: format!("{at_ms:015}#{}", event.event_id),
            action: event.action.clone(),
            resource: event.resource.clone(),
            outcome: event.outcome.clone(),
            time_ms: at_ms,
            caller: event.caller.clone(),
            on_behalf_of: event.on_behalf_of.clone(),
            refreshed: event.refreshed,
            reason: event.reason.clone(),
            settled: (write == Write::Settle).then_some(true),
            delete_after: at_ms / 1000 + retention_secs,
        };
        let item = match crate::store::to_item(stored) {
            Ok(item) => item,
            Err(e) => {
                tracing::error!(error = %e, action = %event.action, "audit event not stored in the table");
                return;
            }
        };
        let req = self
            .table
            .client
            .put_item()
            .table_name(&self.table.name)
            .set_item(Some(item));
        let req = match write {
            Write::New => req.condition_expression("attribute_not_exists(pk)"),
            // Settling replaces only the version written while the work ran.
            Write::Settle => req
                .condition_expression(
                    "attribute_not_exists(pk) OR (outcome = :expected AND attribute_not_exists(settled))",
                )
                .expression_attribute_values(":expected", s(EXPECTED_OUTCOME)),
        };
        if let Err(e) = req.send().await {
            tracing::error!(error = %classify("PutItem", e), action = %event.action, "audit event not stored in the table");
        }
    }
}

impl AuditTrail {
    /// Runs `work` (a credential read the caller was allowed) with its audit event written at the same
    /// time rather than after it, so a warm read costs the latency of one DynamoDB call, not two in a
    /// row. The event is written as the read usually ends (`ok`, not refreshed); a read that ends
    /// otherwise (refreshed, refused by the store, failed) settles it with its real outcome, the
    /// `error_code` of its error, before it answers. If the instance dies in between, the event stands
    /// as written: the access was granted.
    pub async fn while_reading<T, E>(
        &self,
        mut event: AuditEvent,
        work: impl Future<Output = Result<T, E>>,
        refreshed: impl Fn(&T) -> bool,
        error_code: impl Fn(&E) -> &'static str,
    ) -> Result<T, E> {
        let now_ms = self.clock.now_millis();
        event.time = crate::clock::iso8601_millis(now_ms);
        event.outcome = EXPECTED_OUTCOME.to_string();
        event.refreshed = Some(false);
        let ((), result) = tokio::join!(self.put(&event, now_ms, Write::New), work);
        let settled = AuditEvent {
            outcome: result
                .as_ref()
                .err()
                .map_or(EXPECTED_OUTCOME.to_string(), |e| error_code(e).to_string()),
            refreshed: Some(result.as_ref().is_ok_and(&refreshed)),
            ..event
        };
        tracing::info!(audit = %json!(settled), "audit event");
        if settled.outcome != EXPECTED_OUTCOME || settled.refreshed == Some(true) {
            self.put(&settled, now_ms, Write::Settle).await;
        }
        result
    }
}

/// Filters of `GET /v1/audit`.
#[derive(Debug, Default)]
pub struct AuditQuery {
    pub caller: Option<String>,
    /// Events whose resource is this one or below it (e.g. one credential, or all of a connection).
    pub resource: Option<String>,
    pub limit: i32,
    pub cursor: Option<String>,
}

impl AuditTrail {
    /// Newest first: `{events: [...], pagination: {next: {cursor}}}`.
    pub async fn list(&self, query: AuditQuery) -> Result<serde_json::Value, StoreError> {
        let mut filters = Vec::new();
        let mut names = Vec::new();
        let mut values = Vec::new();
        if let Some(caller) = query.caller {
            filters.push("caller = :caller");
            values.push((":caller", s(caller)));
        }
        if let Some(resource) = query.resource {
            // RESOURCE is a DynamoDB reserved word.
            filters.push("(#resource = :resource OR begins_with(#resource, :below))");
            names.push(("#resource", "resource"));
            values.push((":below", s(format!("{resource}/"))));
            values.push((":resource", s(resource)));
        }
        let filter = (!filters.is_empty()).then(|| Filter {
            expression: filters.join(" AND "),
            names,
            values,
        });
        // Each shard is read newest first until it has yielded `limit` matches, run out, or been read
        // `MAX_PAGES_PER_SHARD` pages deep. Where a shard stopped early, everything older than the last
        // key it examined is unread, so only matches at or above the highest such frontier may be
        // answered, and the next page starts below it: no match is skipped, however sparse.
        let before = match query.cursor.as_deref() {
            None => None,
            Some(cursor) => Some(decode_cursor(cursor).ok_or(StoreError::BadCursor)?),
        };
        let limit = query.limit.max(1) as usize;
        let mut items = Vec::new();
        let mut frontier: Option<String> = None;
        for shard in 0..SHARDS {
            let mut start = None;
            let mut matched = 0;
            for _ in 0..MAX_PAGES_PER_SHARD {
                let mut req = self
                    .table
                    .client
                    .query()
                    .table_name(&self.table.name)
                    .expression_attribute_values(":pk", s(format!("AUDIT#{shard}")))
                    .scan_index_forward(false)
                    .consistent_read(true)
                    .limit(query.limit)
                    .set_exclusive_start_key(start.take());
                req = match &before {
                    Some(sk) => req
                        .key_condition_expression("pk = :pk AND sk < :before")
                        .expression_attribute_values(":before", s(sk)),
                    None => req.key_condition_expression("pk = :pk"),
                };
                if let Some(filter) = &filter {
                    req = req.filter_expression(&filter.expression);
                    for (placeholder, name) in &filter.names {
                        req = req.expression_attribute_names(*placeholder, *name);
                    }
                    for (placeholder, value) in &filter.values {
                        req = req.expression_attribute_values(*placeholder, value.clone());
                    }
                }
                let out = req.send().await.map_err(|e| classify("Query", e))?;
                let page = out.items.unwrap_or_default();
                matched += page.len();
                items.extend(page);
                start = out.last_evaluated_key.filter(|k| !k.is_empty());
                if start.is_none() || matched >= limit {
                    break;
                }
            }
            // This shard has more below its last examined key.
            if let Some(last) = start.as_ref().and_then(|k| k.get("sk")).and_then(|v| v.as_s().ok())
                && frontier.as_deref().is_none_or(|f| last.as_str() > f)
            {
                frontier = Some(last.clone());
            }
        }
        let mut stored = items
            .into_iter()
            .map(crate::store::parse_item::<StoredAuditEvent>)
            .collect::<Result<Vec<_>, _>>()?;
        stored.sort_by(|a, b| b.sk.cmp(&a.sk));
        if let Some(frontier) = &frontier {
            stored.retain(|e| e.sk.as_str() >= frontier.as_str());
        }
        let next = if stored.len() > limit {
            stored.truncate(limit);
            stored.last().map(|last| encode_cursor(&last.sk))
        } else {
            // Everything above the frontier is answered; the next page starts below it.
            frontier.as_deref().map(encode_cursor)
        };
        let events: Vec<serde_json::Value> = stored.iter().map(present).collect();
        Ok(json!({"events": events, "pagination": {"next": next.map(|cursor| json!({"cursor": cursor}))}}))
    }
}

/// A cursor is the sort key of the last event of the page, base64url.
fn encode_cursor(sk: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sk)
}

fn decode_cursor(cursor: &str) -> Option<String> {
    use base64::Engine;
    let sk = String::from_utf8(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()?;
    // `{timeMs:015}#{eventId}`: anything else was not given out here.
    let (time, id) = sk.split_once('#')?;
    (time.len() == 15 && time.bytes().all(|c| c.is_ascii_digit()) && crate::random::is_token_shaped(id)).then_some(sk)
}

fn present(stored: &StoredAuditEvent) -> serde_json::Value {
    let mut event = json!({
        "eventId": stored.sk.split_once('#').map(|(_, id)| id).unwrap_or_default(),
        "time": crate::clock::iso8601_millis(stored.time_ms),
        "action": stored.action,
        "resource": stored.resource,
        "outcome": stored.outcome,
    });
    if let Some(caller) = &stored.caller {
        event["caller"] = json!(caller);
    }
    if let Some(user_id) = &stored.on_behalf_of {
        event["onBehalfOf"] = json!(user_id);
    }
    if let Some(refreshed) = stored.refreshed {
        event["refreshed"] = json!(refreshed);
    }
    if let Some(reason) = &stored.reason {
        event["reason"] = json!(reason);
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_event_names_the_ttl_and_the_attributes_the_condition_and_filters_name() {
        let stored = StoredAuditEvent {
            pk: partition("evt"),
            sk: format!("{:015}#evt", 1_700_000_000_000i64),
            action: "credential.read".into(),
            resource: "Connections/c/Users/u/Credentials".into(),
            outcome: "ok".into(),
            time_ms: 1_700_000_000_000,
            caller: Some("u".into()),
            on_behalf_of: Some("v".into()),
            refreshed: Some(true),
            reason: None,
            settled: Some(true),
            delete_after: 1_700_000_000 + 90 * 86_400,
        };
        let item = crate::store::to_item(stored).unwrap();
        assert!(
            item[crate::store::TTL_ATTRIBUTE].as_n().is_ok(),
            "DynamoDB's TTL reads this one"
        );
        for name in ["outcome", "settled", "caller", "resource", "action", "timeMs"] {
            assert!(item.contains_key(name), "{name}");
        }
        assert!(!item.contains_key("reason"), "absent fields are left out");
        let back: StoredAuditEvent = crate::store::parse_item(item).unwrap();
        let shown = present(&back);
        assert_eq!(shown["eventId"], "evt");
        assert_eq!(shown["time"], "2023-11-14T22:13:20.000Z");
        assert_eq!(shown["refreshed"], true);
        assert!(shown.get("reason").is_none() && shown.get("settled").is_none());
    }
}
