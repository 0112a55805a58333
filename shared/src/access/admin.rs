//! Managing roles and access records: validation, storage, and the Authress response shapes.

use serde_json::{Value, json};

use super::delegation::{self, Refusal};
use super::model::{AccessRecord, Role, validate_record, validate_role};
use crate::clock::{iso8601_millis, parse_http_or_iso_date};
use crate::error::ApiError;
use crate::identity::Caller;
use crate::services::Services;
use crate::store::documents::{self, CreateOutcome, Document, Kind, PolicyLimit, ReplaceOutcome};

/// Authress refuses records over ~100 KB.
const MAX_RECORD_BYTES: usize = 100 * 1024;
/// A role is a name and at most 100 permissions: a few KB.
const MAX_ROLE_BYTES: usize = 16 * 1024;

/// A listing page: `{<name>: [...], pagination: {next: {cursor}}}`.
pub async fn list(services: &Services, kind: Kind, limit: i32, cursor: Option<&str>) -> Result<Value, ApiError> {
    let (docs, next) = documents::list(&services.table, kind, limit, cursor).await?;
    let name = match kind {
        Kind::Role => "roles",
        Kind::Record => "records",
        Kind::Client => "clients",
    };
    let items: Vec<Value> = docs.iter().map(|d| present(kind, d)).collect();
    Ok(json!({ name: items, "pagination": { "next": next.map(|cursor| json!({"cursor": cursor})) } }))
}

/// The stored body plus the fields the vault owns.
pub fn present(kind: Kind, doc: &Document) -> Value {
    let mut body = doc.body.clone();
    if kind == Kind::Record {
        body["lastUpdated"] = json!(iso8601_millis(doc.updated_at_ms));
    }
    body
}

pub async fn get(services: &Services, kind: Kind, id: &str) -> Result<Document, ApiError> {
    if !crate::access::model::is_valid_id(id) {
        return Err(not_found(kind));
    }
    documents::get(&services.table, kind, id)
        .await?
        .ok_or_else(|| not_found(kind))
}

fn not_found(kind: Kind) -> ApiError {
    match kind {
        Kind::Role => ApiError::not_found("role_not_found", "no such role"),
        Kind::Record => ApiError::not_found("record_not_found", "no such access record"),
        Kind::Client => ApiError::not_found("client_not_found", "no such service client"),
    }
}

fn exists(kind: Kind) -> ApiError {
    let code = match kind {
        Kind::Role => "role_exists",
        Kind::Record => "record_exists",
        Kind::Client => "client_exists",
    };
    ApiError::Conflict {
        code,
        detail: "an item with this id exists already".into(),
    }
}

fn refusal(refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::UnknownRole { .. } => ApiError::bad_request(refusal.error_code(), refusal.to_string()),
        other => ApiError::refused(other.error_code(), other.to_string()),
    }
}

/// Refuses a record that would give what `caller` cannot give (delegation.rs), against a policy read
/// now: a grant revoked a moment ago must not be handed on.
pub async fn authorize_record(services: &Services, caller: &Caller, record: &AccessRecord) -> Result<(), ApiError> {
    // Bad input is the caller's first answer, before anything about permissions.
    let mut shaped = record.clone();
    if shaped.record_id.is_empty() {
        shaped.record_id = "rec_new".into();
    }
    validate_record(&shaped)?;
    let policy = services.policies.load_now(&services.table).await?;
    delegation::check_record(&policy, caller.subject(), record).map_err(refusal)
}

/// Refuses a role change (or creation) that would make records give what `caller` cannot give.
pub async fn authorize_role(services: &Services, caller: &Caller, role_id: &str, role: &Role) -> Result<(), ApiError> {
    let mut role = role.clone();
    role.role_id = role_id.to_string();
    validate_role(&role)?;
    let policy = services.policies.load_now(&services.table).await?;
    delegation::check_role_change(&policy, caller.subject(), policy.role(role_id), &role).map_err(refusal)
}

/// Built-in roles cannot be deleted; any other role needs only `roles:delete`.
pub fn authorize_role_delete(role_id: &str) -> Result<(), ApiError> {
    delegation::check_role_delete(role_id).map_err(refusal)
}

pub async fn create_role(services: &Services, mut role: Role) -> Result<Document, ApiError> {
    if role.role_id.is_empty() {
        role.role_id = format!("ro_{}", crate::random::token(12));
    }
    validate_role(&role)?;
    create(services, Kind::Role, &role.role_id.clone(), &role).await
}

pub async fn update_role(services: &Services, role_id: &str, mut role: Role) -> Result<Document, ApiError> {
    role.role_id = role_id.to_string();
    validate_role(&role)?;
    replace(services, Kind::Role, role_id, &role, None).await
}

pub async fn create_record(services: &Services, mut record: AccessRecord) -> Result<Document, ApiError> {
    if record.record_id.is_empty() {
        record.record_id = format!("rec_{}", crate::random::token(12));
    }
    record.status = "ACTIVE".into();
    validate_record(&record)?;
    create(services, Kind::Record, &record.record_id.clone(), &record).await
}

/// `If-Unmodified-Since` (ISO 8601 or HTTP date): 412 when the record changed after that instant.
pub async fn update_record(
    services: &Services,
    record_id: &str,
    mut record: AccessRecord,
    if_unmodified_since: Option<&str>,
) -> Result<Document, ApiError> {
    record.record_id = record_id.to_string();
    record.status = "ACTIVE".into();
    validate_record(&record)?;
    let expected = match if_unmodified_since {
        None => None,
        Some(raw) => {
            let (since_ms, precision) = parse_http_or_iso_date(raw).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_if_unmodified_since",
                    "If-Unmodified-Since must be an ISO 8601 or HTTP date",
                )
            })?;
            let current = get(services, Kind::Record, record_id).await?;
            if current.updated_at_ms / precision > since_ms / precision {
                return Err(ApiError::PreconditionFailed);
            }
            Some(current.updated_at_ms)
        }
    };
    replace(services, Kind::Record, record_id, &record, expected).await
}

/// Records are deleted as Authress does: kept, marked DELETED, granting nothing.
pub async fn delete_record(services: &Services, record_id: &str) -> Result<(), ApiError> {
    let current = get(services, Kind::Record, record_id).await?;
    let mut record: AccessRecord =
        serde_json::from_value(current.body).map_err(|e| ApiError::internal(format!("stored record: {e}")))?;
    record.status = "DELETED".into();
    let body = to_body(Kind::Record, &record)?;
    let now = services.clock.now_millis();
    let outcome = documents::retire(
        &services.table,
        Kind::Record,
        record_id,
        &body,
        current.updated_at_ms,
        now,
    )
    .await?;
    services.policies.invalidate();
    written(Kind::Record, outcome).map(|_| ())
}

fn limit_reached(kind: Kind, limit: PolicyLimit) -> ApiError {
    let limits = documents::POLICY_LIMITS;
    match (kind, limit) {
        (Kind::Role, PolicyLimit::Count) => ApiError::bad_request(
            "role_limit_reached",
            format!("the vault holds at most {} roles; delete one first", limits.max_roles),
        ),
        (_, PolicyLimit::Count) => ApiError::bad_request(
            "record_limit_reached",
            format!(
                "the vault holds at most {} active access records; delete one first",
                limits.max_records
            ),
        ),
        (_, PolicyLimit::Bytes) => ApiError::bad_request(
            "policy_size_limit_reached",
            format!(
                "roles and active records together are limited to {} bytes; delete or shrink some first",
                limits.max_bytes
            ),
        ),
    }
}

fn written(kind: Kind, outcome: ReplaceOutcome) -> Result<Document, ApiError> {
    match outcome {
        ReplaceOutcome::Replaced(doc) => Ok(doc),
        ReplaceOutcome::NotFound => Err(not_found(kind)),
        ReplaceOutcome::Conflict => Err(ApiError::PreconditionFailed),
        ReplaceOutcome::LimitReached(limit) => Err(limit_reached(kind, limit)),
    }
}

pub async fn delete(services: &Services, kind: Kind, id: &str) -> Result<(), ApiError> {
    if !crate::access::model::is_valid_id(id) || !documents::delete(&services.table, kind, id).await? {
        return Err(not_found(kind));
    }
    services.policies.invalidate();
    Ok(())
}

async fn create<T: serde::Serialize>(
    services: &Services,
    kind: Kind,
    id: &str,
    value: &T,
) -> Result<Document, ApiError> {
    let body = to_body(kind, value)?;
    let now = services.clock.now_millis();
    match documents::create(&services.table, kind, id, &body, now).await? {
        CreateOutcome::Created => {}
        CreateOutcome::Exists => return Err(exists(kind)),
        CreateOutcome::LimitReached(limit) => return Err(limit_reached(kind, limit)),
    }
    services.policies.invalidate();
    Ok(Document {
        id: id.to_string(),
        body,
        created_at_ms: now,
        updated_at_ms: now,
        retired: false,
    })
}

async fn replace<T: serde::Serialize>(
    services: &Services,
    kind: Kind,
    id: &str,
    value: &T,
    expected: Option<i64>,
) -> Result<Document, ApiError> {
    let body = to_body(kind, value)?;
    let now = services.clock.now_millis();
    let outcome = documents::replace(&services.table, kind, id, &body, expected, now).await?;
    services.policies.invalidate();
    written(kind, outcome)
}

fn to_body<T: serde::Serialize>(kind: Kind, value: &T) -> Result<Value, ApiError> {
    let body = serde_json::to_value(value).map_err(ApiError::internal)?;
    let limit = match kind {
        Kind::Record => MAX_RECORD_BYTES,
        Kind::Role => MAX_ROLE_BYTES,
        Kind::Client => usize::MAX,
    };
    if body.to_string().len() > limit {
        return Err(ApiError::PayloadTooLarge);
    }
    Ok(body)
}
