//! The audit trail: every credential read, refresh, re-authentication transition, disconnect and
//! change to connections, clients, roles and records, as a structured event in DynamoDB (kept for the
//! retention period by TTL) and as a JSON log line. Events name who, what and the outcome; never a
//! secret.

use aws_sdk_dynamodb::types::AttributeValue;
use serde::Serialize;
use serde_json::json;

use crate::error::ApiError;
use crate::services::Services;
use crate::store::{Filter, Item, PageQuery, TTL_ATTRIBUTE, classify, get_n, get_s, n, opt_s, s};

/// All events share one partition, newest last by sort key. DynamoDB takes about 1000 writes a second
/// per partition: the ceiling of audited operations a second for one vault.
const PARTITION: &str = "AUDIT";

#[derive(Debug, Clone, Serialize)]
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
    pub fn new(action: &str, caller: Option<&str>, resource: &str, outcome: Result<(), &ApiError>) -> Self {
        Self {
            event_id: crate::random::token(9),
            time: String::new(),
            action: action.to_string(),
            caller: caller.map(String::from),
            resource: resource.to_string(),
            outcome: outcome.err().map_or("ok".to_string(), |e| e.error_code().to_string()),
            refreshed: None,
            reason: None,
        }
    }

    pub fn reason(mut self, reason: &str) -> Self {
        self.reason = Some(reason.to_string());
        self
    }

    pub fn refreshed(mut self, refreshed: bool) -> Self {
        self.refreshed = Some(refreshed);
        self
    }
}

/// Writes the event to the log and, unless `only_log`, to the table. A failed table write is logged
/// and does not fail the request it describes: the log line still holds the event.
pub async fn record(services: &Services, mut event: AuditEvent) {
    let now_ms = services.clock.now_millis();
    event.time = crate::clock::iso8601_millis(now_ms);
    tracing::info!(audit = %json!(event), "audit event");
    let retention_secs = services.config.audit_retention.as_secs() as i64;
    let mut req = services
        .table
        .client
        .put_item()
        .table_name(&services.table.name)
        .item("pk", s(PARTITION))
        .item("sk", s(format!("{now_ms:015}#{}", event.event_id)))
        .item("action", s(&event.action))
        .item("resource", s(&event.resource))
        .item("outcome", s(&event.outcome))
        .item("timeMs", n(now_ms))
        .item(TTL_ATTRIBUTE, n(now_ms / 1000 + retention_secs))
        .condition_expression("attribute_not_exists(pk)");
    if let Some(caller) = &event.caller {
        req = req.item("caller", s(caller));
    }
    if let Some(refreshed) = event.refreshed {
        req = req.item("refreshed", AttributeValue::Bool(refreshed));
    }
    if let Some(reason) = &event.reason {
        req = req.item("reason", s(reason));
    }
    if let Err(e) = req.send().await {
        tracing::error!(error = %classify("PutItem", e), action = %event.action, "audit event not stored in the table");
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

/// Newest first: `{events: [...], pagination: {next: {cursor}}}`.
pub async fn list(services: &Services, query: AuditQuery) -> Result<serde_json::Value, ApiError> {
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
    let page = PageQuery {
        pk: PARTITION,
        sk_prefix: "",
        limit: query.limit,
        cursor: query.cursor.as_deref(),
        newest_first: true,
        filter,
    };
    let (items, next) = crate::store::query_page(&services.table, page).await?;
    let events = items
        .iter()
        .map(present)
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::internal)?;
    Ok(json!({"events": events, "pagination": {"next": next.map(|cursor| json!({"cursor": cursor}))}}))
}

fn present(item: &Item) -> Result<serde_json::Value, crate::store::StoreError> {
    let sk = get_s(item, "sk")?;
    let mut event = json!({
        "eventId": sk.split_once('#').map(|(_, id)| id).unwrap_or_default(),
        "time": crate::clock::iso8601_millis(get_n(item, "timeMs")?),
        "action": get_s(item, "action")?,
        "resource": get_s(item, "resource")?,
        "outcome": get_s(item, "outcome")?,
    });
    if let Some(caller) = opt_s(item, "caller")? {
        event["caller"] = json!(caller);
    }
    if let Some(AttributeValue::Bool(refreshed)) = item.get("refreshed") {
        event["refreshed"] = json!(refreshed);
    }
    if let Some(reason) = opt_s(item, "reason")? {
        event["reason"] = json!(reason);
    }
    Ok(event)
}
