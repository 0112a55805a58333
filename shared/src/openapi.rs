//! The shared parts of the OpenAPI 3.1 description: the document's info, the bearer scheme, the error
//! body, and schemas of the responses the handlers write as JSON. The paths come from the routers
//! (each handler's `#[utoipa::path]`); where the three functions meet (the local gateway) they merge.
//! Types named `...Body` here describe a response and are never built: the handlers write those
//! bodies with `json!`, the test of the checked-in document and Schemathesis keep the two in step.

use std::collections::BTreeMap;

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};

/// The scheme operations name in `security(("bearer" = []))`.
pub const BEARER: &str = "bearer";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "credvault",
        description = "A self-hosted OAuth credentials vault, wire-compatible with the Authress API: login, \
            fresh provider access tokens, and the management of connections, service clients, roles and \
            access records. Every error is a JSON `Error`; client mistakes are 4xx (the SDKs retry 5xx).",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerScheme),
    tags(
        (name = "login", description = "Login through a provider, and the documents that verify vault tokens (login-callback)"),
        (name = "credentials", description = "Fresh provider access tokens, and disconnect (credential-fetch)"),
        (name = "management", description = "Connections, service clients, roles, access records, permission checks and the audit trail (grant-management)"),
    )
)]
pub struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.bearer_format = Some("JWT".to_string());
        scheme.description = Some(
            "A vault access token (ES256, from the login) or a service-client token (EdDSA, signed with \
             the client's access key as the Authress SDKs make them)."
                .to_string(),
        );
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(BEARER, SecurityScheme::Http(scheme));
    }
}

/// The error body of every refusal and failure (the Authress `ResponseError` shape plus `status`).
#[derive(ToSchema)]
#[schema(as = Error, rename_all = "camelCase")]
pub struct ErrorBody {
    /// Human-readable; may change.
    pub title: String,
    /// Stable, snake_case (`invalid_json`, `forbidden`, `credentials_not_found`, ...).
    pub error_code: String,
    /// Names this error in the vault's logs.
    pub error_id: String,
    /// The HTTP status, repeated.
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    /// What was wrong, in words the vault wrote itself (never an upstream body).
    #[schema(nullable = false)]
    pub detail: Option<String>,
    /// With `insufficient_scope`: the required scopes the stored grant lacks.
    #[schema(nullable = false)]
    pub missing_scopes: Option<Vec<String>>,
    /// With `insufficient_scope`: what to put in a login start body (`connectionId`,
    /// `connectionProperties.scope`, the union of granted and required scopes) for the re-consent.
    #[schema(nullable = false, value_type = Option<Object>)]
    pub login: Option<serde_json::Value>,
}

/// `pagination` of every listing.
#[derive(ToSchema)]
pub struct Pagination {
    /// The next page, or null on the last one.
    pub next: Option<NextPage>,
}

#[derive(ToSchema)]
pub struct NextPage {
    /// Pass as `cursor` to get the next page.
    pub cursor: String,
}

/// A provider access token valid for at least the requested time.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct CredentialBody {
    pub access_token: String,
    /// When the access token expires (ISO 8601, UTC).
    pub expires_at: String,
    /// As the provider said, usually `Bearer`.
    pub token_type: String,
    /// The scope the provider granted, when it said.
    #[schema(nullable = false)]
    pub scope: Option<String>,
    /// Fields of the provider's token answer the connection allow-lists (`metadataFields`), which
    /// callers need beside the token: Salesforce `instance_url`, Slack `team.id`. Absent when none.
    #[schema(nullable = false)]
    pub metadata: Option<std::collections::BTreeMap<String, String>>,
}

/// The vault's tokens for a login: an access token for APIs and an id_token for the app.
#[derive(ToSchema)]
pub struct VaultTokensBody {
    pub access_token: String,
    pub id_token: String,
    /// Seconds the access token lives.
    pub expires_in: u64,
    #[schema(pattern = "^Bearer$")]
    pub token_type: String,
}

/// The vault's OpenID Provider metadata, for verifiers of vault tokens.
#[derive(ToSchema)]
pub struct OpenIdConfigurationBody {
    pub issuer: String,
    pub jwks_uri: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub response_types_supported: Vec<String>,
    pub subject_types_supported: Vec<String>,
    pub id_token_signing_alg_values_supported: Vec<String>,
    pub code_challenge_methods_supported: Vec<String>,
}

/// A JSON Web Key Set.
#[derive(ToSchema)]
pub struct JwksBody {
    pub keys: Vec<JwkBody>,
}

/// A public signing key: EC P-256 (`x`, `y`) for vault tokens, OKP Ed25519 (`x`) for service clients.
#[derive(ToSchema)]
pub struct JwkBody {
    pub kty: String,
    pub crv: String,
    pub alg: String,
    #[schema(rename = "use")]
    pub usage: String,
    pub kid: String,
    pub x: String,
    #[schema(nullable = false)]
    pub y: Option<String>,
}

/// A connection as the API shows it: everything but the client secret, which is write-only.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct ConnectionBody {
    pub connection_id: String,
    #[schema(rename = "type", pattern = "^OAUTH2$")]
    pub kind: String,
    pub authentication_url: String,
    pub token_url: String,
    pub issuer_url: Option<String>,
    pub revocation_url: Option<String>,
    pub client_id: String,
    /// `client_secret_basic` or `client_secret_post`.
    pub token_endpoint_auth_method: String,
    /// How the token endpoint's answers are read: `standard`, `github`, `slack` or `atlassian`.
    pub dialect: String,
    /// Fields of the token answers returned as the credential's `metadata`.
    pub metadata_fields: Vec<String>,
    pub default_connection_properties: BTreeMap<String, String>,
    pub data: ConnectionDataBody,
}

#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct ConnectionDataBody {
    pub name: String,
    /// How the vault posts to `tokenUrl`: `application/x-www-form-urlencoded` or `application/json`.
    pub supported_content_type: String,
    pub user_id_expression: String,
    pub oidc_user_endpoint_url: Option<String>,
}

#[derive(ToSchema)]
pub struct ConnectionListBody {
    pub connections: Vec<ConnectionBody>,
    pub pagination: Pagination,
}

#[derive(ToSchema)]
pub struct ClientListBody {
    pub clients: Vec<crate::identity::service_clients::ServiceClient>,
    pub pagination: Pagination,
}

/// A new access key. `accessKey` (the private half, in the Authress access-key format) is here only
/// when the vault made the key, and only in this answer.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct AccessKeyBody {
    pub key_id: String,
    pub client_id: String,
    /// Base64 DER SubjectPublicKeyInfo of the Ed25519 key.
    pub public_key: String,
    pub generation_date: String,
    #[schema(nullable = false)]
    pub access_key: Option<String>,
}

#[derive(ToSchema)]
pub struct RoleListBody {
    pub roles: Vec<crate::access::Role>,
    pub pagination: Pagination,
}

/// A stored access record: what was written, its status and when it last changed.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct AccessRecordBody {
    pub record_id: String,
    pub name: String,
    #[schema(nullable = false)]
    pub description: Option<String>,
    pub users: Vec<crate::access::model::UserRef>,
    pub statements: Vec<crate::access::model::Statement>,
    /// `ACTIVE`, or `DELETED` for a record deleted recently.
    pub status: String,
    /// ISO 8601; send it back as `If-Unmodified-Since` to update without losing a concurrent change.
    pub last_updated: String,
}

#[derive(ToSchema)]
pub struct RecordListBody {
    pub records: Vec<AccessRecordBody>,
    pub pagination: Pagination,
}

/// The answer to an allowed permission check (a denied one is a 404 `permission_denied`).
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
pub struct PermissionBody {
    pub user_id: String,
    pub resource_uri: String,
    pub permission: String,
}

#[derive(ToSchema)]
pub struct AuditListBody {
    /// Newest first.
    pub events: Vec<crate::audit::AuditEvent>,
    pub pagination: Pagination,
}

/// The query a provider sends back to the callback URL.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackParams {
    /// The authorization code; absent when the provider reports an error.
    #[param(max_length = 4096)]
    pub code: Option<String>,
    /// The login state the vault sent to the provider.
    #[param(max_length = 256)]
    pub state: Option<String>,
    /// The provider's error code, passed on to the app (`access_denied`, ...).
    pub error: Option<String>,
    pub error_description: Option<String>,
    /// The provider's issuer (RFC 9207), when it sends one.
    pub iss: Option<String>,
}

/// The standard answers of an operation that needs a bearer token, on top of its own.
#[derive(utoipa::IntoResponses)]
pub enum CallerRefusals {
    /// The bearer token is missing, malformed, expired or not one the vault accepts.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The caller holds no grant for this request.
    #[response(status = 403)]
    Forbidden(ErrorBody),
}

/// The answers any operation may give besides its documented ones.
#[derive(utoipa::IntoResponses)]
pub enum AnyRefusal {
    /// Another refusal or failure: 413 for a body over the limit, 503 with `Retry-After` when the
    /// vault's storage is throttled, 500 for an internal failure.
    #[response(status = "default")]
    Other(ErrorBody),
}
