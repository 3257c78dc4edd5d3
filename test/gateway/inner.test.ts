/**
 * The inner mTLS server over real sockets: every mode, and every refusal a gateway owes (SPEC §6). Each
 * refusal test checks the code the platform was told in the status line (or the silent close, for a
 * certificate not proven ours), the code the gateway recorded, and that no byte reached the target: removing
 * the check it names makes the test fail.
 */
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { after, before, describe, it } from 'node:test';
import type tls from 'node:tls';
import type { RelayStatus } from '../../lib/protocol/relay.js';
import { intermediateCa } from '../client/fixtures.js';
import { freePort } from '../helpers/openssh.js';
import { World } from '../helpers/world.js';
import {
  dialInner,
  echoServer,
  type Harness,
  HIDDEN_ADDRESS,
  HIDDEN_HOST,
  httpServer,
  openStream,
  readAll,
  readGatewayStatus,
  startHarness,
  waitFor,
} from './harness.js';

const ORG = 'org-a';
const GW = 'gw-1';
const world = new World();
let echo: Awaited<ReturnType<typeof echoServer>>;
let web: Awaited<ReturnType<typeof httpServer>>;
let h: Harness;
/** Allowed by the allowlist, nothing listening: the target is unreachable. */
let closedPort: number;

before(async () => {
  echo = await echoServer();
  web = await httpServer();
  closedPort = await freePort();
  h = await startHarness(world, {
    orgId: ORG,
    gatewayId: GW,
    ports: [echo.port, web.port, closedPort],
    targets: [`shut=127.0.0.1:${closedPort}`],
  });
});
after(async () => {
  await h.close();
  await echo.close();
  await web.close();
});

const id = { orgId: ORG, gatewayId: GW };
const client = (o: Parameters<World['platformInner']>[0] extends infer P ? Partial<P> : never = {}) =>
  world.platformInner({ orgId: ORG, gatewayId: GW, target: { host: '127.0.0.1', port: echo.port }, ...o });

async function exchange(socket: tls.TLSSocket, text: string): Promise<string> {
  const got = new Promise<string>((resolve) => {
    let data = '';
    socket.on('data', (d: Buffer) => {
      data += d.toString();
      if (data.length >= text.length) resolve(data);
    });
  });
  socket.write(text);
  return got;
}

type Told = { code?: string; message?: RegExp; hides?: string[] } | 'silent';

/**
 * Dials with `cred` and expects the gateway to refuse with `code` (its audit record): the platform is told
 * `told` in the status line (by default the same code), or nothing ('silent'). The target sees no connection.
 */
async function expectRefusal(cred: ReturnType<typeof client>, mode: string, code: string, told: Told = {}) {
  const before = h.refusals.length;
  const connections = echo.connections();
  const socket = await dialInner(world, h.port, cred, mode, id);
  socket.write('must not arrive');
  const status = await readGatewayStatus(socket);
  if (told === 'silent') {
    assert.equal(status, 'closed', 'a certificate not proven ours is told nothing');
  } else {
    assert.ok(status !== 'closed', 'the platform is told why');
    assert.equal(status.ok, false);
    const refused = status as Extract<RelayStatus, { ok: false }>;
    assert.equal(refused.code, told.code ?? code, refused.message);
    if (told.message) assert.match(refused.message, told.message);
    for (const secret of told.hides ?? []) assert.ok(!refused.message.includes(secret), `leaks ${secret}`);
  }
  const out = await readAll(socket);
  assert.equal(out.data, '', 'a refused stream carries no byte after the status line');
  await waitFor(() => h.refusals.length > before, 5000, 'refusal record');
  assert.equal(h.refusals.at(-1)?.code, code, h.refusals.at(-1)?.reason);
  assert.equal(echo.connections(), connections, 'the target saw no connection');
}

describe('inner server: modes', () => {
  it('tcp: pipes to the granted target and audits bytes each way', async () => {
    const cred = client();
    const socket = await openStream(world, h.port, cred, 'tcp', id);
    assert.equal(await exchange(socket, 'hello target'), 'hello target');
    socket.end();
    await waitFor(() => h.records.some((r) => r.grantId === cred.grant.grantId), 5000, 'stream record');
    const rec = h.records.find((r) => r.grantId === cred.grant.grantId)!;
    assert.equal(rec.outcome, 'ok');
    assert.equal(rec.actor, cred.grant.actor);
    assert.equal(rec.target, `127.0.0.1:${echo.port}`);
    assert.equal(rec.bytesIn, 12);
    assert.equal(rec.bytesOut, 12);
    assert.equal(rec.mode, 'tcp');
  });

  it('ping: status ok, then echoes, bounded', async () => {
    const socket = await openStream(
      world,
      h.port,
      client({ target: { host: '127.0.0.1', port: echo.port } }),
      'ping',
      id,
    );
    assert.equal(await exchange(socket, 'ping-1'), 'ping-1');
    socket.write(Buffer.alloc(70 * 1024, 1));
    const out = await readAll(socket);
    assert.ok(out.data.length <= 64 * 1024, 'never echoes more than the bound');
  });

  it('health: status ok, then one JSON document', async () => {
    const socket = await openStream(world, h.port, client(), 'health', id);
    const out = await readAll(socket);
    assert.deepEqual(JSON.parse(out.data), { ok: true, gatewayId: GW });
  });

  it('tcp: a client cert from an intermediate under the client CA, sent with its chain', async () => {
    // The leaf alone does not reach the anchor: admission falls back to the whole chain the platform sent.
    const inter = intermediateCa(world, world.org(ORG).gatewayClient, 'platform intermediate');
    const cred = client({ ca: inter });
    const socket = await openStream(world, h.port, { ...cred, certPem: cred.certPem + inter.pem }, 'tcp', id);
    assert.equal(await exchange(socket, 'via intermediate'), 'via intermediate');
    socket.destroy();
  });

  it('http: no status line; reverse proxies to the granted target with the Host rewritten', async () => {
    const cred = client({ target: { host: '127.0.0.1', port: web.port } });
    const socket = await dialInner(world, h.port, cred, 'http', id);
    const body = await new Promise<string>((resolve, reject) => {
      const req = httpRequest(
        { createConnection: () => socket, method: 'POST', path: '/hello?x=1', headers: { host: 'whatever' } },
        (res) => {
          let text = '';
          res.on('data', (d: Buffer) => {
            text += d.toString();
          });
          res.on('end', () => resolve(text));
        },
      );
      req.on('error', reject);
      req.end('payload');
    });
    assert.deepEqual(JSON.parse(body), {
      method: 'POST',
      url: '/hello?x=1',
      host: `127.0.0.1:${web.port}`,
      body: 'payload',
    });
    socket.destroy();
  });
});

describe('inner server: refusals', () => {
  it("refuses another org's client cert (its CA is not this org's)", async () => {
    const other = world.platformInner({
      orgId: 'org-b',
      gatewayId: GW,
      target: { host: '127.0.0.1', port: echo.port },
    });
    await expectRefusal(other, 'tcp', 'E_CERT_UNTRUSTED', 'silent');
  });

  it('refuses a cert from a CA nobody trusts, telling it nothing', async () => {
    await expectRefusal(client({ ca: world.stray.gatewayClient }), 'tcp', 'E_CERT_UNTRUSTED', 'silent');
  });

  it('refuses an expired grant (injected clock past notAfter, cert still inside its skew)', async () => {
    const cred = client({ lifetimeSec: 120 });
    const skip = cred.grant.notAfter * 1000 - world.nowMs() + 30_000;
    world.advance(skip);
    try {
      await expectRefusal(cred, 'tcp', 'E_GRANT_EXPIRED', { message: /expired/ });
    } finally {
      world.advance(-skip);
    }
  });

  it('tells an expired grant certificate (past the skew) as E_GRANT_EXPIRED', async () => {
    const cred = client({ lifetimeSec: 120 });
    const skip = cred.grant.notAfter * 1000 - world.nowMs() + 600_000;
    world.advance(skip);
    try {
      await expectRefusal(cred, 'ping', 'E_CERT_EXPIRED', { code: 'E_GRANT_EXPIRED' });
    } finally {
      world.advance(-skip);
    }
  });

  it('refuses a grant naming another gateway of the same org', async () => {
    await expectRefusal(client({ gatewayId: 'gw-2' }), 'tcp', 'E_GRANT_GATEWAY', { message: /gw-2/ });
  });

  it('refuses a mode the grant does not allow', async () => {
    await expectRefusal(client({ modes: ['ping'] }), 'tcp', 'E_GRANT_TARGET', { message: /mode tcp/ });
    await expectRefusal(client({ modes: ['tcp'] }), 'ping', 'E_GRANT_TARGET', { message: /mode ping/ });
  });

  it('refuses a stream without a known mode with a TLS alert', async () => {
    const before = h.refusals.length;
    await assert.rejects(dialInner(world, h.port, client(), 'nonsense', id), {
      code: 'ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL',
    });
    await waitFor(() => h.refusals.length > before, 5000, 'refusal record');
    assert.equal(h.refusals.at(-1)?.code, 'E_TARGET_NOT_ALLOWED');
  });

  it('refuses a target outside the allowlist, naming the key to change', async () => {
    await expectRefusal(client({ target: { host: '127.0.0.1', port: 1 } }), 'tcp', 'E_TARGET_NOT_ALLOWED', {
      message: /127\.0\.0\.1:1 .*allow_ports/,
    });
    assert.match(h.refusals.at(-1)?.reason ?? '', /allow_ports/);
    await expectRefusal(client({ target: { host: '10.1.2.3', port: echo.port } }), 'tcp', 'E_TARGET_NOT_ALLOWED', {
      message: /allow_cidrs/,
    });
    assert.match(h.refusals.at(-1)?.reason ?? '', /allow_cidrs/);
    await expectRefusal(client({ target: { name: 'nope' } }), 'tcp', 'E_TARGET_NOT_ALLOWED', {
      message: /target "nope".*targets/,
    });
  });

  it('tells the platform the name it asked for, never the address it resolved to', async () => {
    const cred = client({ target: { host: HIDDEN_HOST, port: echo.port } });
    await expectRefusal(cred, 'tcp', 'E_TARGET_NOT_ALLOWED', {
      message: new RegExp(`${HIDDEN_HOST}.*allow_cidrs`),
      hides: [HIDDEN_ADDRESS],
    });
    assert.match(h.refusals.at(-1)?.reason ?? '', new RegExp(HIDDEN_ADDRESS), 'the audit record keeps it');
  });

  it('refuses an unreachable target after trying it, with the socket error', async () => {
    const cred = client({ target: { host: '127.0.0.1', port: closedPort } });
    await expectRefusal(cred, 'tcp', 'E_TARGET_UNREACHABLE', { message: /127\.0\.0\.1:\d+ \(ECONNREFUSED\)/ });
    await waitFor(() => h.records.some((r) => r.grantId === cred.grant.grantId), 5000, 'stream record');
    assert.equal(h.records.find((r) => r.grantId === cred.grant.grantId)?.outcome, 'E_TARGET_UNREACHABLE');
  });

  it('names an unreachable named target by its name only', async () => {
    await expectRefusal(client({ target: { name: 'shut' } }), 'tcp', 'E_TARGET_UNREACHABLE', {
      message: /target "shut"/,
      hides: ['127.0.0.1', String(closedPort)],
    });
  });

  it('refuses a revoked grant', async () => {
    const cred = client();
    h.revoked.add({ kind: 'grant', subject: cred.grant.grantId, orgId: ORG });
    await expectRefusal(cred, 'tcp', 'E_CERT_REVOKED', { message: /revoked/ });
  });

  it('refuses a revoked identity and a revoked certificate serial', async () => {
    const cred = client({ identityId: 'mallory' });
    h.revoked.add({ kind: 'identity', subject: 'mallory', orgId: ORG });
    await expectRefusal(cred, 'tcp', 'E_SUBJECT_REVOKED', { message: /mallory/ });
    const cert = client();
    h.revoked.add({ kind: 'certificate', subject: cert.issued.serialHex });
    await expectRefusal(cert, 'tcp', 'E_CERT_REVOKED');
  });

  it('http: refuses an absolute-form request for another target (grant used for another target)', async () => {
    const cred = client({ target: { host: '127.0.0.1', port: web.port } });
    const socket = await dialInner(world, h.port, cred, 'http', id);
    const seen = web.seen.length;
    const res = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest(
        { createConnection: () => socket, path: `http://127.0.0.1:${echo.port}/`, headers: { host: 'x' } },
        (r) => {
          let text = '';
          r.on('data', (d: Buffer) => {
            text += d.toString();
          });
          r.on('end', () => resolve({ status: r.statusCode ?? 0, body: text }));
        },
      );
      req.on('error', reject);
      req.end();
    });
    assert.equal(res.status, 403);
    assert.equal(JSON.parse(res.body).code, 'E_GRANT_TARGET');
    assert.equal(web.seen.length, seen);
    socket.destroy();
  });
});

describe('inner server: stream lifetime', () => {
  it('ends a stream when its grant expires, mid-transfer', async () => {
    const cred = client({ lifetimeSec: 2 });
    const socket = await openStream(world, h.port, cred, 'tcp', id);
    assert.equal(await exchange(socket, 'before'), 'before');
    const out = readAll(socket);
    // keep data flowing until the gateway cuts the stream
    const pump = setInterval(() => socket.writable && socket.write('x'), 50);
    await out;
    clearInterval(pump);
    await waitFor(() => h.records.some((r) => r.grantId === cred.grant.grantId), 5000);
    const rec = h.records.find((r) => r.grantId === cred.grant.grantId)!;
    assert.equal(rec.outcome, 'E_GRANT_EXPIRED');
    assert.ok(rec.bytesIn > 6);
  });

  it('ends live streams when their grant, identity or this gateway is revoked', async () => {
    for (const kind of ['grant', 'identity', 'gateway'] as const) {
      const cred = client({ identityId: `bob-${kind}` });
      const socket = await openStream(world, h.port, cred, 'tcp', id);
      assert.equal(await exchange(socket, 'live'), 'live');
      const out = readAll(socket);
      const subject = kind === 'grant' ? cred.grant.grantId : kind === 'identity' ? `bob-${kind}` : GW;
      assert.equal(h.registry.revoke({ kind, subject, orgId: ORG }), 1);
      await out;
      const rec = h.records.find((r) => r.grantId === cred.grant.grantId)!;
      assert.equal(rec.outcome, kind === 'grant' ? 'E_CERT_REVOKED' : 'E_SUBJECT_REVOKED');
    }
  });

  it('refuses every stream once this gateway is revoked', async () => {
    h.revoked.add({ kind: 'gateway', subject: GW, orgId: ORG });
    await expectRefusal(client(), 'tcp', 'E_SUBJECT_REVOKED', { message: new RegExp(`gateway ${GW}`) });
  });
});
