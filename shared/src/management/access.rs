//! Managing roles and access records through the API: their checked writes (the delegation rules
//! against the policy as it is now), the Authress response shapes, and listings of roles, records and
//! clients.

use std::sync::Arc;

use serde_json::{Value, json};

use super::authority::Authority;
use crate::access::Policy;
use crate::access::PolicyEngine;
use crate::access::delegation::{self, Refusal};
use crate::access::model::{AccessRecord, Role, validate_record, validate_role};
use crate::clock::Clock;
use crate::clock::{iso8601_millis, parse_http_or_iso_date};
use crate::error::ApiError;
use crate::store::documents::{self, Document, Kind};
use crate::store::policy::{self, PolicyLimit};
use crate::store::{StoreError, Table};

/// Authress refuses records over ~100 KB.
const MAX_RECORD_BYTES: usize = 100 * 1024;
/// A role is a name and at most 100 permissions: a few KB.
const MAX_ROLE_BYTES: usize = 16 * 1024;

/// Roles and access records: their checked writes over the table, against the policy as it is now.
/// Listing service clients is here too (the same documents); changing them is `ServiceClientAdmin`'s.
pub struct AccessAdmin {
    pub table: Table,
    pub policy: Arc<PolicyEngine>,
    pub clock: Arc<dyn Clock>,
}

impl AccessAdmin {
    /// A listing page: `{<name>: [...], pagination: {next: {cursor}}}`.
    pub async fn list(&self, kind: Kind, limit: i32, cursor: Option<&str>) -> Result<Value, ApiError> {
        let (docs, next) = documents::list(&self.table, kind, limit, cursor).await?;
        let name = match kind {
            Kind::Role => "roles",
            Kind::Record => "records",
            Kind::Client => "clients",
        };
        let items: Vec<Value> = docs.iter().map(|d| present(kind, d)).collect();
        Ok(json!({ name: items, "pagination": { "next": next.map(|cursor| json!({"cursor": cursor})) } }))
    }

    /// A live role, record or client.
    async fn get_live(&self, kind: Kind, id: &str) -> Result<Document, ApiError> {
        if !crate::ids::is_valid_id(id) {
            return Err(not_found(kind));
        }
        documents::get(&self.table, kind, id)
            .await?
            .ok_or_else(|| not_found(kind))
    }

    /// A role, a record (deleted ones too, while they are kept), or a client.
    pub async fn get(&self, kind: Kind, id: &str) -> Result<Document, ApiError> {
        match self.get_live(kind, id).await {
            Err(ApiError::NotFound { .. }) if kind == Kind::Record => policy::deleted_record(&self.table, id)
                .await?
                .ok_or_else(|| not_found(kind)),
            other => other,
        }
    }

    /// Checks a grant change against a snapshot read now, and writes it only onto that version of the
    /// policy (store/policy.rs); when another change landed in between, checks and tries again.
    async fn checked_write(
        &self,
        authority: Authority<'_>,
        check: impl Fn(&Policy, &str) -> Result<(), Refusal>,
        write: PolicyWrite<'_>,
    ) -> Result<Document, ApiError> {
        for _ in 0..POLICY_ATTEMPTS {
            let seen = match authority {
                Authority::Caller(caller) => {
                    let snapshot = self.policy.load_now().await?;
                    check(&snapshot, caller.subject())?;
                    Some(snapshot.version())
                }
                Authority::Operator => None,
            };
            let outcome = write.perform(&self.table, seen).await?;
            self.policy.invalidate();
            match outcome {
                Err(policy::Refused::PolicyChanged) => continue,
                other => return written(write.kind(), other),
            }
        }
        Err(ApiError::Conflict {
            code: "policy_changed",
            detail: "other grant changes kept landing while this one was checked; retry".into(),
        })
    }

    pub async fn create_role(&self, authority: Authority<'_>, mut role: Role) -> Result<Document, ApiError> {
        if role.role_id.is_empty() {
            role.role_id = format!("ro_{}", crate::random::token(12));
        }
        validate_role(&role)?;
        let body = to_body(Kind::Role, &role)?;
        let id = role.role_id.clone();
        let now = self.clock.now_millis();
        self.checked_write(
            authority,
            |snapshot, caller| delegation::check_role_change(snapshot, caller, snapshot.role(&id), &role),
            PolicyWrite::Create {
                kind: Kind::Role,
                id: &id,
                body: &body,
                now_ms: now,
            },
        )
        .await
    }

    pub async fn update_role(
        &self,
        authority: Authority<'_>,
        role_id: &str,
        mut role: Role,
    ) -> Result<Document, ApiError> {
        role.role_id = role_id.to_string();
        validate_role(&role)?;
        let body = to_body(Kind::Role, &role)?;
        let now = self.clock.now_millis();
        self.checked_write(
            authority,
            |snapshot, caller| delegation::check_role_change(snapshot, caller, snapshot.role(role_id), &role),
            PolicyWrite::Replace {
                kind: Kind::Role,
                id: role_id,
                body: &body,
                expected_updated_at_ms: None,
                now_ms: now,
            },
        )
        .await
    }

    /// Built-in roles cannot be deleted; any other role needs only `roles:delete`.
    pub async fn delete_role(&self, role_id: &str) -> Result<(), ApiError> {
        delegation::check_role_delete(role_id)?;
        if !crate::ids::is_valid_id(role_id) {
            return Err(not_found(Kind::Role));
        }
        let outcome = policy::delete_role(&self.table, role_id).await?;
        self.policy.invalidate();
        match outcome {
            Ok(()) => Ok(()),
            Err(policy::Refused::NotFound) => Err(not_found(Kind::Role)),
            Err(_) => Err(ApiError::Conflict {
                code: "role_changed",
                detail: "the role changed while it was being deleted; retry".into(),
            }),
        }
    }

    pub async fn create_record(
        &self,
        authority: Authority<'_>,
        mut record: AccessRecord,
    ) -> Result<Document, ApiError> {
        if record.record_id.is_empty() {
            record.record_id = format!("rec_{}", crate::random::token(12));
        }
        record.status = "ACTIVE".into();
        validate_record(&record)?;
        let body = to_body(Kind::Record, &record)?;
        let id = record.record_id.clone();
        let now = self.clock.now_millis();
        self.checked_write(
            authority,
            |snapshot, caller| delegation::check_record(snapshot, caller, &record),
            PolicyWrite::Create {
                kind: Kind::Record,
                id: &id,
                body: &body,
                now_ms: now,
            },
        )
        .await
    }

    /// `If-Unmodified-Since` (ISO 8601 or HTTP date): 412 when the record changed after that instant.
    pub async fn update_record(
        &self,
        authority: Authority<'_>,
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
                let current = self.get_live(Kind::Record, record_id).await?;
                if current.updated_at_ms / precision > since_ms / precision {
                    return Err(ApiError::PreconditionFailed);
                }
                Some(current.updated_at_ms)
            }
        };
        let body = to_body(Kind::Record, &record)?;
        let now = self.clock.now_millis();
        self.checked_write(
            authority,
            |snapshot, caller| delegation::check_record(snapshot, caller, &record),
            PolicyWrite::Replace {
                kind: Kind::Record,
                id: record_id,
                body: &body,
                expected_updated_at_ms: expected,
                now_ms: now,
            },
        )
        .await
    }

    /// Records are deleted as Authress does: kept for a while, marked DELETED, granting nothing.
    pub async fn delete_record(&self, record_id: &str) -> Result<(), ApiError> {
        let current = self.get_live(Kind::Record, record_id).await?;
        let mut record: AccessRecord =
            serde_json::from_value(current.body).map_err(|e| ApiError::internal(format!("stored record: {e}")))?;
        record.status = "DELETED".into();
        let body = to_body(Kind::Record, &record)?;
        let now = self.clock.now_millis();
        let outcome = policy::retire_record(&self.table, record_id, &body, current.updated_at_ms, now).await?;
        self.policy.invalidate();
        written(Kind::Record, outcome).map(|_| ())
    }
}

/// The stored body plus the fields the vault owns.
pub fn present(kind: Kind, doc: &Document) -> Value {
    let mut body = doc.body.clone();
    if kind == Kind::Record {
        body["lastUpdated"] = json!(iso8601_millis(doc.updated_at_ms));
    }
    body
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

/// How often a grant change is checked again when the policy changed under it.
const POLICY_ATTEMPTS: usize = 3;

/// One write of a role or record, as `checked_write` makes it.
enum PolicyWrite<'a> {
    Create {
        kind: Kind,
        id: &'a str,
        body: &'a Value,
        now_ms: i64,
    },
    Replace {
        kind: Kind,
        id: &'a str,
        body: &'a Value,
        expected_updated_at_ms: Option<i64>,
        now_ms: i64,
    },
}

impl PolicyWrite<'_> {
    fn kind(&self) -> Kind {
        match self {
            PolicyWrite::Create { kind, .. } | PolicyWrite::Replace { kind, .. } => *kind,
        }
    }

    async fn perform(&self, table: &Table, seen: Option<i64>) -> Result<Result<Document, policy::Refused>, StoreError> {
        match *self {
            PolicyWrite::Create { kind, id, body, now_ms } => policy::create(table, kind, id, body, now_ms, seen).await,
            PolicyWrite::Replace {
                kind,
                id,
                body,
                expected_updated_at_ms,
                now_ms,
            } => policy::replace(table, kind, id, body, expected_updated_at_ms, now_ms, seen).await,
        }
    }
}

fn limit_reached(kind: Kind, limit: PolicyLimit) -> ApiError {
    let limits = policy::POLICY_LIMITS;
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

fn written(kind: Kind, outcome: Result<Document, policy::Refused>) -> Result<Document, ApiError> {
    match outcome {
        Ok(doc) => Ok(doc),
        Err(policy::Refused::Exists) => Err(exists(kind)),
        Err(policy::Refused::NotFound) => Err(not_found(kind)),
        Err(policy::Refused::Conflict) => Err(ApiError::PreconditionFailed),
        Err(policy::Refused::LimitReached(limit)) => Err(limit_reached(kind, limit)),
        Err(policy::Refused::PolicyChanged) => Err(ApiError::Conflict {
            code: "policy_changed",
            detail: "the grants changed while this change was made; retry".into(),
        }),
    }
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
