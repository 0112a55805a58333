//! A fault-injecting proxy in front of moto, for the faults the emulator cannot produce: DynamoDB and
//! KMS throttling and outages. It forwards every request over real HTTP and answers chosen operations
//! with the service's `ThrottlingException`, or a 500 `InternalServerError` / `KMSInternalException`,
//! instead.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// What a matching call is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Throttle,
    /// The service's own 5xx: what an outage looks like to the SDK.
    Unavailable,
    /// No answer: the call is held until the caller gives up (its attempt timeout).
    Stall,
}

#[derive(Debug, Clone)]
struct ThrottleRule {
    /// `X-Amz-Target` suffix, e.g. `UpdateItem` (DynamoDB) or `GenerateDataKey` (KMS).
    operation: String,
    fault: Fault,
    /// Matching calls let through before throttling starts.
    skip: u32,
    /// Matching calls then answered with a throttling error.
    throttle: u32,
}

#[derive(Default)]
struct ProxyState {
    rules: Vec<ThrottleRule>,
    throttled: u64,
    /// Added before every forwarded call: the network round trip a real AWS endpoint has.
    latency: std::time::Duration,
}

#[derive(Clone)]
pub struct AwsProxy {
    pub url: String,
    upstream: String,
    http: reqwest::Client,
    state: Arc<Mutex<ProxyState>>,
}

impl AwsProxy {
    pub async fn start(upstream: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let proxy = AwsProxy {
            url: format!("http://{}", listener.local_addr().expect("proxy addr")),
            upstream: upstream.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
            state: Arc::default(),
        };
        let app = Router::new().fallback(forward).with_state(proxy.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        proxy
    }

    /// After `skip` more calls of `operation`, throttle the next `throttle` ones.
    pub fn throttle(&self, operation: &str, skip: u32, throttle: u32) {
        self.fault(operation, Fault::Throttle, skip, throttle);
    }

    /// After `skip` more calls of `operation`, answer the next `count` with `fault`.
    pub fn fault(&self, operation: &str, fault: Fault, skip: u32, count: u32) {
        let rule = ThrottleRule {
            operation: operation.to_string(),
            fault,
            skip,
            throttle: count,
        };
        self.state.lock().unwrap_or_else(|p| p.into_inner()).rules.push(rule);
    }

    /// Forgets every fault not yet served (the services are back): a stall outlasts the operation
    /// timeout after fewer attempts than it was set for, so what it leaves would hit later calls.
    pub fn clear_faults(&self) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).rules.clear();
    }

    /// Every forwarded call waits this long first, as if the service were across a network.
    pub fn set_latency(&self, latency: std::time::Duration) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).latency = latency;
    }

    pub fn throttled(&self) -> u64 {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).throttled
    }

    fn fault_for(&self, target: &str) -> Option<Fault> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let rule = state
            .rules
            .iter_mut()
            .find(|r| target.ends_with(&format!(".{}", r.operation)) && (r.skip > 0 || r.throttle > 0))?;
        if rule.skip > 0 {
            rule.skip -= 1;
            return None;
        }
        rule.throttle -= 1;
        let fault = rule.fault;
        state.throttled += 1;
        Some(fault)
    }
}

async fn forward(State(proxy): State<AwsProxy>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let dynamodb = target.starts_with("DynamoDB_");
    if let Some(fault) = proxy.fault_for(&target) {
        if fault == Fault::Stall {
            // Longer than any attempt timeout of the stack; the caller has hung up by then.
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            return StatusCode::GATEWAY_TIMEOUT.into_response();
        }
        let (status, body) = match (dynamodb, fault) {
            (true, Fault::Throttle) => (
                StatusCode::BAD_REQUEST,
                r#"{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate of requests exceeds the allowed throughput."}"#,
            ),
            (true, Fault::Unavailable) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"Internal server error"}"#,
            ),
            (false, Fault::Throttle) => (
                StatusCode::BAD_REQUEST,
                r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#,
            ),
            (false, Fault::Unavailable) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                r#"{"__type":"KMSInternalException","message":"Internal error"}"#,
            ),
            (_, Fault::Stall) => unreachable!("answered above"),
        };
        let content_type = if dynamodb {
            "application/x-amz-json-1.0"
        } else {
            "application/x-amz-json-1.1"
        };
        return (status, [("content-type", content_type)], body).into_response();
    }
    let latency = proxy.state.lock().unwrap_or_else(|p| p.into_inner()).latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut req = proxy
        .http
        .request(method, format!("{}{path}", proxy.upstream))
        .body(body);
    for (name, value) in &headers {
        if name != "host" && name != "content-length" {
            req = req.header(name, value);
        }
    }
    match req.send().await {
        Ok(resp) => {
            let status = resp.status();
            let headers = resp.headers().clone();
            let bytes = resp.bytes().await.unwrap_or_default();
            let mut out = (status, bytes).into_response();
            for (name, value) in &headers {
                if name != "content-length" && name != "transfer-encoding" {
                    out.headers_mut().insert(name, value.clone());
                }
            }
            out
        }
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}
