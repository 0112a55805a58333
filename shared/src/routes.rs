//! The public route table: every route of every function, once. The functions dispatch on it, the local
//! gateway uses it to pick a function, and the infra check compares it with the SAM template.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Function {
    LoginCallback,
    CredentialFetch,
    GrantManagement,
}

impl Function {
    pub const ALL: [Function; 3] = [
        Function::LoginCallback,
        Function::CredentialFetch,
        Function::GrantManagement,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Function::LoginCallback => "login-callback",
            Function::CredentialFetch => "credential-fetch",
            Function::GrantManagement => "grant-management",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteId {
    StartAuthentication,
    ProviderCallback,
    ExchangeVaultCode,
    OpenIdConfiguration,
    Jwks,
    UserCredentials,
    DeleteUserCredentials,
    SessionCredentials,
    ListConnections,
    CreateConnection,
    GetConnection,
    UpdateConnection,
    DeleteConnection,
    ListClients,
    CreateClient,
    GetClient,
    UpdateClient,
    DeleteClient,
    CreateAccessKey,
    DeleteAccessKey,
    ClientJwks,
    ListRoles,
    CreateRole,
    GetRole,
    UpdateRole,
    DeleteRole,
    ListRecords,
    CreateRecord,
    GetRecord,
    UpdateRecord,
    DeleteRecord,
    CheckPermission,
    ListAudit,
}

#[derive(Debug)]
pub struct Route {
    pub id: RouteId,
    pub method: &'static str,
    /// Path template; `{name}` matches exactly one (percent-encoded) segment.
    pub path: &'static str,
    pub function: Function,
}

pub const ROUTES: &[Route] = &[
    Route {
        id: RouteId::StartAuthentication,
        method: "POST",
        path: "/api/authentication",
        function: Function::LoginCallback,
    },
    Route {
        id: RouteId::ProviderCallback,
        method: "GET",
        path: "/api/callback/{connectionId}",
        function: Function::LoginCallback,
    },
    Route {
        id: RouteId::ExchangeVaultCode,
        method: "POST",
        path: "/api/authentication/{authenticationRequestId}/tokens",
        function: Function::LoginCallback,
    },
    Route {
        id: RouteId::OpenIdConfiguration,
        method: "GET",
        path: "/.well-known/openid-configuration",
        function: Function::LoginCallback,
    },
    Route {
        id: RouteId::Jwks,
        method: "GET",
        path: "/.well-known/openid-configuration/jwks",
        function: Function::LoginCallback,
    },
    Route {
        id: RouteId::UserCredentials,
        method: "GET",
        path: "/v1/connections/{connectionId}/users/{userId}/credentials",
        function: Function::CredentialFetch,
    },
    Route {
        id: RouteId::SessionCredentials,
        method: "GET",
        path: "/api/session/credentials",
        function: Function::CredentialFetch,
    },
    Route {
        id: RouteId::DeleteUserCredentials,
        method: "DELETE",
        path: "/v1/connections/{connectionId}/users/{userId}/credentials",
        function: Function::CredentialFetch,
    },
    grants(RouteId::ListConnections, "GET", "/v1/connections"),
    grants(RouteId::CreateConnection, "POST", "/v1/connections"),
    grants(RouteId::GetConnection, "GET", "/v1/connections/{connectionId}"),
    grants(RouteId::UpdateConnection, "PUT", "/v1/connections/{connectionId}"),
    grants(RouteId::DeleteConnection, "DELETE", "/v1/connections/{connectionId}"),
    grants(RouteId::ListClients, "GET", "/v1/clients"),
    grants(RouteId::CreateClient, "POST", "/v1/clients"),
    grants(RouteId::GetClient, "GET", "/v1/clients/{clientId}"),
    grants(RouteId::UpdateClient, "PUT", "/v1/clients/{clientId}"),
    grants(RouteId::DeleteClient, "DELETE", "/v1/clients/{clientId}"),
    grants(RouteId::CreateAccessKey, "POST", "/v1/clients/{clientId}/access-keys"),
    grants(
        RouteId::DeleteAccessKey,
        "DELETE",
        "/v1/clients/{clientId}/access-keys/{keyId}",
    ),
    grants(
        RouteId::ClientJwks,
        "GET",
        "/v1/clients/{clientId}/.well-known/openid-configuration/jwks",
    ),
    grants(RouteId::ListRoles, "GET", "/v1/roles"),
    grants(RouteId::CreateRole, "POST", "/v1/roles"),
    grants(RouteId::GetRole, "GET", "/v1/roles/{roleId}"),
    grants(RouteId::UpdateRole, "PUT", "/v1/roles/{roleId}"),
    grants(RouteId::DeleteRole, "DELETE", "/v1/roles/{roleId}"),
    grants(RouteId::ListRecords, "GET", "/v1/records"),
    grants(RouteId::CreateRecord, "POST", "/v1/records"),
    grants(RouteId::GetRecord, "GET", "/v1/records/{recordId}"),
    grants(RouteId::UpdateRecord, "PUT", "/v1/records/{recordId}"),
    grants(RouteId::DeleteRecord, "DELETE", "/v1/records/{recordId}"),
    grants(
        RouteId::CheckPermission,
        "GET",
        "/v1/users/{userId}/resources/{resourceUri}/permissions/{permission}",
    ),
    grants(RouteId::ListAudit, "GET", "/v1/audit"),
];

const fn grants(id: RouteId, method: &'static str, path: &'static str) -> Route {
    Route {
        id,
        method,
        path,
        function: Function::GrantManagement,
    }
}

/// A request matched to a route, with its path parameters percent-decoded.
#[derive(Debug)]
pub struct Matched {
    pub route: &'static Route,
    params: Vec<(&'static str, String)>,
}

impl Matched {
    /// The decoded value of a path parameter named in the template (empty if the name is not there).
    pub fn param(&self, name: &str) -> &str {
        self.params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum RouteMiss {
    NotFound,
    /// The path exists but not with this method.
    MethodNotAllowed,
    /// A path segment is not valid percent-encoded UTF-8.
    BadEncoding,
}

/// Matches a raw (still percent-encoded) path. A trailing slash is ignored, as the SDKs sometimes send one.
pub fn match_route(method: &str, raw_path: &str) -> Result<Matched, RouteMiss> {
    let path = match raw_path.trim_end_matches('/') {
        "" => "/",
        p => p,
    };
    let segments: Vec<&str> = path.split('/').collect();
    let mut path_matched = false;
    for route in ROUTES {
        let template: Vec<&str> = route.path.split('/').collect();
        if template.len() != segments.len() {
            continue;
        }
        let mut params = Vec::new();
        let mut ok = true;
        for (t, s) in template.iter().zip(&segments) {
            if let Some(name) = t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
                if s.is_empty() {
                    ok = false;
                    break;
                }
                params.push((name, decode_segment(s).ok_or(RouteMiss::BadEncoding)?.into_owned()));
            } else if t != s {
                ok = false;
                break;
            }
        }
        if !ok {
            continue;
        }
        path_matched = true;
        if route.method.eq_ignore_ascii_case(method) {
            return Ok(Matched { route, params });
        }
    }
    Err(if path_matched {
        RouteMiss::MethodNotAllowed
    } else {
        RouteMiss::NotFound
    })
}

/// Percent-decodes one path segment: user ids carry `|`, resource URIs arrive as one `%2F`-encoded segment.
fn decode_segment(segment: &str) -> Option<Cow<'_, str>> {
    percent_decode_str(segment).decode_utf8().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_parameters_are_percent_decoded() {
        let m = match_route("GET", "/v1/connections/con_a/users/google%7Cabc/credentials").unwrap();
        assert_eq!(m.route.id, RouteId::UserCredentials);
        assert_eq!(m.param("userId"), "google|abc");
        assert_eq!(m.param("connectionId"), "con_a");
    }

    #[test]
    fn raw_pipe_and_trailing_slash_are_tolerated() {
        let m = match_route("GET", "/v1/connections/con_a/users/slack|T1|U2/credentials/").unwrap();
        assert_eq!(m.param("userId"), "slack|T1|U2");
    }

    #[test]
    fn wrong_method_and_unknown_path_differ() {
        assert_eq!(
            match_route("DELETE", "/api/authentication").unwrap_err(),
            RouteMiss::MethodNotAllowed
        );
        assert_eq!(match_route("GET", "/nope").unwrap_err(), RouteMiss::NotFound);
        assert_eq!(
            match_route("GET", "/api/callback/%FF").unwrap_err(),
            RouteMiss::BadEncoding
        );
    }

    #[test]
    fn every_route_matches_itself_and_only_one_function_owns_it() {
        for route in ROUTES {
            let concrete = route.path.replace('{', "x").replace('}', "");
            let m = match_route(route.method, &concrete).unwrap();
            assert_eq!(m.route.id, route.id, "{}", route.path);
        }
    }
}
