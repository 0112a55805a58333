//! Turning a bearer token into a caller: a vault user token (ES256, `user_tokens.rs`) or a
//! service-client token (EdDSA, `service_clients.rs`), told apart by the token's algorithm and key id.

use std::sync::Arc;

use super::caller::{AuthenticationError, Caller};
use super::service_clients;
use super::user_tokens::UserTokens;
use crate::clock::Clock;
use crate::store::Table;

/// What authenticating a request needs, and nothing more: the user-token verifier, the table holding
/// service clients' public keys, time, and the two audiences a client token may name.
pub struct Authenticator {
    pub user_tokens: Arc<UserTokens>,
    pub table: Table,
    pub clock: Arc<dyn Clock>,
    /// The vault's own URL: user tokens' issuer, and the prefix of every client token's issuer.
    pub issuer: String,
    /// The Authress account audience (`{accountId}.accounts.authress.io`) client tokens may name.
    pub account_audience: String,
}

impl Authenticator {
    /// The caller a bearer token proves. An EdDSA token with a key id is a service client's; anything
    /// else is checked as a vault user token, which refuses every other algorithm.
    pub async fn authenticate(&self, token: &str) -> Result<Caller, AuthenticationError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthenticationError::Refused("the token is not a valid JWT"))?;
        match (header.alg, header.kid.as_deref()) {
            (jsonwebtoken::Algorithm::EdDSA, Some(kid)) => {
                service_clients::verify(
                    &self.table,
                    self.clock.as_ref(),
                    &self.issuer,
                    &self.account_audience,
                    token,
                    kid,
                )
                .await
            }
            _ => self.user_tokens.verify(token).await,
        }
    }
}
