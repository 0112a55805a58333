//! Which connections a vault user id belongs to. The first login that makes a user id claims it for its
//! connection; a login through another connection that makes the same id is refused, unless an
//! administrator linked that connection to the user. So `{email}` from one provider cannot become
//! another provider's user, and self-access means "this person", not "this string".
//!
//! A claim names the connection's generation too (`{connectionId}#{generation}`): a connection deleted
//! and created again under the same id, perhaps pointing at another provider, does not inherit the
//! users of the one before.

use aws_sdk_dynamodb::types::AttributeValue;

use super::{StoreError, Table, classify, condition_outcome, n, s};

const SK: &str = "IDENTITY";
/// A login's connection may use the id when nobody owns it yet, or when it is one of its connections.
const CLAIM: &str = "attribute_not_exists(pk) OR contains(connections, :connection)";
/// Links are added to an id that exists; linking never creates an owner.
const LINK: &str = "attribute_exists(pk)";

/// The identity item as DynamoDB holds it, where it is read (serde_dynamo): the one place its
/// attribute names are spelled besides the update expressions (the claim writes `userId`, `createdAt`
/// and `connections` too).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredIdentity {
    /// `{connectionId}#{generation}` of every connection that may make the id (a string set).
    #[serde(default)]
    connections: Vec<String>,
}

pub fn pk(user_id: &str) -> String {
    format!("IDENTITY#{user_id}")
}

/// One connection, in the generation that may make the id.
fn member(connection_id: &str, generation: &str) -> String {
    format!("{connection_id}#{generation}")
}

fn connection_set(connection_id: &str, generation: &str) -> AttributeValue {
    AttributeValue::Ss(vec![member(connection_id, generation)])
}

/// At login: `Ok(true)` when `user_id` is (now) this connection's; `Ok(false)` when another
/// connection owns it and this one was never linked.
pub async fn claim_for_login(
    table: &Table,
    user_id: &str,
    connection_id: &str,
    generation: &str,
    now_secs: i64,
) -> Result<bool, StoreError> {
    let result = table
        .client
        .update_item()
        .table_name(&table.name)
        .key("pk", s(pk(user_id)))
        .key("sk", s(SK))
        .update_expression("SET userId = :user, createdAt = if_not_exists(createdAt, :now) ADD connections :set")
        .condition_expression(CLAIM)
        .expression_attribute_values(":user", s(user_id))
        .expression_attribute_values(":now", n(now_secs))
        .expression_attribute_values(":set", connection_set(connection_id, generation))
        .expression_attribute_values(":connection", s(member(connection_id, generation)))
        .send()
        .await;
    condition_outcome("UpdateItem", result)
}

/// Does `user_id` belong to this generation of `connection_id` (its first login's, or linked by an
/// administrator)?
pub async fn belongs_to(
    table: &Table,
    user_id: &str,
    connection_id: &str,
    generation: &str,
) -> Result<bool, StoreError> {
    let wanted = member(connection_id, generation);
    let out = table
        .client
        .get_item()
        .table_name(&table.name)
        .key("pk", s(pk(user_id)))
        .key("sk", s(SK))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| classify("GetItem", e))?;
    let stored: Option<StoredIdentity> = out.item.map(super::parse_item).transpose()?;
    Ok(stored.is_some_and(|identity| identity.connections.contains(&wanted)))
}

/// An administrator's explicit link: logins through `connection_id` may now make `user_id` too.
/// `Ok(false)`: the user id has never logged in, so there is nobody to link.
pub async fn link(table: &Table, user_id: &str, connection_id: &str, generation: &str) -> Result<bool, StoreError> {
    let result = table
        .client
        .update_item()
        .table_name(&table.name)
        .key("pk", s(pk(user_id)))
        .key("sk", s(SK))
        .update_expression("ADD connections :set")
        .condition_expression(LINK)
        .expression_attribute_values(":set", connection_set(connection_id, generation))
        .send()
        .await;
    condition_outcome("UpdateItem", result)
}

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("the user id or connection id is not valid")]
    InvalidId,
    #[error("the user id {0} has never logged in: there is nobody to link")]
    NoSuchUser(String),
    #[error("there is no connection {0}")]
    NoSuchConnection(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `link`, with the ids checked first (the operator's command line is input too).
pub async fn link_checked(table: &Table, user_id: &str, connection_id: &str) -> Result<(), LinkError> {
    let user_id_ok = !user_id.is_empty() && user_id.len() <= crate::oauth::connection::MAX_USER_ID_LEN;
    if !user_id_ok || !crate::oauth::connection::is_valid_connection_id(connection_id) {
        return Err(LinkError::InvalidId);
    }
    let generation = super::connections::generation(table, connection_id)
        .await?
        .ok_or_else(|| LinkError::NoSuchConnection(connection_id.to_string()))?;
    if link(table, user_id, connection_id, &generation).await? {
        Ok(())
    } else {
        Err(LinkError::NoSuchUser(user_id.to_string()))
    }
}
