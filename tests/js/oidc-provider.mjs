// A certified OpenID Provider in the loop: the npm `oidc-provider` package (pinned in package.json),
// configured as a strict production provider would be, for tests/tests/oidc_provider.rs.
//
// - One confidential client (CLIENT_ID, CLIENT_SECRET) whose only redirect URI is the vault's callback
//   (REDIRECT_URI); the token endpoint takes the methods oidc-provider supports by default, and its
//   discovery lists them (the vault picks client_secret_basic from it).
// - Refresh tokens are issued for `offline_access` with `prompt=consent`, rotate on every use, and
//   carry oidc-provider's reuse detection: a consumed refresh token presented again revokes the whole
//   grant, every token of the login with it.
// - Revocation (RFC 7009) is on.
// - The interaction is a robot: it signs in the `login_hint` user (default "alice") and consents to
//   the requested scopes without a page, so a test can run the login as HTTP hops.
//
// It listens on a free loopback port and prints one JSON line, {"issuer": ...}, once it serves.
import http from 'node:http';
import Provider from 'oidc-provider';

const { CLIENT_ID, CLIENT_SECRET, REDIRECT_URI } = process.env;
if (!CLIENT_ID || !CLIENT_SECRET || !REDIRECT_URI) {
  console.error('CLIENT_ID, CLIENT_SECRET and REDIRECT_URI are required');
  process.exit(2);
}
const accessTokenSeconds = Number(process.env.ACCESS_TOKEN_TTL || 300);

const server = http.createServer();
await new Promise(resolve => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: CLIENT_ID,
    client_secret: CLIENT_SECRET,
    redirect_uris: [REDIRECT_URI],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
  }],
  findAccount: (_ctx, sub) => ({
    accountId: sub,
    claims: () => ({ sub, email: `${sub}@oidc-provider.example`, email_verified: true }),
  }),
  claims: { openid: ['sub'], email: ['email', 'email_verified'] },
  features: {
    devInteractions: { enabled: false },
    revocation: { enabled: true },
  },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  rotateRefreshToken: true,
  ttl: { AccessToken: accessTokenSeconds },
  cookies: { keys: ['credvault-tests-only'] },
});
// Quiet: the test reads stdout for the issuer line only.
provider.on('server_error', (_ctx, error) => console.error('oidc-provider server_error', error.message));

const providerCallback = provider.callback();

async function finishInteraction(req, res) {
  const { params, grantId } = await provider.interactionDetails(req, res);
  const accountId = params.login_hint || 'alice';
  const grant = grantId
    ? await provider.Grant.find(grantId)
    : new provider.Grant({ accountId, clientId: params.client_id });
  grant.addOIDCScope(params.scope);
  const savedGrantId = await grant.save();
  await provider.interactionFinished(
    req,
    res,
    { login: { accountId }, consent: { grantId: savedGrantId } },
    { mergeWithLastSubmission: false },
  );
}

server.on('request', (req, res) => {
  if (!req.url.startsWith('/interaction/')) {
    providerCallback(req, res);
    return;
  }
  finishInteraction(req, res).catch(error => {
    res.statusCode = 400;
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ error: 'interaction_failed', error_description: error.message }));
  });
});

console.log(JSON.stringify({ issuer }));
