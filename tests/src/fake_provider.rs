//! A fake OAuth 2.0 / OpenID Connect provider served over real HTTP: authorize (auto-consent), token
//! (authorization_code, refresh_token), revocation, discovery and JWKS, with signed id_tokens.
//!
//! Knobs: refresh-token rotation, reuse detection (a reused rotated token revokes its whole family, as
//! Salesforce and Auth0 do), access-token lifetime, injected failures (before acting, or after the
//! refresh was performed so the answer is lost), random failures for chaos runs, latency, oversized
//! answers, secret-echoing error bodies, and a strict JSON dialect. Counters record every call served,
//! and every secret it issued is remembered so tests can look for leaks; issued access tokens are
//! remembered with their lifetime so a test can ask whether one is accepted.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use axum::body::Bytes;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

pub const CLIENT_ID: &str = "credvault-demo-client";
pub const CLIENT_SECRET: &str = "planted-client-secret-3f9a1c";

/// A failure the next token-endpoint call will suffer instead of answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    Status(u16),
    /// Never answers in time (sleeps far past any client timeout).
    Hang,
    InvalidGrant,
    /// Answers this status with `Retry-After: secs` (429, or 503: the provider says when to come back).
    StatusRetryAfter(u16, u64),
    /// Resets the connection without acting: nothing was spent.
    Reset,
    /// Performs the grant (the refresh token is spent, a new pair minted), then answers this status
    /// instead: the answer, and the new refresh token in it, are lost.
    RotateThenStatus(u16),
    /// Performs the grant, then resets the connection.
    RotateThenReset,
    /// Waits this long, then serves the call, whether or not the client is still waiting: a real
    /// provider finishes what it received.
    Slow(Duration),
}

/// Failures drawn at random for a share of refresh-token calls (code exchanges are left alone, so
/// logins keep working), up to a budget: the chaos suite's provider faults.
#[derive(Debug, Clone, PartialEq)]
pub struct RandomFailures {
    /// Share of refresh calls that fail, 0.0 to 1.0.
    pub rate: f64,
    /// At most this many failures in all; then the provider behaves.
    pub budget: u32,
    /// One is picked at random for each failing call.
    pub failures: Vec<Failure>,
}

/// Ways the id_token of the next logins is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdTokenFault {
    WrongNonce,
    WrongAudience,
    WrongIssuer,
    Expired,
    /// `alg: none`, no signature.
    Unsigned,
    /// Signed by a key that is not in the provider's JWKS (same kid).
    ForeignKey,
    /// HS256 with the client secret as key: a symmetric algorithm the vault must not accept.
    SymmetricWithClientSecret,
    /// No `iat` claim at all.
    NoIat,
    /// Issued an hour in the future.
    FutureIat,
    /// `aud` names this client and another one, and there is no `azp`.
    ExtraAudienceNoAzp,
    /// `aud` names this client and another one, and `azp` is the other one.
    ExtraAudienceWrongAzp,
}

/// Which answer the `oversized` knob inflates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Successful token-endpoint answers (code exchange and refresh).
    Token,
    Discovery,
    Jwks,
    UserInfo,
    Revocation,
}

/// How an inflated answer is sent: its JSON gets a `padding` member, streamed in small chunks at a
/// pace any client outreads, so socket buffers stay near empty and the `oversized_bytes_sent` counter
/// says how much the client took before it hung up (unpaced, loopback buffers can absorb megabytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Oversize {
    /// Padded to this many bytes, chunked: no Content-Length, the client only learns the size by reading.
    Chunked(usize),
    /// Padded to this many bytes, with an honest Content-Length.
    WithLength(usize),
    /// The real answer under a Content-Length claiming this many bytes; the rest never comes (the
    /// connection is held open for a minute).
    ClaimedLength(u64),
}

/// Bytes per chunk of an inflated answer, and the pause before each (about 10 MB/s).
const OVERSIZED_CHUNK: usize = 16 * 1024;
const OVERSIZED_PACE: Duration = Duration::from_millis(1);

#[derive(Debug, Clone)]
pub struct Knobs {
    pub rotate_refresh_tokens: bool,
    pub reuse_detection: bool,
    pub access_token_lifetime_secs: i64,
    pub issue_refresh_token_on_login: bool,
    /// Added to every token-endpoint answer.
    pub latency: Duration,
    /// Subject of the next logins.
    pub subject: String,
    pub id_token_fault: Option<IdTokenFault>,
    /// The next this many revocation calls answer `revocation_failure_status`.
    pub failing_revocations: u32,
    /// 503 unless set otherwise (429: come back later; 400: a refusal).
    pub revocation_failure_status: u16,
    /// Inflates every answer of one kind.
    pub oversized: Option<(Answer, Oversize)>,
    /// `/jwks` answers 302 to `/jwks-moved`, which serves the keys (and counts `jwks_moved`): a vault
    /// that follows provider redirects would verify against keys from wherever it was sent.
    pub jwks_moved: bool,
    /// The id_token's `email_verified` claim; `None` leaves it out (as providers that never verify do).
    pub email_verified: Option<bool>,
    /// Drawn for refresh calls, after the `fail_next` queue is empty.
    pub random_failures: Option<RandomFailures>,
    /// Token-endpoint error bodies quote the refresh token and client secret they were sent, as some
    /// providers' debugging output does: whatever the vault logs or returns of them leaks.
    pub echo_secrets_in_errors: bool,
    /// Token requests that are not JSON are refused with 400 (a provider with a JSON-only dialect).
    pub strict_json_token_requests: bool,
    /// The client secret it accepts (the stack's connection must use the same).
    pub client_secret: String,
    /// How the client may authenticate at the token and revocation endpoints.
    pub client_auth: ClientAuth,
    /// How the token endpoint words its answers.
    pub dialect: ProviderDialect,
    /// Added to the top level of every token answer that succeeds (Salesforce's `instance_url`,
    /// Slack's `team`), next to the tokens.
    pub extra_token_fields: serde_json::Map<String, Value>,
    /// Token answers leave `expires_in` out, as GitHub OAuth Apps do for tokens that never expire.
    pub omit_expires_in: bool,
    /// What a login grants: `None` the scopes asked for (named in the answer); `Some(Some(s))` only
    /// `s`, as a user who unticks a consent box; `Some(None)` what was asked, with `scope` left out
    /// of the answer (RFC 6749 §5.1 allows that when it is what was asked).
    pub granted_scope: Option<Option<String>>,
    /// The client's EC P-256 public key (`x`, `y`, base64url) its assertions are checked with.
    pub client_assertion_key: Option<(String, String)>,
    /// As Microsoft Entra's certificate credentials: assertions must name the key by this `x5t#S256`
    /// (base64url SHA-256 of the registered certificate's DER).
    pub client_assertion_x5t_s256: Option<String>,
}

/// Token-endpoint answers in a provider's own words: errors with HTTP 200 (GitHub's `{"error"}`,
/// Slack's `{"ok": false}`), comma-separated scopes, Slack's user token under `authed_user` at login.
/// HTTP-level failures (5xx, 429) stay as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderDialect {
    Standard,
    Github,
    Slack,
}

/// Which client authentication the provider accepts. Using two at once is always refused (RFC 6749
/// §2.3: a client MUST NOT use more than one method in a request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    Either,
    /// HTTP Basic only: a secret in the body is refused, as some providers do.
    BasicOnly,
    PostOnly,
    /// `private_key_jwt` only (RFC 7523), checked against `Knobs::client_assertion_key`: the
    /// signature, `iss` = `sub` = the client, `aud` = the endpoint called, a short life, a new `jti`.
    PrivateKeyJwtOnly,
}

impl Default for Knobs {
    fn default() -> Self {
        Self {
            rotate_refresh_tokens: true,
            reuse_detection: true,
            access_token_lifetime_secs: 3600,
            issue_refresh_token_on_login: true,
            latency: Duration::ZERO,
            subject: "alice".to_string(),
            id_token_fault: None,
            failing_revocations: 0,
            revocation_failure_status: 503,
            oversized: None,
            jwks_moved: false,
            email_verified: Some(true),
            random_failures: None,
            echo_secrets_in_errors: false,
            strict_json_token_requests: false,
            client_secret: CLIENT_SECRET.to_string(),
            client_auth: ClientAuth::Either,
            dialect: ProviderDialect::Standard,
            extra_token_fields: serde_json::Map::new(),
            omit_expires_in: false,
            granted_scope: None,
            client_assertion_key: None,
            client_assertion_x5t_s256: None,
        }
    }
}

/// What the provider did with one refresh-token call (for the chaos suite's reuse classification).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// The refresh token was live: it was spent (rotated away, when rotation is on) and a new pair minted.
    Rotated,
    /// The refresh token had been rotated away already: a reuse (its family revoked with reuse detection).
    Reused,
    /// Refused without spending anything: unknown token, or its family already revoked.
    Refused,
}

/// One refresh-token call as the provider saw it. Tokens are named by an opaque number (the order
/// they were issued in), never by value, so a report can be printed.
#[derive(Debug, Clone)]
pub struct RefreshCall {
    /// The presented refresh token's number, if this provider issued it.
    pub token_id: Option<u64>,
    /// Whom the presented token belongs to.
    pub subject: Option<String>,
    /// The caller's address (one vault process's socket).
    pub peer: SocketAddr,
    pub arrived_at: SystemTime,
    /// The failure injected into this call, if any.
    pub failure: Option<Failure>,
    /// The `latency` knob when it arrived: how long it was held before being served.
    pub latency: Duration,
    /// When the grant was performed or refused (`None`: never, e.g. failed before acting).
    pub served_at: Option<SystemTime>,
    pub outcome: Option<RefreshOutcome>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counters {
    pub authorize: u64,
    pub code_exchanges: u64,
    pub refreshes: u64,
    pub revocations: u64,
    pub reuse_detected: u64,
    pub discovery: u64,
    pub jwks: u64,
    /// Requests that followed the `jwks_moved` redirect.
    pub jwks_moved: u64,
    /// Bytes of inflated answers handed to the connection (padding and all).
    pub oversized_bytes_sent: u64,
    /// Grants performed whose answer was then dropped on purpose (`RotateThen*`).
    pub answers_lost: u64,
    /// Connections reset on purpose.
    pub resets: u64,
}

struct CodeGrant {
    redirect_uri: String,
    code_challenge: String,
    nonce: Option<String>,
    subject: String,
    scope: Option<String>,
}

struct RefreshGrant {
    family: u64,
    subject: String,
    /// Rotated away: a second use is reuse.
    used: bool,
}

struct AccessGrant {
    family: u64,
    issued_at: SystemTime,
    expires_at: SystemTime,
}

#[derive(Default)]
struct ProviderState {
    knobs: Knobs,
    /// `jti`s of the client assertions accepted: a replayed assertion is refused.
    seen_assertion_ids: HashSet<String>,
    failures: VecDeque<Failure>,
    counters: Counters,
    codes: HashMap<String, CodeGrant>,
    refresh_tokens: HashMap<String, RefreshGrant>,
    /// Who each access token belongs to, for the user endpoint.
    access_token_subjects: HashMap<String, String>,
    revoked_families: HashSet<u64>,
    next_family: u64,
    issued_secrets: Vec<String>,
    /// The refresh tokens presented to the token endpoint, in order.
    refresh_tokens_presented: Vec<String>,
    access_tokens: HashMap<String, AccessGrant>,
    /// When each revoked family was revoked.
    family_revoked_at: HashMap<u64, SystemTime>,
    /// Reuses of rotated-away refresh tokens, by the subject they belong to.
    reuse_by_subject: HashMap<String, u64>,
    /// Told the peer address of every refresh call as it arrives.
    refresh_watchers: Vec<tokio::sync::mpsc::UnboundedSender<SocketAddr>>,
    /// `Slow` calls still being served.
    slow_in_flight: u64,
    /// Every refresh-token call, in order of arrival.
    refresh_calls: Vec<RefreshCall>,
    /// The number of each refresh token issued, in order.
    token_ids: HashMap<String, u64>,
    /// The next refresh calls are held this long (served after it, as `Slow`), each reporting its
    /// caller's address as it arrives: how the chaos suite kills a process inside the crash window.
    held: VecDeque<(Duration, tokio::sync::oneshot::Sender<SocketAddr>)>,
}

struct Inner {
    issuer: String,
    key_pair: EcdsaKeyPair,
    kid: String,
    state: Mutex<ProviderState>,
}

#[derive(Clone)]
pub struct FakeProvider {
    inner: Arc<Inner>,
}

impl FakeProvider {
    /// Starts on a free loopback port.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind provider");
        Self::serve(listener).await
    }

    pub async fn serve(listener: tokio::net::TcpListener) -> Self {
        let addr: SocketAddr = listener.local_addr().expect("provider addr");
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("provider key");
        let key_pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).expect("provider key");
        let provider = FakeProvider {
            inner: Arc::new(Inner {
                issuer: format!("http://{addr}"),
                key_pair,
                kid: format!("fake-{}", credvault::random::token(6)),
                state: Mutex::new(ProviderState {
                    next_family: 1,
                    ..Default::default()
                }),
            }),
        };
        let app = Router::new()
            .route("/authorize", get(authorize))
            .route("/token", post(token_in_dialect))
            .route("/revoke", post(revoke))
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/jwks-moved", get(jwks_moved))
            .route("/userinfo", get(userinfo))
            .with_state(provider.clone());
        let listener = ResettableListener(listener);
        tokio::spawn(async move {
            let _ = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<ProviderConnection>(),
            )
            .await;
        });
        provider
    }

    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ProviderState> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_knobs(&self, change: impl FnOnce(&mut Knobs)) {
        change(&mut self.state().knobs);
    }

    /// The next token-endpoint calls fail as listed, in order.
    pub fn fail_next(&self, failures: &[Failure]) {
        self.state().failures.extend(failures.iter().copied());
    }

    pub fn counters(&self) -> Counters {
        self.state().counters.clone()
    }

    /// Every access token, refresh token, code and id_token this provider issued, plus its client secret.
    pub fn issued_secrets(&self) -> Vec<String> {
        let state = self.state();
        let mut all = state.issued_secrets.clone();
        all.push(CLIENT_SECRET.to_string());
        all.push(state.knobs.client_secret.clone());
        all
    }

    pub fn refresh_tokens_presented(&self) -> Vec<String> {
        self.state().refresh_tokens_presented.clone()
    }

    /// Is this refresh token still usable (not rotated away, family not revoked)?
    pub fn refresh_token_is_live(&self, token: &str) -> bool {
        let state = self.state();
        state
            .refresh_tokens
            .get(token)
            .is_some_and(|g| !g.used && !state.revoked_families.contains(&g.family))
    }

    /// Was `token` an access token this provider accepted at some moment between `from` and `to`
    /// (issued by then, not yet expired, its family not yet revoked)? A client that sent a request at
    /// `from` and had the answer at `to` can ask this of the token it was given.
    pub fn access_token_accepted_during(&self, token: &str, from: SystemTime, to: SystemTime) -> bool {
        let state = self.state();
        let Some(grant) = state.access_tokens.get(token) else {
            return false;
        };
        let revoked_at = state.family_revoked_at.get(&grant.family);
        grant.issued_at <= to && grant.expires_at > from && revoked_at.is_none_or(|at| *at > from)
    }

    /// Whom a refresh token this provider issued belongs to.
    pub fn refresh_token_subject(&self, token: &str) -> Option<String> {
        self.state().refresh_tokens.get(token).map(|g| g.subject.clone())
    }

    /// Whom an access token this provider issued belongs to.
    pub fn access_token_subject(&self, token: &str) -> Option<String> {
        self.state().access_token_subjects.get(token).cloned()
    }

    /// Reuses of rotated-away refresh tokens, by the subject they were issued to.
    pub fn reuse_by_subject(&self) -> HashMap<String, u64> {
        self.state().reuse_by_subject.clone()
    }

    /// Every refresh call, as it arrives (before any latency or failure), sends its peer address here.
    pub fn watch_refreshes(&self) -> tokio::sync::mpsc::UnboundedReceiver<SocketAddr> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        self.state().refresh_watchers.push(tx);
        rx
    }

    /// Every refresh-token call so far, in order of arrival.
    pub fn refresh_calls(&self) -> Vec<RefreshCall> {
        self.state().refresh_calls.clone()
    }

    /// Failures queued by `fail_next` and held calls asked for, that no call has drawn yet.
    pub fn pending_failures(&self) -> usize {
        let state = self.state();
        state.failures.len() + state.held.len()
    }

    /// Forgets the failures queued by `fail_next` that no call has drawn yet.
    pub fn clear_failures(&self) {
        self.state().failures.clear();
    }

    /// Holds the next refresh call for `delay` and then performs it (as `Failure::Slow`: even if the
    /// caller is gone by then), and tells the returned receiver the caller's address as soon as the
    /// call arrives: the moment to kill the caller inside its crash window. Takes precedence over
    /// `fail_next` and random failures.
    pub fn hold_next_refresh(&self, delay: Duration) -> tokio::sync::oneshot::Receiver<SocketAddr> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.state().held.push_back((delay, tx));
        rx
    }

    /// `Slow` calls not finished yet: they may still spend a refresh token.
    pub fn slow_calls_in_flight(&self) -> u64 {
        self.state().slow_in_flight
    }

    /// The refresh tokens that can still be used, newest last.
    pub fn live_refresh_tokens(&self) -> Vec<String> {
        let state = self.state();
        state
            .issued_secrets
            .iter()
            .filter(|t| {
                state
                    .refresh_tokens
                    .get(*t)
                    .is_some_and(|g| !g.used && !state.revoked_families.contains(&g.family))
            })
            .cloned()
            .collect()
    }

    fn sign_id_token(
        &self,
        subject: &str,
        nonce: Option<&str>,
        fault: Option<IdTokenFault>,
        email_verified: Option<bool>,
    ) -> String {
        let now = credvault::clock::unix_secs(std::time::SystemTime::now());
        let mut header = json!({"alg": "ES256", "typ": "JWT", "kid": self.inner.kid});
        let mut claims = json!({
            "iss": self.inner.issuer, "sub": subject, "aud": CLIENT_ID, "iat": now, "exp": now + 300,
            "email": format!("{subject}@example.com"), "name": subject,
        });
        if let Some(nonce) = nonce {
            claims["nonce"] = json!(nonce);
        }
        if let Some(verified) = email_verified {
            claims["email_verified"] = json!(verified);
        }
        match fault {
            Some(IdTokenFault::WrongNonce) => claims["nonce"] = json!("another-nonce"),
            Some(IdTokenFault::WrongAudience) => claims["aud"] = json!("another-client"),
            Some(IdTokenFault::WrongIssuer) => claims["iss"] = json!("https://evil.example.com"),
            Some(IdTokenFault::Expired) => {
                claims["iat"] = json!(now - 7200);
                claims["exp"] = json!(now - 3600);
            }
            Some(IdTokenFault::Unsigned) => header = json!({"alg": "none", "typ": "JWT", "kid": self.inner.kid}),
            Some(IdTokenFault::SymmetricWithClientSecret) => {
                header = json!({"alg": "HS256", "typ": "JWT", "kid": self.inner.kid})
            }
            Some(IdTokenFault::NoIat) => {
                if let Some(all) = claims.as_object_mut() {
                    all.remove("iat");
                }
            }
            Some(IdTokenFault::FutureIat) => claims["iat"] = json!(now + 3600),
            Some(IdTokenFault::ExtraAudienceNoAzp) => claims["aud"] = json!([CLIENT_ID, "another-client"]),
            Some(IdTokenFault::ExtraAudienceWrongAzp) => {
                claims["aud"] = json!([CLIENT_ID, "another-client"]);
                claims["azp"] = json!("another-client");
            }
            _ => {}
        }
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = match fault {
            Some(IdTokenFault::Unsigned) => Vec::new(),
            Some(IdTokenFault::SymmetricWithClientSecret) => {
                let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, CLIENT_SECRET.as_bytes());
                aws_lc_rs::hmac::sign(&key, input.as_bytes()).as_ref().to_vec()
            }
            Some(IdTokenFault::ForeignKey) => {
                let rng = SystemRandom::new();
                let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
                let other = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).expect("key");
                other.sign(&rng, input.as_bytes()).expect("sign").as_ref().to_vec()
            }
            _ => self
                .inner
                .key_pair
                .sign(&SystemRandom::new(), input.as_bytes())
                .expect("sign id_token")
                .as_ref()
                .to_vec(),
        };
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    fn jwk(&self) -> Value {
        let point = self.inner.key_pair.public_key().as_ref();
        json!({"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": self.inner.kid,
               "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65])})
    }
}

fn secret(prefix: &str) -> String {
    format!("{prefix}-{}", credvault::random::token(24))
}

fn oauth_error(status: StatusCode, error: &str) -> Response {
    (status, Json(json!({"error": error}))).into_response()
}

/// A token-endpoint error, quoting the secrets it was sent when the echo knob is on.
fn token_error(
    status: StatusCode,
    error: &str,
    params: &HashMap<String, String>,
    echo: bool,
    retry_after: Option<u64>,
) -> Response {
    let mut body = json!({"error": error});
    if echo {
        let quote = |name: &str| params.get(name).cloned().unwrap_or_default();
        body["error_description"] = json!(format!(
            "refused refresh_token={} client_secret={}",
            quote("refresh_token"),
            quote("client_secret")
        ));
    }
    let mut resp = (status, Json(body)).into_response();
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
    }
    resp
}

/// Takes one failure from the random knob, if this refresh call draws one.
fn draw_random_failure(knobs: &mut Knobs) -> Option<Failure> {
    let random = knobs.random_failures.as_mut()?;
    if random.budget == 0 || random.failures.is_empty() || credvault::random::unit_fraction() >= random.rate {
        return None;
    }
    random.budget -= 1;
    let pick = (credvault::random::unit_fraction() * random.failures.len() as f64) as usize;
    random.failures.get(pick.min(random.failures.len() - 1)).copied()
}

async fn authorize(State(p): State<FakeProvider>, Query(q): Query<HashMap<String, String>>) -> Response {
    let mut state = p.state();
    state.counters.authorize += 1;
    let (Some(redirect_uri), Some(st)) = (q.get("redirect_uri"), q.get("state")) else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    };
    if q.get("client_id").map(String::as_str) != Some(CLIENT_ID)
        || q.get("response_type").map(String::as_str) != Some("code")
        || q.get("code_challenge_method").map(String::as_str) != Some("S256")
    {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    }
    let Some(challenge) = q.get("code_challenge") else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    };
    let code = secret("code");
    state.issued_secrets.push(code.clone());
    // `login_hint` picks the user, so the demo page can sign in as anyone.
    let subject = q
        .get("login_hint")
        .filter(|h| !h.is_empty())
        .cloned()
        .unwrap_or_else(|| state.knobs.subject.clone());
    let scope = match &state.knobs.granted_scope {
        None => q.get("scope").cloned(),
        Some(granted) => granted.clone(),
    };
    state.codes.insert(
        code.clone(),
        CodeGrant {
            redirect_uri: redirect_uri.clone(),
            code_challenge: challenge.clone(),
            nonce: q.get("nonce").cloned(),
            subject,
            scope,
        },
    );
    let mut target = url::Url::parse(redirect_uri).expect("redirect_uri");
    target
        .query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", st);
    (StatusCode::FOUND, [(header::LOCATION, target.to_string())]).into_response()
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// Reads a token request sent as a form or as JSON. Client credentials from an HTTP Basic header
/// (RFC 6749 §2.3.1: base64 of the form-encoded id and secret) land in `client_id` /
/// `client_secret` too, and `AUTH_METHOD` says how they came: `basic`, `post`, `both` or `none`.
fn token_params(headers: &HeaderMap, body: &Bytes) -> HashMap<String, String> {
    let mut params: HashMap<String, String> = if is_json(headers) {
        serde_json::from_slice::<HashMap<String, String>>(body).unwrap_or_default()
    } else {
        url::form_urlencoded::parse(body).into_owned().collect()
    };
    let in_body = params.contains_key("client_secret");
    let assertion = params.contains_key("client_assertion");
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|pair| {
            let (id, secret) = pair.split_once(':')?;
            let decode = |v: &str| {
                url::form_urlencoded::parse(format!("v={v}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
            };
            Some((decode(id)?, decode(secret)?))
        });
    let method = match (&basic, in_body, assertion) {
        (Some(_), true, _) | (Some(_), _, true) | (_, true, true) => "both",
        (Some(_), false, false) => "basic",
        (None, true, false) => "post",
        (None, false, true) => "private_key_jwt",
        (None, false, false) => "none",
    };
    if let Some((id, secret)) = basic {
        params.insert("client_id".into(), id);
        params.insert("client_secret".into(), secret);
    }
    params.insert(AUTH_METHOD.into(), method.into());
    params
}

/// The parameter `token_params` records the client authentication method under.
const AUTH_METHOD: &str = "\u{0}client_auth";

/// Whether the request's client authentication is one this provider accepts, with its secret or an
/// assertion made for `path` (`/token`, `/revoke`).
fn client_authenticated(p: &FakeProvider, params: &HashMap<String, String>, path: &str) -> bool {
    let knobs = p.state().knobs.clone();
    let method = params.get(AUTH_METHOD).map(String::as_str);
    if knobs.client_auth == ClientAuth::PrivateKeyJwtOnly {
        return method == Some("private_key_jwt") && assertion_accepted(p, params, path, &knobs);
    }
    let method_ok = match (knobs.client_auth, method) {
        (_, Some("both" | "none" | "private_key_jwt") | None) => false,
        (ClientAuth::Either, _) => true,
        (ClientAuth::BasicOnly, Some(m)) => m == "basic",
        (ClientAuth::PostOnly, Some(m)) => m == "post",
        (ClientAuth::PrivateKeyJwtOnly, _) => false,
    };
    method_ok
        && params.get("client_id").map(String::as_str) == Some(CLIENT_ID)
        && params.get("client_secret") == Some(&knobs.client_secret)
}

/// RFC 7523 §3: a JWT signed by the client's key, about the client, for this endpoint, short-lived,
/// and never seen before (its `jti`).
fn assertion_accepted(p: &FakeProvider, params: &HashMap<String, String>, path: &str, knobs: &Knobs) -> bool {
    #[derive(serde::Deserialize)]
    struct Claims {
        sub: String,
        jti: String,
        iat: u64,
        exp: u64,
    }
    let (Some((x, y)), Some(jwt)) = (&knobs.client_assertion_key, params.get("client_assertion")) else {
        return false;
    };
    if params.get("client_assertion_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        || params.get("client_id").map(String::as_str) != Some(CLIENT_ID)
    {
        return false;
    }
    let Ok(key) = jsonwebtoken::DecodingKey::from_ec_components(x, y) else {
        return false;
    };
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_issuer(&[CLIENT_ID]);
    validation.set_audience(&[format!("{}{path}", p.issuer())]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    let Ok(data) = jsonwebtoken::decode::<Claims>(jwt, &key, &validation) else {
        return false;
    };
    if knobs.client_assertion_x5t_s256.is_some() && data.header.x5t_s256 != knobs.client_assertion_x5t_s256 {
        return false;
    }
    let claims = data.claims;
    claims.sub == CLIENT_ID
        && claims.exp.saturating_sub(claims.iat) <= 300
        && p.state().seen_assertion_ids.insert(claims.jti)
}

/// The token endpoint, its answer reworded in the provider's dialect.
async fn token_in_dialect(
    State(p): State<FakeProvider>,
    connect: ConnectInfo<ProviderConnection>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (dialect, extras) = {
        let state = p.state();
        (state.knobs.dialect, state.knobs.extra_token_fields.clone())
    };
    let is_login = token_params(&headers, &body).get("grant_type").map(String::as_str) == Some("authorization_code");
    let resp = token(State(p), connect, headers, body).await;
    if dialect == ProviderDialect::Standard
        || resp.status().is_server_error()
        || resp.status() == StatusCode::TOO_MANY_REQUESTS
    {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let Ok(mut value) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    };
    if let Some(error) = value.get("error").and_then(Value::as_str).map(str::to_string) {
        let reworded = match (dialect, error.as_str()) {
            (ProviderDialect::Github, "invalid_grant") if is_login => json!({"error": "bad_verification_code"}),
            (ProviderDialect::Github, "invalid_grant") => json!({"error": "bad_refresh_token"}),
            (ProviderDialect::Github, "invalid_client") => json!({"error": "incorrect_client_credentials"}),
            (ProviderDialect::Github, other) => json!({"error": other}),
            (ProviderDialect::Slack, "invalid_grant") if is_login => json!({"ok": false, "error": "invalid_code"}),
            (ProviderDialect::Slack, "invalid_grant") => json!({"ok": false, "error": "invalid_refresh_token"}),
            (ProviderDialect::Slack, "invalid_client") => json!({"ok": false, "error": "bad_client_secret"}),
            (_, other) => json!({"ok": false, "error": other}),
        };
        return (StatusCode::OK, Json(reworded)).into_response();
    }
    if let Some(scope) = value.get("scope").and_then(Value::as_str).map(|s| s.replace(' ', ",")) {
        value["scope"] = json!(scope);
    }
    if dialect == ProviderDialect::Slack {
        if is_login {
            // oauth.v2.access: the user's token under authed_user, a bot token beside it.
            let user = value.clone();
            value = json!({"ok": true, "access_token": "xoxb-bot-token-not-the-users", "token_type": "bot",
                "authed_user": user, "id_token": user.get("id_token").cloned().unwrap_or(Value::Null)});
            // Slack's team and enterprise sit at the top level, beside authed_user.
            for (name, extra) in extras {
                value[name] = extra;
            }
        } else {
            value["ok"] = json!(true);
        }
    }
    (StatusCode::OK, Json(value)).into_response()
}

async fn token(
    State(p): State<FakeProvider>,
    ConnectInfo(conn): ConnectInfo<ProviderConnection>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = token_params(&headers, &body);
    let is_refresh = params.get("grant_type").map(String::as_str) == Some("refresh_token");
    let (latency, failure, echo, strict, call) = {
        let mut state = p.state();
        let mut failure = None;
        if is_refresh {
            state.counters.refreshes += 1;
            state.refresh_watchers.retain(|w| w.send(conn.peer).is_ok());
            while let Some((delay, tx)) = state.held.pop_front() {
                if tx.send(conn.peer).is_ok() {
                    failure = Some(Failure::Slow(delay));
                    break;
                }
            }
        } else {
            state.counters.code_exchanges += 1;
        }
        if failure.is_none() {
            failure = state.failures.pop_front();
        }
        if failure.is_none() && is_refresh {
            failure = draw_random_failure(&mut state.knobs);
        }
        let latency = state.knobs.latency;
        let call = is_refresh.then(|| {
            let presented = params.get("refresh_token");
            let token_id = presented.and_then(|t| state.token_ids.get(t)).copied();
            let subject = presented
                .and_then(|t| state.refresh_tokens.get(t))
                .map(|g| g.subject.clone());
            state.refresh_calls.push(RefreshCall {
                token_id,
                subject,
                peer: conn.peer,
                arrived_at: SystemTime::now(),
                failure,
                latency,
                served_at: None,
                outcome: None,
            });
            state.refresh_calls.len() - 1
        });
        let knobs = &state.knobs;
        (
            knobs.latency,
            failure,
            knobs.echo_secrets_in_errors,
            knobs.strict_json_token_requests,
            call,
        )
    };
    if strict && !is_json(&headers) {
        return token_error(StatusCode::BAD_REQUEST, "invalid_request", &params, echo, None);
    }
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let unavailable = |status: u16| StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match failure {
        Some(Failure::Status(status)) => {
            return token_error(unavailable(status), "temporarily_unavailable", &params, echo, None);
        }
        Some(Failure::StatusRetryAfter(status, secs)) => {
            return token_error(
                unavailable(status),
                "temporarily_unavailable",
                &params,
                echo,
                Some(secs),
            );
        }
        Some(Failure::Hang) => {
            tokio::time::sleep(Duration::from_secs(60)).await;
            return oauth_error(StatusCode::GATEWAY_TIMEOUT, "temporarily_unavailable");
        }
        Some(Failure::InvalidGrant) => {
            return token_error(StatusCode::BAD_REQUEST, "invalid_grant", &params, echo, None);
        }
        Some(Failure::Reset) => return reset(&p, &conn),
        Some(Failure::RotateThenStatus(status)) => {
            lose_answer(&p, serve_grant(&p, &params, echo, call));
            return token_error(unavailable(status), "temporarily_unavailable", &params, echo, None);
        }
        Some(Failure::RotateThenReset) => {
            lose_answer(&p, serve_grant(&p, &params, echo, call));
            return reset(&p, &conn);
        }
        Some(Failure::Slow(delay)) => {
            p.state().slow_in_flight += 1;
            // Spawned, so the grant is performed even if the client gives up and this handler is dropped.
            let provider = p.clone();
            let served = tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let resp = serve_grant(&provider, &params, echo, call);
                provider.state().slow_in_flight -= 1;
                resp
            });
            return served
                .await
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
        }
        None => {}
    }
    serve_grant(&p, &params, echo, call)
}

/// The answer to a token request: the grant performed, or the error it ends in.
/// `call`: the refresh call's index in the provider's log, where the grant's outcome is recorded.
fn serve_grant(p: &FakeProvider, params: &HashMap<String, String>, echo: bool, call: Option<usize>) -> Response {
    let result = if !client_authenticated(p, params, "/token") {
        Err((StatusCode::UNAUTHORIZED, "invalid_client"))
    } else {
        match params.get("grant_type").map(String::as_str) {
            Some("authorization_code") => exchange_code(p, params),
            Some("refresh_token") => refresh(p, params, call),
            _ => Err((StatusCode::BAD_REQUEST, "unsupported_grant_type")),
        }
    };
    result.unwrap_or_else(|(status, error)| token_error(status, error, params, echo, None))
}

/// Counts a performed grant whose answer is being thrown away.
fn lose_answer(p: &FakeProvider, served: Response) {
    if served.status().is_success() {
        p.state().counters.answers_lost += 1;
    }
}

/// Marks the connection for a reset: the answer returned here is never written, the client sees
/// the connection torn down instead.
fn reset(p: &FakeProvider, conn: &ProviderConnection) -> Response {
    p.state().counters.resets += 1;
    conn.reset.store(true, Ordering::SeqCst);
    StatusCode::BAD_GATEWAY.into_response()
}

fn exchange_code(p: &FakeProvider, params: &HashMap<String, String>) -> Result<Response, (StatusCode, &'static str)> {
    let mut state = p.state();
    let Some(grant) = params.get("code").and_then(|c| state.codes.remove(c)) else {
        return Err((StatusCode::BAD_REQUEST, "invalid_grant"));
    };
    let verifier = params.get("code_verifier").map(String::as_str).unwrap_or("");
    if credvault::oauth::pkce::s256_challenge(verifier) != grant.code_challenge
        || params.get("redirect_uri") != Some(&grant.redirect_uri)
    {
        return Err((StatusCode::BAD_REQUEST, "invalid_grant"));
    }
    let family = state.next_family;
    state.next_family += 1;
    let issue_refresh = state.knobs.issue_refresh_token_on_login;
    let id_token = p.sign_id_token(
        &grant.subject,
        grant.nonce.as_deref(),
        state.knobs.id_token_fault,
        state.knobs.email_verified,
    );
    let mut body = issue_tokens(&mut state, family, &grant.subject, issue_refresh);
    body["id_token"] = json!(id_token);
    if let Some(scope) = grant.scope {
        body["scope"] = json!(scope);
    }
    state.issued_secrets.push(id_token);
    let oversized = state.knobs.oversized;
    drop(state);
    Ok(answer(p, oversized, Answer::Token, body))
}

fn refresh(
    p: &FakeProvider,
    params: &HashMap<String, String>,
    call: Option<usize>,
) -> Result<Response, (StatusCode, &'static str)> {
    let mut state = p.state();
    let outcome = |state: &mut ProviderState, outcome: RefreshOutcome| {
        if let Some(record) = call.and_then(|i| state.refresh_calls.get_mut(i)) {
            record.served_at = Some(SystemTime::now());
            record.outcome = Some(outcome);
        }
    };
    let Some(presented) = params.get("refresh_token").cloned() else {
        return Err((StatusCode::BAD_REQUEST, "invalid_request"));
    };
    state.refresh_tokens_presented.push(presented.clone());
    let knobs = state.knobs.clone();
    let Some(grant) = state.refresh_tokens.get(&presented) else {
        outcome(&mut state, RefreshOutcome::Refused);
        return Err((StatusCode::BAD_REQUEST, "invalid_grant"));
    };
    let (family, subject, used) = (grant.family, grant.subject.clone(), grant.used);
    if state.revoked_families.contains(&family) {
        outcome(&mut state, RefreshOutcome::Refused);
        return Err((StatusCode::BAD_REQUEST, "invalid_grant"));
    }
    if used {
        outcome(&mut state, RefreshOutcome::Reused);
        state.counters.reuse_detected += 1;
        *state.reuse_by_subject.entry(subject.clone()).or_default() += 1;
        if knobs.reuse_detection {
            revoke_family(&mut state, family);
        }
        return Err((StatusCode::BAD_REQUEST, "invalid_grant"));
    }
    if knobs.rotate_refresh_tokens
        && let Some(g) = state.refresh_tokens.get_mut(&presented)
    {
        g.used = true;
    }
    outcome(&mut state, RefreshOutcome::Rotated);
    let body = issue_tokens(&mut state, family, &subject, knobs.rotate_refresh_tokens);
    drop(state);
    Ok(answer(p, knobs.oversized, Answer::Token, body))
}

fn issue_tokens(state: &mut ProviderState, family: u64, subject: &str, with_refresh_token: bool) -> Value {
    let access = secret("at");
    state.issued_secrets.push(access.clone());
    state.access_token_subjects.insert(access.clone(), subject.to_string());
    let issued_at = SystemTime::now();
    let lifetime = Duration::from_secs(state.knobs.access_token_lifetime_secs.max(0) as u64);
    state.access_tokens.insert(
        access.clone(),
        AccessGrant {
            family,
            issued_at,
            expires_at: issued_at + lifetime,
        },
    );
    let mut body =
        json!({"access_token": access, "token_type": "Bearer", "expires_in": state.knobs.access_token_lifetime_secs});
    for (name, value) in &state.knobs.extra_token_fields {
        body[name] = value.clone();
    }
    if state.knobs.omit_expires_in
        && let Some(fields) = body.as_object_mut()
    {
        fields.remove("expires_in");
    }
    if with_refresh_token {
        let rt = secret("rt");
        state.issued_secrets.push(rt.clone());
        let id = state.token_ids.len() as u64;
        state.token_ids.insert(rt.clone(), id);
        state.refresh_tokens.insert(
            rt.clone(),
            RefreshGrant {
                family,
                subject: subject.to_string(),
                used: false,
            },
        );
        body["refresh_token"] = json!(rt);
    }
    body
}

/// A revoked family: its refresh tokens and the access tokens issued with them stop working now.
fn revoke_family(state: &mut ProviderState, family: u64) {
    if state.revoked_families.insert(family) {
        state.family_revoked_at.insert(family, SystemTime::now());
    }
}

async fn revoke(State(p): State<FakeProvider>, headers: HeaderMap, body: Bytes) -> Response {
    let params = token_params(&headers, &body);
    if !client_authenticated(&p, &params, "/revoke") {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let mut state = p.state();
    state.counters.revocations += 1;
    if state.knobs.failing_revocations > 0 {
        state.knobs.failing_revocations -= 1;
        let status =
            StatusCode::from_u16(state.knobs.revocation_failure_status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let error = if status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS {
            "invalid_request"
        } else {
            "temporarily_unavailable"
        };
        return oauth_error(status, error);
    }
    if let Some(family) = params
        .get("token")
        .and_then(|t| state.refresh_tokens.get(t))
        .map(|g| g.family)
    {
        revoke_family(&mut state, family);
    }
    let oversized = state.knobs.oversized;
    drop(state);
    match oversized {
        Some((Answer::Revocation, _)) => answer(&p, oversized, Answer::Revocation, json!({})),
        _ => StatusCode::OK.into_response(),
    }
}

/// A GitHub-style user endpoint: a numeric `id` and no `sub`.
async fn userinfo(State(p): State<FakeProvider>, headers: HeaderMap) -> Response {
    let state = p.state();
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match token.and_then(|t| state.access_token_subjects.get(t)) {
        Some(subject) => {
            let id: u64 = subject.bytes().fold(7, |acc, b| acc * 31 + u64::from(b)) % 10_000_000;
            // GitHub's `id` and `login`, Atlassian's `account_id` (api.atlassian.com/me).
            let body = json!({"id": id, "login": subject, "email": format!("{subject}@example.com"),
                "account_id": format!("acc-{id}")});
            let oversized = state.knobs.oversized;
            drop(state);
            answer(&p, oversized, Answer::UserInfo, body)
        }
        None => StatusCode::UNAUTHORIZED.into_response(),
    }
}

async fn discovery(State(p): State<FakeProvider>) -> Response {
    let (oversized, client_auth) = {
        let mut state = p.state();
        state.counters.discovery += 1;
        (state.knobs.oversized, state.knobs.client_auth)
    };
    let auth_methods = match client_auth {
        ClientAuth::Either => json!(["client_secret_post", "client_secret_basic"]),
        ClientAuth::BasicOnly => json!(["client_secret_basic"]),
        ClientAuth::PostOnly => json!(["client_secret_post"]),
        ClientAuth::PrivateKeyJwtOnly => json!(["private_key_jwt"]),
    };
    let issuer = p.issuer();
    let body = json!({
        "token_endpoint_auth_methods_supported": auth_methods,
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "revocation_endpoint": format!("{issuer}/revoke"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "code_challenge_methods_supported": ["S256"],
    });
    answer(&p, oversized, Answer::Discovery, body)
}

async fn jwks(State(p): State<FakeProvider>) -> Response {
    let (oversized, moved) = {
        let mut state = p.state();
        state.counters.jwks += 1;
        (state.knobs.oversized, state.knobs.jwks_moved)
    };
    if moved {
        return (StatusCode::FOUND, [(axum::http::header::LOCATION, "/jwks-moved")]).into_response();
    }
    answer(&p, oversized, Answer::Jwks, json!({"keys": [p.jwk()]}))
}

async fn jwks_moved(State(p): State<FakeProvider>) -> Response {
    p.state().counters.jwks_moved += 1;
    Json(json!({"keys": [p.jwk()]})).into_response()
}

/// `body` as JSON, or inflated when the `oversized` knob names this kind of answer.
fn answer(p: &FakeProvider, oversized: Option<(Answer, Oversize)>, kind: Answer, body: Value) -> Response {
    match oversized {
        Some((inflated, how)) if inflated == kind => inflate(p, body, how),
        _ => Json(body).into_response(),
    }
}

/// Streams `body` with a `padding` member (or under a false Content-Length), chunk by chunk as the
/// connection takes them, counting what was handed over; stops when the client hangs up.
fn inflate(p: &FakeProvider, body: Value, how: Oversize) -> Response {
    let json = body.to_string();
    let (content_length, parts) = match how {
        Oversize::ClaimedLength(claimed) => (Some(claimed), None),
        Oversize::Chunked(total) | Oversize::WithLength(total) => {
            let head = format!("{},\"padding\":\"", json.trim_end_matches('}'));
            let tail = "\"}";
            let padding = total.saturating_sub(head.len() + tail.len());
            let length = matches!(how, Oversize::WithLength(_)).then_some((head.len() + padding + tail.len()) as u64);
            (length, Some((head, padding, tail)))
        }
    };
    let (mut tx, rx) = lambda_http::lambda_runtime::streaming::channel();
    let provider = p.clone();
    tokio::spawn(async move {
        let sent = |n: usize| provider.state().counters.oversized_bytes_sent += n as u64;
        let Some((head, mut padding, tail)) = parts else {
            // The lie: the real answer, then nothing, with the connection held open.
            if tx.send_data(Bytes::from(json.clone())).await.is_ok() {
                sent(json.len());
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
            return;
        };
        if tx.send_data(Bytes::from(head.clone())).await.is_err() {
            return;
        }
        sent(head.len());
        let chunk = Bytes::from(vec![b'x'; OVERSIZED_CHUNK]);
        while padding > 0 {
            tokio::time::sleep(OVERSIZED_PACE).await;
            let n = padding.min(OVERSIZED_CHUNK);
            if tx.send_data(chunk.slice(..n)).await.is_err() {
                return;
            }
            sent(n);
            padding -= n;
        }
        if tx.send_data(Bytes::from_static(tail.as_bytes())).await.is_ok() {
            sent(tail.len());
        }
    });
    let mut resp = Response::new(axum::body::Body::new(rx));
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    if let Some(length) = content_length {
        headers.insert(header::CONTENT_LENGTH, header::HeaderValue::from(length));
    }
    resp
}

/// The provider's listener: every connection can be reset from its handler (`Failure::Reset`), which
/// plain `axum::serve` over a `TcpListener` cannot do.
struct ResettableListener(tokio::net::TcpListener);

/// What a handler knows of its connection: who is calling, and the switch that resets it.
#[derive(Clone, Debug)]
struct ProviderConnection {
    peer: SocketAddr,
    reset: Arc<AtomicBool>,
}

impl axum::serve::Listener for ResettableListener {
    type Io = ResettableStream;
    type Addr = ProviderConnection;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((stream, peer)) => {
                    let reset = Arc::new(AtomicBool::new(false));
                    let conn = ProviderConnection {
                        peer,
                        reset: reset.clone(),
                    };
                    return (ResettableStream { inner: stream, reset }, conn);
                }
                // Out of file descriptors and the like: wait, as axum's own listener does.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(ProviderConnection {
            peer: self.0.local_addr()?,
            reset: Arc::default(),
        })
    }
}

impl Connected<axum::serve::IncomingStream<'_, ResettableListener>> for ProviderConnection {
    fn connect_info(stream: axum::serve::IncomingStream<'_, ResettableListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// A TCP stream that, once its switch is set, fails every read and write and closes with a RST (zero
/// linger), so the client sees "connection reset" and not an answer.
struct ResettableStream {
    inner: tokio::net::TcpStream,
    reset: Arc<AtomicBool>,
}

impl ResettableStream {
    fn check(&self) -> std::io::Result<()> {
        if self.reset.load(Ordering::SeqCst) {
            let _ = self.inner.set_zero_linger();
            return Err(std::io::ErrorKind::ConnectionReset.into());
        }
        Ok(())
    }
}

impl tokio::io::AsyncRead for ResettableStream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        std::pin::Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for ResettableStream {
    fn poll_write(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        this.check()?;
        std::pin::Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        std::pin::Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        this.check()?;
        std::pin::Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}
