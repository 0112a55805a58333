//! lambda_http glue: reading bodies, queries and bearer tokens, and writing JSON, redirects and errors.
//! Nothing here logs a body, a query string or a header value: those carry codes, states and tokens.

use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, Response};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, cause_chain};
use crate::routes::{Matched, RouteMiss, match_route};

/// Largest request body accepted. Every body this API takes is a small JSON object.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

pub fn body_bytes(req: &Request) -> &[u8] {
    match req.body() {
        Body::Empty => &[],
        Body::Text(t) => t.as_bytes(),
        Body::Binary(b) => b,
        _ => &[],
    }
}

/// Parses a JSON body into `T`. The error detail names the problem but never echoes a value from the
/// body, which may hold a code or verifier.
pub fn json_body<T: DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    json_body_up_to(req, MAX_BODY_BYTES)
}

/// Like `json_body`, for the few routes whose bodies may be larger (access records).
pub fn json_body_up_to<T: DeserializeOwned>(req: &Request, max_bytes: usize) -> Result<T, ApiError> {
    let bytes = body_bytes(req);
    if bytes.len() > max_bytes {
        return Err(ApiError::PayloadTooLarge);
    }
    if bytes.is_empty() {
        return Err(ApiError::bad_request("invalid_json", "the request needs a JSON body"));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        let msg = e.to_string();
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

/// Decoded query parameters, in order.
pub fn query_params(req: &Request) -> Vec<(String, String)> {
    req.uri()
        .query()
        .map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

/// The value of a query parameter given exactly once; a repeated parameter is refused as ambiguous.
pub fn single_query_param(params: &[(String, String)], name: &str) -> Result<Option<String>, ApiError> {
    let mut found = params.iter().filter(|(k, _)| k == name);
    let first = found.next().map(|(_, v)| v.clone());
    if found.next().is_some() {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("query parameter {name} is repeated"),
        ));
    }
    Ok(first)
}

/// `limit` and `cursor` of a listing; `limit` is 1..=100, default 20.
pub fn page_params(req: &Request) -> Result<(i32, Option<String>), ApiError> {
    let params = query_params(req);
    let limit = match single_query_param(&params, "limit")? {
        None => 20,
        Some(v) => v
            .parse::<i32>()
            .ok()
            .filter(|l| (1..=100).contains(l))
            .ok_or_else(|| ApiError::bad_request("invalid_limit", "limit must be a whole number from 1 to 100"))?,
    };
    Ok((limit, single_query_param(&params, "cursor")?.filter(|c| !c.is_empty())))
}

/// A header's value as text, if present and printable.
pub fn header_text<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The bearer token of the Authorization header, if any.
pub fn bearer_token(req: &Request) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && token != "null").then_some(token)
}

/// Matches the request against the route table, turning a miss into the right 4xx.
pub fn route(req: &Request) -> Result<Matched, ApiError> {
    match_route(req.method().as_str(), req.uri().path()).map_err(|miss| match miss {
        RouteMiss::NotFound => ApiError::not_found("route_not_found", "no such route"),
        RouteMiss::MethodNotAllowed => ApiError::MethodNotAllowed,
        RouteMiss::BadEncoding => {
            ApiError::bad_request("invalid_path", "a path segment is not valid percent-encoded UTF-8")
        }
    })
}

pub fn json_response(status: u16, body: &serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(Body::Text(body.to_string()));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // Responses carry tokens; no cache may keep them.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

pub fn redirect(location: &str) -> Response<Body> {
    let mut resp = Response::new(Body::Empty);
    *resp.status_mut() = StatusCode::FOUND;
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The response for an error, logged once with an id the caller also sees.
pub fn error_response(err: &ApiError) -> Response<Body> {
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
    if let Some(after) = err.retry_after()
        && let Ok(v) = HeaderValue::from_str(&after.as_secs().max(1).to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// Every handler ends here: expected failures become their 4xx/5xx JSON, never an `Err` to the runtime.
pub fn respond(result: Result<Response<Body>, ApiError>) -> Response<Body> {
    result.unwrap_or_else(|e| error_response(&e))
}

/// One Lambda function's request handler. The same value serves Lambda (`run_lambda`), the local
/// gateway and in-process tests.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, req: Request) -> impl Future<Output = Response<Body>> + Send;
}

/// The body of every function's `main`: logging, config, clients, then the Lambda runtime loop.
pub async fn run_lambda<H: Handler>(
    build: impl FnOnce(std::sync::Arc<crate::Services>) -> H,
) -> Result<(), lambda_http::Error> {
    crate::telemetry::init();
    let config = crate::Config::from_env()?;
    let services = std::sync::Arc::new(crate::Services::from_config(config).await?);
    let handler = std::sync::Arc::new(build(services));
    lambda_http::run(lambda_http::service_fn(move |req: Request| {
        let handler = handler.clone();
        async move { Ok::<_, std::convert::Infallible>(handler.handle(req).await) }
    }))
    .await
}
