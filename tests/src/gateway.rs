//! The local API gateway: one HTTP server in front of the three functions' routers, merged as API
//! Gateway's routes put them together. Several instances of the merged router, each over its own
//! `Instance`, stand in for several warm Lambda instances with their own caches; requests go round
//! robin. It is also where the OpenAPI document is put together from the three routers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::{Request, State};
use axum::response::Response;
use credvault::Instance;
use credvault::http::{VaultService, with_fallbacks};
use tower::ServiceExt;
use utoipa::OpenApi;

pub struct Gateway {
    instances: Vec<VaultService>,
    next: AtomicUsize,
}

impl Gateway {
    /// One instance of every function per element of `instances` (each a separately built `Instance`),
    /// each function over the capabilities its `main` gives it.
    pub fn new(instances: Vec<Instance>) -> Self {
        let instances = instances
            .iter()
            .map(|instance| credvault::http::service(with_fallbacks(merged_router(instance))))
            .collect();
        Self {
            instances,
            next: AtomicUsize::new(0),
        }
    }

    pub async fn serve(self, listener: tokio::net::TcpListener) {
        let app = Router::new().fallback(forward).with_state(Arc::new(self));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
    }

    async fn call(&self, req: Request) -> Response {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let Some(instance) = self.instances.get(n % self.instances.len().max(1)).cloned() else {
            return credvault::http::error_response(&credvault::ApiError::internal("the gateway has no instances"));
        };
        match instance.oneshot(req).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }
}

async fn forward(State(gateway): State<Arc<Gateway>>, req: Request) -> Response {
    gateway.call(req).await
}

/// The three functions' routes over one instance, merged as API Gateway puts them side by side (the
/// fallbacks are added once, to the whole).
fn merged_router(instance: &Instance) -> Router {
    let origins = instance.config.allowed_origins();
    Router::new()
        .merge(login_callback::serve(Arc::new(instance.login_flow()), &origins))
        .merge(credential_fetch::serve(
            credential_fetch::CredentialFetch::new(instance),
            &origins,
        ))
        .merge(grant_management::serve(grant_management::GrantManagement::new(
            instance,
        )))
}

/// Each function's routes, under the name of its Lambda function, as their OpenAPI description.
pub fn functions() -> [(&'static str, utoipa::openapi::OpenApi); 3] {
    [
        ("login-callback", login_callback::routes().into_openapi()),
        ("credential-fetch", credential_fetch::routes().into_openapi()),
        ("grant-management", grant_management::routes().into_openapi()),
    ]
}

/// The API's OpenAPI 3.1 document, generated from the three routers.
pub fn openapi() -> utoipa::openapi::OpenApi {
    functions()
        .into_iter()
        .fold(credvault::openapi::ApiDoc::openapi(), |mut all, (_, document)| {
            all.merge(document);
            all
        })
}

/// The document as checked in at `infra/openapi.json`.
pub fn openapi_json() -> String {
    let mut text = openapi().to_pretty_json().unwrap_or_default();
    text.push('\n');
    text
}

/// Every operation of every function: (function, METHOD, path template), as the routers have them.
pub fn operations() -> Vec<(&'static str, String, String)> {
    const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];
    let mut all = Vec::new();
    for (function, document) in functions() {
        let paths = serde_json::to_value(document.paths).unwrap_or_default();
        for (path, item) in paths.as_object().into_iter().flatten() {
            for method in METHODS.iter().filter(|m| item.get(**m).is_some()) {
                all.push((function, method.to_uppercase(), path.clone()));
            }
        }
    }
    all
}
