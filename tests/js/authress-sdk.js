// Drives credvault with the unmodified Authress JavaScript SDK. Inputs come from the environment
// (set by tests/tests/authress_sdk.rs); prints one JSON line of results, exits non-zero on a failure.
const assert = require('node:assert');
const { AuthressClient, ServiceClientTokenProvider, UnauthorizedError } = require('@authress/sdk');

async function main() {
  const { VAULT_URL, ADMIN_KEY, BACKEND_KEY, BACKEND_ID, USER_ID, CONNECTION_ID, PROVIDER_URL } = process.env;
  const admin = new AuthressClient({ authressApiUrl: VAULT_URL }, new ServiceClientTokenProvider(ADMIN_KEY, VAULT_URL));
  const backend = new AuthressClient({ authressApiUrl: VAULT_URL }, new ServiceClientTokenProvider(BACKEND_KEY, VAULT_URL));

  // Before any grant the backend may not read the credential.
  const before = await backend.connections.getConnectionCredentials(CONNECTION_ID, USER_ID).then(() => 'allowed', e => e.status);
  assert.strictEqual(before, 403);

  const role = await admin.roles.createRole({
    roleId: 'ro_sdk_reader', name: 'SDK credential reader',
    permissions: [{ action: 'connections:credentials:read', allow: true }]
  });
  assert.strictEqual(role.status, 201);
  const record = await admin.accessRecords.createRecord({
    recordId: 'rec_sdk_backend', name: 'Backend reads demo credentials', users: [{ userId: BACKEND_ID }],
    statements: [{ roles: ['ro_sdk_reader'], resources: [{ resourceUri: `Connections/${CONNECTION_ID}` }] }]
  });
  assert.strictEqual(record.status, 201);
  assert.ok(record.data.lastUpdated);

  const credentials = await backend.connections.getConnectionCredentials(CONNECTION_ID, USER_ID);
  assert.strictEqual(credentials.status, 200);

  const connection = await admin.connections.createConnection({
    connectionId: 'con_sdk', type: 'OAUTH2', authenticationUrl: `${PROVIDER_URL}/authorize`, tokenUrl: `${PROVIDER_URL}/token`,
    clientId: 'sdk-client', clientSecret: 'sdk-planted-secret',
    data: { name: 'Made by the SDK', oidcUserEndpointUrl: `${PROVIDER_URL}/userinfo` }
  });
  assert.strictEqual(connection.status, 201);
  assert.strictEqual(connection.data.clientSecret, undefined);
  const listed = await admin.connections.getConnections();
  assert.ok(listed.data.connections.some(c => c.connectionId === 'con_sdk'));

  const allowed = await admin.userPermissions.authorizeUser(BACKEND_ID, `Connections/${CONNECTION_ID}/Users/x/Credentials`, 'connections:credentials:read');
  assert.strictEqual(allowed.status, 200);
  const denied = await admin.userPermissions.authorizeUser(BACKEND_ID, 'Connections/con_other', 'connections:credentials:read')
    .then(() => 'allowed', e => e instanceof UnauthorizedError ? 'denied' : `unexpected ${e.status}`);
  assert.strictEqual(denied, 'denied');

  console.log(JSON.stringify({ accessToken: credentials.data.accessToken, connectionId: connection.data.connectionId, denied }));
}

main().catch(error => {
  console.error(error && (error.stack || JSON.stringify(error)));
  process.exit(1);
});
