//! Management documents (roles, access records, service clients): one JSON body per item, kept in one
//! partition per kind so they can be listed with a cursor. `updatedAtMs` doubles as the version that
//! optimistic updates (`If-Unmodified-Since`) are conditional on.
//!
//! Roles and records are what every instance loads into its policy snapshot, so their number and
//! total size are bounded: each write of one is a transaction with the `POLICY_STATS` counter item,
//! whose condition refuses a write that would pass a limit. Deleted records are kept (as Authress
//! does) but leave the snapshot and the counts at once, and the table itself after a retention period.

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem, Update};

use super::{Item, PageQuery, StoreError, TTL_ATTRIBUTE, Table, classify, get_n, get_s, n, s};

const CREATE: &str = "attribute_not_exists(pk)";
const REPLACE_IF_UNCHANGED: &str = "attribute_exists(pk) AND updatedAtMs = :expected";
/// The counter admits a write while the count stays within its limit and the bytes within theirs.
const WITHIN_LIMITS: &str = "attribute_not_exists(pk) OR ((attribute_not_exists(#count) OR #count < :max_count) \
     AND (attribute_not_exists(policyBytes) OR policyBytes <= :room))";
/// A write that frees room (or keeps the count) only needs the bytes to fit.
const WITHIN_BYTES: &str = "attribute_not_exists(pk) OR attribute_not_exists(policyBytes) OR policyBytes <= :room";
const STATS_PK: &str = "POLICY_STATS";
const STATS_SK: &str = "STATS";
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Role,
    Record,
    Client,
}

impl Kind {
    /// The counter attribute of a kind in the policy snapshot; clients are not in it.
    fn counter(self) -> Option<(&'static str, i64)> {
        match self {
            Kind::Role => Some(("roleCount", POLICY_LIMITS.max_roles)),
            Kind::Record => Some(("recordCount", POLICY_LIMITS.max_records)),
            Kind::Client => None,
        }
    }

    fn partition(self) -> &'static str {
        match self {
            Kind::Role => "ROLES",
            Kind::Record => "RECORDS",
            Kind::Client => "CLIENTS",
        }
    }

    fn sort_key(self, id: &str) -> String {
        let prefix = match self {
            Kind::Role => "ROLE",
            Kind::Record => "RECORD",
            Kind::Client => "CLIENT",
        };
        format!("{prefix}#{id}")
    }
}

#[derive(Debug, Clone)]
pub struct Document {
    pub id: String,
    pub body: serde_json::Value,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// A deleted record: kept for a while, outside the policy snapshot and the counts.
    pub retired: bool,
}

impl Document {
    /// What this document counts against the policy size limit.
    pub fn counted_bytes(&self) -> i64 {
        self.body.to_string().len() as i64
    }
}

fn from_item(item: &Item) -> Result<Document, StoreError> {
    let body = serde_json::from_str(&get_s(item, "body")?).map_err(|e| StoreError::Malformed(format!("body: {e}")))?;
    Ok(Document {
        id: get_s(item, "id")?,
        body,
        created_at_ms: get_n(item, "createdAtMs")?,
        updated_at_ms: get_n(item, "updatedAtMs")?,
        retired: super::opt_n(item, "retiredAtMs")?.is_some(),
    })
}

#[derive(Debug, PartialEq, Eq)]
pub enum CreateOutcome {
    Created,
    /// A document with this id exists already.
    Exists,
    LimitReached(PolicyLimit),
}

/// The counter update that goes with a write of `count_delta` documents and `bytes_delta` bytes;
/// `None` for kinds outside the policy snapshot.
fn stats_update(table: &Table, kind: Kind, count_delta: i64, bytes_delta: i64) -> Result<Option<Update>, StoreError> {
    let Some((counter, max_count)) = kind.counter() else {
        return Ok(None);
    };
    let mut update = Update::builder()
        .table_name(&table.name)
        .key("pk", s(STATS_PK))
        .key("sk", s(STATS_SK))
        .update_expression("ADD #count :count_delta, policyBytes :bytes_delta")
        .expression_attribute_names("#count", counter)
        .expression_attribute_values(":count_delta", n(count_delta))
        .expression_attribute_values(":bytes_delta", n(bytes_delta));
    // Only a write that adds needs room; freeing room always goes through.
    let room = POLICY_LIMITS.max_bytes - bytes_delta;
    if count_delta > 0 {
        update = update
            .condition_expression(WITHIN_LIMITS)
            .expression_attribute_values(":max_count", n(max_count))
            .expression_attribute_values(":room", n(room));
    } else if bytes_delta > 0 {
        update = update
            .condition_expression(WITHIN_BYTES)
            .expression_attribute_values(":room", n(room));
    }
    update
        .build()
        .map(Some)
        .map_err(|e| StoreError::Malformed(e.to_string()))
}

/// Why a transaction of (document write, counter update) was cancelled.
enum Cancelled {
    Document,
    Limit(PolicyLimit),
}

/// Which limit the counter, as it was, stood in the way of (`count` documents of `kind` more).
fn which_limit(kind: Kind, counter: Option<&Item>) -> PolicyLimit {
    let at_count = kind.counter().is_some_and(|(name, max)| {
        counter
            .and_then(|item| super::opt_n(item, name).ok().flatten())
            .is_some_and(|count| count >= max)
    });
    if at_count {
        PolicyLimit::Count
    } else {
        PolicyLimit::Bytes
    }
}

async fn transact(
    table: &Table,
    kind: Kind,
    document: TransactWriteItem,
    mut stats: Update,
) -> Result<Result<(), Cancelled>, StoreError> {
    // The counter as it was tells which limit refused the write.
    stats.return_values_on_condition_check_failure =
        Some(aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld);
    let result = table
        .client
        .transact_write_items()
        .transact_items(document)
        .transact_items(TransactWriteItem::builder().update(stats).build())
        .send()
        .await;
    match result {
        Ok(_) => Ok(Ok(())),
        Err(err) => {
            if let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) = err.as_service_error() {
                let failed = |i: usize| {
                    cancelled
                        .cancellation_reasons()
                        .get(i)
                        .and_then(|r| r.code())
                        .is_some_and(|c| c == "ConditionalCheckFailed")
                };
                if failed(0) {
                    return Ok(Err(Cancelled::Document));
                }
                if failed(1) {
                    let counter = cancelled.cancellation_reasons().get(1).and_then(|r| r.item());
                    return Ok(Err(Cancelled::Limit(which_limit(kind, counter))));
                }
            }
            Err(classify("TransactWriteItems", err))
        }
    }
}

pub async fn create(
    table: &Table,
    kind: Kind,
    id: &str,
    body: &serde_json::Value,
    now_ms: i64,
) -> Result<CreateOutcome, StoreError> {
    let body_text = body.to_string();
    let put = Put::builder()
        .table_name(&table.name)
        .item("pk", s(kind.partition()))
        .item("sk", s(kind.sort_key(id)))
        .item("id", s(id))
        .item("body", s(&body_text))
        .item("createdAtMs", n(now_ms))
        .item("updatedAtMs", n(now_ms))
        .condition_expression(CREATE)
        .build()
        .map_err(|e| StoreError::Malformed(e.to_string()))?;
    let Some(stats) = stats_update(table, kind, 1, body_text.len() as i64)? else {
        // Not in the policy snapshot: a plain conditional put.
        let result = table
            .client
            .put_item()
            .table_name(&table.name)
            .set_item(Some(put.item))
            .condition_expression(CREATE)
            .send()
            .await;
        return Ok(if super::condition_outcome("PutItem", result)? {
            CreateOutcome::Created
        } else {
            CreateOutcome::Exists
        });
    };
    Ok(
        match transact(table, kind, TransactWriteItem::builder().put(put).build(), stats).await? {
            Ok(()) => CreateOutcome::Created,
            Err(Cancelled::Document) => CreateOutcome::Exists,
            Err(Cancelled::Limit(limit)) => CreateOutcome::LimitReached(limit),
        },
    )
}

pub async fn get(table: &Table, kind: Kind, id: &str) -> Result<Option<Document>, StoreError> {
    let out = table
        .client
        .get_item()
        .table_name(&table.name)
        .key("pk", s(kind.partition()))
        .key("sk", s(kind.sort_key(id)))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| classify("GetItem", e))?;
    out.item.map(|item| from_item(&item)).transpose()
}

#[derive(Debug)]
pub enum ReplaceOutcome {
    Replaced(Document),
    NotFound,
    /// Changed since the version the caller read.
    Conflict,
    LimitReached(PolicyLimit),
}

/// Replaces the body; with `expected_updated_at_ms`, only if nobody changed it since.
pub async fn replace(
    table: &Table,
    kind: Kind,
    id: &str,
    body: &serde_json::Value,
    expected_updated_at_ms: Option<i64>,
    now_ms: i64,
) -> Result<ReplaceOutcome, StoreError> {
    write_over(table, kind, id, body, expected_updated_at_ms, now_ms, None).await
}

/// Marks a record deleted: it stays readable with its new body, gives nothing, leaves the counts, and
/// is removed by TTL after `DELETED_RECORD_RETENTION_SECS`.
pub async fn retire(
    table: &Table,
    kind: Kind,
    id: &str,
    body: &serde_json::Value,
    expected_updated_at_ms: i64,
    now_ms: i64,
) -> Result<ReplaceOutcome, StoreError> {
    let delete_after = now_ms / 1000 + DELETED_RECORD_RETENTION_SECS;
    write_over(
        table,
        kind,
        id,
        body,
        Some(expected_updated_at_ms),
        now_ms,
        Some(delete_after),
    )
    .await
}

/// The one read-modify-write of a document: the counter moves by the size the body changed by, on the
/// exact version read (so the difference is right); an unconditioned replace retries a lost race.
async fn write_over(
    table: &Table,
    kind: Kind,
    id: &str,
    body: &serde_json::Value,
    expected_updated_at_ms: Option<i64>,
    now_ms: i64,
    retire_after: Option<i64>,
) -> Result<ReplaceOutcome, StoreError> {
    for _ in 0..3 {
        // A deleted record is gone as far as writes go: it can be neither changed nor deleted again.
        let Some(current) = get(table, kind, id).await?.filter(|d| !d.retired) else {
            return Ok(ReplaceOutcome::NotFound);
        };
        if expected_updated_at_ms.is_some_and(|e| e != current.updated_at_ms) {
            return Ok(ReplaceOutcome::Conflict);
        }
        let body_text = body.to_string();
        let (count_delta, bytes_delta) = match retire_after {
            Some(_) => (-1, -current.counted_bytes()),
            None => (0, body_text.len() as i64 - current.counted_bytes()),
        };
        let mut update = Update::builder()
            .table_name(&table.name)
            .key("pk", s(kind.partition()))
            .key("sk", s(kind.sort_key(id)))
            .condition_expression(REPLACE_IF_UNCHANGED)
            .expression_attribute_values(":expected", n(current.updated_at_ms))
            .expression_attribute_values(":body", s(&body_text))
            .expression_attribute_values(":now", n(now_ms));
        update = match retire_after {
            Some(after) => update
                .update_expression(format!(
                    "SET body = :body, updatedAtMs = :now, retiredAtMs = :now, {TTL_ATTRIBUTE} = :after"
                ))
                .expression_attribute_values(":after", n(after)),
            None => update.update_expression("SET body = :body, updatedAtMs = :now"),
        };
        let update = update.build().map_err(|e| StoreError::Malformed(e.to_string()))?;
        let outcome = match stats_update(table, kind, count_delta, bytes_delta)? {
            Some(stats) => transact(table, kind, TransactWriteItem::builder().update(update).build(), stats).await?,
            None => {
                let result = table
                    .client
                    .update_item()
                    .table_name(&table.name)
                    .set_key(Some(update.key))
                    .update_expression(update.update_expression)
                    .condition_expression(REPLACE_IF_UNCHANGED)
                    .set_expression_attribute_values(update.expression_attribute_values)
                    .send()
                    .await;
                if super::condition_outcome("UpdateItem", result)? {
                    Ok(())
                } else {
                    Err(Cancelled::Document)
                }
            }
        };
        match outcome {
            Ok(()) => {
                return Ok(ReplaceOutcome::Replaced(Document {
                    id: id.to_string(),
                    body: body.clone(),
                    created_at_ms: current.created_at_ms,
                    updated_at_ms: now_ms,
                    retired: retire_after.is_some(),
                }));
            }
            Err(Cancelled::Limit(limit)) => return Ok(ReplaceOutcome::LimitReached(limit)),
            Err(Cancelled::Document) if expected_updated_at_ms.is_some() => return Ok(ReplaceOutcome::Conflict),
            Err(Cancelled::Document) => continue,
        }
    }
    Ok(ReplaceOutcome::Conflict)
}

/// `Ok(false)`: there was no such document. A counted document leaves the counts with it.
pub async fn delete(table: &Table, kind: Kind, id: &str) -> Result<bool, StoreError> {
    if kind.counter().is_none() {
        return super::delete_existing(table, kind.partition(), &kind.sort_key(id)).await;
    }
    for _ in 0..3 {
        let Some(current) = get(table, kind, id).await? else {
            return Ok(false);
        };
        let (count_delta, bytes_delta) = if current.retired {
            (0, 0)
        } else {
            (-1, -current.counted_bytes())
        };
        let delete = Delete::builder()
            .table_name(&table.name)
            .key("pk", s(kind.partition()))
            .key("sk", s(kind.sort_key(id)))
            .condition_expression(REPLACE_IF_UNCHANGED)
            .expression_attribute_values(":expected", n(current.updated_at_ms))
            .build()
            .map_err(|e| StoreError::Malformed(e.to_string()))?;
        let Some(stats) = stats_update(table, kind, count_delta, bytes_delta)? else {
            unreachable!("counted kinds have a counter");
        };
        match transact(table, kind, TransactWriteItem::builder().delete(delete).build(), stats).await? {
            Ok(()) => return Ok(true),
            Err(_) => continue,
        }
    }
    Err(StoreError::Malformed(format!("{id} kept changing while being deleted")))
}

/// Sets the counters outright: the security migration recounts them from the documents.
pub async fn set_policy_stats(table: &Table, roles: i64, records: i64, bytes: i64) -> Result<(), StoreError> {
    table
        .client
        .put_item()
        .table_name(&table.name)
        .item("pk", s(STATS_PK))
        .item("sk", s(STATS_SK))
        .item("roleCount", n(roles))
        .item("recordCount", n(records))
        .item("policyBytes", n(bytes))
        .send()
        .await
        .map_err(|e| classify("PutItem", e))?;
    Ok(())
}

/// The current counts, for operators and the benchmark: (roles, records, bytes).
pub async fn policy_stats(table: &Table) -> Result<(i64, i64, i64), StoreError> {
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
    let item = out.item.unwrap_or_default();
    let count = |name| super::opt_n(&item, name).map(Option::unwrap_or_default);
    Ok((count("roleCount")?, count("recordCount")?, count("policyBytes")?))
}

/// One page, in id order, after `cursor` (an opaque value from the previous page).
pub async fn list(
    table: &Table,
    kind: Kind,
    limit: i32,
    cursor: Option<&str>,
) -> Result<(Vec<Document>, Option<String>), StoreError> {
    let page = PageQuery {
        pk: kind.partition(),
        sk_prefix: &kind.sort_key(""),
        limit,
        cursor,
        newest_first: false,
        filter: None,
    };
    let (items, next) = super::query_page(table, page).await?;
    Ok((items.iter().map(from_item).collect::<Result<Vec<_>, _>>()?, next))
}

/// Every live document of a kind, for the policy snapshot: deleted records stay in the table but are
/// filtered out by DynamoDB, so they never reach an instance's memory.
pub async fn list_all(table: &Table, kind: Kind) -> Result<Vec<Document>, StoreError> {
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let page = PageQuery {
            pk: kind.partition(),
            sk_prefix: &kind.sort_key(""),
            limit: 1000,
            cursor: cursor.as_deref(),
            newest_first: false,
            filter: Some(super::Filter {
                expression: "attribute_not_exists(retiredAtMs)".into(),
                names: Vec::new(),
                values: Vec::new(),
            }),
        };
        let (items, next) = super::query_page(table, page).await?;
        for item in &items {
            all.push(from_item(item)?);
        }
        match next {
            Some(c) => cursor = Some(c),
            None => return Ok(all),
        }
    }
}
