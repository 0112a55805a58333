//! DynamoDB items, one module per item kind. Every state-changing write carries a named condition;
//! a failed condition comes back as `StoreError::ConditionFailed`, never as a generic error.
//!
//! One table, keys `pk` (partition) and `sk` (sort). Short-lived items carry `deleteAfter`, the TTL
//! attribute, in epoch seconds; their own `expiresAt` is checked on read because TTL deletion is lazy.

pub mod connections;
pub mod credentials;
pub mod documents;
pub mod identities;
pub mod keep_alive;
pub mod login_requests;
pub mod policy;
pub mod vault_codes;

use std::collections::HashMap;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;

use crate::crypto::EncryptionContext;

pub type Item = HashMap<String, AttributeValue>;

/// DynamoDB's limit on a sort key; a longer one is a ValidationException, so it is refused before.
const MAX_SORT_KEY_BYTES: usize = 1024;

/// The TTL attribute of the table (see infra/template.yaml).
pub const TTL_ATTRIBUTE: &str = "deleteAfter";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The write's condition did not hold; the item as it was, when DynamoDB returned it.
    #[error("condition failed")]
    ConditionFailed(Option<Box<Item>>),
    #[error("DynamoDB throttled the request")]
    Throttled,
    /// DynamoDB did not answer usefully (timeout, connection failure, its own 5xx).
    #[error("DynamoDB {operation} is unavailable")]
    Unavailable {
        operation: &'static str,
        #[source]
        source: crate::aws_failure::Source,
    },
    #[error("stored item is malformed: {0}")]
    Malformed(String),
    /// A listing cursor this API never gave out: the caller's mistake, not the store's.
    #[error("the cursor is not one this API gave out")]
    BadCursor,
    #[error("DynamoDB {operation} failed")]
    Dynamo {
        operation: &'static str,
        #[source]
        source: crate::aws_failure::Source,
    },
}

/// The table and the client, handed to every item module.
#[derive(Clone)]
pub struct Table {
    pub client: aws_sdk_dynamodb::Client,
    pub name: String,
}

impl Table {
    pub fn new(client: aws_sdk_dynamodb::Client, name: impl Into<String>) -> Self {
        Self {
            client,
            name: name.into(),
        }
    }

    pub fn context(&self, pk: &str, sk: &str, attribute: &'static str) -> EncryptionContext {
        EncryptionContext {
            table: self.name.clone(),
            pk: pk.to_string(),
            sk: sk.to_string(),
            attribute,
        }
    }
}

/// Turns an SDK error into a store outcome: failed conditions, throttling and unavailability keep
/// their meaning; the SDK error stays as the source.
pub(crate) fn classify<E, R>(operation: &'static str, err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    use crate::aws_failure::{Failure, classify as failure};
    if err.as_service_error().and_then(|e| e.code()) == Some("ConditionalCheckFailedException") {
        return StoreError::ConditionFailed(None);
    }
    match failure(&err) {
        Failure::Throttled => StoreError::Throttled,
        Failure::Unavailable => StoreError::Unavailable {
            operation,
            source: Box::new(err),
        },
        Failure::Other => StoreError::Dynamo {
            operation,
            source: Box::new(err),
        },
    }
}

/// An item from its serde shape (serde_dynamo): the shape's field names are the attribute names, so
/// each item kind spells its attributes once, in its shape struct.
pub(crate) fn to_item<T: serde::Serialize>(shape: T) -> Result<Item, StoreError> {
    serde_dynamo::to_item(shape).map_err(|e| StoreError::Malformed(format!("item: {e}")))
}

/// The serde shape of a stored item; a missing or mistyped attribute is `Malformed`. Takes the item
/// the SDK answered with by value: a read parses it without a copy.
pub(crate) fn parse_item<T: serde::de::DeserializeOwned>(item: Item) -> Result<T, StoreError> {
    serde_dynamo::from_item(item).map_err(|e| StoreError::Malformed(format!("item: {e}")))
}

pub(crate) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(crate) fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(crate) fn b(value: Vec<u8>) -> AttributeValue {
    AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(value))
}

pub(crate) fn opt_s(item: &Item, name: &str) -> Result<Option<String>, StoreError> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::S(v)) => Ok(Some(v.clone())),
        Some(_) => Err(StoreError::Malformed(format!("{name} is not a string"))),
    }
}

pub(crate) fn opt_n(item: &Item, name: &str) -> Result<Option<i64>, StoreError> {
    match item.get(name) {
        None | Some(AttributeValue::Null(_)) => Ok(None),
        Some(AttributeValue::N(v)) => v
            .parse()
            .map(Some)
            .map_err(|_| StoreError::Malformed(format!("{name} is not an integer"))),
        Some(_) => Err(StoreError::Malformed(format!("{name} is not a number"))),
    }
}

/// The SHA-256 of a secret, base64url: how single-use secrets are keyed, so the raw value is never stored.
pub fn secret_digest(secret: &str) -> String {
    use base64::Engine;
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// `Ok(true)` when the write happened, `Ok(false)` when its condition did not hold.
pub(crate) fn condition_outcome<T, E, R>(
    operation: &'static str,
    result: Result<T, SdkError<E, R>>,
) -> Result<bool, StoreError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(true),
        Err(e) => match classify(operation, e) {
            StoreError::ConditionFailed(_) => Ok(false),
            other => Err(other),
        },
    }
}

/// What a consume-once delete came to.
pub(crate) enum Consumed {
    /// The item, deleted by this call: nobody else can have it.
    Taken(Item),
    /// The condition did not hold; the item as it is (left in place), or `None` when there is none.
    Refused(Option<Item>),
}

/// Deletes a single-use item (a login request, a vault code) if `condition` holds, and returns it:
/// the one conditional delete that makes each of them usable exactly once.
pub(crate) async fn consume_once(
    table: &Table,
    pk: &str,
    sk: &str,
    condition: &str,
    values: Vec<(&'static str, AttributeValue)>,
) -> Result<Consumed, StoreError> {
    use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
    use aws_sdk_dynamodb::types::{ReturnValue, ReturnValuesOnConditionCheckFailure};
    let mut req = table
        .client
        .delete_item()
        .table_name(&table.name)
        .key("pk", s(pk))
        .key("sk", s(sk))
        .condition_expression(condition)
        .return_values(ReturnValue::AllOld)
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
    for (name, value) in values {
        req = req.expression_attribute_values(name, value);
    }
    match req.send().await {
        Ok(out) => out
            .attributes
            .map(Consumed::Taken)
            .ok_or_else(|| StoreError::Malformed("delete returned no item".into())),
        Err(err) => match err.as_service_error() {
            Some(DeleteItemError::ConditionalCheckFailedException(failed)) => {
                Ok(Consumed::Refused(failed.item.clone()))
            }
            _ => Err(classify("DeleteItem", err)),
        },
    }
}

/// Deletes an item that must exist. `Ok(false)`: there was none.
pub(crate) async fn delete_existing(table: &Table, pk: &str, sk: &str) -> Result<bool, StoreError> {
    let result = table
        .client
        .delete_item()
        .table_name(&table.name)
        .key("pk", s(pk))
        .key("sk", s(sk))
        .condition_expression("attribute_exists(pk)")
        .send()
        .await;
    condition_outcome("DeleteItem", result)
}

/// One page of a partition in sort-key order: what the listing routes share. The cursor is the last
/// sort key of the previous page, base64url, and must start with `sk_prefix`.
pub(crate) struct PageQuery<'a> {
    pub pk: &'a str,
    pub sk_prefix: &'a str,
    pub limit: i32,
    pub cursor: Option<&'a str>,
}

/// A filter expression with its placeholders (the audit trail's listing), applied after a page is read.
pub(crate) struct Filter {
    pub expression: String,
    pub names: Vec<(&'static str, &'static str)>,
    pub values: Vec<(&'static str, AttributeValue)>,
}

pub(crate) async fn query_page(table: &Table, page: PageQuery<'_>) -> Result<(Vec<Item>, Option<String>), StoreError> {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut req = table
        .client
        .query()
        .table_name(&table.name)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", s(page.pk))
        .consistent_read(true)
        .limit(page.limit);
    if let Some(cursor) = page.cursor {
        let start = URL_SAFE_NO_PAD
            .decode(cursor)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .filter(|sk| sk.starts_with(page.sk_prefix) && sk.len() <= MAX_SORT_KEY_BYTES)
            .ok_or(StoreError::BadCursor)?;
        req = req
            .exclusive_start_key("pk", s(page.pk))
            .exclusive_start_key("sk", s(start));
    }
    let out = req.send().await.map_err(|e| classify("Query", e))?;
    let next = out
        .last_evaluated_key()
        .and_then(|k| k.get("sk"))
        .and_then(|v| v.as_s().ok())
        .map(|sk| URL_SAFE_NO_PAD.encode(sk));
    Ok((out.items.unwrap_or_default(), next))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(value: Option<AttributeValue>) -> Item {
        value.into_iter().map(|v| ("a".to_string(), v)).collect()
    }

    /// An optional attribute reads as absent when missing or NULL, as its value when of its type, and
    /// as a malformed item (never a guess) when of another type.
    #[test]
    fn optional_attributes_read_as_absent_as_their_value_or_as_malformed() {
        for absent in [None, Some(AttributeValue::Null(true))] {
            assert_eq!(opt_n(&item(absent.clone()), "a").unwrap(), None);
            assert_eq!(opt_s(&item(absent), "a").unwrap(), None);
        }
        assert_eq!(opt_n(&item(Some(n(1_795_801_006))), "a").unwrap(), Some(1_795_801_006));
        assert_eq!(opt_n(&item(Some(n(-2))), "a").unwrap(), Some(-2));
        assert_eq!(opt_s(&item(Some(s("x"))), "a").unwrap().as_deref(), Some("x"));
        for wrong in [
            opt_n(&item(Some(s("12"))), "a"),
            opt_n(&item(Some(AttributeValue::N("1.5".into()))), "a"),
        ] {
            assert!(matches!(wrong, Err(StoreError::Malformed(_))), "{wrong:?}");
        }
        assert!(matches!(opt_s(&item(Some(n(1))), "a"), Err(StoreError::Malformed(_))));
    }
}
