//! Roles and access records: the documents every instance loads into its policy snapshot. Every write
//! of one is a transaction with the `POLICY_STATS` item, which
//!
//! - counts roles, active records and their bytes, and refuses a write that would pass a limit, so
//!   the snapshot stays bounded;
//! - holds `policyVersion`, moved by every write: a grant change checked against a snapshot is
//!   written only if the policy is still that version, so two changes that are each allowed alone
//!   cannot race into one that is not (a role widened while a record naming it is checked).
//!
//! Deleted records move to their own partition, `DELETED_RECORDS` (readable, removed by TTL after a
//! retention period), so loading the snapshot never reads them.

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Delete, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update};

use super::documents::{self, Document, Kind, from_item};
use super::{Item, StoreError, TTL_ATTRIBUTE, Table, classify, n, s};

const CREATE: &str = "attribute_not_exists(pk)";
const UNCHANGED: &str = "attribute_exists(pk) AND updatedAtMs = :expected";
const STATS_PK: &str = "POLICY_STATS";
const STATS_SK: &str = "STATS";
const DELETED_RECORDS: &str = "DELETED_RECORDS";
/// How long a deleted record stays readable before DynamoDB's TTL removes it.
pub const DELETED_RECORD_RETENTION_SECS: i64 = 30 * 86_400;

/// The bounds of the policy snapshot every instance loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyLimits {
    pub max_roles: i64,
    pub max_records: i64,
    /// Sum of the JSON bodies of every role and active record.
    pub max_bytes: i64,
}

pub const POLICY_LIMITS: PolicyLimits = PolicyLimits {
    max_roles: 1_000,
    max_records: 20_000,
    max_bytes: 16 * 1024 * 1024,
};

/// Which limit a refused write would have passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyLimit {
    Count,
    Bytes,
}

/// The counters and the version, as stored: also the counter item's serde_dynamo shape, the one place
/// its attribute names are spelled (the update expressions below name the same; a unit test checks).
/// All zero before the first policy write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PolicyStats {
    #[serde(rename = "roleCount", default)]
    pub roles: i64,
    #[serde(rename = "recordCount", default)]
    pub records: i64,
    #[serde(rename = "policyBytes", default)]
    pub bytes: i64,
    #[serde(rename = "policyVersion", default)]
    pub version: i64,
}

impl PolicyStats {
    fn count(&self, kind: Kind) -> i64 {
        match kind {
            Kind::Role => self.roles,
            _ => self.records,
        }
    }
}

/// Why a policy write did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// A document with this id exists already.
    Exists,
    NotFound,
    /// The document changed since the version the caller named (`If-Unmodified-Since`).
    Conflict,
    LimitReached(PolicyLimit),
    /// The policy changed since the snapshot the write was checked against: check again.
    PolicyChanged,
}

fn counter(kind: Kind) -> (&'static str, i64) {
    match kind {
        Kind::Role => ("roleCount", POLICY_LIMITS.max_roles),
        _ => ("recordCount", POLICY_LIMITS.max_records),
    }
}

/// The counter update of a write of `count_delta` documents and `bytes_delta` bytes, conditional on
/// `seen_version` when the write was checked against a snapshot.
fn stats_update(
    kind: Kind,
    count_delta: i64,
    bytes_delta: i64,
    seen_version: Option<i64>,
    table: &Table,
) -> Result<Update, StoreError> {
    let (count_name, max_count) = counter(kind);
    let mut conditions = Vec::new();
    let mut update = Update::builder()
        .table_name(&table.name)
        .key("pk", s(STATS_PK))
        .key("sk", s(STATS_SK))
        .update_expression("ADD #count :count_delta, policyBytes :bytes_delta, policyVersion :one")
        .expression_attribute_names("#count", count_name)
        .expression_attribute_values(":count_delta", n(count_delta))
        .expression_attribute_values(":bytes_delta", n(bytes_delta))
        .expression_attribute_values(":one", n(1))
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
    match seen_version {
        Some(0) => conditions.push("attribute_not_exists(policyVersion)".to_string()),
        Some(v) => {
            conditions.push("policyVersion = :seen".to_string());
            update = update.expression_attribute_values(":seen", n(v));
        }
        None => {}
    }
    // Only a write that adds needs room; freeing room always goes through.
    if count_delta > 0 {
        conditions.push("(attribute_not_exists(#count) OR #count < :max_count)".to_string());
        update = update.expression_attribute_values(":max_count", n(max_count));
    }
    if bytes_delta > 0 {
        conditions.push("(attribute_not_exists(policyBytes) OR policyBytes <= :room)".to_string());
        update = update.expression_attribute_values(":room", n(POLICY_LIMITS.max_bytes - bytes_delta));
    }
    if !conditions.is_empty() {
        update = update.condition_expression(conditions.join(" AND "));
    }
    update.build().map_err(|e| StoreError::Malformed(e.to_string()))
}

/// Runs `items` (the document writes) with the counter update last; maps a cancellation to why.
async fn transact(
    table: &Table,
    kind: Kind,
    items: Vec<TransactWriteItem>,
    stats: Update,
    seen_version: Option<i64>,
) -> Result<Result<(), Refused>, StoreError> {
    let stats_index = items.len();
    let mut req = table.client.transact_write_items();
    for item in items {
        req = req.transact_items(item);
    }
    let result = req
        .transact_items(TransactWriteItem::builder().update(stats).build())
        .send()
        .await;
    let Err(err) = result else {
        return Ok(Ok(()));
    };
    if let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) = err.as_service_error() {
        let reasons = cancelled.cancellation_reasons();
        let code = |i: usize| reasons.get(i).and_then(|r| r.code()).unwrap_or_default();
        // Another policy write at the same moment: the same as a changed version.
        if (0..=stats_index).any(|i| code(i) == "TransactionConflict") {
            return Ok(Err(Refused::PolicyChanged));
        }
        if (0..stats_index).any(|i| code(i) == "ConditionalCheckFailed") {
            return Ok(Err(Refused::Conflict));
        }
        if code(stats_index) == "ConditionalCheckFailed" {
            let old = reasons.get(stats_index).and_then(|r| r.item());
            return Ok(Err(why_stats_refused(kind, old, seen_version)));
        }
    }
    Err(classify("TransactWriteItems", err))
}

/// The counter, as it was, says whether the version moved or a limit stood in the way.
fn why_stats_refused(kind: Kind, old: Option<&Item>, seen_version: Option<i64>) -> Refused {
    let old: PolicyStats = old
        .and_then(|item| super::parse_item(item.clone()).ok())
        .unwrap_or_default();
    if seen_version.is_some_and(|seen| old.version != seen) {
        return Refused::PolicyChanged;
    }
    let (_, max_count) = counter(kind);
    if old.count(kind) >= max_count {
        Refused::LimitReached(PolicyLimit::Count)
    } else {
        Refused::LimitReached(PolicyLimit::Bytes)
    }
}

fn built<T, E: std::fmt::Display>(result: Result<T, E>) -> Result<T, StoreError> {
    result.map_err(|e| StoreError::Malformed(e.to_string()))
}

/// Creates a role or record; with `seen_version`, only onto that version of the policy.
pub async fn create(
    table: &Table,
    kind: Kind,
    id: &str,
    body: &serde_json::Value,
    now_ms: i64,
    seen_version: Option<i64>,
) -> Result<Result<Document, Refused>, StoreError> {
    let body_text = body.to_string();
    let put = built(
        Put::builder()
            .table_name(&table.name)
            .set_item(Some(documents::item(
                kind.partition(),
                kind,
                id,
                &body_text,
                now_ms,
                now_ms,
            )?))
            .condition_expression(CREATE)
            .build(),
    )?;
    let stats = stats_update(kind, 1, body_text.len() as i64, seen_version, table)?;
    let outcome = transact(
        table,
        kind,
        vec![TransactWriteItem::builder().put(put).build()],
        stats,
        seen_version,
    )
    .await?;
    Ok(outcome
        .map(|()| Document {
            id: id.to_string(),
            body: body.clone(),
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
        })
        .map_err(|refused| {
            if refused == Refused::Conflict {
                Refused::Exists
            } else {
                refused
            }
        }))
}

/// Replaces a role's or record's body, on the version of it the caller names (`If-Unmodified-Since`)
/// or the one read here, and with `seen_version` only onto that version of the policy.
pub async fn replace(
    table: &Table,
    kind: Kind,
    id: &str,
    body: &serde_json::Value,
    expected_updated_at_ms: Option<i64>,
    now_ms: i64,
    seen_version: Option<i64>,
) -> Result<Result<Document, Refused>, StoreError> {
    let Some(current) = documents::get(table, kind, id).await? else {
        return Ok(Err(Refused::NotFound));
    };
    if expected_updated_at_ms.is_some_and(|e| e != current.updated_at_ms) {
        return Ok(Err(Refused::Conflict));
    }
    let body_text = body.to_string();
    let update = built(
        Update::builder()
            .table_name(&table.name)
            .key("pk", s(kind.partition()))
            .key("sk", s(kind.sort_key(id)))
            .update_expression("SET body = :body, updatedAtMs = :now")
            .condition_expression(UNCHANGED)
            .expression_attribute_values(":expected", n(current.updated_at_ms))
            .expression_attribute_values(":body", s(&body_text))
            .expression_attribute_values(":now", n(now_ms))
            .build(),
    )?;
    let stats = stats_update(
        kind,
        0,
        body_text.len() as i64 - current.counted_bytes(),
        seen_version,
        table,
    )?;
    let outcome = transact(
        table,
        kind,
        vec![TransactWriteItem::builder().update(update).build()],
        stats,
        seen_version,
    )
    .await?;
    Ok(outcome.map(|()| Document {
        id: id.to_string(),
        body: body.clone(),
        created_at_ms: current.created_at_ms,
        updated_at_ms: now_ms,
    }))
}

/// Deletes a role. Taking permissions away needs no snapshot, but it moves the version, so a grant
/// change checked while the role still existed is checked again.
pub async fn delete_role(table: &Table, id: &str) -> Result<Result<(), Refused>, StoreError> {
    let Some(current) = documents::get(table, Kind::Role, id).await? else {
        return Ok(Err(Refused::NotFound));
    };
    let delete = built(
        Delete::builder()
            .table_name(&table.name)
            .key("pk", s(Kind::Role.partition()))
            .key("sk", s(Kind::Role.sort_key(id)))
            .condition_expression(UNCHANGED)
            .expression_attribute_values(":expected", n(current.updated_at_ms))
            .build(),
    )?;
    let stats = stats_update(Kind::Role, -1, -current.counted_bytes(), None, table)?;
    transact(
        table,
        Kind::Role,
        vec![TransactWriteItem::builder().delete(delete).build()],
        stats,
        None,
    )
    .await
}

/// Deletes a record as Authress does: `body` (marked DELETED) stays readable in `DELETED_RECORDS`
/// until the TTL removes it; the live item, its count and its bytes go at once.
pub async fn retire_record(
    table: &Table,
    id: &str,
    body: &serde_json::Value,
    expected_updated_at_ms: i64,
    now_ms: i64,
) -> Result<Result<Document, Refused>, StoreError> {
    let Some(current) = documents::get(table, Kind::Record, id).await? else {
        return Ok(Err(Refused::NotFound));
    };
    if current.updated_at_ms != expected_updated_at_ms {
        return Ok(Err(Refused::Conflict));
    }
    let live = built(
        Delete::builder()
            .table_name(&table.name)
            .key("pk", s(Kind::Record.partition()))
            .key("sk", s(Kind::Record.sort_key(id)))
            .condition_expression(UNCHANGED)
            .expression_attribute_values(":expected", n(current.updated_at_ms))
            .build(),
    )?;
    let tombstone = built(
        Put::builder()
            .table_name(&table.name)
            .set_item(Some(documents::item(
                DELETED_RECORDS,
                Kind::Record,
                id,
                &body.to_string(),
                current.created_at_ms,
                now_ms,
            )?))
            .item(TTL_ATTRIBUTE, n(now_ms / 1000 + DELETED_RECORD_RETENTION_SECS))
            .build(),
    )?;
    let stats = stats_update(Kind::Record, -1, -current.counted_bytes(), None, table)?;
    let items = vec![
        TransactWriteItem::builder().delete(live).build(),
        TransactWriteItem::builder().put(tombstone).build(),
    ];
    let outcome = transact(table, Kind::Record, items, stats, None).await?;
    Ok(outcome.map(|()| Document {
        id: id.to_string(),
        body: body.clone(),
        created_at_ms: current.created_at_ms,
        updated_at_ms: now_ms,
    }))
}

/// A deleted record, while its retention lasts.
pub async fn deleted_record(table: &Table, id: &str) -> Result<Option<Document>, StoreError> {
    let out = table
        .client
        .get_item()
        .table_name(&table.name)
        .key("pk", s(DELETED_RECORDS))
        .key("sk", s(Kind::Record.sort_key(id)))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| classify("GetItem", e))?;
    out.item.map(from_item).transpose()
}

/// The counters and the version (all zero before the first policy write).
pub async fn stats(table: &Table) -> Result<PolicyStats, StoreError> {
    let out = table
        .client
        .get_item()
        .table_name(&table.name)
        .key("pk", s(STATS_PK))
        .key("sk", s(STATS_SK))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| classify("GetItem", e))?;
    Ok(out.item.map(super::parse_item).transpose()?.unwrap_or_default())
}

const SET_COUNTS: &str = "SET roleCount = :roles, recordCount = :records, policyBytes = :bytes ADD policyVersion :one";

/// Sets the counters outright (the security migration recounts them), moving the version on. Unlike
/// every other write here it is unconditioned: it may create the item, and whatever it finds is wrong.
pub async fn set_counts(table: &Table, roles: i64, records: i64, bytes: i64) -> Result<(), StoreError> {
    table
        .client
        .update_item()
        .table_name(&table.name)
        .key("pk", s(STATS_PK))
        .key("sk", s(STATS_SK))
        .update_expression(SET_COUNTS)
        .expression_attribute_values(":roles", n(roles))
        .expression_attribute_values(":records", n(records))
        .expression_attribute_values(":bytes", n(bytes))
        .expression_attribute_values(":one", n(1))
        .send()
        .await
        .map_err(|e| classify("UpdateItem", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The attribute names an expression uses: its words that are neither placeholders nor keywords.
    fn names(expression: &str) -> Vec<String> {
        const KEYWORDS: [&str; 7] = [
            "ADD",
            "SET",
            "AND",
            "OR",
            "attribute_exists",
            "attribute_not_exists",
            "pk",
        ];
        expression
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '#'))
            .filter(|w| !w.is_empty() && !w.starts_with([':', '#']) && !KEYWORDS.contains(w))
            .filter(|w| !w.chars().all(|c| c.is_ascii_digit()))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn the_counter_updates_name_only_attributes_of_the_stats_shape() {
        let shape = crate::store::to_item(PolicyStats::default()).unwrap();
        let table = Table::new(
            aws_sdk_dynamodb::Client::from_conf(
                aws_sdk_dynamodb::Config::builder()
                    .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
                    .build(),
            ),
            "t",
        );
        let mut used = Vec::new();
        for kind in [Kind::Role, Kind::Record] {
            for (delta, seen) in [(1, Some(0)), (1, Some(7)), (-1, None)] {
                let update = stats_update(kind, delta, delta * 10, seen, &table).unwrap();
                used.extend(names(update.update_expression()));
                used.extend(names(update.condition_expression().unwrap_or_default()));
                used.extend(
                    update
                        .expression_attribute_names()
                        .into_iter()
                        .flatten()
                        .map(|(_, v)| v.clone()),
                );
            }
        }
        used.extend(names(SET_COUNTS));
        assert!(used.len() > 8, "{used:?}");
        for name in &used {
            assert!(shape.contains_key(name), "{name} is not an attribute of PolicyStats");
        }
        let stored: PolicyStats = crate::store::parse_item(shape).unwrap();
        assert_eq!(stored, PolicyStats::default());
    }
}
