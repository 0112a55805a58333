//! How the vault authenticates itself as the OAuth client at a provider's token and revocation
//! endpoints (RFC 6749 §2.3.1, OIDC Core §9): the connection's `tokenEndpointAuthMethod`.

use base64::Engine;
use secrecy::ExposeSecret;

use super::client_assertion::{ASSERTION_TYPE, AssertionKey, ClientCertificate, KeyName, assertion};
use super::connection::Connection;
pub use super::connection::TokenEndpointAuthMethod;

/// The client's credentials on one request: either an `Authorization` header, or body parameters.
pub enum ClientCredentials {
    Header(String),
    Body(Vec<(&'static str, String)>),
}

/// How `connection` authenticates on a token or revocation request to `endpoint` (the audience of a
/// `private_key_jwt` assertion). `None`: the stored key does not make an assertion (it was checked
/// when the connection was stored, so only a corrupt item gets here).
pub fn client_credentials(connection: &Connection, endpoint: &str) -> Option<ClientCredentials> {
    let id = connection.client_id.clone();
    Some(match connection.token_endpoint_auth_method {
        TokenEndpointAuthMethod::ClientSecretBasic => ClientCredentials::Header(basic_authorization(
            &connection.client_id,
            connection.client_secret.expose_secret(),
        )),
        TokenEndpointAuthMethod::ClientSecretPost => ClientCredentials::Body(vec![
            ("client_id", id),
            ("client_secret", connection.client_secret.expose_secret().to_string()),
        ]),
        TokenEndpointAuthMethod::PrivateKeyJwt => {
            let key = AssertionKey::parse(connection.client_secret.expose_secret())?;
            // The provider checks iat and exp against its own clock: real time, whatever clock the
            // vault's protocol runs on.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let certificate = match &connection.client_assertion_certificate {
                Some(pem) => Some(ClientCertificate::parse(pem, &key)?),
                None => None,
            };
            let name = KeyName {
                kid: connection.client_assertion_kid.as_deref(),
                certificate: certificate.as_ref(),
            };
            let jwt = assertion(&key, &id, endpoint, &name, now)?;
            ClientCredentials::Body(vec![
                ("client_id", id),
                ("client_assertion_type", ASSERTION_TYPE.to_string()),
                ("client_assertion", jwt),
            ])
        }
    })
}

/// `Basic base64(form(id) ":" form(secret))`: RFC 6749 §2.3.1 form-encodes both before base64, so a
/// `:` in the id cannot split it, and a server that decodes them gets back what was registered.
fn basic_authorization(client_id: &str, client_secret: &str) -> String {
    let form = |value: &str| url::form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", form(client_id), form(client_secret));
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(header: &str) -> String {
        let encoded = header.strip_prefix("Basic ").unwrap();
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded).unwrap()).unwrap()
    }

    #[test]
    fn basic_form_encodes_id_and_secret_before_base64() {
        // RFC 6749 Appendix B: space is `+`, reserved characters are percent-encoded.
        let header = basic_authorization("my:client", "p%ss+w rd:ü");
        assert_eq!(decoded(&header), "my%3Aclient:p%25ss%2Bw+rd%3A%C3%BC");
        // The only raw `:` is the separator, so the server splits id and secret where they meet.
        assert_eq!(decoded(&header).matches(':').count(), 1);
    }

    #[test]
    fn plain_ids_and_secrets_are_unchanged_by_the_encoding() {
        let header = basic_authorization("client-1_x.y*z", "s3cr3t");
        assert_eq!(decoded(&header), "client-1_x.y*z:s3cr3t");
    }

    #[test]
    fn discovery_prefers_basic_and_falls_back_to_post() {
        let list = |methods: &[&str]| methods.iter().map(|m| m.to_string()).collect::<Vec<_>>();
        assert_eq!(
            TokenEndpointAuthMethod::from_discovery(Some(&list(&["client_secret_post", "client_secret_basic"]))),
            Some(TokenEndpointAuthMethod::ClientSecretBasic)
        );
        assert_eq!(
            TokenEndpointAuthMethod::from_discovery(Some(&list(&["private_key_jwt", "client_secret_post"]))),
            Some(TokenEndpointAuthMethod::ClientSecretPost)
        );
        assert_eq!(
            TokenEndpointAuthMethod::from_discovery(None),
            Some(TokenEndpointAuthMethod::ClientSecretBasic),
            "OIDC Discovery's default"
        );
        assert_eq!(
            TokenEndpointAuthMethod::from_discovery(Some(&list(&["private_key_jwt"]))),
            None
        );
    }

    #[test]
    fn names_round_trip() {
        for method in [
            TokenEndpointAuthMethod::ClientSecretBasic,
            TokenEndpointAuthMethod::ClientSecretPost,
            TokenEndpointAuthMethod::PrivateKeyJwt,
        ] {
            assert_eq!(TokenEndpointAuthMethod::parse(method.as_str()), Some(method));
            assert_eq!(serde_json::to_value(method).unwrap(), method.as_str());
        }
        assert_eq!(TokenEndpointAuthMethod::parse("none"), None);
    }
}
