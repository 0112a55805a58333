//! Roles and access records in the Authress shapes, and their validation.

use serde::{Deserialize, Serialize};

use super::resource::{Action, ResourceUri};
use crate::ids::is_valid_id;

/// The built-in administrator role: everything on every resource it is granted on. Made by the
/// bootstrap (`management/bootstrap.rs`); it cannot be deleted.
pub const ADMIN_ROLE_ID: &str = "vault:admin";

const MAX_PERMISSIONS: usize = 100;
const MAX_STATEMENTS: usize = 100;
const MAX_USERS: usize = 1000;
const MAX_NAME: usize = 128;
const MAX_DESCRIPTION: usize = 1024;

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Permission {
    pub action: String,
    pub allow: bool,
    #[serde(default)]
    pub grant: bool,
    #[serde(default)]
    pub delegate: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Role {
    #[serde(default)]
    pub role_id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub permissions: Vec<Permission>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserRef {
    pub user_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceRef {
    pub resource_uri: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Statement {
    pub roles: Vec<String>,
    pub resources: Vec<ResourceRef>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessRecord {
    #[serde(default)]
    pub record_id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub users: Vec<UserRef>,
    pub statements: Vec<Statement>,
    /// ACTIVE or DELETED; set by the vault, ignored on input.
    #[serde(default = "active")]
    pub status: String,
}

fn active() -> String {
    "ACTIVE".to_string()
}

impl AccessRecord {
    pub fn is_active(&self) -> bool {
        self.status == "ACTIVE"
    }

    pub fn has_user(&self, subject: &str) -> bool {
        self.users.iter().any(|u| u.user_id == subject)
    }
}

fn check_text(field: &'static str, value: &str, max: usize, required: bool) -> Result<(), ValidationError> {
    if (required && value.trim().is_empty()) || value.len() > max || value.chars().any(char::is_control) {
        return Err(invalid(
            "invalid_field",
            format!("{field} must be 1 to {max} printable characters"),
        ));
    }
    Ok(())
}

pub fn validate_role(role: &Role) -> Result<(), ValidationError> {
    if !is_valid_id(&role.role_id) {
        return Err(invalid(
            "invalid_role_id",
            "roleId must be 1 to 100 characters of [a-zA-Z0-9-._:@|~]",
        ));
    }
    check_text("name", &role.name, MAX_NAME, true)?;
    check_text(
        "description",
        role.description.as_deref().unwrap_or(""),
        MAX_DESCRIPTION,
        false,
    )?;
    if role.permissions.is_empty() || role.permissions.len() > MAX_PERMISSIONS {
        return Err(invalid("invalid_permissions", "a role has 1 to 100 permissions"));
    }
    if let Some(bad) = role.permissions.iter().find(|p| Action::parse(&p.action).is_none()) {
        return Err(invalid(
            "invalid_action",
            format!("action {:?} is not valid", truncate(&bad.action)),
        ));
    }
    Ok(())
}

pub fn validate_record(record: &AccessRecord) -> Result<(), ValidationError> {
    if !is_valid_id(&record.record_id) {
        return Err(invalid(
            "invalid_record_id",
            "recordId must be 1 to 100 characters of [a-zA-Z0-9-._:@|~]",
        ));
    }
    check_text("name", &record.name, MAX_NAME, true)?;
    check_text(
        "description",
        record.description.as_deref().unwrap_or(""),
        MAX_DESCRIPTION,
        false,
    )?;
    if record.users.len() > MAX_USERS || record.statements.len() > MAX_STATEMENTS {
        return Err(ValidationError::TooLarge);
    }
    if record.statements.is_empty() {
        return Err(invalid("invalid_statements", "a record needs at least one statement"));
    }
    if let Some(bad) = record
        .users
        .iter()
        .find(|u| u.user_id.is_empty() || u.user_id.len() > 128)
    {
        return Err(invalid(
            "invalid_user_id",
            format!("user id {:?} is not valid", truncate(&bad.user_id)),
        ));
    }
    for statement in &record.statements {
        if statement.roles.is_empty() || statement.resources.is_empty() {
            return Err(invalid(
                "invalid_statements",
                "each statement names at least one role and one resource",
            ));
        }
        if let Some(bad) = statement.roles.iter().find(|r| !is_valid_id(r)) {
            return Err(invalid(
                "invalid_role_id",
                format!("role {:?} is not valid", truncate(bad)),
            ));
        }
        if let Some(bad) = statement
            .resources
            .iter()
            .find(|r| ResourceUri::parse(&r.resource_uri).is_none())
        {
            return Err(invalid(
                "invalid_resource_uri",
                format!("resource {:?} is not a valid resource URI", truncate(&bad.resource_uri)),
            ));
        }
    }
    Ok(())
}

/// Why a role or record is not acceptable.
#[derive(Debug, thiserror::Error)]
pub enum ValidationError {
    /// A field is not valid: `code` is the stable snake_case `errorCode`, `detail` says which and why.
    #[error("invalid ({code}): {detail}")]
    Invalid { code: &'static str, detail: String },
    /// More users or statements than a record may list.
    #[error("the record lists too many users or statements")]
    TooLarge,
}

fn invalid(code: &'static str, detail: impl Into<String>) -> ValidationError {
    ValidationError::Invalid {
        code,
        detail: detail.into(),
    }
}

/// Echo at most a short prefix of a rejected value.
fn truncate(value: &str) -> String {
    value.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role() -> Role {
        Role {
            role_id: "ro_reader".into(),
            name: "reader".into(),
            description: None,
            permissions: vec![permission("connections:credentials:read")],
        }
    }

    fn permission(action: &str) -> Permission {
        Permission {
            action: action.into(),
            allow: true,
            grant: false,
            delegate: false,
        }
    }

    fn record() -> AccessRecord {
        AccessRecord {
            record_id: "rec_1".into(),
            name: "readers".into(),
            description: None,
            users: vec![UserRef {
                user_id: "google|1".into(),
            }],
            statements: vec![statement()],
            status: active(),
        }
    }

    fn statement() -> Statement {
        Statement {
            roles: vec!["ro_reader".into()],
            resources: vec![ResourceRef {
                resource_uri: "Connections/con_a".into(),
            }],
        }
    }

    /// The `errorCode` a refusal answers with; `ok` when accepted.
    fn code(result: Result<(), ValidationError>) -> &'static str {
        match result {
            Ok(()) => "ok",
            Err(ValidationError::Invalid { code, .. }) => code,
            Err(ValidationError::TooLarge) => "too_large",
        }
    }

    fn role_with(change: impl FnOnce(&mut Role)) -> &'static str {
        let mut role = role();
        change(&mut role);
        code(validate_role(&role))
    }

    fn record_with(change: impl FnOnce(&mut AccessRecord)) -> &'static str {
        let mut record = record();
        change(&mut record);
        code(validate_record(&record))
    }

    #[test]
    fn a_role_is_checked_field_by_field_at_each_limit() {
        assert_eq!(role_with(|_| {}), "ok");
        assert_eq!(role_with(|r| r.role_id = "ro reader".into()), "invalid_role_id");
        assert_eq!(role_with(|r| r.role_id.clear()), "invalid_role_id");

        assert_eq!(role_with(|r| r.name = "n".repeat(MAX_NAME)), "ok");
        assert_eq!(role_with(|r| r.name = "n".repeat(MAX_NAME + 1)), "invalid_field");
        assert_eq!(
            role_with(|r| r.name = "  ".into()),
            "invalid_field",
            "a name is required"
        );
        assert_eq!(role_with(|r| r.name = "read\ner".into()), "invalid_field");

        assert_eq!(
            role_with(|r| r.description = Some(String::new())),
            "ok",
            "a description is optional"
        );
        assert_eq!(role_with(|r| r.description = Some("d".repeat(MAX_DESCRIPTION))), "ok");
        assert_eq!(
            role_with(|r| r.description = Some("d".repeat(MAX_DESCRIPTION + 1))),
            "invalid_field"
        );
        assert_eq!(role_with(|r| r.description = Some("a\u{7}b".into())), "invalid_field");

        assert_eq!(role_with(|r| r.permissions.clear()), "invalid_permissions");
        assert_eq!(
            role_with(|r| r.permissions = vec![permission("*"); MAX_PERMISSIONS]),
            "ok"
        );
        assert_eq!(
            role_with(|r| r.permissions = vec![permission("*"); MAX_PERMISSIONS + 1]),
            "invalid_permissions"
        );
        assert_eq!(role_with(|r| r.permissions.push(permission("a b"))), "invalid_action");
    }

    #[test]
    fn a_record_is_checked_field_by_field_at_each_limit() {
        assert_eq!(record_with(|_| {}), "ok");
        assert_eq!(record_with(|r| r.record_id = "rec/1".into()), "invalid_record_id");
        assert_eq!(record_with(|r| r.name.clear()), "invalid_field");
        assert_eq!(
            record_with(|r| r.description = Some("d".repeat(MAX_DESCRIPTION + 1))),
            "invalid_field"
        );

        let user = |id: &str| UserRef { user_id: id.into() };
        assert_eq!(record_with(|r| r.users = vec![user("u"); MAX_USERS]), "ok");
        assert_eq!(record_with(|r| r.users = vec![user("u"); MAX_USERS + 1]), "too_large");
        assert_eq!(record_with(|r| r.users.clear()), "ok", "a record may name no user yet");
        assert_eq!(record_with(|r| r.users.push(user(""))), "invalid_user_id");
        assert_eq!(record_with(|r| r.users.push(user(&"u".repeat(128)))), "ok");
        assert_eq!(record_with(|r| r.users.push(user(&"u".repeat(129)))), "invalid_user_id");

        assert_eq!(record_with(|r| r.statements = vec![statement(); MAX_STATEMENTS]), "ok");
        assert_eq!(
            record_with(|r| r.statements = vec![statement(); MAX_STATEMENTS + 1]),
            "too_large"
        );
        assert_eq!(record_with(|r| r.statements.clear()), "invalid_statements");
        assert_eq!(record_with(|r| r.statements[0].roles.clear()), "invalid_statements");
        assert_eq!(record_with(|r| r.statements[0].resources.clear()), "invalid_statements");
        assert_eq!(
            record_with(|r| r.statements.push(Statement {
                roles: vec!["ro_reader".into(), "ro bad".into()],
                ..statement()
            })),
            "invalid_role_id",
            "every statement, every role"
        );
        assert_eq!(
            record_with(|r| r.statements.push(Statement {
                resources: vec![ResourceRef {
                    resource_uri: "a//b".into()
                }],
                ..statement()
            })),
            "invalid_resource_uri"
        );
    }

    #[test]
    fn a_refusal_echoes_at_most_40_characters_of_the_value() {
        let long = format!("bad action{}", "x".repeat(100));
        let Err(ValidationError::Invalid { detail, .. }) = validate_role(&Role {
            permissions: vec![permission(&long)],
            ..role()
        }) else {
            panic!("refused")
        };
        assert!(detail.contains(&format!("{:?}", &long[..40])), "{detail}");
        assert!(!detail.contains(&long[..41]), "{detail}");
    }

    #[test]
    fn a_record_holds_a_user_by_exact_id_and_only_while_active() {
        let record = record();
        assert!(record.is_active());
        assert!(record.has_user("google|1"));
        for other in ["google|10", "google|", "Google|1", "google|1 "] {
            assert!(!record.has_user(other), "{other:?}");
        }
        assert!(
            !AccessRecord {
                status: "DELETED".into(),
                ..record
            }
            .is_active()
        );
    }
}
