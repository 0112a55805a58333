//! grant-management: connections, service clients, roles and access records. It owns no public route
//! yet; every request gets a 404 JSON error until those routes land (see the route table).

use std::sync::Arc;

use credvault::http::{Handler, respond, route};
use credvault::routes::Function;
use credvault::{ApiError, Services};
use lambda_http::{Body, Request, Response};

pub struct GrantManagement {
    #[allow(dead_code)] // used by the management routes as they land
    services: Arc<Services>,
}

impl GrantManagement {
    pub fn new(services: Arc<Services>) -> Self {
        Self { services }
    }

    async fn dispatch(&self, req: Request) -> Result<Response<Body>, ApiError> {
        let matched = route(&req)?;
        if matched.route.function != Function::GrantManagement {
            return Err(ApiError::not_found("route_not_found", "no such route"));
        }
        Err(ApiError::not_found("route_not_found", "no such route"))
    }
}

impl Handler for GrantManagement {
    async fn handle(&self, req: Request) -> Response<Body> {
        respond(self.dispatch(req).await)
    }
}
