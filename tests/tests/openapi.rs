//! The OpenAPI document checked in at infra/openapi.json (and served at `GET /openapi.json`) is the
//! one the three routers generate, and describes every route with its bodies and the error shape.

use serde_json::Value;

const REGENERATE: &str = "CREDVAULT_WRITE_OPENAPI=1 cargo test -p credvault-tests --test openapi";

#[test]
fn the_checked_in_openapi_document_is_the_generated_one() {
    let path = credvault_tests::workspace_root().join("infra/openapi.json");
    let generated = credvault_tests::gateway::openapi_json();
    if std::env::var_os("CREDVAULT_WRITE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).expect("write infra/openapi.json");
        eprintln!("wrote {}; login-callback serves it from its next build", path.display());
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "infra/openapi.json is not what the routers generate; regenerate it with:\n  {REGENERATE}"
    );
    assert!(
        login_callback::OPENAPI_DOCUMENT == generated,
        "login-callback was built with a stale infra/openapi.json; run the tests again"
    );
}

#[test]
fn every_operation_documents_its_answers_and_errors_are_the_error_schema() {
    let doc: Value = serde_json::from_str(&credvault_tests::gateway::openapi_json()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let operations = credvault_tests::gateway::operations();
    assert!(operations.len() > 30, "{operations:?}");
    for (function, method, path) in &operations {
        let op = &doc["paths"][path][method.to_lowercase()];
        let name = format!("{function} {method} {path}");
        assert!(op["operationId"].is_string(), "{name}: operationId");
        let responses = op["responses"].as_object().expect("responses");
        let success = responses
            .keys()
            .filter(|s| s.starts_with('2') || s.as_str() == "302")
            .count();
        assert!(success >= 1, "{name}: a success answer");
        assert!(responses.contains_key("default"), "{name}: the default error answer");
        // The token endpoint answers in RFC 6749 §5.2's words, as token endpoints' clients expect.
        let error_schema = if path == "/api/authentication/oauth/tokens" {
            "#/components/schemas/OAuthErrorBody"
        } else {
            "#/components/schemas/Error"
        };
        for (status, answer) in responses {
            if status.starts_with('4') || status.starts_with('5') || status == "default" {
                assert_eq!(
                    answer["content"]["application/json"]["schema"]["$ref"], error_schema,
                    "{name} {status}"
                );
            }
        }
        let public = op["security"].is_null();
        assert_eq!(
            public,
            !responses.contains_key("401"),
            "{name}: an operation needing a token says so and documents its 401"
        );
        if ["POST", "PUT"].contains(&method.as_str()) && !path.ends_with("/access-keys") {
            let media = if path == "/api/authentication/oauth/tokens" {
                "application/x-www-form-urlencoded"
            } else {
                "application/json"
            };
            assert!(
                op["requestBody"]["content"][media]["schema"].is_object(),
                "{name}: a request body"
            );
        }
    }
    let error = &doc["components"]["schemas"]["Error"];
    let mut required: Vec<&str> = error["required"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    required.sort();
    assert_eq!(required, ["errorCode", "errorId", "status", "title"]);
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
}
