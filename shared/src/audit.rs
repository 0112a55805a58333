//! The audit trail: every credential read, refresh, re-authentication transition, disconnect and
//! change to connections, clients, roles and records, as a structured event in DynamoDB (kept for the
//! retention period by TTL). Events name who, what and the outcome; never a secret.
//!
//! Changes and refreshes are written to the table before they are answered. Credential reads, the
//! hot path, write nothing to the table themselves: each read's event is one JSON line on the
//! function's log (`AuditLog`, [`log_line`]), written before the read is answered, and the
//! audit-ingest function, subscribed to that log, stores the lines in the table ([`parse_log_line`],
//! `AuditTrail::store_logged`). A warm read so costs one DynamoDB call, and a refused read none.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditEvent {
    pub event_id: String,
    pub time: String,
    /// `credential.read`, `credential.refresh`, `credential.reauth_required`, `credential.disconnect`,
    /// `connection.create`, `client.key.delete`, `record.update`, ...
    pub action: String,
    /// The caller's subject; `None` for the vault's own actions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    /// The user a caller acted for, when that is not the caller itself: the subject of a token
    /// exchange whose actor is the caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
    /// What was acted on, as a resource URI (`Connections/con_a/Users/u1/Credentials`, `Roles/ro_x`).
    pub resource: String,
    /// `ok`, or the `errorCode` of the refusal.
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refreshed: Option<bool>,
    /// Why the vault acted, where that matters: `endpoint_changed`, `invalid_grant`, `identity_conflict`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
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

/// Where the events of credential reads go: one line each on the function's log, which the
/// audit-ingest function's log subscription carries into the table. Lambda ships a line once it is
/// written, so a line written before the read is answered outlives the instance.
pub trait AuditLog: Send + Sync + 'static {
    /// Writes one line; an error means the line is not on the log, and the read is not answered.
    fn write_line(&self, line: &str) -> std::io::Result<()>;
}

/// The function's standard output, which Lambda sends to the function's log group line by line.
pub struct StdoutAuditLog;

impl AuditLog for StdoutAuditLog {
    fn write_line(&self, line: &str) -> std::io::Result<()> {
        use std::io::Write;
        // One write of the whole line under the lock, so no log line of another task lands inside it.
        let mut out = std::io::stdout().lock();
        out.write_all(format!("{line}\n").as_bytes())?;
        out.flush()
    }
}

/// Lambda's log-level filter drops every line below the function's application log level, and an
/// audit line is an INFO line (as Lambda reads a line's `level`): with the level above INFO the
/// reads would go unaudited, so the function refuses to start instead. `level` is Lambda's
/// `AWS_LAMBDA_LOG_LEVEL`, unset when no filter is configured.
pub fn check_log_level(level: Option<&str>) -> Result<(), AuditLogLevelTooHigh> {
    match level.map(str::to_ascii_uppercase).as_deref() {
        None | Some("TRACE" | "DEBUG" | "INFO") => Ok(()),
        Some(other) => Err(AuditLogLevelTooHigh(other.to_string())),
    }
}

#[derive(Debug, thiserror::Error)]
#[error(
    "the application log level is {0}: the audit of credential reads is carried by INFO log lines, so it must be INFO or lower"
)]
pub struct AuditLogLevelTooHigh(String);

/// A read's audit line could not be written; the read is refused (503) rather than answered unaudited.
#[derive(Debug, thiserror::Error)]
#[error("the audit log cannot be written")]
pub struct AuditLogFailed(#[source] pub std::io::Error);

/// The value of [`AuditLine::credvault_audit`]: the log subscription's filter pattern selects lines
/// whose top-level `credvaultAudit` is this (`{ $.credvaultAudit = 1 }`, infra/template.yaml). No
/// other line of the vault has that key at its top level: its own log lines are JSON objects whose
/// keys are `timestamp`, `level`, `fields`, `target` and `span`, with every value escaped.
pub const LOG_LINE_VERSION: u8 = 1;

/// An audit event as one log line.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AuditLine {
    /// What Lambda's log-level filter reads.
    level: String,
    credvault_audit: u8,
    time_ms: i64,
    event: AuditEvent,
}

/// The longest action, resource, caller, outcome or reason a logged event may carry: longer is not
/// one the vault wrote (ids are bounded far below it).
const MAX_LOGGED_FIELD: usize = 2048;

/// The log line of `event`, which happened at `time_ms`.
pub fn log_line(event: &AuditEvent, time_ms: i64) -> String {
    let line = AuditLine {
        level: "INFO".to_string(),
        credvault_audit: LOG_LINE_VERSION,
        time_ms,
        event: event.clone(),
    };
    serde_json::to_string(&line).unwrap_or_default()
}

/// The event of one log line, if the line is an audit line as [`log_line`] writes them: exactly its
/// fields, an event id of the vault's shape and bounded text. Any other line is `None`.
pub fn parse_log_line(message: &str) -> Option<(AuditEvent, i64)> {
    let line: AuditLine = serde_json::from_str(message.trim_end()).ok()?;
    let event = line.event;
    let texts = [
        Some(&event.action),
        Some(&event.resource),
        Some(&event.outcome),
        event.caller.as_ref(),
        event.on_behalf_of.as_ref(),
        event.reason.as_ref(),
    ];
    let valid = line.credvault_audit == LOG_LINE_VERSION
        && line.time_ms > 0
        && crate::random::is_token_shaped(&event.event_id)
        && !event.action.is_empty()
        && !event.resource.is_empty()
        && texts.into_iter().flatten().all(|t| t.len() <= MAX_LOGGED_FIELD);
    valid.then_some((event, line.time_ms))
}

/// The audit trail: events of changes go to the table at once; events of reads go to the log and
/// reach the table through audit-ingest.
pub struct AuditTrail {
    table: Table,
    clock: Arc<dyn Clock>,
    retention: Duration,
    log: Arc<dyn AuditLog>,
}

impl AuditTrail {
    pub fn new(table: Table, clock: Arc<dyn Clock>, retention: Duration, log: Arc<dyn AuditLog>) -> Self {
        Self {
            table,
            clock,
            retention,
            log,
        }
    }

    /// Writes the event to the table (and a diagnostic line to the log). A failed table write is
    /// logged and does not fail the request it describes: the log line still holds the event.
    pub async fn write(&self, mut event: AuditEvent) {
        let now_ms = self.clock.now_millis();
        event.time = crate::clock::iso8601_millis(now_ms);
        tracing::info!(audit = %json!(event), "audit event");
        if let Err(e) = self.put(&event, now_ms).await {
            tracing::error!(error = %e, action = %event.action, "audit event not stored in the table");
        }
    }
}

impl AuditSink for AuditTrail {
    fn record(&self, event: AuditEvent) -> BoxFuture<'_, ()> {
        Box::pin(self.write(event))
    }
}

/// An audit event exactly as DynamoDB holds it (serde_dynamo): the one place its attribute names
/// are spelled besides the listing's filters, which name the same.
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
    /// `TTL_ATTRIBUTE`, a unit test checks.
    delete_after: i64,
}

impl AuditTrail {
    /// Stores a new event; an event already stored under its key is never replaced (`ConditionFailed`).
    async fn put(&self, event: &AuditEvent, at_ms: i64) -> Result<(), StoreError> {
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
            delete_after: at_ms / 1000 + retention_secs,
        };
        self.table
            .client
            .put_item()
            .table_name(&self.table.name)
            .set_item(Some(crate::store::to_item(stored)?))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(|e| classify("PutItem", e))?;
        Ok(())
    }

    /// Stores events carried from the log (audit-ingest). A log subscription delivers at least once,
    /// so an event already stored counts as stored, and is left as it was: a line can add an event to
    /// the trail, never rewrite one.
    pub async fn store_logged(&self, event: &AuditEvent, at_ms: i64) -> Result<(), StoreError> {
        match self.put(event, at_ms).await {
            Ok(()) | Err(StoreError::ConditionFailed(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

impl AuditTrail {
    /// Runs `work` (a credential read the caller was allowed), then writes its event, with the read's
    /// outcome (`ok` or the `error_code` of its error) and whether it refreshed, to the audit log
    /// before it is answered. The read itself waits for no table write; a line that cannot be written
    /// turns the answer into a 503, so no credential leaves unaudited.
    pub async fn around_read<T, E: From<AuditLogFailed>>(
        &self,
        event: AuditEvent,
        work: impl Future<Output = Result<T, E>>,
        refreshed: impl Fn(&T) -> bool,
        error_code: impl Fn(&E) -> &'static str,
    ) -> Result<T, E> {
        let started_ms = self.clock.now_millis();
        let result = work.await;
        let event = AuditEvent {
            outcome: result.as_ref().err().map_or("ok", &error_code).to_string(),
            refreshed: Some(result.as_ref().is_ok_and(&refreshed)),
            ..event
        };
        self.log_read(event, started_ms)?;
        result
    }

    /// A refused read's event, to the audit log: refusals cost no table write either, however many an
    /// unauthorized caller asks for.
    pub fn refused_read(&self, event: AuditEvent) -> Result<(), AuditLogFailed> {
        self.log_read(event.refreshed(false), self.clock.now_millis())
    }

    fn log_read(&self, mut event: AuditEvent, at_ms: i64) -> Result<(), AuditLogFailed> {
        event.time = crate::clock::iso8601_millis(at_ms);
        self.log.write_line(&log_line(&event, at_ms)).map_err(|e| {
            tracing::error!(error = %e, action = %event.action, "audit line not written; the read is refused");
            AuditLogFailed(e)
        })
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
            delete_after: 1_700_000_000 + 90 * 86_400,
        };
        let item = crate::store::to_item(stored).unwrap();
        assert!(
            item[crate::store::TTL_ATTRIBUTE].as_n().is_ok(),
            "DynamoDB's TTL reads this one"
        );
        for name in ["outcome", "caller", "resource", "action", "timeMs"] {
            assert!(item.contains_key(name), "{name}");
        }
        assert!(!item.contains_key("reason"), "absent fields are left out");
        let back: StoredAuditEvent = crate::store::parse_item(item).unwrap();
        let shown = present(&back);
        assert_eq!(shown["eventId"], "evt");
        assert_eq!(shown["time"], "2023-11-14T22:13:20.000Z");
        assert_eq!(shown["refreshed"], true);
        assert!(shown.get("reason").is_none());
    }
    fn read_event() -> AuditEvent {
        AuditEvent::new(
            "credential.read",
            Some("u1"),
            "Connections/c/Users/u1/Credentials",
            Ok(()),
        )
        .refreshed(true)
        .on_behalf_of("u2")
    }

    #[test]
    fn a_logged_event_reads_back_as_it_was_written() {
        let event = read_event();
        let (back, at) = parse_log_line(&log_line(&event, 1_700_000_000_123)).expect("an audit line");
        assert_eq!(back, event);
        assert_eq!(at, 1_700_000_000_123);
        // Lambda reads `level` for its filter; the subscription's pattern reads `credvaultAudit`.
        let line: serde_json::Value = serde_json::from_str(&log_line(&event, 1)).unwrap();
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["credvaultAudit"], LOG_LINE_VERSION);
    }

    #[test]
    fn only_lines_exactly_as_the_vault_writes_them_are_audit_events() {
        let good: serde_json::Value = serde_json::from_str(&log_line(&read_event(), 1_700_000_000_000)).unwrap();
        let with = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut line = good.clone();
            edit(&mut line);
            parse_log_line(&line.to_string())
        };
        assert!(with(&|_| {}).is_some());
        assert!(with(&|l| l["credvaultAudit"] = json!(2)).is_none(), "another version");
        assert!(with(&|l| l["timeMs"] = json!(0)).is_none(), "no time");
        assert!(
            with(&|l| l["extra"] = json!(1)).is_none(),
            "a field the vault does not write"
        );
        assert!(
            with(&|l| l["event"]["extra"] = json!(1)).is_none(),
            "an event field the vault does not write"
        );
        assert!(
            with(&|l| l["event"]["eventId"] = json!("../AUDIT#3")).is_none(),
            "an id the vault does not make"
        );
        assert!(with(&|l| l["event"]["action"] = json!("")).is_none(), "no action");
        assert!(
            with(&|l| l["event"]["resource"] = json!("r".repeat(MAX_LOGGED_FIELD + 1))).is_none(),
            "unbounded text"
        );
        assert!(
            with(&|l| l["event"]["reason"] = json!("r".repeat(MAX_LOGGED_FIELD + 1))).is_none(),
            "unbounded text"
        );
        // The vault's own diagnostic lines (tracing's JSON) carry an event only nested, as an escaped string.
        let diagnostic = json!({"level": "INFO", "fields": {"message": "audit event", "audit": good.to_string()}, "target": "credvault::audit"});
        assert!(parse_log_line(&diagnostic.to_string()).is_none());
        assert!(parse_log_line("INFO audit event").is_none());
    }

    #[test]
    fn the_function_refuses_a_log_level_that_would_drop_audit_lines() {
        for allowed in [None, Some("info"), Some("DEBUG"), Some("trace")] {
            assert!(check_log_level(allowed).is_ok(), "{allowed:?}");
        }
        for refused in ["warn", "ERROR", "fatal"] {
            let err = check_log_level(Some(refused)).unwrap_err();
            assert!(err.to_string().contains(&refused.to_ascii_uppercase()), "{err}");
        }
    }
    /// A log that cannot be written, as a closed standard output.
    struct BrokenLog;

    impl AuditLog for BrokenLog {
        fn write_line(&self, _: &str) -> std::io::Result<()> {
            Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "closed"))
        }
    }

    #[tokio::test]
    async fn a_read_whose_audit_line_cannot_be_written_is_not_answered() {
        let client = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::Config::builder()
                .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
                .build(),
        );
        let trail = AuditTrail::new(
            Table::new(client, "unused"),
            Arc::new(crate::clock::SystemClock),
            Duration::from_secs(60),
            Arc::new(BrokenLog),
        );
        let answer: Result<&str, crate::ApiError> = trail
            .around_read(
                read_event(),
                async { Ok("the token") },
                |_| false,
                crate::ApiError::error_code,
            )
            .await;
        let refused = answer.expect_err("no credential leaves unaudited");
        assert_eq!((refused.status(), refused.error_code()), (503, "service_unavailable"));
        assert!(trail.refused_read(read_event()).is_err());
    }
}
