//! The demo app of `make dev`: a browser app on an origin of its own (`http://localhost:<port>`, the
//! vault being on `127.0.0.1`), written as an app developer would write it, on the official Authress
//! login SDK (`@authress/login`, pinned in tests/js, served unmodified from its own bundle). Sign in
//! through the demo provider, see the vault user's identity, fetch the provider credential and see
//! whether that fetch refreshed it, sign out. tests/tests/browser_login.rs drives this same page in Chromium.

use axum::Router;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;

/// The SDK's browser bundle, as npm installs it (`make bootstrap`).
pub const SDK_BUNDLE: &str = "tests/js/node_modules/@authress/login/dist/authress.min.js";

/// The app at `url` (its origin, no trailing slash) signs users in with `connection_id` of the vault at
/// `vault_url`. The vault must allow `url` + "/" as a redirect URL (which makes it a CORS origin).
pub async fn serve(listener: tokio::net::TcpListener, vault_url: &str, connection_id: &str) {
    let page = PAGE
        .replace("__VAULT_URL__", vault_url)
        .replace("__CONNECTION_ID__", connection_id);
    let bundle = std::fs::read_to_string(crate::workspace_root().join(SDK_BUNDLE)).unwrap_or_else(|_| {
        format!("document.body.textContent = 'The login SDK is missing: run make bootstrap ({SDK_BUNDLE})';")
    });
    let app = Router::new().route("/", get(move || async move { Html(page) })).route(
        "/authress-login.js",
        get(move || async move { ([(header::CONTENT_TYPE, "text/javascript")], bundle).into_response() }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
}

const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>credvault demo app</title>
<style>
 body{font-family:system-ui,sans-serif;max-width:860px;margin:2rem auto;padding:0 1rem;color:#222}
 pre{background:#f4f4f4;padding:.8rem;overflow-x:auto;white-space:pre-wrap;word-break:break-all}
 button{font-size:1rem;padding:.4rem .9rem;margin:.2rem 0} input{font-size:1rem;padding:.3rem}
 .err{color:#b00020}
</style></head>
<body>
<h1>credvault demo app</h1>
<p>An app on its own origin, built on the Authress login SDK (<code>@authress/login</code>) against the
vault at <code id="vault"></code>. Sign in through the demo provider (connection
<code>__CONNECTION_ID__</code>): the vault keeps the provider's refresh token under KMS, you get a
vault user token, and can ask for a fresh provider access token at any time.</p>
<section id="signin">
 <label>User name at the provider <input id="user" value="alice"></label>
 <button id="login">Sign in</button>
</section>
<section id="session" hidden>
 <h2>Signed in</h2>
 <p>User id: <code id="sub"></code></p>
 <pre id="claims"></pre>
 <h2>Provider credential</h2>
 <button id="fetch">Fetch credential (getConnectionCredentials)</button>
 <label>or with minimumValiditySeconds <input id="minv" type="number" value="60" min="0" max="86400"></label>
 <button id="fetch-validity">Fetch</button>
 <pre id="credential">(not fetched yet)</pre>
 <button id="switch">Sign in as someone else</button>
 <button id="logout">Sign out</button>
</section>
<p id="error" class="err"></p>
<script src="/authress-login.js"></script>
<script>
const vaultUrl = "__VAULT_URL__";
const connectionId = "__CONNECTION_ID__";
// What an app developer writes: one LoginClient for the vault, as for Authress itself.
const loginClient = new Authress.LoginClient({ authressApiUrl: vaultUrl, applicationId: "app_demo" });
window.loginClient = loginClient;
document.getElementById("vault").textContent = vaultUrl;

const show = (id, value) => { document.getElementById(id).textContent = typeof value === "string" ? value : JSON.stringify(value, null, 2); };
const fail = message => show("error", message);

async function signIn() {
  // A new login stores new provider tokens: the next fetch's token is not a refresh.
  sessionStorage.removeItem("lastAccessToken");
  await loginClient.authenticate({ connectionId, redirectUrl: location.origin + "/",
    connectionProperties: { login_hint: document.getElementById("user").value } });
}

// A new access token means the vault refreshed it with the provider for this fetch.
function record(credentials) {
  const before = sessionStorage.getItem("lastAccessToken");
  const refreshed = before !== null && credentials.accessToken !== before;
  sessionStorage.setItem("lastAccessToken", credentials.accessToken);
  return refreshed;
}

async function fetchCredential() {
  const credentials = await loginClient.getConnectionCredentials();
  if (!credentials) return fail("The vault gave no credential (see the browser console).");
  show("credential", { refreshed: record(credentials), credentials });
}

async function fetchWithValidity() {
  const token = await loginClient.ensureToken();
  const { userId } = loginClient.getUserIdentity();
  const minv = encodeURIComponent(document.getElementById("minv").value);
  const url = vaultUrl + "/v1/connections/" + encodeURIComponent(connectionId) + "/users/"
    + encodeURIComponent(userId) + "/credentials?minimumValiditySeconds=" + minv;
  const resp = await fetch(url, { headers: { Authorization: "Bearer " + token } });
  const body = await resp.json();
  if (!resp.ok) return fail(body.title + " (" + body.errorCode + ")");
  show("credential", { refreshed: record(body), credentials: body });
}

async function start() {
  // Completes a login that just came back with a code, or finds the session of an earlier one.
  const signedIn = await loginClient.userSessionExists();
  document.getElementById("signin").hidden = signedIn;
  document.getElementById("session").hidden = !signedIn;
  if (signedIn) {
    const identity = loginClient.getUserIdentity();
    show("sub", identity.userId);
    show("claims", identity);
  }
  document.body.dataset.ready = String(signedIn);
}

const report = e => fail(String(e && e.message || e));
document.getElementById("login").onclick = () => signIn().catch(report);
document.getElementById("switch").onclick = () => signIn().catch(report);
document.getElementById("logout").onclick = () => loginClient.logout(location.origin + "/").catch(report);
document.getElementById("fetch").onclick = () => fetchCredential().catch(report);
document.getElementById("fetch-validity").onclick = () => fetchWithValidity().catch(report);
start().catch(report);
</script>
</body></html>
"#;
