//! The demo page of `make dev`: sign in through the demo provider, see the vault user token, fetch the
//! provider credential. Plain HTML and browser JS against the public API, nothing else.

pub fn page(connection_id: &str) -> String {
    PAGE.replace("__CONNECTION_ID__", connection_id)
}

const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>credvault demo</title>
<style>
 body{font-family:system-ui,sans-serif;max-width:860px;margin:2rem auto;padding:0 1rem;color:#222}
 pre{background:#f4f4f4;padding:.8rem;overflow-x:auto;white-space:pre-wrap;word-break:break-all}
 button{font-size:1rem;padding:.4rem .9rem;margin:.2rem 0} input{font-size:1rem;padding:.3rem}
 .err{color:#b00020}
</style></head>
<body>
<h1>credvault demo</h1>
<p>Sign in through the demo provider (connection <code>__CONNECTION_ID__</code>). The vault keeps the
provider's refresh token under KMS; you get a vault user token, and can ask the vault for a fresh
provider access token at any time.</p>
<section id="signin">
 <label>User name at the provider <input id="user" value="alice"></label>
 <button id="login">Sign in</button>
</section>
<section id="session" hidden>
 <h2>Vault user token</h2>
 <p>User id: <code id="sub"></code></p>
 <pre id="claims"></pre>
 <h2>Provider credential</h2>
 <label>minimumValiditySeconds <input id="minv" type="number" value="60" min="0" max="86400"></label>
 <button id="fetch">Fetch credential</button>
 <button id="session-fetch">Fetch via /api/session/credentials</button>
 <pre id="credential">(not fetched yet)</pre>
 <button id="logout">Forget the token</button>
</section>
<p id="error" class="err"></p>
<script>
const connectionId = "__CONNECTION_ID__";
const redirectUrl = location.origin + "/demo";
const b64url = bytes => btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const show = (id, value) => { document.getElementById(id).textContent = typeof value === "string" ? value : JSON.stringify(value, null, 2); };
const fail = message => show("error", message);

async function signIn() {
  const verifier = b64url(crypto.getRandomValues(new Uint8Array(32)));
  const challenge = b64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  const resp = await fetch("/api/authentication", {method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({connectionId, redirectUrl, codeChallenge: challenge, codeChallengeMethod: "S256",
      connectionProperties: {login_hint: document.getElementById("user").value}})});
  const body = await resp.json();
  if (!resp.ok) return fail(body.title + " (" + body.errorCode + ")");
  sessionStorage.setItem("pkce", JSON.stringify({verifier, requestId: body.authenticationRequestId}));
  location.assign(body.authenticationUrl);
}

async function finishSignIn(params) {
  const pending = JSON.parse(sessionStorage.getItem("pkce") || "null");
  history.replaceState(null, "", "/demo");
  if (params.get("error")) return fail("The provider said: " + params.get("error"));
  if (!pending || pending.requestId !== params.get("nonce")) return fail("This sign-in was not started here.");
  sessionStorage.removeItem("pkce");
  const resp = await fetch("/api/authentication/" + encodeURIComponent(pending.requestId) + "/tokens", {method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({grant_type: "authorization_code", code: params.get("code"), code_verifier: pending.verifier, redirect_uri: redirectUrl})});
  const body = await resp.json();
  if (!resp.ok) return fail(body.title + " (" + body.errorCode + ")");
  sessionStorage.setItem("token", body.access_token);
  // A new login stores new provider tokens: the next fetch's token is not a refresh.
  sessionStorage.removeItem("lastAccessToken");
}

function claimsOf(token) {
  return JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
}

async function fetchCredential(viaSession) {
  const token = sessionStorage.getItem("token");
  const claims = claimsOf(token);
  const minv = encodeURIComponent(document.getElementById("minv").value);
  const url = viaSession ? "/api/session/credentials"
    : "/v1/connections/" + encodeURIComponent(connectionId) + "/users/" + encodeURIComponent(claims.sub) + "/credentials?minimumValiditySeconds=" + minv;
  const resp = await fetch(url, {headers: {Authorization: "Bearer " + token}});
  const body = await resp.json();
  // A new access token means the vault refreshed it with the provider for this fetch.
  const before = sessionStorage.getItem("lastAccessToken");
  const refreshed = resp.ok && before !== null && body.accessToken !== before;
  if (resp.ok) sessionStorage.setItem("lastAccessToken", body.accessToken);
  show("credential", {status: resp.status, refreshed, body});
}

function render() {
  const token = sessionStorage.getItem("token");
  document.getElementById("signin").hidden = !!token;
  document.getElementById("session").hidden = !token;
  if (token) { const c = claimsOf(token); show("sub", c.sub); show("claims", c); }
}

document.getElementById("login").onclick = () => signIn().catch(e => fail(String(e)));
document.getElementById("fetch").onclick = () => fetchCredential(false).catch(e => fail(String(e)));
document.getElementById("session-fetch").onclick = () => fetchCredential(true).catch(e => fail(String(e)));
document.getElementById("logout").onclick = () => { sessionStorage.removeItem("token"); render(); };
const params = new URLSearchParams(location.search);
(params.has("code") || params.has("error") ? finishSignIn(params) : Promise.resolve()).catch(e => fail(String(e))).then(render);
</script>
</body></html>
"#;
