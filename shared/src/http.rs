//! The HTTP edge the three functions share: axum extractors whose rejections are the vault's JSON
//! errors, the JSON, redirect and error responses, the fallbacks every router ends with, and the
//! service that serves a router on Lambda and in the local gateway alike. Nothing here logs a body, a
//! query string or a header value: those carry codes, states and tokens.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRef, FromRequest, FromRequestParts, OptionalFromRequest, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tower_http::normalize_path::NormalizePath;
use utoipa::IntoParams;

use crate::error::{ApiError, cause_chain};
use crate::identity::{Authenticator, Caller};

/// Largest request body accepted. Every body this API takes is a small JSON object.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// A function's router as Lambda and the local gateway serve it: a trailing slash is ignored, as the
/// SDKs sometimes send one (`/v1/connections/`). Routing matches the raw path, so an encoded `%2F`
/// stays inside its segment.
pub type VaultService = NormalizePath<Router>;

pub fn service(router: Router) -> VaultService {
    NormalizePath::trim_trailing_slash(router)
}

/// Ends every router: the API's own 404 and 405 JSON instead of axum's empty answers. Called once
/// all routes are in, since the 405 fallback is given to the routes present.
pub fn with_fallbacks(router: Router) -> Router {
    with_method_not_allowed(router).fallback(|| async { ApiError::not_found("route_not_found", "no such route") })
}

/// The API's 405 for the routes present that have none yet. A router that adds a layer to its routes
/// (CORS) calls this first, so that the layer also sees requests of other methods: a preflight
/// (`OPTIONS`) reaches the CORS layer instead of a 405 set after it.
pub fn with_method_not_allowed(router: Router) -> Router {
    router.method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_response(&self)
    }
}

/// A JSON body of at most `MAX` bytes, parsed into `T`. Its problems are the vault's 400 and 413: the
/// detail names the problem but never echoes a value from the body, which may hold a code or verifier.
/// The content type is not checked: the SDKs and browsers send JSON under several.
pub struct Json<T, const MAX: usize = MAX_BODY_BYTES>(pub T);

impl<T, S, const MAX: usize> FromRequest<S> for Json<T, MAX>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        let bytes = body_up_to(req, MAX).await?;
        if bytes.is_empty() {
            return Err(ApiError::bad_request("invalid_json", "the request needs a JSON body"));
        }
        parse_json(&bytes).map(Json)
    }
}

/// `Option<Json<T>>`: an empty body is `None`, for the few routes whose body is optional.
impl<T, S, const MAX: usize> OptionalFromRequest<S> for Json<T, MAX>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Option<Self>, ApiError> {
        let bytes = body_up_to(req, MAX).await?;
        if bytes.is_empty() {
            return Ok(None);
        }
        parse_json(&bytes).map(|body| Some(Json(body)))
    }
}

async fn body_up_to(req: Request, max_bytes: usize) -> Result<axum::body::Bytes, ApiError> {
    axum::body::to_bytes(req.into_body(), max_bytes)
        .await
        .map_err(|e| match e.into_inner() {
            e if e.is::<http_body_util::LengthLimitError>() => ApiError::PayloadTooLarge,
            e => ApiError::bad_request("invalid_body", format!("the request body could not be read: {e}")),
        })
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let msg = e.to_string();
        // These two name a field, never a value; every other serde message may quote the body.
        let detail = if msg.starts_with("missing field") || msg.starts_with("unknown field") {
            msg.split(" at line").next().unwrap_or("").to_string()
        } else {
            format!(
                "the body is not valid JSON for this request (line {}, column {})",
                e.line(),
                e.column()
            )
        };
        ApiError::bad_request("invalid_json", detail)
    })
}

/// Percent-decoded path parameters (user ids carry `|`; resource URIs arrive as one `%2F`-encoded
/// segment). A segment that does not decode to UTF-8 is a 400 `invalid_path`.
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(params)) => Ok(Path(params)),
            Err(rejection) if rejection.status().is_client_error() => Err(path_refusal(&rejection)),
            Err(rejection) => Err(ApiError::internal(rejection)),
        }
    }
}

fn path_refusal(rejection: &PathRejection) -> ApiError {
    use axum::extract::path::ErrorKind;
    let detail = match rejection {
        PathRejection::FailedToDeserializePathParams(e)
            if matches!(e.kind(), ErrorKind::InvalidUtf8InPathParam { .. }) =>
        {
            "a path segment is not valid percent-encoded UTF-8"
        }
        _ => "the path does not fit this route",
    };
    ApiError::bad_request("invalid_path", detail)
}

/// Query parameters parsed into `T`. A parameter given twice is refused as ambiguous, whatever its
/// name: two readers of one request (a proxy, the vault) must never see different values.
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let raw = parts.uri.query().unwrap_or_default();
        let mut seen = BTreeSet::new();
        for (name, _) in url::form_urlencoded::parse(raw.as_bytes()) {
            if !seen.insert(name.clone()) {
                return Err(repeated_parameter(&name));
            }
        }
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|axum::extract::Query(params)| Query(params))
            .map_err(|_| ApiError::bad_request("invalid_request", "the query string does not fit this route"))
    }
}

fn repeated_parameter(name: &str) -> ApiError {
    // Only a name that could be one of ours is repeated back; anything else might be a value.
    let is_plain_name = name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let detail = if is_plain_name {
        format!("query parameter {name} is repeated")
    } else {
        "a query parameter is repeated".to_string()
    };
    ApiError::bad_request("invalid_request", detail)
}

/// `limit` and `cursor` of a listing. Kept as text so a bad `limit` is the API's `invalid_limit`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// How many items, 1 to 100 (default 20).
    #[param(value_type = Option<i32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// `pagination.next.cursor` of the previous page.
    #[param(max_length = 2048)]
    pub cursor: Option<String>,
}

impl Page {
    /// `limit` is 1..=100, default 20; an empty cursor is none.
    pub fn limit_and_cursor(self) -> Result<(i32, Option<String>), ApiError> {
        let limit =
            match self.limit {
                None => 20,
                Some(v) => v.parse::<i32>().ok().filter(|l| (1..=100).contains(l)).ok_or_else(|| {
                    ApiError::bad_request("invalid_limit", "limit must be a whole number from 1 to 100")
                })?,
            };
        Ok((limit, self.cursor.filter(|c| !c.is_empty())))
    }
}

/// The authenticated caller of a request, from its bearer token (the Authorization header, nothing
/// else of the request). A handler that takes a `Caller` refuses anonymous and badly signed requests
/// with 401 before it runs. Every route but login and discovery takes one.
impl<S> FromRequestParts<S> for Caller
where
    Arc<Authenticator>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let authenticator = Arc::<Authenticator>::from_ref(state);
        let token = bearer_token(&parts.headers).ok_or(ApiError::Unauthorized("a bearer token is required"))?;
        Ok(authenticator.authenticate(token).await?)
    }
}

/// The bearer token of the Authorization header, if any.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && token != "null").then_some(token)
}

pub fn json_response(status: u16, body: &impl Serialize) -> Response {
    let Ok(text) = serde_json::to_string(body) else {
        return error_response(&ApiError::internal("a response body did not serialize"));
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, text).into_response();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // Responses carry tokens; no cache may keep them.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

pub fn redirect(location: &str) -> Response {
    let mut resp = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The response for an error, logged once with an id the caller also sees.
pub fn error_response(err: &ApiError) -> Response {
    let error_id = crate::random::token(12);
    match err {
        ApiError::Internal(cause) => {
            tracing::error!(error_id = %error_id, error = %cause_chain(cause.as_ref()), "internal error")
        }
        other => {
            tracing::info!(error_id = %error_id, error_code = other.error_code(), status = other.status(), "request refused")
        }
    }
    let mut resp = json_response(err.status(), &err.body(&error_id));
    // Whole seconds, rounded up: a caller that waits what it is told is not turned away again.
    if let Some(after) = err.retry_after()
        && let Ok(v) = HeaderValue::from_str(&after.as_millis().div_ceil(1000).max(1).to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    async fn echo_path(Path((a, b)): Path<(String, String)>) -> String {
        format!("{a} {b}")
    }

    async fn echo_query(Query(page): Query<Page>) -> String {
        format!("{:?} {:?}", page.limit, page.cursor)
    }

    async fn call(uri: &str, method: &str) -> (u16, String) {
        let router = with_fallbacks(
            Router::new()
                .route("/users/{a}/resources/{b}", get(echo_path))
                .route("/list", get(echo_query)),
        );
        let req = axum::http::Request::builder()
            .method(method)
            .uri(uri)
            .body(axum::body::Body::empty())
            .unwrap();
        let resp = service(router).oneshot(req).await.unwrap();
        let status = resp.status().as_u16();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16).await.unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    fn error_code(body: &str) -> String {
        serde_json::from_str::<serde_json::Value>(body).unwrap()["errorCode"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    #[tokio::test]
    async fn path_segments_are_percent_decoded_and_an_encoded_slash_stays_in_its_segment() {
        assert_eq!(
            call("/users/google%7Cabc/resources/Connections%2Fcon_a", "GET").await,
            (200, "google|abc Connections/con_a".to_string())
        );
        assert_eq!(
            call("/users/slack|T1|U2/resources/x/", "GET").await,
            (200, "slack|T1|U2 x".to_string())
        );
    }

    #[tokio::test]
    async fn routing_misses_are_the_apis_json_errors() {
        let (status, body) = call("/users/%FF/resources/x", "GET").await;
        assert_eq!((status, error_code(&body).as_str()), (400, "invalid_path"));
        let (status, body) = call("/nowhere", "GET").await;
        assert_eq!((status, error_code(&body).as_str()), (404, "route_not_found"));
        let (status, body) = call("/list", "DELETE").await;
        assert_eq!((status, error_code(&body).as_str()), (405, "method_not_allowed"));
    }

    #[tokio::test]
    async fn a_repeated_query_parameter_is_refused() {
        assert_eq!(call("/list?limit=5&cursor=c", "GET").await.0, 200);
        let (status, body) = call("/list?limit=5&limit=6", "GET").await;
        assert_eq!((status, error_code(&body).as_str()), (400, "invalid_request"));
        assert!(body.contains("query parameter limit is repeated"), "{body}");
        let (status, body) = call("/list?x=1&x=2", "GET").await;
        assert_eq!((status, error_code(&body).as_str()), (400, "invalid_request"));
    }

    #[test]
    fn a_bad_limit_is_invalid_limit() {
        let page = |limit: &str| Page {
            limit: Some(limit.to_string()),
            cursor: None,
        };
        assert_eq!(page("7").limit_and_cursor().unwrap().0, 7);
        assert_eq!(Page::default().limit_and_cursor().unwrap().0, 20);
        for bad in ["0", "101", "abc", "1.5"] {
            assert_eq!(page(bad).limit_and_cursor().unwrap_err().error_code(), "invalid_limit");
        }
    }
}
