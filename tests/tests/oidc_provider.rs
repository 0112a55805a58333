//! A certified OpenID Provider in the loop: the npm `oidc-provider` package (pinned in tests/js, run by
//! tests/js/oidc-provider.mjs), not the fake provider the vault's authors wrote. A connection made from
//! its issuer URL alone (discovery picks `client_secret_basic`), a login through its real authorization
//! endpoint, cookies and id_token, refreshes that rotate the refresh token under its reuse detection,
//! and revocation at its RFC 7009 endpoint.
//!
//! Its reuse detection is the referee of the lease protocol: a consumed refresh token presented again
//! revokes the whole grant. So a herd of concurrent fetches that all get the new token, followed by a
//! later refresh that still works, shows the vault spent each refresh token exactly once; a replay of
//! an old one (here by the test, as a thief would) kills the grant, and the vault sees that as
//! re-authentication, never as a transient fault.

use std::collections::BTreeMap;
use std::process::Stdio;

use credvault_tests::stack::{encode, location};
use credvault_tests::{LocalStack, LoggedIn, StackOptions};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

const CONNECTION_ID: &str = "con_oidc";
const CLIENT_ID: &str = "credvault-test";
/// With `:`, `%` and `+`: HTTP Basic must form-encode it (RFC 6749 §2.3.1), and oidc-provider decodes it so.
const CLIENT_SECRET: &str = "oidc:provider%secret+1";
/// The access tokens' lifetime at oidc-provider; the vault's clock is advanced past it to age them.
const ACCESS_TOKEN_SECS: i64 = 300;

/// The oidc-provider process, killed when dropped.
struct OidcProvider {
    _process: tokio::process::Child,
    /// Kept open: the process would die of EPIPE writing to a closed stdout.
    _stdout: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    issuer: String,
}

impl OidcProvider {
    async fn start(redirect_uri: &str) -> Self {
        let script = credvault_tests::workspace_root().join("tests/js/oidc-provider.mjs");
        let mut process = tokio::process::Command::new("node")
            .arg(script)
            .env("CLIENT_ID", CLIENT_ID)
            .env("CLIENT_SECRET", CLIENT_SECRET)
            .env("REDIRECT_URI", redirect_uri)
            .env("ACCESS_TOKEN_TTL", ACCESS_TOKEN_SECS.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs (make bootstrap installs oidc-provider)");
        let stdout = process.stdout.take().expect("stdout");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
            .await
            .expect("oidc-provider starts within 30 s")
            .expect("read stdout")
            .expect("oidc-provider printed its issuer");
        let started: Value = serde_json::from_str(&line).expect("issuer line");
        Self {
            _process: process,
            _stdout: lines,
            issuer: started["issuer"].as_str().expect("issuer").to_string(),
        }
    }

    /// A refresh grant sent straight to the provider, as a thief holding `refresh_token` would.
    async fn refresh_directly(&self, refresh_token: &str) -> (u16, Value) {
        let resp = reqwest::Client::new()
            .post(format!("{}/token", self.issuer))
            .basic_auth(encode_form(CLIENT_ID), Some(encode_form(CLIENT_SECRET)))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh_token)])
            .send()
            .await
            .expect("token endpoint");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
}

fn encode_form(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// The stack, oidc-provider, and a connection to it made from its issuer URL by the management API.
async fn start() -> (LocalStack, OidcProvider) {
    // Four warm instances of each function, so the herd meets the lease across instances.
    let stack = LocalStack::start(StackOptions {
        instances: 4,
        ..StackOptions::default()
    })
    .await;
    let provider = OidcProvider::start(&stack.config.callback_url(CONNECTION_ID)).await;
    let admin = stack.client_token(&stack.admin_key);
    let body = json!({
        "connectionId": CONNECTION_ID, "issuerUrl": provider.issuer,
        "clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET,
        // oidc-provider issues refresh tokens for offline_access, which it honours only with consent.
        "defaultConnectionProperties": {"scope": "openid email offline_access", "prompt": "consent"},
    });
    let (status, created) = stack.call("POST", "/v1/connections", Some(&admin), Some(&body)).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        created["tokenEndpointAuthMethod"], "client_secret_basic",
        "picked from its discovery: {created}"
    );
    assert_eq!(
        created["revocationUrl"],
        format!("{}/token/revocation", provider.issuer)
    );
    (stack, provider)
}

/// The browser's part of the login: the vault's authentication URL, oidc-provider's authorization
/// endpoint and interaction (with the cookies it sets, as a browser keeps them), back to the vault's
/// callback, on to the app with a code, which the app exchanges.
async fn login(stack: &LocalStack, user: &str) -> LoggedIn {
    let verifier = credvault::random::token(32);
    let mut body = stack.start_body(&verifier);
    body["connectionId"] = json!(CONNECTION_ID);
    body["connectionProperties"] = json!({"login_hint": user});
    let started: Value = stack.start_login(&body).await.json().await.expect("start json");
    let request_id = started["authenticationRequestId"]
        .as_str()
        .expect("request id")
        .to_string();
    let mut next = started["authenticationUrl"]
        .as_str()
        .expect("authenticationUrl")
        .to_string();
    let mut cookies: BTreeMap<String, String> = BTreeMap::new();
    let app_redirect = loop {
        let cookie_header = cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let resp = stack
            .http
            .get(&next)
            .header("cookie", cookie_header)
            .send()
            .await
            .expect("login hop");
        assert!(resp.status().is_redirection(), "{next}: {}", resp.status());
        for set in resp.headers().get_all("set-cookie") {
            let pair = set.to_str().unwrap_or_default().split(';').next().unwrap_or_default();
            if let Some((name, value)) = pair.split_once('=') {
                cookies.insert(name.trim().to_string(), value.to_string());
            }
        }
        let target = url::Url::parse(&next)
            .and_then(|base| base.join(&location(&resp)))
            .expect("redirect target")
            .to_string();
        if target.starts_with(credvault_tests::stack::APP_REDIRECT_URL) {
            break target;
        }
        next = target;
    };
    let query: BTreeMap<String, String> = url::Url::parse(&app_redirect)
        .expect("app redirect")
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(query.get("nonce"), Some(&request_id));
    let code = query.get("code").unwrap_or_else(|| panic!("no code: {query:?}"));
    let resp = stack
        .exchange(&request_id, code, &verifier, credvault_tests::stack::APP_REDIRECT_URL)
        .await;
    assert_eq!(resp.status(), 200);
    let tokens: Value = resp.json().await.expect("tokens");
    let access_token = tokens["access_token"].as_str().expect("access_token").to_string();
    let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(&access_token)
        .expect("decode")
        .claims;
    LoggedIn {
        user_id: claims["sub"].as_str().expect("sub").to_string(),
        access_token,
        id_token: tokens["id_token"].as_str().unwrap_or_default().to_string(),
        expires_in: tokens["expires_in"].as_u64().unwrap_or_default(),
    }
}

fn credentials_path(user: &LoggedIn) -> String {
    format!(
        "/v1/connections/{CONNECTION_ID}/users/{}/credentials",
        encode(&user.user_id)
    )
}

async fn refresh_token(stack: &LocalStack, user: &LoggedIn) -> String {
    stack
        .stored_refresh_token_at(CONNECTION_ID, &user.user_id)
        .await
        .expect("a stored refresh token")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_herd_spends_each_rotated_refresh_token_once_and_a_replay_kills_the_grant() {
    let (stack, provider) = start().await;
    let alice = login(&stack, "alice").await;
    assert_eq!(alice.user_id, format!("{CONNECTION_ID}|alice"));
    let path = credentials_path(&alice);
    let (status, first) = stack.call("GET", &path, Some(&alice.access_token), None).await;
    assert_eq!(status, 200, "{first}");
    let login_token = first["accessToken"].as_str().expect("accessToken").to_string();
    let original = refresh_token(&stack, &alice).await;

    // Aged past its lifetime: eight concurrent fetches, one refresh, one rotation, one new token.
    stack.clock.advance(ACCESS_TOKEN_SECS);
    let fetches = (0..8)
        .map(|_| stack.call("GET", &path, Some(&alice.access_token), None))
        .collect();
    let answers = credvault_tests::join_all(fetches).await;
    let tokens: std::collections::BTreeSet<String> = answers
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 200, "{body}");
            body["accessToken"].as_str().expect("accessToken").to_string()
        })
        .collect();
    assert_eq!(tokens.len(), 1, "every fetch got the one refreshed token: {tokens:?}");
    assert!(!tokens.contains(&login_token), "it was refreshed");
    let rotated = refresh_token(&stack, &alice).await;
    assert_ne!(rotated, original, "oidc-provider rotated the refresh token");

    // A second refresh still works: had any fetch of the herd sent `original` twice, oidc-provider
    // would have revoked the grant, and this refresh would get invalid_grant.
    stack.clock.advance(ACCESS_TOKEN_SECS);
    let (status, second) = stack.call("GET", &path, Some(&alice.access_token), None).await;
    assert_eq!(status, 200, "the grant is alive: {second}");
    assert!(!tokens.contains(second["accessToken"].as_str().unwrap_or_default()));
    let current = refresh_token(&stack, &alice).await;
    assert_ne!(current, rotated);

    // A thief replays the first refresh token: oidc-provider detects the reuse and revokes the grant.
    let (status, replay) = provider.refresh_directly(&original).await;
    assert_eq!(
        (status, replay["error"].as_str()),
        (400, Some("invalid_grant")),
        "{replay}"
    );
    // The vault's current token died with the grant: the next refresh means re-authentication.
    stack.clock.advance(ACCESS_TOKEN_SECS);
    let (status, dead) = stack.call("GET", &path, Some(&alice.access_token), None).await;
    assert_eq!(
        (status, dead["errorCode"].as_str()),
        (409, Some("reauthentication_required")),
        "{dead}"
    );
    let (status, _) = provider.refresh_directly(&current).await;
    assert_eq!(status, 400, "the vault's token really is dead at the provider");

    // A new login recovers the same user.
    let again = login(&stack, "alice").await;
    assert_eq!(again.user_id, alice.user_id);
    let (status, recovered) = stack.call("GET", &path, Some(&again.access_token), None).await;
    assert_eq!(status, 200, "{recovered}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnecting_revokes_the_refresh_token_at_the_certified_provider() {
    let (stack, provider) = start().await;
    let bob = login(&stack, "bob").await;
    let stored = refresh_token(&stack, &bob).await;
    let (status, _) = stack
        .call("DELETE", &credentials_path(&bob), Some(&bob.access_token), None)
        .await;
    assert_eq!(status, 204);
    assert!(stack.credential_at(CONNECTION_ID, &bob.user_id).await.is_none());
    let (status, refused) = provider.refresh_directly(&stored).await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (400, Some("invalid_grant")),
        "revoked at oidc-provider: {refused}"
    );
}
