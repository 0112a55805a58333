//! The first administrator: a service client holding the `vault:admin` role on every resource. Made
//! by a command an operator runs with their own AWS credentials, so no secret ever sits in the
//! template, the repository, the environment or a log; the access key is printed once.

use secrecy::SecretString;
use serde_json::json;

use super::access;
use super::authority::Authority;
use super::service_clients::{self, ClientInput};
use crate::access::model::{ADMIN_ROLE_ID, AccessRecord, Role};
use crate::error::ApiError;
use crate::services::Services;
use crate::store::documents::{self, Kind};

/// Creates an administrator client and returns its id and its access key (shown once, stored nowhere).
pub async fn create_admin(services: &Services, name: &str) -> Result<(String, SecretString), ApiError> {
    if documents::get(&services.table, Kind::Role, ADMIN_ROLE_ID)
        .await?
        .is_none()
    {
        let role: Role = serde_json::from_value(json!({
            "roleId": ADMIN_ROLE_ID, "name": "Vault administrator",
            "description": "Everything on every resource of the vault",
            "permissions": [{"action": "*", "allow": true, "grant": true, "delegate": true}],
        }))
        .map_err(ApiError::internal)?;
        match access::create_role(services, Authority::Operator, role).await {
            Ok(_) | Err(ApiError::Conflict { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let client = service_clients::create_client(
        services,
        Authority::Operator,
        ClientInput {
            client_id: None,
            name: name.to_string(),
            description: None,
        },
    )
    .await?;
    let record: AccessRecord = serde_json::from_value(json!({
        "recordId": format!("rec_admin_{}", client.client_id),
        "name": format!("Administrator: {name}"),
        "users": [{"userId": client.client_id}],
        "statements": [{"roles": [ADMIN_ROLE_ID], "resources": [{"resourceUri": "*"}]}],
    }))
    .map_err(ApiError::internal)?;
    access::create_record(services, Authority::Operator, record).await?;
    let key = service_clients::add_key(services, Authority::Operator, &client.client_id, None).await?;
    let access_key = key
        .access_key
        .ok_or_else(|| ApiError::internal("no access key was made"))?;
    Ok((client.client_id, access_key))
}
