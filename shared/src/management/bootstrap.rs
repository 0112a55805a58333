//! The first administrator: a service client holding the `vault:admin` role on every resource. Made
//! by a command an operator runs with their own AWS credentials, so no secret ever sits in the
//! template, the repository, the environment or a log; the access key is printed once.

use secrecy::SecretString;
use serde_json::json;

use super::access::AccessAdmin;
use super::authority::Authority;
use super::service_clients::{ClientInput, ServiceClientAdmin};
use crate::access::model::{ADMIN_ROLE_ID, AccessRecord, Role};
use crate::error::ApiError;
use crate::store::documents::{self, Kind};

/// Creates an administrator client and returns its id and its access key (shown once, stored nowhere).
pub async fn create_admin(
    grants: &AccessAdmin,
    clients: &ServiceClientAdmin,
    name: &str,
) -> Result<(String, SecretString), ApiError> {
    if documents::get(&grants.table, Kind::Role, ADMIN_ROLE_ID)
        .await?
        .is_none()
    {
        let role: Role = serde_json::from_value(json!({
            "roleId": ADMIN_ROLE_ID, "name": "Vault administrator",
            "description": "Everything on every resource of the vault",
            "permissions": [{"action": "*", "allow": true, "grant": true, "delegate": true}],
        }))
        .map_err(ApiError::internal)?;
        match grants.create_role(Authority::Operator, role).await {
            Ok(_) | Err(ApiError::Conflict { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let client = clients
        .create_client(
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
    grants.create_record(Authority::Operator, record).await?;
    let key = clients.add_key(Authority::Operator, &client.client_id, None).await?;
    let access_key = key
        .access_key
        .ok_or_else(|| ApiError::internal("no access key was made"))?;
    Ok((client.client_id, access_key))
}
