/** The client's pure decisions: what the user typed, when to try the next proxy, which exit code. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { orderProxies } from '../../lib/client/connector.js';
import { parseAddress } from '../../lib/client/dial.js';
import { ConnectError, exitCodeFor, shouldTryNextProxy } from '../../lib/client/errors.js';
import type { ProxyEndpoint } from '../../lib/client/grant.js';
import { parseHttpTarget, parseListen, parseTcpTarget, showTarget } from '../../lib/client/target.js';

test('tcp targets: HOST:PORT, [v6]:PORT, name:NAME; everything else refused', () => {
  assert.deepEqual(parseTcpTarget('10.0.0.5:5432'), { ok: true, value: { host: '10.0.0.5', port: 5432 } });
  assert.deepEqual(parseTcpTarget('db.internal:5432'), { ok: true, value: { host: 'db.internal', port: 5432 } });
  assert.deepEqual(parseTcpTarget('[fd00::1]:22'), { ok: true, value: { host: 'fd00::1', port: 22 } });
  assert.deepEqual(parseTcpTarget('name:pg'), { ok: true, value: { name: 'pg' } });
  for (const bad of ['db', 'db:0', 'db:65536', 'db:x', 'name:', 'name:a/b', 'a b:1', ':5432', 'http://db:1']) {
    const v = parseTcpTarget(bad);
    assert.equal(v.ok, false, bad);
    assert.equal(!v.ok && v.code, 'E_CONFIG_INVALID');
  }
  assert.equal(showTarget({ host: 'fd00::1', port: 22 }), '[fd00::1]:22');
  assert.equal(showTarget({ name: 'pg' }), 'name:pg');
});

test('http targets: default ports, no credentials, http(s) only', () => {
  const a = parseHttpTarget('http://10.0.0.7:8080/x');
  assert.ok(a.ok && a.value.host === '10.0.0.7' && a.value.port === 8080);
  const b = parseHttpTarget('https://api.internal');
  assert.ok(b.ok && b.value.port === 443);
  const c = parseHttpTarget('http://[fd00::2]/');
  assert.ok(c.ok && c.value.host === 'fd00::2' && c.value.port === 80);
  for (const bad of ['ftp://x', 'http://u:p@x', 'not a url', 'x:80']) assert.equal(parseHttpTarget(bad).ok, false, bad);
});

test('listen addresses: bare port binds loopback', () => {
  assert.deepEqual(parseListen('15432'), { ok: true, value: { host: '127.0.0.1', port: 15432 } });
  assert.deepEqual(parseListen('0.0.0.0:80'), { ok: true, value: { host: '0.0.0.0', port: 80 } });
  assert.deepEqual(parseListen('[::1]:0'), { ok: true, value: { host: '::1', port: 0 } });
  for (const bad of ['', 'x', '1:2:3', '70000', 'h:70000']) assert.equal(parseListen(bad).ok, false, bad);
  assert.equal(parseAddress('proxy.example:443')?.port, 443);
  assert.equal(parseAddress('proxy.example'), null);
});

test('failover only for failures that belong to one proxy', () => {
  const at = (code: ConstructorParameters<typeof ConnectError>[0], hop: 'ca' | 'proxy' | 'gateway') =>
    shouldTryNextProxy(new ConnectError(code, hop, 'x'));
  assert.equal(at('E_PROXY_UNREACHABLE', 'proxy'), true);
  assert.equal(at('E_GATEWAY_OFFLINE', 'proxy'), true);
  assert.equal(at('E_TIMEOUT', 'proxy'), true);
  assert.equal(at('E_CERT_UNTRUSTED', 'proxy'), true, 'an impostor proxy is skipped');
  assert.equal(at('E_ROUTE_FORBIDDEN', 'proxy'), false);
  assert.equal(at('E_POLICY_DENIED', 'ca'), false);
  assert.equal(at('E_CERT_IDENTITY', 'gateway'), false, 'a wrong gateway behind every proxy is still wrong');
  assert.equal(at('E_TARGET_NOT_ALLOWED', 'gateway'), false);
  assert.equal(at('E_LIMIT', 'proxy'), true, "one proxy's stream limit");
  assert.equal(at('E_LIMIT', 'gateway'), false, "the gateway's own limit is the same behind every proxy");
});

test('errors name the gateway that refused, and the proxy they came through', () => {
  const e = new ConnectError('E_TARGET_NOT_ALLOWED', 'gateway', "127.0.0.1:9 is not in the gateway's allowlist", {
    proxyId: 'p1',
    gatewayId: 'gw-1',
  });
  assert.equal(
    e.describe(),
    "refused by gateway gw-1 (via proxy p1): E_TARGET_NOT_ALLOWED: 127.0.0.1:9 is not in the gateway's allowlist",
  );
  assert.equal(
    new ConnectError('E_ROUTE_FORBIDDEN', 'proxy', 'no', { proxyId: 'p1' }).describe(),
    'refused by proxy p1: E_ROUTE_FORBIDDEN: no',
  );
});

test('exit codes group error codes by who must act', () => {
  assert.equal(exitCodeFor('E_AUTH_INVALID'), 3);
  assert.equal(exitCodeFor('E_POLICY_DENIED'), 4);
  assert.equal(exitCodeFor('E_ROUTE_FORBIDDEN'), 5);
  assert.equal(exitCodeFor('E_GATEWAY_OFFLINE'), 6);
  assert.equal(exitCodeFor('E_GRANT_EXPIRED'), 7);
  assert.equal(exitCodeFor('E_TARGET_UNREACHABLE'), 8);
  assert.equal(exitCodeFor('E_CERT_IDENTITY'), 9);
  assert.equal(exitCodeFor('E_TIMEOUT'), 10);
  assert.equal(exitCodeFor('E_CONFIG_INVALID'), 2);
  assert.equal(exitCodeFor('E_CA_UNREACHABLE'), 11);
  assert.equal(exitCodeFor(undefined), 1);
});

test('the proxy that worked last is tried first; the CA order otherwise', () => {
  const p = (proxyId: string): ProxyEndpoint => ({ proxyId, scope: 'instance', hostname: 'h', tlsAddress: 'h:1' });
  const list = [p('a'), p('b'), p('c')];
  assert.deepEqual(
    orderProxies(list, 'b').map((x) => x.proxyId),
    ['b', 'a', 'c'],
  );
  assert.deepEqual(
    orderProxies(list, undefined).map((x) => x.proxyId),
    ['a', 'b', 'c'],
  );
  assert.deepEqual(
    orderProxies(list, 'gone').map((x) => x.proxyId),
    ['a', 'b', 'c'],
  );
});
