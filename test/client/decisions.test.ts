/** The client's pure decisions: what the user typed, when to try the next proxy, which exit code. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { orderProxies } from '../../lib/client/connector.js';
import {
  ConnectError,
  exitCodeFor,
  refusedAfterRevocation,
  shouldTryNextProxy,
  staleGrant,
} from '../../lib/client/errors.js';
import { gatewayHttpRefusal } from '../../lib/client/forward.js';
import type { ProxyEndpoint } from '../../lib/client/grant.js';
import { parseAddress } from '../../lib/client/relay-io.js';
import { StatusReporter } from '../../lib/client/status.js';
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
  const p = (proxyId: string): ProxyEndpoint => ({
    proxyId,
    scope: 'instance',
    hostname: 'h',
    hostnames: ['h'],
    tlsAddress: 'h:1',
  });
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

test('a stream refusal drops the cached grant when it says expired (gateway) or revoked (gateway or proxy)', () => {
  type Code = ConstructorParameters<typeof ConnectError>[0];
  const stale = (code: Code, hop: 'ca' | 'proxy' | 'gateway' | 'local') =>
    staleGrant(new ConnectError(code, hop, 'x'))?.reason;
  // What the gateway sends for a revoked grant or certificate, a revoked identity or gateway (admission.ts,
  // and streams.ts for a live stream), and what a proxy sends for a revoked identity or certificate.
  assert.equal(stale('E_CERT_REVOKED', 'gateway'), 'revoked');
  assert.equal(stale('E_SUBJECT_REVOKED', 'gateway'), 'revoked');
  assert.equal(stale('E_CERT_REVOKED', 'proxy'), 'revoked');
  assert.equal(stale('E_SUBJECT_REVOKED', 'proxy'), 'revoked');
  assert.equal(stale('E_GRANT_EXPIRED', 'gateway'), 'expired');
  // The CA's answer to a NEW grant request says nothing about the grant held; a local failure neither.
  assert.equal(stale('E_SUBJECT_REVOKED', 'ca'), undefined);
  assert.equal(stale('E_CERT_REVOKED', 'ca'), undefined);
  assert.equal(stale('E_CERT_REVOKED', 'local'), undefined);
  assert.equal(stale('E_GRANT_EXPIRED', 'proxy'), undefined, 'only the gateway judges the grant by its clock');
  for (const code of [
    'E_TARGET_NOT_ALLOWED',
    'E_GRANT_TARGET',
    'E_TARGET_UNREACHABLE',
    'E_LIMIT',
    'E_STREAM_CLOSED',
    'E_CERT_UNTRUSTED',
    'E_CERT_EXPIRED',
    'E_ROUTE_FORBIDDEN',
    'E_GATEWAY_OFFLINE',
    'E_PROXY_UNREACHABLE',
    'E_TIMEOUT',
  ] as const) {
    assert.equal(stale(code, 'gateway'), undefined, `${code} at the gateway`);
    assert.equal(stale(code, 'proxy'), undefined, `${code} at a proxy`);
  }
});

test('a revocation counts when it is one attempt of a failover, and the refusal that said so is named', () => {
  const revoked = new ConnectError('E_CERT_REVOKED', 'proxy', 'identity or certificate revoked', { proxyId: 'p1' });
  const down = new ConnectError('E_PROXY_UNREACHABLE', 'proxy', 'refused', { proxyId: 'p2' });
  const all = new ConnectError('E_PROXY_UNREACHABLE', 'proxy', 'all 2 proxies failed', { attempts: [revoked, down] });
  assert.deepEqual(staleGrant(all), { reason: 'revoked', refusal: revoked });
  const none = new ConnectError('E_PROXY_UNREACHABLE', 'proxy', 'all 2 proxies failed', { attempts: [down, down] });
  assert.equal(staleGrant(none), undefined);
});

test('the CA refusing a new grant after a revocation: its code at hop ca, naming the revoked grant and why', () => {
  const gw = new ConnectError('E_CERT_REVOKED', 'gateway', 'this grant or its certificate has been revoked', {
    proxyId: 'p1',
    gatewayId: 'gw-1',
  });
  const policy = refusedAfterRevocation('g-1', gw, new ConnectError('E_POLICY_DENIED', 'ca', 'no rule allows it'));
  assert.equal(policy.code, 'E_POLICY_DENIED');
  assert.equal(policy.hop, 'ca');
  assert.equal(
    policy.detail,
    'grant g-1 was revoked (gateway said E_CERT_REVOKED) and the policy no longer allows this access: no rule allows it',
  );
  assert.equal(exitCodeFor(policy.code), 4);
  const identity = refusedAfterRevocation(
    'g-2',
    gw,
    new ConnectError('E_SUBJECT_REVOKED', 'ca', 'identity was revoked'),
  );
  assert.equal(identity.code, 'E_SUBJECT_REVOKED');
  assert.match(
    identity.detail,
    /^grant g-2 was revoked .* and the identity \(or the gateway\) is revoked: identity was revoked$/,
  );
  const down = refusedAfterRevocation('g-3', gw, new ConnectError('E_CA_UNREACHABLE', 'ca', 'ECONNREFUSED'));
  assert.equal(down.code, 'E_CA_UNREACHABLE');
  assert.match(down.describe(), /^failed at ca: E_CA_UNREACHABLE: grant g-3 was revoked .*: ECONNREFUSED$/);
});

test('a dropped grant is one line on stderr (a JSON event with --json), naming the grant and who refused it', () => {
  const error = new ConnectError('E_CERT_REVOKED', 'gateway', 'this grant or its certificate has been revoked', {
    proxyId: 'p1',
    gatewayId: 'gw-1',
  });
  const out: string[] = [];
  const err: string[] = [];
  const human = new StatusReporter({
    json: false,
    stdout: { write: (t) => out.push(t) },
    stderr: { write: (t) => err.push(t) },
  });
  human.progress({ step: 'grant-dropped', grantId: 'g-1', reason: 'revoked', error });
  assert.equal(out.length, 0, 'nothing on stdout without --json');
  assert.deepEqual(err, [
    'grant g-1 dropped (revoked): refused by gateway gw-1 (via proxy p1): E_CERT_REVOKED: this grant or its certificate has been revoked — asking the CA for a new grant\n',
  ]);
  const json = new StatusReporter({
    json: true,
    stdout: { write: (t) => out.push(t) },
    stderr: { write: (t) => err.push(t) },
  });
  json.progress({ step: 'grant-dropped', grantId: 'g-1', reason: 'revoked', error });
  const e = JSON.parse(out[0]!);
  assert.equal(e.event, 'grant-dropped');
  assert.deepEqual(
    [e.grantId, e.reason, e.code, e.hop, e.proxyId],
    ['g-1', 'revoked', 'E_CERT_REVOKED', 'gateway', 'p1'],
  );
});

test("http mode: the gateway's HTTP refusal is recognised by its status and x-infisical-error, nothing else is", () => {
  const answer = (status: string, headers: string) =>
    Buffer.from(`HTTP/1.1 ${status}\r\ncontent-type: application/json\r\n${headers}connection: close\r\n\r\n{}`);
  assert.equal(gatewayHttpRefusal(answer('403 Forbidden', 'x-infisical-error: E_CERT_REVOKED\r\n')), 'E_CERT_REVOKED');
  assert.equal(
    gatewayHttpRefusal(answer('403 Forbidden', 'X-Infisical-Error: E_SUBJECT_REVOKED\r\n')),
    'E_SUBJECT_REVOKED',
  );
  assert.equal(
    gatewayHttpRefusal(answer('403 Forbidden', 'x-infisical-error: E_GRANT_EXPIRED\r\n')),
    'E_GRANT_EXPIRED',
  );
  assert.equal(gatewayHttpRefusal(answer('200 OK', 'x-infisical-error: E_CERT_REVOKED\r\n')), undefined);
  assert.equal(gatewayHttpRefusal(answer('403 Forbidden', '')), undefined, "the target's own 403");
  assert.equal(gatewayHttpRefusal(answer('403 Forbidden', 'x-infisical-error: E_MADE_UP\r\n')), undefined);
  assert.equal(
    gatewayHttpRefusal(Buffer.from('HTTP/1.1 403 Forbidden\r\nx-infisical-error: E_CERT_REVOKED')),
    undefined,
  );
  assert.equal(gatewayHttpRefusal(Buffer.from('\r\nx-infisical-error: E_CERT_REVOKED\r\n\r\n')), undefined);
  // In the body, not the header block: not the gateway's.
  assert.equal(
    gatewayHttpRefusal(Buffer.from('HTTP/1.1 403 Forbidden\r\n\r\n\r\nx-infisical-error: E_CERT_REVOKED\r\n')),
    undefined,
  );
});
