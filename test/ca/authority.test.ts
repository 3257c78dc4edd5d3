import assert from 'node:assert/strict';
import { test } from 'node:test';
import { unwrap } from '../../lib/protocol/errors.js';
import { clientKeys, csrFor, newAuthority, newOrg } from './helpers.js';

test('smoke: org, gateway by enrollment token, proxy, grant', async () => {
  const f = await newAuthority();
  const acme = await newOrg(f, 'acme');
  const tok = unwrap(f.ca.createEnrollmentToken(acme.orgAdmin, 'acme', { kind: 'gateway', subjectId: 'gw1' }));
  const gk = clientKeys();
  const gw = f.ca.enrollGateway(null, {
    orgId: 'acme',
    gatewayId: 'gw1',
    csr: gk.csr,
    sshPublicKey: gk.sshPublicKey,
    enrollmentToken: tok.token,
  });
  assert.ok(gw.ok, JSON.stringify(gw));
  const pk = clientKeys();
  const px = f.ca.enrollProxy(f.admin, {
    scope: 'instance',
    proxyId: 'p1',
    hostnames: ['proxy.example.test', '127.0.0.1'],
    sshAddress: '127.0.0.1:2222',
    tlsAddress: '127.0.0.1:8443',
    csr: pk.csr,
    sshPublicKey: pk.sshPublicKey,
  });
  assert.ok(px.ok, JSON.stringify(px));
  unwrap(
    f.ca.addPolicy(acme.orgAdmin, 'acme', {
      subject: 'group:dba',
      gateways: ['gw1'],
      targets: ['db.internal:5432'],
      modes: ['tcp'],
    }),
  );
  const outer = csrFor();
  const inner = csrFor();
  const g = f.ca.issueGrant(acme.member, {
    orgId: 'acme',
    gatewayId: 'gw1',
    target: { host: 'db.internal', port: 5432 },
    mode: 'tcp',
    outerCsr: outer.csr,
    innerCsr: inner.csr,
  });
  assert.ok(g.ok, JSON.stringify(g));
  assert.ok(g.value.outerCertificateChains.instance);
  assert.equal(g.value.outerCertificateChains.org, undefined);
});
