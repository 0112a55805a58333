//! The keep-alive index: which credentials are due for a refresh that keeps their refresh token alive
//! (maintenance.rs), found without a scan.
//!
//! A credential of a connection with `keepAliveDays` carries `keepAliveShard` and `keepAliveDueAt`
//! (epoch seconds: its last refresh or login plus those days); every other credential, and every one
//! that is not ACTIVE, carries neither, so the global secondary index `keepAlive` over them is sparse.
//! The partition key spreads credentials over `SHARDS` partitions by a hash of their key, so no index
//! partition takes every credential's writes; within one, `keepAliveDueAt` sorts the most overdue
//! first. The index projects keys only: the protocol reads each candidate consistently anyway.
//!
//! A run that stops at its bounds stores where it stopped (the cursor item), and the next run goes on
//! from there; a run that reaches the end of the last shard removes it.

use aws_lc_rs::digest::{SHA256, digest};
use aws_sdk_dynamodb::types::AttributeValue;

use super::{Item, StoreError, Table, classify, n, parse_item, s, to_item};

/// The index's name, as infra/template.yaml and the test table define it.
pub const INDEX: &str = "keepAlive";
pub const ATTR_SHARD: &str = "keepAliveShard";
pub const ATTR_DUE: &str = "keepAliveDueAt";
/// Index partitions: a refresh commit writes one index entry, and 16 partitions take 16 times the
/// write rate one could.
pub const SHARDS: u32 = 16;

const CURSOR_PK: &str = "MAINTENANCE";
const CURSOR_SK: &str = "KEEPALIVE#CURSOR";

/// The index partition of a credential: stable for its key, spread evenly.
pub fn shard_of(connection_id: &str, user_id: &str) -> String {
    let hash = digest(&SHA256, format!("{connection_id}\n{user_id}").as_bytes());
    let first = hash.as_ref().first().copied().unwrap_or(0);
    shard_name(u32::from(first) % SHARDS)
}

fn shard_name(shard: u32) -> String {
    format!("KEEPALIVE#{shard:02}")
}

/// A credential the index says is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueCredential {
    pub connection_id: String,
    pub user_id: String,
    pub due_at: i64,
}

/// One index entry, exactly as the index projects it (keys only): also the position to go on from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Position {
    pub pk: String,
    pub sk: String,
    pub keep_alive_shard: String,
    pub keep_alive_due_at: i64,
}

impl Position {
    fn due(&self) -> Result<DueCredential, StoreError> {
        let connection_id = self.pk.strip_prefix("CREDENTIAL#");
        let user_id = self.sk.strip_prefix("USER#");
        match (connection_id, user_id) {
            (Some(connection_id), Some(user_id)) => Ok(DueCredential {
                connection_id: connection_id.to_string(),
                user_id: user_id.to_string(),
                due_at: self.keep_alive_due_at,
            }),
            _ => Err(StoreError::Malformed(format!("keep-alive entry {}", self.pk))),
        }
    }

    fn key(&self) -> Result<Item, StoreError> {
        to_item(self)
    }
}

/// A page of the index.
pub struct Page {
    pub entries: Vec<(Position, DueCredential)>,
    /// DynamoDB has more after the last entry (it may also say so when none are left).
    pub more: bool,
}

/// Index entries of `shard` due at `now` (most overdue first), after `after`, at most `limit`.
pub async fn due_page(
    table: &Table,
    shard: u32,
    now_secs: i64,
    after: Option<&Position>,
    limit: i32,
) -> Result<Page, StoreError> {
    let start = after.map(Position::key).transpose()?;
    let out = table
        .client
        .query()
        .table_name(&table.name)
        .index_name(INDEX)
        .key_condition_expression("#shard = :shard AND #due <= :now")
        .expression_attribute_names("#shard", ATTR_SHARD)
        .expression_attribute_names("#due", ATTR_DUE)
        .expression_attribute_values(":shard", s(shard_name(shard)))
        .expression_attribute_values(":now", n(now_secs))
        .set_exclusive_start_key(start)
        .limit(limit)
        .send()
        .await
        .map_err(|e| classify("Query", e))?;
    let more = out.last_evaluated_key.is_some_and(|key| !key.is_empty());
    let entries = out
        .items
        .unwrap_or_default()
        .into_iter()
        .map(|item| {
            let position: Position = parse_item(item)?;
            let due = position.due()?;
            Ok((position, due))
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(Page { entries, more })
}

/// Where the last run stopped: the shard, and the last entry it examined there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub shard: u32,
    pub after: Option<Position>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredCursor {
    pk: String,
    sk: String,
    shard: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    after: Option<Position>,
    updated_at: i64,
}

/// The stored cursor, or the start of the first shard.
pub async fn load_cursor(table: &Table) -> Result<Cursor, StoreError> {
    let out = table
        .client
        .get_item()
        .table_name(&table.name)
        .key("pk", s(CURSOR_PK))
        .key("sk", s(CURSOR_SK))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| classify("GetItem", e))?;
    match out.item {
        None => Ok(Cursor { shard: 0, after: None }),
        Some(item) => {
            let stored: StoredCursor = parse_item(item)?;
            // A cursor from a build with more shards starts over rather than skipping any.
            if stored.shard >= SHARDS {
                return Ok(Cursor { shard: 0, after: None });
            }
            Ok(Cursor {
                shard: stored.shard,
                after: stored.after,
            })
        }
    }
}

pub async fn save_cursor(table: &Table, cursor: &Cursor, now_secs: i64) -> Result<(), StoreError> {
    let item = to_item(StoredCursor {
        pk: CURSOR_PK.to_string(),
        sk: CURSOR_SK.to_string(),
        shard: cursor.shard,
        after: cursor.after.clone(),
        updated_at: now_secs,
    })?;
    table
        .client
        .put_item()
        .table_name(&table.name)
        .set_item(Some(item))
        .send()
        .await
        .map_err(|e| classify("PutItem", e))?;
    Ok(())
}

/// A run went through every shard: the next one starts from the beginning.
pub async fn clear_cursor(table: &Table) -> Result<(), StoreError> {
    table
        .client
        .delete_item()
        .table_name(&table.name)
        .key("pk", s(CURSOR_PK))
        .key("sk", s(CURSOR_SK))
        .send()
        .await
        .map_err(|e| classify("DeleteItem", e))?;
    Ok(())
}

/// The index attributes of a credential due at `due_at` (for the writes of credentials.rs).
pub fn index_values(connection_id: &str, user_id: &str, due_at: i64) -> [(&'static str, AttributeValue); 2] {
    [
        (":ka_shard", s(shard_of(connection_id, user_id))),
        (":ka_due", n(due_at)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_stable_and_spread() {
        assert_eq!(shard_of("con_a", "u1"), shard_of("con_a", "u1"));
        let used: std::collections::BTreeSet<String> =
            (0..400).map(|i| shard_of("con_a", &format!("con_a|user{i}"))).collect();
        assert_eq!(used.len(), SHARDS as usize, "400 users use every shard");
        assert!(used.iter().all(|s| s.starts_with("KEEPALIVE#")));
    }

    #[test]
    fn an_entry_names_its_credential() {
        let position = Position {
            pk: "CREDENTIAL#con_a".into(),
            sk: "USER#con_a|bob".into(),
            keep_alive_shard: shard_of("con_a", "con_a|bob"),
            keep_alive_due_at: 42,
        };
        assert_eq!(
            position.due().unwrap(),
            DueCredential {
                connection_id: "con_a".into(),
                user_id: "con_a|bob".into(),
                due_at: 42
            }
        );
        let key = position.key().unwrap();
        assert_eq!(key.len(), 4, "table and index keys: {key:?}");
        assert!(key.contains_key(ATTR_SHARD) && key.contains_key(ATTR_DUE));
        let foreign = Position {
            pk: "CONNECTION#con_a".into(),
            ..position
        };
        assert!(foreign.due().is_err());
    }
}
