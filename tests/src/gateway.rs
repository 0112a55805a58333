//! The local API gateway: one HTTP server that turns each request into the `lambda_http::Request` API
//! Gateway would hand a Lambda, picks the function from the shared route table, and calls the same
//! handler code the Lambda binaries run. Several handler instances per function stand in for several
//! warm Lambda instances, each with its own caches.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use credential_fetch::CredentialFetch;
use credvault::Services;
use credvault::http::Handler;
use credvault::routes::{Function, match_route};
use grant_management::GrantManagement;
use login_callback::LoginCallback;

/// API Gateway's own payload limit for HTTP APIs.
const GATEWAY_MAX_BODY: usize = 10 * 1024 * 1024;

pub struct Gateway {
    login: Vec<LoginCallback>,
    fetch: Vec<CredentialFetch>,
    grants: Vec<GrantManagement>,
    next: AtomicUsize,
    demo_page: Option<String>,
}

impl Gateway {
    /// One handler per function per element of `instances` (each a separately built `Services`).
    pub fn new(instances: Vec<Arc<Services>>, demo_page: Option<String>) -> Self {
        Self {
            login: instances.iter().map(|s| LoginCallback::new(s.clone())).collect(),
            fetch: instances.iter().map(|s| CredentialFetch::new(s.clone())).collect(),
            grants: instances.iter().map(|s| GrantManagement::new(s.clone())).collect(),
            next: AtomicUsize::new(0),
            demo_page,
        }
    }

    pub async fn serve(self, listener: tokio::net::TcpListener) {
        let app = Router::new().fallback(route).with_state(Arc::new(self));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
    }

    async fn call(&self, function: Function, req: lambda_http::Request) -> lambda_http::Response<lambda_http::Body> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        match function {
            Function::LoginCallback => self.login[n % self.login.len()].handle(req).await,
            Function::CredentialFetch => self.fetch[n % self.fetch.len()].handle(req).await,
            Function::GrantManagement => self.grants[n % self.grants.len()].handle(req).await,
        }
    }
}

async fn route(State(gateway): State<Arc<Gateway>>, req: axum::extract::Request) -> Response {
    if req.uri().path() == "/demo"
        && let Some(page) = &gateway.demo_page
    {
        return Html(page.clone()).into_response();
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, GATEWAY_MAX_BODY).await else {
        return (axum::http::StatusCode::PAYLOAD_TOO_LARGE, "request too large").into_response();
    };
    let body = if bytes.is_empty() {
        lambda_http::Body::Empty
    } else {
        match String::from_utf8(bytes.to_vec()) {
            Ok(text) => lambda_http::Body::Text(text),
            Err(e) => lambda_http::Body::Binary(e.into_bytes()),
        }
    };
    // Unknown routes still go to a function, which answers with the API's own 404/405 JSON.
    let function = match_route(parts.method.as_str(), parts.uri.path())
        .map(|m| m.route.function)
        .unwrap_or(Function::LoginCallback);
    let response = gateway
        .call(function, lambda_http::Request::from_parts(parts, body))
        .await;
    let (parts, body) = response.into_parts();
    let bytes = match body {
        lambda_http::Body::Text(t) => t.into_bytes(),
        lambda_http::Body::Binary(b) => b,
        _ => Vec::new(),
    };
    Response::from_parts(parts, axum::body::Body::from(bytes))
}
