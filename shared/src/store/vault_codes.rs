//! The vault code: the one-time code the app exchanges for vault user tokens. Stored under the hash
//! of the code, bound to the app's code challenge, redirect URL and authentication request.

use super::{Consumed, Item, StoreError, TTL_ATTRIBUTE, Table, classify, n, s};

const SK: &str = "VAULT_CODE";

/// Every binding is part of the delete's condition, so a wrong verifier or redirect URL changes nothing.
const CONSUME: &str = "attribute_exists(pk) AND authenticationRequestId = :rid \
     AND appCodeChallenge = :challenge AND redirectUrl = :redirect AND expiresAt > :now";

/// Also the item's shape (serde_dynamo, camelCase attributes), beside its keys and TTL.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VaultCode {
    pub authentication_request_id: String,
    pub app_code_challenge: String,
    pub redirect_url: String,
    pub connection_id: String,
    pub user_id: String,
    pub expires_at: i64,
}

fn pk(code: &str) -> String {
    format!("VAULT_CODE#{}", super::secret_digest(code))
}

pub async fn put(table: &Table, code: &str, record: &VaultCode) -> Result<(), StoreError> {
    let mut item = super::to_item(record)?;
    item.insert("pk".into(), s(pk(code)));
    item.insert("sk".into(), s(SK));
    item.insert(TTL_ATTRIBUTE.into(), n(record.expires_at));
    table
        .client
        .put_item()
        .table_name(&table.name)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(pk)")
        .send()
        .await
        .map_err(|e| classify("PutItem", e))?;
    Ok(())
}

/// Why a code exchange was refused. Only `Unknown` means the code is gone; the others leave it in place.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    Unknown,
    Expired,
    WrongRequest,
    WrongVerifier,
    WrongRedirect,
}

/// Consumes the code if it matches every binding. `computed_challenge` is S256 of the presented verifier.
pub async fn consume(
    table: &Table,
    code: &str,
    authentication_request_id: &str,
    computed_challenge: &str,
    redirect_url: &str,
    now_secs: i64,
) -> Result<Result<VaultCode, Refusal>, StoreError> {
    let values = vec![
        (":rid", s(authentication_request_id)),
        (":challenge", s(computed_challenge)),
        (":redirect", s(redirect_url)),
        (":now", n(now_secs)),
    ];
    match super::consume_once(table, &pk(code), SK, CONSUME, values).await? {
        Consumed::Taken(item) => Ok(Ok(from_item(item)?)),
        Consumed::Refused(None) => Ok(Err(Refusal::Unknown)),
        Consumed::Refused(Some(old)) => {
            let old = from_item(old)?;
            Ok(Err(if old.authentication_request_id != authentication_request_id {
                Refusal::WrongRequest
            } else if old.app_code_challenge != computed_challenge {
                Refusal::WrongVerifier
            } else if old.redirect_url != redirect_url {
                Refusal::WrongRedirect
            } else {
                Refusal::Expired
            }))
        }
    }
}

fn from_item(item: Item) -> Result<VaultCode, StoreError> {
    super::parse_item(item)
}
