import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import * as der from '../../lib/pki/der.js';
import {
  type AccessGrant,
  checkGrant,
  decodeGrant,
  decodeRoute,
  encodeGrant,
  encodeRoute,
  GRANT_EXTENSION_OID,
  type GrantContext,
} from '../../lib/pki/grant.js';
import { identityUri } from '../../lib/pki/identity.js';

const now = new Date('2030-01-01T00:00:00Z');
const nowSec = now.getTime() / 1000;

function grant(overrides: Partial<AccessGrant> = {}): AccessGrant {
  return {
    version: 1,
    grantId: 'g-123',
    orgId: 'acme',
    gatewayId: 'gw-1',
    actor: identityUri('td.example', 'acme', 'alice'),
    target: { host: 'db.internal', port: 5432 },
    notAfter: nowSec + 300,
    ...overrides,
  };
}

const ctx = (over: Partial<GrantContext> = {}): GrantContext => ({
  orgId: 'acme',
  gatewayId: 'gw-1',
  target: { host: 'db.internal', port: 5432 },
  mode: 'tcp',
  now,
  ...over,
});

function roundTrip(g: AccessGrant): AccessGrant {
  const enc = encodeGrant(g);
  assert.ok(enc.ok, !enc.ok ? enc.reason : '');
  const dec = decodeGrant(enc.value);
  assert.ok(dec.ok, !dec.ok ? dec.reason : '');
  return dec.value;
}

test('grant round-trips through DER (host:port, name, modes)', () => {
  for (const g of [
    grant(),
    grant({ target: { name: 'prod-db' } }),
    grant({ modes: ['http', 'ping'] }),
    grant({ target: { host: '10.1.2.3', port: 1 } }),
    grant({ target: { host: '::1', port: 65535 }, modes: ['tcp', 'http', 'ping', 'health'] }),
  ]) {
    assert.deepEqual(roundTrip(g), g);
  }
});

test('OID is a 2.25 UUID arc and survives our BigInt OID codec; openssl reads the DER', () => {
  assert.match(GRANT_EXTENSION_OID, /^2\.25\.[0-9]{30,39}\.1$/);
  assert.equal(der.decodeOid(der.encodeOid(GRANT_EXTENSION_OID)), GRANT_EXTENSION_OID);
  const enc = encodeGrant(grant({ modes: ['tcp'] }));
  assert.ok(enc.ok);
  const text = execFileSync('openssl', ['asn1parse', '-inform', 'DER'], { input: enc.value }).toString();
  assert.match(text, /UTF8STRING\s+:g-123/);
  assert.match(text, /ENUMERATED/);
});

test('encode refuses invalid grants', () => {
  const bad: Partial<AccessGrant>[] = [
    { grantId: 'bad id' },
    { orgId: '' },
    { actor: 'spiffe://td.example/org/other/identity/alice' },
    { actor: 'spiffe://td.example/org/acme/gateway/gw-1' },
    { target: { host: 'bad host', port: 1 } },
    { target: { host: 'a.b', port: 0 } },
    { target: { host: 'a.b', port: 70000 } },
    { target: { name: '' } },
    { modes: [] },
    { modes: ['tcp', 'tcp'] },
    { modes: ['ssh' as never] },
    { notAfter: -1 },
    { version: 2 as never },
  ];
  for (const over of bad) {
    const v = encodeGrant(grant(over));
    assert.ok(!v.ok && v.code === 'E_GRANT_MALFORMED', JSON.stringify(over));
  }
});

test('decode is strict: truncation, trailing bytes, non-canonical DER, wrong shapes, oversize', () => {
  const enc = encodeGrant(grant());
  assert.ok(enc.ok);
  const good = enc.value;
  const cases: Buffer[] = [
    good.subarray(0, good.length - 1),
    Buffer.concat([good, Buffer.from([0])]),
    // long-form length where short form fits: BER, not DER
    Buffer.concat([Buffer.from([0x30, 0x81, good[1]!]), good.subarray(2)]),
    der.encode(der.seq(der.uint(1))),
    der.encode(der.seq(der.uint(2), ...Array.from({ length: 6 }, () => der.uint(1)))),
    Buffer.alloc(5000, 0x30),
    Buffer.alloc(0),
  ];
  for (const b of cases) {
    const v = decodeGrant(b);
    assert.ok(!v.ok && v.code === 'E_GRANT_MALFORMED', b.toString('hex').slice(0, 40));
  }
});

test('route round-trips and refuses garbage', () => {
  const enc = encodeRoute({ version: 1, orgId: 'acme', gatewayId: 'gw-1' });
  assert.ok(enc.ok);
  assert.deepEqual(decodeRoute(enc.value), { ok: true, value: { version: 1, orgId: 'acme', gatewayId: 'gw-1' } });
  assert.equal(decodeRoute(Buffer.from('3000', 'hex')).ok, false);
  assert.equal(encodeRoute({ version: 1, orgId: 'a/b', gatewayId: 'g' }).ok, false);
});

test('checkGrant accepts the matching context', () => {
  assert.ok(checkGrant(grant(), ctx()).ok);
  assert.ok(checkGrant(grant({ target: { host: 'DB.internal', port: 5432 } }), ctx()).ok);
  assert.ok(checkGrant(grant({ notAfter: nowSec }), ctx()).ok, 'usable through notAfter itself');
  assert.ok(checkGrant(grant({ modes: ['http'] }), ctx({ mode: 'http' })).ok);
});

test('checkGrant refuses with a specific code', () => {
  const expect = (g: AccessGrant, c: GrantContext, code: string) => {
    const v = checkGrant(g, c);
    assert.ok(!v.ok, code);
    assert.equal(v.code, code);
  };
  expect(grant(), ctx({ orgId: 'other' }), 'E_GRANT_ORG');
  expect(grant(), ctx({ gatewayId: 'gw-2' }), 'E_GRANT_GATEWAY');
  expect(grant({ notAfter: nowSec - 1 }), ctx(), 'E_GRANT_EXPIRED');
  expect(grant(), ctx({ now: new Date(now.getTime() + 301_000) }), 'E_GRANT_EXPIRED');
  expect(grant(), ctx({ target: { host: 'db.internal', port: 5433 } }), 'E_GRANT_TARGET');
  expect(grant(), ctx({ target: { host: 'db2.internal', port: 5432 } }), 'E_GRANT_TARGET');
  expect(grant(), ctx({ target: { name: 'db.internal' } }), 'E_GRANT_TARGET');
  expect(grant({ target: { name: 'prod' } }), ctx({ target: { name: 'dev' } }), 'E_GRANT_TARGET');
  expect(grant({ modes: ['ping'] }), ctx({ mode: 'tcp' }), 'E_GRANT_TARGET');
  expect(grant({ grantId: '' }), ctx(), 'E_GRANT_MALFORMED');
});
