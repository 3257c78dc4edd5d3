import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GatewayError } from '../../lib/errors/codes.js';
import {
  formatIdentity,
  gatewayUri,
  identityUri,
  instanceProxyUri,
  isValidId,
  orgProxyUri,
  parseIdentity,
  parseIdentityOfKind,
} from '../../lib/pki/identity.js';

test('builds the four SPEC §3 URI shapes', () => {
  assert.equal(gatewayUri('example.org', 'acme', 'gw-1'), 'spiffe://example.org/org/acme/gateway/gw-1');
  assert.equal(orgProxyUri('example.org', 'acme', 'p.1'), 'spiffe://example.org/org/acme/proxy/p.1');
  assert.equal(instanceProxyUri('example.org', 'eu_1'), 'spiffe://example.org/instance/proxy/eu_1');
  assert.equal(identityUri('example.org', 'acme', 'alice'), 'spiffe://example.org/org/acme/identity/alice');
});

test('parse round-trips every kind', () => {
  for (const uri of [
    gatewayUri('td', 'o', 'g'),
    orgProxyUri('td', 'o', 'p'),
    instanceProxyUri('td', 'p'),
    identityUri('td', 'o', 'i'),
  ]) {
    const v = parseIdentity(uri);
    assert.ok(v.ok, uri);
    const back = formatIdentity(v.value);
    assert.ok(back.ok);
    assert.equal(back.value, uri);
  }
  const g = parseIdentity('spiffe://td.example/org/acme/gateway/gw-1');
  assert.deepEqual(g, { ok: true, value: { kind: 'gateway', trustDomain: 'td.example', orgId: 'acme', id: 'gw-1' } });
});

test('parse refuses anything but the canonical spelling', () => {
  const bad = [
    'https://td/org/o/gateway/g',
    'spiffe://td/org/o/gateway/g/',
    'spiffe://td/org/o/gateway/g/extra',
    'spiffe://td/org/o/gateway',
    'spiffe://td/org/o/router/g',
    'spiffe://td/instance/gateway/g',
    'spiffe://TD/org/o/gateway/g',
    'spiffe://td:443/org/o/gateway/g',
    'spiffe://user@td/org/o/gateway/g',
    'spiffe://td/org/o/gateway/g?x=1',
    'spiffe://td/org/o/gateway/g#f',
    'spiffe://td/org/o%2F/gateway/g',
    'spiffe://td/org/../gateway/g',
    'spiffe://td/org/./gateway/g',
    'spiffe://td//org/o/gateway/g',
    'spiffe:///org/o/gateway/g',
    'spiffe://td..x/org/o/gateway/g',
    `spiffe://td/org/o/gateway/${'a'.repeat(129)}`,
    'spiffe://td/org/o/gateway/g\u0000',
    'spiffe://td/org/ö/gateway/g',
    '',
  ];
  for (const uri of bad) {
    const v = parseIdentity(uri);
    assert.equal(v.ok, false, uri);
    assert.ok(!v.ok && v.code === 'E_IDENTITY_MALFORMED', uri);
  }
  assert.equal(parseIdentity(42).ok, false);
  assert.equal(parseIdentity(`spiffe://${'a'.repeat(700)}/instance/proxy/p`).ok, false);
});

test('ids: charset and length bounds', () => {
  assert.ok(isValidId('A-z_0.9'));
  assert.ok(isValidId('a'.repeat(128)));
  assert.equal(isValidId('a'.repeat(129)), false);
  assert.equal(isValidId(''), false);
  assert.equal(isValidId('a/b'), false);
  assert.equal(isValidId('a b'), false);
  assert.equal(isValidId('..'), false);
  assert.throws(() => gatewayUri('td', 'o', 'bad/id'), GatewayError);
  assert.throws(() => gatewayUri('Td', 'o', 'g'), GatewayError);
});

test('parseIdentityOfKind refuses another kind with E_CERT_IDENTITY', () => {
  assert.ok(parseIdentityOfKind(gatewayUri('td', 'o', 'g'), 'gateway').ok);
  const v = parseIdentityOfKind(identityUri('td', 'o', 'g'), 'gateway');
  assert.ok(!v.ok && v.code === 'E_CERT_IDENTITY');
});
