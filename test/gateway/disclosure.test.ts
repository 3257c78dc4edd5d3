/**
 * What a refused platform is told (lib/gateway/disclosure.ts): the pure decision, then the two places it is
 * spoken besides the status line: HTTP answers in http mode, and the gateway's stream limit.
 */
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { after, before, describe, it } from 'node:test';
import type tls from 'node:tls';
import { refusalStatus } from '../../lib/gateway/disclosure.js';
import { World } from '../helpers/world.js';
import {
  dialInner,
  echoServer,
  type Harness,
  httpServer,
  openStream,
  readAll,
  readGatewayStatus,
  startHarness,
  waitFor,
} from './harness.js';

const ORG = 'org-a';
const GW = 'gw-1';
const id = { orgId: ORG, gatewayId: GW };

describe('disclosure: what the platform is told', () => {
  const ctx = { target: { host: 'db.internal', port: 5432 } };

  it('stays silent for a certificate not proven ours', () => {
    for (const code of ['E_CERT_UNTRUSTED', 'E_CERT_SIGNATURE', 'E_CERT_MALFORMED', 'E_GRANT_MISSING'] as const) {
      assert.equal(refusalStatus(code, 'details', {}), undefined, code);
    }
  });

  it('names the allowlist key, never a resolved address', () => {
    const reason = 'address 10.0.0.5 (resolved from "db.internal") is not allowed; add 10.0.0.5/32 to allow_cidrs';
    const told = refusalStatus('E_TARGET_NOT_ALLOWED', reason, ctx);
    assert.ok(told && !told.ok);
    assert.equal(told.code, 'E_TARGET_NOT_ALLOWED');
    assert.match(told.message, /db\.internal:5432.*allow_cidrs/);
    assert.doesNotMatch(told.message, /10\.0\.0\.5/);
    const ports = refusalStatus('E_TARGET_NOT_ALLOWED', 'port 5432 is not allowed; add 5432 to allow_ports', ctx);
    assert.match(ports && !ports.ok ? ports.message : '', /\(set allow_ports there\)/);
  });

  it('hides where a named target points', () => {
    const named = { target: { name: 'pg' }, cause: 'ECONNREFUSED' };
    const told = refusalStatus('E_TARGET_UNREACHABLE', '10.0.0.7:5432: ECONNREFUSED', named);
    assert.deepEqual(told, {
      ok: false,
      code: 'E_TARGET_UNREACHABLE',
      message: 'the gateway could not reach target "pg" (ECONNREFUSED)',
    });
    const odd = refusalStatus('E_TARGET_UNREACHABLE', 'x', { ...named, cause: 'connect 10.0.0.7' });
    assert.doesNotMatch(odd && !odd.ok ? odd.message : '', /10\.0\.0\.7/, 'only a bare errno code is echoed');
  });

  it('tells an expired grant certificate as an expired grant', () => {
    const told = refusalStatus('E_CERT_EXPIRED', 'certificate 0 expired at …', ctx);
    assert.equal(told && !told.ok && told.code, 'E_GRANT_EXPIRED');
  });
});

describe('disclosure: http mode answers with HTTP, and the stream limit is told', () => {
  const world = new World();
  let echo: Awaited<ReturnType<typeof echoServer>>;
  let web: Awaited<ReturnType<typeof httpServer>>;
  let h: Harness;
  before(async () => {
    echo = await echoServer();
    web = await httpServer();
    h = await startHarness(world, { orgId: ORG, gatewayId: GW, ports: [echo.port, web.port], maxStreams: 1 });
  });
  after(async () => {
    await h.close();
    await echo.close();
    await web.close();
  });

  const client = (o: Partial<Parameters<World['platformInner']>[0]> = {}) =>
    world.platformInner({ ...id, target: { host: '127.0.0.1', port: web.port }, ...o });

  function get(socket: tls.TLSSocket): Promise<{ status: number; code: string | undefined; body: string }> {
    return new Promise((resolve, reject) => {
      const req = httpRequest({ createConnection: () => socket, path: '/', headers: { host: 'x' } }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => {
          body += d.toString();
        });
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, code: res.headers['x-infisical-error'] as string, body }),
        );
      });
      req.on('error', reject);
      req.end();
    });
  }

  it('a grant without http mode is answered 403 E_GRANT_TARGET; nothing reaches the target', async () => {
    const seen = web.seen.length;
    const socket = await dialInner(world, h.port, client({ modes: ['tcp'] }), 'http', id);
    const res = await get(socket);
    assert.equal(res.status, 403);
    assert.equal(res.code, 'E_GRANT_TARGET');
    assert.equal(JSON.parse(res.body).code, 'E_GRANT_TARGET');
    assert.equal(web.seen.length, seen);
    socket.destroy();
  });

  it('a target outside the allowlist is answered 403 E_TARGET_NOT_ALLOWED', async () => {
    const socket = await dialInner(world, h.port, client({ target: { host: '127.0.0.1', port: 1 } }), 'http', id);
    const res = await get(socket);
    assert.equal(res.status, 403);
    assert.equal(res.code, 'E_TARGET_NOT_ALLOWED');
    assert.match(JSON.parse(res.body).message, /allow_ports/);
    socket.destroy();
  });

  it('beyond max streams the platform is told E_LIMIT', async () => {
    const held = await openStream(
      world,
      h.port,
      client({ target: { host: '127.0.0.1', port: echo.port } }),
      'ping',
      id,
    );
    const socket = await dialInner(world, h.port, client(), 'ping', id);
    const status = await readGatewayStatus(socket);
    assert.ok(status !== 'closed' && !status.ok && status.code === 'E_LIMIT', JSON.stringify(status));
    await readAll(socket);
    held.destroy();
    await waitFor(() => h.registry.size === 0, 5000, 'the held stream to end');
    const next = await openStream(world, h.port, client(), 'ping', id);
    next.destroy();
  });
});
