/** The World fixture itself: each mint yields what its SPEC §3 profile says, and the knobs do what they say. */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { describe, it } from 'node:test';
import { decodeRoute, ROUTE_EXTENSION_OID } from '../../lib/pki/grant.js';
import { parseCertificate as parseX509 } from '../../lib/pki/x509.js';
import { verifyCertificate } from '../../lib/sshcert/index.js';
import { World } from '../helpers/world.js';

describe('World', () => {
  const world = new World();
  const nowSec = () => Math.floor(world.nowMs() / 1000);

  it('gateway SSH user cert: principal, key id, only permit-port-forwarding, instance vs org CA', () => {
    const gw = world.gatewaySsh({ orgId: 'org-a', gatewayId: 'gw-1', scope: 'instance' });
    assert.deepEqual(gw.cert.principals, ['gw-1']);
    assert.equal(gw.cert.keyId, 'spiffe://example.test/org/org-a/gateway/gw-1');
    assert.deepEqual(Object.keys(gw.cert.extensions), ['permit-port-forwarding']);
    const inst = verifyCertificate(gw.cert, {
      trustedCaKeys: [world.instance.sshClient.publicBlob],
      type: 'user',
      now: nowSec(),
    });
    assert.ok(inst.ok);
    const org = verifyCertificate(gw.cert, {
      trustedCaKeys: [world.org('org-a').sshClient.publicBlob],
      type: 'user',
      now: nowSec(),
    });
    assert.equal(org.ok, false);
  });

  it('knobs: expired, not yet valid, stray CA, host type', () => {
    const trust = [world.org('org-a').sshClient.publicBlob];
    const check = (c: ReturnType<World['gatewaySsh']>, type: 'user' | 'host' = 'user') =>
      verifyCertificate(c.cert, { trustedCaKeys: trust, type, now: nowSec() });
    const base = { orgId: 'org-a', gatewayId: 'gw-1', scope: 'org' as const };
    assert.ok(check(world.gatewaySsh(base)).ok);
    assert.equal((check(world.gatewaySsh({ ...base, expired: true })) as { code: string }).code, 'E_CERT_EXPIRED');
    assert.equal(
      (check(world.gatewaySsh({ ...base, notYetValid: true })) as { code: string }).code,
      'E_CERT_NOT_YET_VALID',
    );
    assert.equal(
      (check(world.gatewaySsh({ ...base, ca: world.stray.sshClient })) as { code: string }).code,
      'E_CERT_UNTRUSTED',
    );
    assert.equal((check(world.gatewaySsh({ ...base, type: 'host' })) as { code: string }).code, 'E_CERT_WRONG_TYPE');
  });

  it('orgs have independent roots', () => {
    const a = world.org('org-a');
    const b = world.org('org-b');
    for (const k of ['pkiClient', 'pkiServer', 'gatewayClient', 'gatewayServer'] as const) {
      assert.notEqual(a[k].pem, b[k].pem);
      assert.notEqual(a[k].pem, world.instance.pkiClient.pem);
    }
    assert.ok(!a.sshClient.publicBlob.equals(b.sshClient.publicBlob));
  });

  it('platform outer cert carries the route; inner cert the grant; chains check with node', () => {
    const outer = world.platformOuter({ orgId: 'org-a', gatewayId: 'gw-1', scope: 'instance' });
    const ext = parseX509(outer.issued.der).extensions.get(ROUTE_EXTENSION_OID);
    assert.ok(ext);
    const route = decodeRoute(ext.value);
    assert.ok(route.ok && route.value.orgId === 'org-a' && route.value.gatewayId === 'gw-1');
    assert.ok(new X509Certificate(outer.certPem).checkIssued(new X509Certificate(world.instance.pkiClient.pem)));
    const inner = world.platformInner({ orgId: 'org-a', gatewayId: 'gw-1' });
    assert.equal(inner.grant.gatewayId, 'gw-1');
    assert.ok(
      new X509Certificate(inner.certPem).checkIssued(new X509Certificate(world.org('org-a').gatewayClient.pem)),
    );
    const proxy = world.proxyTls({ scope: 'instance', proxyId: 'p1' });
    assert.equal(proxy.uri, 'spiffe://example.test/instance/proxy/p1');
    const expired = world.proxyTls({ scope: 'instance', proxyId: 'p1', expired: true });
    assert.ok(expired.issued.notAfter.getTime() < world.nowMs());
  });

  it('the clock is injectable', () => {
    const w = new World({ at: new Date('2030-01-01T00:00:00Z') });
    w.advance(1000);
    assert.equal(w.now().toISOString(), '2030-01-01T00:00:01.000Z');
  });
});
