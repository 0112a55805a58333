//! The connection item. The client secret is sealed like any token; everything else is plain config.
//! All connections share one partition so they can be listed with a cursor.

use std::collections::BTreeMap;

use secrecy::ExposeSecret;

use super::{Item, PageQuery, StoreError, Table, b, classify, get_b, get_s, opt_s, s};
use crate::crypto::{CryptoError, Envelope};
use crate::oauth::{Connection, TokenRequestEncoding};

const PK: &str = "CONNECTIONS";
const ATTR_CLIENT_SECRET: &str = "clientSecret";

fn sk(connection_id: &str) -> String {
    format!("CONNECTION#{connection_id}")
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectionStoreError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// Creates (`must_be_new`) or replaces a connection. A replace lands only on the generation the
/// connection carries (the one that was read): a connection deleted and made again in between is not
/// overwritten with the old one's settings. `Ok(false)`: the condition did not hold.
pub async fn put(
    table: &Table,
    envelope: &Envelope,
    connection: &Connection,
    must_be_new: bool,
) -> Result<bool, ConnectionStoreError> {
    let ctx = table.context(PK, &sk(&connection.connection_id), ATTR_CLIENT_SECRET);
    let sealed_secret = envelope
        .seal_str(&ctx, connection.client_secret.expose_secret())
        .await?;
    let properties = serde_json::to_string(&connection.default_connection_properties)
        .map_err(|e| StoreError::Malformed(e.to_string()))?;
    let mut req = table
        .client
        .put_item()
        .table_name(&table.name)
        .item("pk", s(PK))
        .item("sk", s(sk(&connection.connection_id)))
        .item("connectionId", s(&connection.connection_id))
        .item("name", s(&connection.name))
        .item("authenticationUrl", s(&connection.authentication_url))
        .item("tokenUrl", s(&connection.token_url))
        .item("clientId", s(&connection.client_id))
        .item(ATTR_CLIENT_SECRET, b(sealed_secret))
        .item("defaultConnectionProperties", s(properties))
        .item(
            "supportedContentType",
            s(connection.token_request_encoding.content_type()),
        )
        .item("userIdExpression", s(&connection.user_id_expression))
        .item("generation", s(&connection.generation));
    req = match (must_be_new, connection.generation.is_empty()) {
        (true, _) => req.condition_expression("attribute_not_exists(pk)"),
        (false, false) => req
            .condition_expression("attribute_exists(pk) AND generation = :generation")
            .expression_attribute_values(":generation", s(&connection.generation)),
        (false, true) => req.condition_expression("attribute_exists(pk) AND attribute_not_exists(generation)"),
    };
    if let Some(issuer) = &connection.issuer_url {
        req = req.item("issuerUrl", s(issuer));
    }
    if let Some(revocation) = &connection.revocation_url {
        req = req.item("revocationUrl", s(revocation));
    }
    if let Some(user_info) = &connection.user_info_url {
        req = req.item("userInfoUrl", s(user_info));
    }
    Ok(super::condition_outcome("PutItem", req.send().await)?)
}

pub async fn get(
    table: &Table,
    envelope: &Envelope,
    connection_id: &str,
) -> Result<Option<Connection>, ConnectionStoreError> {
    let out = table
        .client
        .get_item()
        .table_name(&table.name)
        .key("pk", s(PK))
        .key("sk", s(sk(connection_id)))
        .send()
        .await
        .map_err(|e| classify("GetItem", e))?;
    match out.item {
        Some(item) => Ok(Some(from_item(table, envelope, &item).await?)),
        None => Ok(None),
    }
}

/// Gives a connection stored before generations its first one (the security migration).
/// `Ok(false)`: it has one already, or is gone.
pub async fn assign_generation(table: &Table, connection_id: &str, generation: &str) -> Result<bool, StoreError> {
    let result = table
        .client
        .update_item()
        .table_name(&table.name)
        .key("pk", s(PK))
        .key("sk", s(sk(connection_id)))
        .update_expression("SET generation = :generation")
        .condition_expression("attribute_exists(pk) AND attribute_not_exists(generation)")
        .expression_attribute_values(":generation", s(generation))
        .send()
        .await;
    super::condition_outcome("UpdateItem", result)
}

/// The connection's generation, without opening its secret (the self-access check needs only that).
pub async fn generation(table: &Table, connection_id: &str) -> Result<Option<String>, StoreError> {
    let out = table
        .client
        .get_item()
        .table_name(&table.name)
        .key("pk", s(PK))
        .key("sk", s(sk(connection_id)))
        .projection_expression("generation")
        .send()
        .await
        .map_err(|e| classify("GetItem", e))?;
    Ok(out.item.map(|item| opt_s(&item, "generation")).transpose()?.flatten())
}

/// `Ok(false)`: there was no such connection.
pub async fn delete(table: &Table, connection_id: &str) -> Result<bool, StoreError> {
    super::delete_existing(table, PK, &sk(connection_id)).await
}

/// One page of connections in id order, and the cursor of the next.
pub async fn list(
    table: &Table,
    envelope: &Envelope,
    limit: i32,
    cursor: Option<&str>,
) -> Result<(Vec<Connection>, Option<String>), ConnectionStoreError> {
    let page = PageQuery {
        pk: PK,
        sk_prefix: "CONNECTION#",
        limit,
        cursor,
        newest_first: false,
        filter: None,
    };
    let (items, next) = super::query_page(table, page).await?;
    let mut connections = Vec::with_capacity(items.len());
    for item in &items {
        connections.push(from_item(table, envelope, item).await?);
    }
    Ok((connections, next))
}

async fn from_item(table: &Table, envelope: &Envelope, item: &Item) -> Result<Connection, ConnectionStoreError> {
    let connection_id = get_s(item, "connectionId")?;
    let ctx = table.context(PK, &sk(&connection_id), ATTR_CLIENT_SECRET);
    let client_secret = envelope.open_str(&ctx, &get_b(item, ATTR_CLIENT_SECRET)?).await?;
    let properties: BTreeMap<String, String> = serde_json::from_str(&get_s(item, "defaultConnectionProperties")?)
        .map_err(|e| StoreError::Malformed(format!("defaultConnectionProperties: {e}")))?;
    let encoding = TokenRequestEncoding::from_content_type(&get_s(item, "supportedContentType")?)
        .ok_or_else(|| StoreError::Malformed("supportedContentType".into()))?;
    Ok(Connection {
        connection_id,
        name: get_s(item, "name")?,
        authentication_url: get_s(item, "authenticationUrl")?,
        token_url: get_s(item, "tokenUrl")?,
        issuer_url: opt_s(item, "issuerUrl")?,
        revocation_url: opt_s(item, "revocationUrl")?,
        user_info_url: opt_s(item, "userInfoUrl")?,
        client_id: get_s(item, "clientId")?,
        client_secret,
        default_connection_properties: properties,
        token_request_encoding: encoding,
        user_id_expression: get_s(item, "userIdExpression")?,
        // Connections stored before generations have none until `migrate-security` gives them one.
        generation: opt_s(item, "generation")?.unwrap_or_default(),
    })
}

/// Where the refresh protocol looks a credential's connection up.
pub trait ConnectionDirectory: Send + Sync + 'static {
    fn get<'a>(
        &'a self,
        connection_id: &'a str,
    ) -> super::credentials::BoxFuture<'a, Result<Option<Connection>, ConnectionStoreError>>;
}

/// The connections in the table, their client secrets opened by the envelope.
pub struct DynamoConnections {
    table: Table,
    envelope: std::sync::Arc<Envelope>,
}

impl DynamoConnections {
    pub fn new(table: Table, envelope: std::sync::Arc<Envelope>) -> Self {
        Self { table, envelope }
    }
}

impl ConnectionDirectory for DynamoConnections {
    fn get<'a>(
        &'a self,
        connection_id: &'a str,
    ) -> super::credentials::BoxFuture<'a, Result<Option<Connection>, ConnectionStoreError>> {
        Box::pin(get(&self.table, &self.envelope, connection_id))
    }
}
