//! Management documents (roles, access records, service clients): one JSON body per item, kept in one
//! partition per kind so they can be listed with a cursor. `updatedAtMs` doubles as the version that
//! optimistic updates (`If-Unmodified-Since`) are conditional on. Roles and records are written
//! through `policy.rs`, which counts and versions them; clients are written here.

use super::{Item, PageQuery, StoreError, Table, classify, n, s};

const CREATE: &str = "attribute_not_exists(pk)";
const REPLACE: &str = "attribute_exists(pk)";
const REPLACE_IF_UNCHANGED: &str = "attribute_exists(pk) AND updatedAtMs = :expected";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Role,
    Record,
    Client,
}

impl Kind {
    pub(crate) fn partition(self) -> &'static str {
        match self {
            Kind::Role => "ROLES",
            Kind::Record => "RECORDS",
            Kind::Client => "CLIENTS",
        }
    }

    pub(crate) fn sort_key(self, id: &str) -> String {
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
}

impl Document {
    /// What this document counts against the policy size limit.
    pub fn counted_bytes(&self) -> i64 {
        self.body.to_string().len() as i64
    }
}

/// The stored shape of a document (serde_dynamo, camelCase attributes). The body is kept as JSON
/// text: a document is read and written whole, never queried inside.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredDocument {
    pk: String,
    sk: String,
    id: String,
    body: String,
    created_at_ms: i64,
    updated_at_ms: i64,
}

/// The item of document `id` of `kind`, in partition `pk` (the kind's own, or a tombstone partition).
pub(crate) fn item(
    pk: &str,
    kind: Kind,
    id: &str,
    body_text: &str,
    created_at_ms: i64,
    updated_at_ms: i64,
) -> Result<Item, StoreError> {
    super::to_item(StoredDocument {
        pk: pk.to_string(),
        sk: kind.sort_key(id),
        id: id.to_string(),
        body: body_text.to_string(),
        created_at_ms,
        updated_at_ms,
    })
}

pub(crate) fn from_item(item: Item) -> Result<Document, StoreError> {
    let stored: StoredDocument = super::parse_item(item)?;
    let body = serde_json::from_str(&stored.body).map_err(|e| StoreError::Malformed(format!("body: {e}")))?;
    Ok(Document {
        id: stored.id,
        body,
        created_at_ms: stored.created_at_ms,
        updated_at_ms: stored.updated_at_ms,
    })
}

/// `Ok(false)`: a document with this id exists already.
pub async fn create(
    table: &Table,
    kind: Kind,
    id: &str,
    body: &serde_json::Value,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let result = table
        .client
        .put_item()
        .table_name(&table.name)
        .set_item(Some(item(
            kind.partition(),
            kind,
            id,
            &body.to_string(),
            now_ms,
            now_ms,
        )?))
        .condition_expression(CREATE)
        .send()
        .await;
    super::condition_outcome("PutItem", result)
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
    out.item.map(from_item).transpose()
}

#[derive(Debug)]
pub enum ReplaceOutcome {
    Replaced(Document),
    NotFound,
    /// Changed since the version the caller read.
    Conflict,
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
    let mut req = table
        .client
        .update_item()
        .table_name(&table.name)
        .key("pk", s(kind.partition()))
        .key("sk", s(kind.sort_key(id)))
        .update_expression("SET body = :body, updatedAtMs = :now")
        .expression_attribute_values(":body", s(body.to_string()))
        .expression_attribute_values(":now", n(now_ms))
        .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
        .return_values_on_condition_check_failure(aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure::AllOld);
    req = match expected_updated_at_ms {
        Some(expected) => req
            .condition_expression(REPLACE_IF_UNCHANGED)
            .expression_attribute_values(":expected", n(expected)),
        None => req.condition_expression(REPLACE),
    };
    match req.send().await {
        Ok(out) => {
            let item = out
                .attributes
                .ok_or_else(|| StoreError::Malformed("update returned nothing".into()))?;
            Ok(ReplaceOutcome::Replaced(from_item(item)?))
        }
        Err(err) => {
            use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
            if let Some(UpdateItemError::ConditionalCheckFailedException(failed)) = err.as_service_error() {
                return Ok(if failed.item.is_some() {
                    ReplaceOutcome::Conflict
                } else {
                    ReplaceOutcome::NotFound
                });
            }
            Err(classify("UpdateItem", err))
        }
    }
}

/// `Ok(false)`: there was no such document.
pub async fn delete(table: &Table, kind: Kind, id: &str) -> Result<bool, StoreError> {
    super::delete_existing(table, kind.partition(), &kind.sort_key(id)).await
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
    };
    let (items, next) = super::query_page(table, page).await?;
    Ok((items.into_iter().map(from_item).collect::<Result<Vec<_>, _>>()?, next))
}

/// Every document of a kind (for the policy snapshot).
pub async fn list_all(table: &Table, kind: Kind) -> Result<Vec<Document>, StoreError> {
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let (page, next) = list(table, kind, 500, cursor.as_deref()).await?;
        all.extend(page);
        match next {
            Some(c) => cursor = Some(c),
            None => return Ok(all),
        }
    }
}
