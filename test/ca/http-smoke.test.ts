import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startCaServer } from '../../lib/ca/http.js';
import { CaClient } from '../../lib/protocol/ca-client.js';
import { newAuthority } from './helpers.js';

test('http smoke', async () => {
  const f = await newAuthority();
  const creds = f.ca.issueApiServerCertificate({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  const server = await startCaServer({ authority: f.ca, host: '127.0.0.1', port: 0, tls: creds });
  try {
    const c = new CaClient({ url: server.url, fingerprint: creds.fingerprint256 });
    assert.deepEqual(await c.health(), { ok: true, version: '0.1.0' });
    const { client } = await c.loginAs({ clientId: f.adminClientId, clientSecret: f.adminClientSecret });
    await client.createOrg('acme');
    assert.equal((await client.listOrgs()).orgs.length, 1);
  } finally {
    await server.drain(Date.now() + 1000);
  }
});
