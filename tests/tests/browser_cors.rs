//! Browser apps on their own origin: the login and credential routes answer CORS preflights and
//! requests for exactly the allowed origins (the origins of the allowed redirect URLs, plus
//! `CREDVAULT_ALLOWED_ORIGINS`), with the headers the Authress login SDK sends and credentials; any
//! other origin, and every management route, gets no CORS headers at all.

use credvault_tests::stack::encode;
use credvault_tests::{LocalStack, StackOptions};
use reqwest::Method;

/// The origin of the stack's redirect URL (`https://app.example.com/after-login`).
const APP_ORIGIN: &str = "https://app.example.com";
/// Allowed only through `CREDVAULT_ALLOWED_ORIGINS`.
const EXTRA_ORIGIN: &str = "https://console.example.org:8443";

async fn stack() -> LocalStack {
    LocalStack::start(StackOptions {
        configure: |config| config.extra_allowed_origins = vec![EXTRA_ORIGIN.to_string()],
        ..StackOptions::default()
    })
    .await
}

async fn preflight(stack: &LocalStack, path: &str, origin: &str, method: &str) -> reqwest::Response {
    stack
        .http
        .request(Method::OPTIONS, stack.url(path))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", method)
        .header(
            "Access-Control-Request-Headers",
            "authorization,content-type,x-powered-by",
        )
        .send()
        .await
        .unwrap()
}

fn header<'a>(resp: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn login_and_credential_routes_answer_preflights_for_allowed_origins_only() {
    let stack = stack().await;
    let credentials = format!(
        "/v1/connections/{}/users/{}/credentials",
        stack.connection_id,
        encode("con_demo|alice")
    );
    let routes = [
        ("/api/authentication", "POST"),
        ("/api/authentication/some-request/tokens", "POST"),
        ("/api/session/credentials", "GET"),
        (credentials.as_str(), "GET"),
        (credentials.as_str(), "DELETE"),
    ];
    for (path, method) in routes {
        for origin in [APP_ORIGIN, EXTRA_ORIGIN] {
            let resp = preflight(&stack, path, origin, method).await;
            assert!(
                resp.status().is_success(),
                "{method} {path} from {origin}: {}",
                resp.status()
            );
            assert_eq!(
                header(&resp, "access-control-allow-origin"),
                Some(origin),
                "{method} {path}"
            );
            assert_eq!(header(&resp, "access-control-allow-credentials"), Some("true"));
            let methods = header(&resp, "access-control-allow-methods").unwrap_or_default();
            assert!(methods.contains(method), "{methods}");
            let headers = header(&resp, "access-control-allow-headers")
                .unwrap_or_default()
                .to_ascii_lowercase();
            for wanted in ["authorization", "content-type", "x-powered-by"] {
                assert!(headers.contains(wanted), "{wanted} in {headers}");
            }
            assert_eq!(header(&resp, "access-control-max-age"), Some("600"));
        }
        // Look-alikes of an allowed origin, and strangers, get nothing a browser would act on.
        for origin in [
            "https://evil.example",
            "http://app.example.com",
            "https://app.example.com.evil.example",
            "https://app.example.com:444",
            "null",
        ] {
            let resp = preflight(&stack, path, origin, method).await;
            assert_eq!(
                header(&resp, "access-control-allow-origin"),
                None,
                "{method} {path} from {origin}"
            );
            for name in ["credentials", "methods", "headers"] {
                assert_eq!(header(&resp, &format!("access-control-allow-{name}")), None, "{origin}");
            }
            assert_eq!(header(&resp, "access-control-max-age"), None, "{origin}");
        }
    }
}

#[tokio::test]
async fn answers_carry_the_allowed_origin_and_management_answers_carry_none() {
    let stack = stack().await;
    let user = stack.login().await;
    let read = |origin: &'static str| {
        stack
            .http
            .get(stack.url("/api/session/credentials"))
            .bearer_auth(&user.access_token)
            .header("Origin", origin)
            .send()
    };
    let resp = read(APP_ORIGIN).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "access-control-allow-origin"), Some(APP_ORIGIN));
    assert!(
        header(&resp, "vary")
            .unwrap_or_default()
            .to_ascii_lowercase()
            .contains("origin")
    );
    let resp = read("https://evil.example").await.unwrap();
    assert_eq!(header(&resp, "access-control-allow-origin"), None);

    // The management API is for backends: not even an allowed app origin may read its answers.
    let resp = preflight(&stack, "/v1/connections", APP_ORIGIN, "GET").await;
    assert_eq!(header(&resp, "access-control-allow-origin"), None);
    let resp = stack
        .http
        .get(stack.url("/v1/connections"))
        .bearer_auth(&user.access_token)
        .header("Origin", APP_ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&resp, "access-control-allow-origin"), None);
}
