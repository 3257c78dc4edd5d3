import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type AccessRequest, decideAccess, type PolicyRule, validateRule } from '../../lib/ca/policy.js';

const rule = (over: Partial<PolicyRule> = {}): PolicyRule => ({
  id: 'r1',
  orgId: 'acme',
  subject: 'identity:alice',
  gateways: ['gw1'],
  targets: ['db.internal:5432'],
  modes: ['tcp'],
  ...over,
});
const req = (over: Partial<AccessRequest> = {}): AccessRequest => ({
  orgId: 'acme',
  identityId: 'alice',
  groups: [],
  gatewayId: 'gw1',
  target: { host: 'db.internal', port: 5432 },
  mode: 'tcp',
  ...over,
});

test('a matching rule allows the request', () => {
  const v = decideAccess([rule()], req());
  assert.ok(v.ok);
  assert.equal(v.value.id, 'r1');
});

test('deny by default: no rules', () => {
  const v = decideAccess([], req());
  assert.equal(v.ok, false);
  assert.equal(!v.ok && v.code, 'E_POLICY_DENIED');
});

test('each field of the rule is enforced', () => {
  const cases: [string, Partial<AccessRequest>][] = [
    ['other org', { orgId: 'globex' }],
    ['other identity', { identityId: 'mallory' }],
    ['other gateway', { gatewayId: 'gw2' }],
    ['other mode', { mode: 'http' }],
    ['other port', { target: { host: 'db.internal', port: 5433 } }],
    ['other host', { target: { host: 'db.internal.evil', port: 5432 } }],
    ['named target', { target: { name: 'db' } }],
  ];
  for (const [why, over] of cases) {
    const v = decideAccess([rule()], req(over));
    assert.equal(v.ok, false, why);
    assert.equal(!v.ok && v.code, 'E_POLICY_DENIED', why);
  }
});

test('groups, wildcards, CIDRs, port ranges and named targets', () => {
  const rules = [
    rule({ id: 'grp', subject: 'group:dba', gateways: ['*'], targets: ['10.0.0.0/8:5432-5440'] }),
    rule({ id: 'web', subject: 'identity:bob', targets: ['*.svc.local:*'], modes: ['http'] }),
    rule({ id: 'named', subject: 'identity:carol', targets: ['name:billing-db'] }),
  ];
  const grp = decideAccess(
    rules,
    req({ identityId: 'x', groups: ['dba'], gatewayId: 'gw9', target: { host: '10.2.3.4', port: 5440 } }),
  );
  assert.ok(grp.ok && grp.value.id === 'grp');
  assert.equal(
    decideAccess(rules, req({ identityId: 'x', groups: ['dba'], target: { host: '11.2.3.4', port: 5432 } })).ok,
    false,
  );
  assert.equal(
    decideAccess(rules, req({ identityId: 'x', groups: ['dba'], target: { host: 'ten.example', port: 5432 } })).ok,
    false,
  );
  const web = decideAccess(
    rules,
    req({ identityId: 'bob', mode: 'http', target: { host: 'API.svc.local', port: 8080 } }),
  );
  assert.ok(web.ok && web.value.id === 'web');
  assert.equal(
    decideAccess(rules, req({ identityId: 'bob', mode: 'http', target: { host: 'svc.local', port: 80 } })).ok,
    false,
  );
  const named = decideAccess(rules, req({ identityId: 'carol', target: { name: 'billing-db' } }));
  assert.ok(named.ok && named.value.id === 'named');
});

test('validateRule refuses malformed rules with the bad part named', () => {
  const bad: Partial<PolicyRule>[] = [
    { subject: 'alice' },
    { gateways: [] },
    { gateways: ['gw 1'] },
    { targets: [] },
    { targets: ['db.internal'] },
    { targets: ['db.internal:70000'] },
    { targets: ['10.0.0.0/33:22'] },
    { targets: ['bad_host!:22'] },
    { modes: [] },
    { modes: ['ftp' as never] },
  ];
  for (const over of bad) {
    const v = validateRule(rule(over));
    assert.equal(v.ok, false, JSON.stringify(over));
    assert.equal(!v.ok && v.code, 'E_REQUEST_INVALID');
  }
  assert.ok(validateRule(rule({ targets: ['[::1]:22', '*:443', 'name:x'] })).ok);
});

test('IPv4 targets meet IPv4 patterns only, whatever their notation (issue 14)', () => {
  const v4Forms = ['127.0.0.1', '::ffff:127.0.0.1', '::ffff:7f00:1', '::127.0.0.1'];
  const decide = (pattern: string, host: string) =>
    decideAccess([rule({ targets: [`${pattern}:5432`] })], req({ target: { host, port: 5432 } }));
  const table: [string, string, boolean][] = [
    ...v4Forms.flatMap((h): [string, string, boolean][] => [
      ['[::/0]', h, false],
      ['[::ffff:0:0/96]', h, false],
      ['[::/96]', h, false],
      ['127.0.0.0/8', h, true],
      ['[::ffff:127.0.0.0/104]', h, true],
      ['127.0.0.1', h, true],
      ['[::ffff:127.0.0.1]', h, true],
    ]),
    ['[::ffff:10.0.0.0/104]', '10.200.0.1', true],
    ['[::ffff:10.0.0.0/104]', '11.0.0.1', false],
    ['[::/0]', '2001:db8::1', true],
    ['[fd00::/8]', 'fd12::7', true],
    ['[fd00::/8]', 'fe80::1', false],
    ['[::1]', '::1', true],
    ['[::1]', '0:0::1', true],
    ['0.0.0.0/0', '2001:db8::1', false],
  ];
  for (const [pattern, host, allowed] of table) {
    const v = decide(pattern, host);
    assert.equal(v.ok, allowed, `${pattern} vs ${host}`);
    if (!v.ok) assert.equal(v.code, 'E_POLICY_DENIED', `${pattern} vs ${host}`);
  }
});

test('a zoned target is refused even by a rule for every host, saying why', () => {
  for (const pattern of ['*', '[::/0]', '[fe80::/10]']) {
    const v = decideAccess(
      [rule({ targets: [`${pattern}:*`] })],
      req({ target: { host: 'fe80::1%eth0', port: 5432 } }),
    );
    assert.equal(v.ok, false, pattern);
    assert.equal(!v.ok && v.code, 'E_POLICY_DENIED');
    assert.match(!v.ok ? v.reason : '', /carries a zone/);
  }
  assert.equal(validateRule(rule({ targets: ['[fe80::%eth0/64]:22'] })).ok, false);
});
