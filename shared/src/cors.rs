//! Cross-origin requests from browser apps (an app on `app.example.com` calling the vault on
//! `vault.example.com`): which origins, methods and headers the login and credential routes answer
//! preflights for. Management routes answer no cross-origin request: they are for backends.
//!
//! The deployed HTTP API answers preflights itself; its `CorsConfiguration` in the template must say
//! what these constants say (a drift test, `tests/tests/infra_template.rs`, checks).

use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::map_response;
use axum::response::Response;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// What the Authress login SDK sends: its bearer token, JSON bodies, and its `X-Powered-By`.
pub const ALLOWED_HEADERS: [&str; 3] = ["authorization", "content-type", "x-powered-by"];
/// Login start and code exchange (POST), credential reads (GET) and disconnect (DELETE).
pub const ALLOWED_METHODS: [Method; 3] = [Method::GET, Method::POST, Method::DELETE];
/// How long a browser may keep a preflight's answer.
pub const MAX_AGE: Duration = Duration::from_secs(600);
/// The login SDK sends `credentials: 'include'` when the app and the vault share a parent domain, so
/// answers allow credentials; that is why origins are listed, never `*`.
pub const ALLOW_CREDENTIALS: bool = true;

/// `router`'s routes open to browser apps on `origins` (exact origins, `scheme://host[:port]`). A
/// request from any other origin gets no CORS header at all, so the browser keeps the answer from the
/// page. Call it once all routes and their 405 are in (`http::with_method_not_allowed`).
pub fn allow(router: Router, origins: &[String]) -> Router {
    router.layer(layer(origins)).layer(map_response(nothing_for_strangers))
}

fn layer(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()).collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods(ALLOWED_METHODS)
        .allow_headers(ALLOWED_HEADERS.map(HeaderName::from_static))
        .allow_credentials(ALLOW_CREDENTIALS)
        .max_age(MAX_AGE)
        // Answers differ by origin: a shared cache must not give one origin's answer to another.
        .vary([
            header::ORIGIN,
            header::ACCESS_CONTROL_REQUEST_METHOD,
            header::ACCESS_CONTROL_REQUEST_HEADERS,
        ])
}

/// tower-http names the methods, headers and credentials to every origin and leaves out only
/// `Access-Control-Allow-Origin` for strangers; they get none of it.
async fn nothing_for_strangers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    if !headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        for name in [
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            header::ACCESS_CONTROL_ALLOW_METHODS,
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            header::ACCESS_CONTROL_MAX_AGE,
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
        ] {
            headers.remove(name);
        }
    }
    response
}
