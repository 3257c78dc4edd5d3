/** Renewal authenticated by the current certificate's key over the exact body bytes, and its refusals. */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import type { SignedRequest } from '../../lib/ca/authority.js';
import { type ErrorCode, unwrap, type Verdict } from '../../lib/errors/codes.js';
import { signRequestBytes } from '../../lib/protocol/api.js';
import { clientKeys, type Fixture, newAuthority, newOrg } from './helpers.js';
import { type Held, leafDer, renewal } from './peers.js';

function refused(v: Verdict<unknown>, code: ErrorCode, why?: string): void {
  assert.equal(v.ok, false, `${why ?? code}: expected a refusal`);
  assert.equal(!v.ok && v.code, code, why ?? (!v.ok ? v.reason : ''));
}

/** A renewal request signed by `current` for fresh keys (peers.ts renewal); `over` replaces body fields. */
const signed = (f: Fixture, current: Held, over: Record<string, unknown> = {}): SignedRequest =>
  renewal(f, current, clientKeys(), over);

async function enrolled() {
  const f = await newAuthority();
  const acme = await newOrg(f, 'acme');
  const keys = clientKeys();
  const gw = unwrap(
    f.ca.enrollGateway(acme.orgAdmin, {
      orgId: 'acme',
      gatewayId: 'gw1',
      csr: keys.csr,
      sshPublicKey: keys.sshPublicKey,
    }),
  );
  const pkeys = clientKeys('rsa-2048');
  const px = unwrap(
    f.ca.enrollProxy(f.admin, {
      scope: 'instance',
      proxyId: 'p1',
      hostnames: ['p1.example.test'],
      sshAddress: 'p1.example.test:22',
      tlsAddress: 'p1.example.test:443',
      csr: pkeys.csr,
      sshPublicKey: pkeys.sshPublicKey,
    }),
  );
  return {
    f,
    acme,
    gateway: { chain: gw.tlsCertificateChain, keys },
    proxy: { chain: px.tlsCertificateChain, keys: pkeys },
  };
}

test('a gateway renews with its current certificate; a proxy (RSA key) too', async () => {
  const { f, gateway, proxy } = await enrolled();
  f.clock.advance(3600);
  const r = f.ca.renewGateway(signed(f, gateway));
  assert.ok(r.ok, JSON.stringify(r));
  assert.notEqual(r.value.tlsCertificateChain, gateway.chain);
  assert.equal(r.value.sshCertificates.length, 2);
  const p = f.ca.renewProxy(signed(f, proxy));
  assert.ok(p.ok, JSON.stringify(p));
  const entries = unwrap(f.ca.audit(f.admin, 0)).entries.filter((e) => e.action.endsWith('.renew'));
  assert.deepEqual(
    entries.map((e) => `${e.action}:${e.outcome}:${e.actor}`),
    [
      'gateway.renew:ok:spiffe://example.test/org/acme/gateway/gw1',
      'proxy.renew:ok:spiffe://example.test/instance/proxy/p1',
    ],
  );
});

test('renewal refusals: bad signature, replay, stale timestamp, tampered body, wrong kind, foreign cert', async () => {
  const { f, gateway, proxy } = await enrolled();
  const good = signed(f, gateway);
  const other = clientKeys();
  refused(
    f.ca.renewGateway({ ...good, signature: Buffer.from(signRequestBytes(good.signed, other.tlsKey), 'base64') }),
    'E_AUTH_INVALID',
    'signed by another key',
  );
  const tampered = Buffer.from(good.signed.toString().replace('"nonce":"', '"nonce":"X'));
  refused(f.ca.renewGateway({ ...good, signed: tampered }), 'E_AUTH_INVALID', 'body changed after signing');
  assert.ok(f.ca.renewGateway(good).ok);
  refused(f.ca.renewGateway(good), 'E_TOKEN_USED', 'the same signed request replayed');
  refused(
    f.ca.renewGateway(signed(f, gateway, { timestamp: Math.floor(f.clock.ms / 1000) - 301 })),
    'E_AUTH_INVALID',
    'stale',
  );
  refused(
    f.ca.renewGateway(signed(f, gateway, { timestamp: Math.floor(f.clock.ms / 1000) + 301 })),
    'E_AUTH_INVALID',
    'future',
  );
  refused(f.ca.renewGateway(signed(f, proxy)), 'E_CERT_WRONG_TYPE', 'a proxy cert on the gateway route');
  refused(f.ca.renewProxy(signed(f, gateway)), 'E_CERT_WRONG_TYPE', 'a gateway cert on the proxy route');
  refused(f.ca.renewGateway({ ...good, certificate: Buffer.from('junk') }), 'E_CERT_MALFORMED');
  refused(f.ca.renewGateway({ ...signed(f, gateway), signed: Buffer.from('{not json') }), 'E_REQUEST_MALFORMED');

  // The same URI, from another CA instance (same trust domain and org id): not ours, refused by the verifier.
  const g = await newAuthority();
  const gAcme = await newOrg(g, 'acme');
  const foreignKeys = clientKeys();
  const foreign = unwrap(
    g.ca.enrollGateway(gAcme.orgAdmin, {
      orgId: 'acme',
      gatewayId: 'gw1',
      csr: foreignKeys.csr,
      sshPublicKey: foreignKeys.sshPublicKey,
    }),
  );
  const r = f.ca.renewGateway(signed(f, { chain: foreign.tlsCertificateChain, keys: foreignKeys }));
  assert.equal(r.ok, false);
  assert.ok(!r.ok && ['E_CERT_UNTRUSTED', 'E_CERT_SIGNATURE'].includes(r.code), !r.ok ? r.code : '');
});

test('renewal refusals: expired certificate, revoked certificate, revoked gateway, deleted org', async () => {
  const { f, acme, gateway } = await enrolled();
  f.clock.advance(8 * 24 * 3600);
  refused(f.ca.renewGateway(signed(f, gateway)), 'E_CERT_EXPIRED');
  f.clock.advance(-8 * 24 * 3600);
  const serial = (await import('../../lib/pki/x509.js')).parseCertificate(leafDer(gateway.chain)).serialHex;
  unwrap(f.ca.revoke(acme.orgAdmin, { kind: 'certificate', subject: serial }));
  refused(f.ca.renewGateway(signed(f, gateway)), 'E_CERT_REVOKED');

  const second = await enrolled();
  unwrap(second.f.ca.revoke(second.acme.orgAdmin, { kind: 'gateway', orgId: 'acme', subject: 'gw1' }));
  refused(second.f.ca.renewGateway(signed(second.f, second.gateway)), 'E_SUBJECT_REVOKED');

  const third = await enrolled();
  unwrap(third.f.ca.deleteOrg(third.f.admin, 'acme'));
  refused(third.f.ca.renewGateway(signed(third.f, third.gateway)), 'E_SUBJECT_REVOKED');
});

test('signed feed reads: a gateway sees its org and the instance, an instance proxy everything', async () => {
  const { f, gateway, proxy } = await enrolled();
  await newOrg(f, 'globex');
  unwrap(f.ca.revoke(f.admin, { kind: 'identity', orgId: 'globex', subject: 'alice' }));
  unwrap(f.ca.revoke(f.admin, { kind: 'identity', orgId: 'acme', subject: 'alice' }));
  const peerOf = (who: Held) => {
    const target = `/v1/revocations?since=0&timestamp=${Math.floor(f.clock.ms / 1000)}&nonce=${randomBytes(16).toString('base64url')}`;
    const nonce = new URLSearchParams(target.split('?')[1]).get('nonce')!;
    return unwrap(
      f.ca.authenticatePeer(
        {
          certificate: leafDer(who.chain),
          signature: Buffer.from(signRequestBytes(Buffer.from(target), who.keys.tlsKey), 'base64'),
          signed: Buffer.from(target),
        },
        { timestamp: Math.floor(f.clock.ms / 1000), nonce },
      ),
    );
  };
  const gw = peerOf(gateway);
  assert.equal(gw.kind, 'gateway');
  assert.deepEqual(
    f.ca.revocationsSince(gw, 0).entries.map((e) => e.orgId),
    ['acme'],
  );
  const px = peerOf(proxy);
  assert.equal(px.kind, 'instance-proxy');
  assert.equal(f.ca.revocationsSince(px, 0).entries.length, 2);
});
