//! Managing service clients through the API: making, changing and deleting clients, and their access
//! keys. Only public keys are stored; a key made here is returned once, inside an Authress-format
//! access key, and forgotten. Verifying a client's token is in `identity/service_clients.rs`.

use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::SecretString;
use serde::Deserialize;

use super::authority::Authority;
use crate::access::PolicyEngine;
use crate::access::delegation;
use crate::clock::Clock;
use crate::error::ApiError;
use crate::identity::Caller;
use crate::identity::service_clients::{ServiceClient, VerificationKey, ed25519_key_from_spki, ed25519_spki};
use crate::ids::is_valid_client_id;
use crate::store::Table;
use crate::store::documents::{self, Kind};

/// Authress allows five active keys per client.
pub const MAX_KEYS: usize = 5;

/// A new key pair: the public key as base64 SPKI, and the Authress access key
/// `clientId.keyId.accountId.<base64 PKCS#8>` holding the private key.
pub fn generate_access_key(
    client_id: &str,
    key_id: &str,
    account_id: &str,
) -> Result<(String, SecretString), ApiError> {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new())
        .map_err(|_| ApiError::internal("key generation failed"))?;
    let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(pkcs8.as_ref())
        .map_err(|_| ApiError::internal("key generation failed"))?;
    let access_key = format!("{client_id}.{key_id}.{account_id}.{}", STANDARD.encode(pkcs8.as_ref()));
    Ok((ed25519_spki(pair.public_key().as_ref()), SecretString::from(access_key)))
}

fn client_not_found() -> ApiError {
    ApiError::not_found("client_not_found", "no such service client")
}

/// `POST /v1/clients` and `PUT /v1/clients/{clientId}` bodies: keys are managed by their own routes.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientInput {
    #[serde(default)]
    pub client_id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
}

fn validate_input(input: &ClientInput) -> Result<(), ApiError> {
    if input.name.trim().is_empty() || input.name.len() > 128 || input.name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_field",
            "name must be 1 to 128 printable characters",
        ));
    }
    if input.description.as_ref().is_some_and(|d| d.len() > 1024) {
        return Err(ApiError::bad_request(
            "invalid_field",
            "description is at most 1024 characters",
        ));
    }
    Ok(())
}

/// Service clients and their access keys: the documents they are, whom to ask before a change that
/// acts on what a client holds (the policy), and the account id inside every access key.
pub struct ServiceClientAdmin {
    pub table: Table,
    pub policy: Arc<PolicyEngine>,
    pub clock: Arc<dyn Clock>,
    /// The Authress account id access keys carry (`clientId.keyId.accountId.privateKey`).
    pub account_id: String,
}

impl ServiceClientAdmin {
    /// A client as stored, or `None`.
    pub async fn get(&self, client_id: &str) -> Result<Option<ServiceClient>, ApiError> {
        Ok(crate::identity::service_clients::load_client(&self.table, client_id).await?)
    }

    /// Makes a client. An id chosen by the caller may be one that active records still name (a client
    /// deleted and made again): the caller then becomes whatever those records give, so the delegation
    /// rules decide, as for its keys.
    pub async fn create_client(&self, authority: Authority<'_>, input: ClientInput) -> Result<ServiceClient, ApiError> {
        validate_input(&input)?;
        let client_id = input
            .client_id
            .clone()
            .unwrap_or_else(|| format!("sc_{}", crate::random::token(12).replace('-', "x")));
        if !is_valid_client_id(&client_id) {
            return Err(ApiError::bad_request(
                "invalid_client_id",
                "clientId must start with sc_ and be at most 64 characters of [a-zA-Z0-9-_:@|~]",
            ));
        }
        if let (Authority::Caller(caller), Some(_)) = (authority, &input.client_id) {
            self.authorize_client_identity(caller, &client_id).await?;
        }
        let client = ServiceClient {
            client_id: client_id.clone(),
            name: input.name,
            description: input.description,
            verification_keys: Vec::new(),
        };
        let body = serde_json::to_value(&client).map_err(ApiError::internal)?;
        if !documents::create(&self.table, Kind::Client, &client_id, &body, self.clock.now_millis()).await? {
            return Err(ApiError::Conflict {
                code: "client_exists",
                detail: "a client with this id exists already".into(),
            });
        }
        Ok(client)
    }

    pub async fn update_client(&self, client_id: &str, input: ClientInput) -> Result<ServiceClient, ApiError> {
        validate_input(&input)?;
        self.change_client(client_id, |client| {
            client.name = input.name.clone();
            client.description = input.description.clone();
            Ok(())
        })
        .await
    }

    /// Adds a key: made here (the private key is returned once), or the caller's own public key. A new key
    /// is the power to act as the client, now and later (see `authorize_key_management`).
    pub async fn add_key(
        &self,
        authority: Authority<'_>,
        client_id: &str,
        uploaded_public_key: Option<String>,
    ) -> Result<NewAccessKey, ApiError> {
        if let Authority::Caller(caller) = authority {
            self.authorize_key_management(caller, client_id).await?;
        }
        let key_id = crate::random::token(9).replace(['-', '_'], "x");
        let (public_key, access_key) = match uploaded_public_key {
            Some(public) => {
                if public.len() > 256 || ed25519_key_from_spki(&public).is_none() {
                    return Err(ApiError::bad_request(
                        "invalid_public_key",
                        "publicKey must be a base64 DER Ed25519 public key",
                    ));
                }
                (public, None)
            }
            None => {
                let (public, access) = generate_access_key(client_id, &key_id, &self.account_id)?;
                (public, Some(access))
            }
        };
        let key = VerificationKey {
            key_id,
            public_key,
            generation_date: crate::clock::iso8601(self.clock.now_secs()),
        };
        let added = key.clone();
        self.change_client(client_id, move |client| {
            if client.verification_keys.len() >= MAX_KEYS {
                return Err(ApiError::bad_request(
                    "too_many_keys",
                    "a client has at most 5 access keys; delete one first",
                ));
            }
            client.verification_keys.push(added.clone());
            Ok(())
        })
        .await?;
        Ok(NewAccessKey { key, access_key })
    }

    /// Deletes a key; held to the same rule as adding one, or anyone with `clients:update` could lock an
    /// administrator out.
    pub async fn delete_key(&self, authority: Authority<'_>, client_id: &str, key_id: &str) -> Result<(), ApiError> {
        if let Authority::Caller(caller) = authority {
            self.authorize_key_management(caller, client_id).await?;
        }
        self.change_client(client_id, |client| {
            let before = client.verification_keys.len();
            client.verification_keys.retain(|k| k.key_id != key_id);
            if client.verification_keys.len() == before {
                return Err(ApiError::not_found("access_key_not_found", "no such access key"));
            }
            Ok(())
        })
        .await
        .map(|_| ())
    }

    async fn load_document(&self, client_id: &str) -> Result<Option<documents::Document>, ApiError> {
        if !is_valid_client_id(client_id) {
            return Ok(None);
        }
        Ok(documents::get(&self.table, Kind::Client, client_id).await?)
    }

    /// Read-modify-write of a client, conditional on the version read; retried when another change won.
    async fn change_client(
        &self,
        client_id: &str,
        change: impl Fn(&mut ServiceClient) -> Result<(), ApiError>,
    ) -> Result<ServiceClient, ApiError> {
        for _ in 0..5 {
            let doc = self.load_document(client_id).await?.ok_or_else(client_not_found)?;
            let mut client: ServiceClient =
                serde_json::from_value(doc.body).map_err(|e| ApiError::internal(format!("stored client: {e}")))?;
            change(&mut client)?;
            let body = serde_json::to_value(&client).map_err(ApiError::internal)?;
            let now = self.clock.now_millis().max(doc.updated_at_ms + 1);
            match documents::replace(
                &self.table,
                Kind::Client,
                client_id,
                &body,
                Some(doc.updated_at_ms),
                now,
            )
            .await?
            {
                documents::ReplaceOutcome::Replaced(_) => return Ok(client),
                documents::ReplaceOutcome::NotFound => {
                    return Err(client_not_found());
                }
                documents::ReplaceOutcome::Conflict => continue,
            }
        }
        Err(ApiError::internal("service client kept changing"))
    }

    /// A client's access keys are the power to be that client, now and with whatever it is given later:
    /// only an administrator manages them, or the client its own (rotation).
    pub async fn authorize_key_management(&self, caller: &Caller, client_id: &str) -> Result<(), ApiError> {
        if matches!(caller, Caller::ServiceClient { client_id: me } if me == client_id)
            || self.policy.is_administrator(caller).await?
        {
            return Ok(());
        }
        Err(ApiError::refused(
            "administrators_only",
            "a client's access keys are managed by administrators (vault:admin on *) or by the client itself",
        ))
    }

    /// Re-creating a client id (or deleting a client) is acting on what it holds: allowed only to a caller
    /// who could give, itself, everything the active records naming the client give.
    pub async fn authorize_client_identity(&self, caller: &Caller, client_id: &str) -> Result<(), ApiError> {
        let snapshot = self.policy.load_now().await?;
        for record in snapshot.records().iter().filter(|r| r.has_user(client_id)) {
            delegation::check_record(&snapshot, caller.subject(), record)?;
        }
        Ok(())
    }

    /// Deletes a service client (roles and records have theirs in `management/access.rs`); like its keys, only by
    /// a caller who could give what it holds, so nobody can lock an administrator out.
    pub async fn delete_client(&self, authority: Authority<'_>, client_id: &str) -> Result<(), ApiError> {
        if let Authority::Caller(caller) = authority
            && is_valid_client_id(client_id)
        {
            self.authorize_client_identity(caller, client_id).await?;
        }
        if !is_valid_client_id(client_id) || !documents::delete(&self.table, Kind::Client, client_id).await? {
            return Err(client_not_found());
        }
        Ok(())
    }
}

/// What `POST /v1/clients/{clientId}/access-keys` returns: the private key only when the vault made it.
#[derive(Debug)]
pub struct NewAccessKey {
    pub key: VerificationKey,
    pub access_key: Option<SecretString>,
}

/// The client as the API shows it: public keys only.
pub fn present(client: &ServiceClient) -> serde_json::Value {
    serde_json::to_value(client).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_keys_have_the_authress_format_and_a_matching_public_key() {
        use secrecy::ExposeSecret;
        let (public, access) = generate_access_key("sc_a", "kid1", "acct").unwrap();
        let parts: Vec<&str> = access.expose_secret().split('.').collect();
        assert_eq!(&parts[..3], ["sc_a", "kid1", "acct"]);
        assert!(
            parts[3].starts_with("MC4CAQAwBQYDK2VwBCIEI"),
            "48-byte PKCS#8 v1 Ed25519"
        );
        let pkcs8 = STANDARD.decode(parts[3]).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8).unwrap();
        assert_eq!(ed25519_key_from_spki(&public).unwrap(), pair.public_key().as_ref());
        assert!(ed25519_key_from_spki("bm90IGEga2V5").is_none());
    }
}
