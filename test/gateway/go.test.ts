/**
 * `tcp+go` and `ping+go` (lib/protocol/relay.ts step 5): the inner session held until the platform's GO byte,
 * over real sockets.
 *   - each is its plain mode for the grant: a grant without that mode is refused with it exactly as with the
 *     plain mode, for every pair of held variant and other grant mode;
 *   - a gateway offered [`<mode>+go`, `<mode>`] picks the held variant; before GO the target sees no connection
 *     (tcp) and nothing is echoed (ping); at GO the mode runs and the bytes after GO are its first bytes;
 *   - the grant is judged again at GO: revoked while held, it is refused then (E_CERT_REVOKED), no target dial,
 *     no stream recorded; so is its certificate (expired by the clock then, its serial revoked), and across a
 *     reload that changed the client CAs it is judged in full on the new ones (lib/pki/verify.ts verifyAgain);
 *   - a held session is counted held, not pending; GO, an end before GO and the timeout each release its slot;
 *   - a session ended before GO is no refusal, no target connection, no stream record;
 *   - a session held past the handshake timeout is refused E_TIMEOUT, no target connection;
 *   - a gateway with hold_inner_sessions off (InnerServer holdSessions false, or turned off by reload) offers
 *     the plain modes only: nothing is held, streams run as before.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type tls from 'node:tls';
import { pathCacheStats } from '../../lib/pki/path-cache.js';
import { GO_ALPNS, GO_MODES, type GoMode, MODE_ALPNS, type RelayStatus } from '../../lib/protocol/relay.js';
import { World } from '../helpers/world.js';
import { dialInner, echoServer, type Harness, readAll, readGatewayStatus, startHarness, waitFor } from './harness.js';

const ORG = 'org-a';
const GW = 'gw-1';
const world = new World();
let echo: Awaited<ReturnType<typeof echoServer>>;
let h: Harness;
let slow: Harness;
let plain: Harness;

before(async () => {
  echo = await echoServer();
  h = await startHarness(world, { orgId: ORG, gatewayId: GW, ports: [echo.port] });
  slow = await startHarness(world, {
    orgId: ORG,
    gatewayId: GW,
    ports: [echo.port],
    over: { handshakeTimeoutMs: 400 },
  });
  plain = await startHarness(world, { orgId: ORG, gatewayId: GW, ports: [echo.port], over: { holdSessions: false } });
});
after(async () => {
  await h.close();
  await slow.close();
  await plain.close();
  await echo.close();
});

const id = { orgId: ORG, gatewayId: GW };
const client = (o: Parameters<World['platformInner']>[0] extends infer P ? Partial<P> : never = {}) =>
  world.platformInner({ orgId: ORG, gatewayId: GW, target: { host: '127.0.0.1', port: echo.port }, ...o });
const GO = Buffer.from([0x01]);
const settle = () => new Promise((r) => setTimeout(r, 200));
/** Past every certificate's end in this world (the longest lives 30 days). */
const LATER_MS = 60 * 86400_000;

async function refusedWith(socket: tls.TLSSocket, code: string): Promise<void> {
  const status = await readGatewayStatus(socket);
  assert.ok(status !== 'closed', 'the platform is told why');
  assert.equal(status.ok, false);
  assert.equal((status as Extract<RelayStatus, { ok: false }>).code, code);
  assert.equal((await readAll(socket)).data, '', 'no byte after the refusal');
}

/** The first `n` bytes the stream sends back (after its status line). */
function firstBytes(socket: tls.TLSSocket, n: number): Promise<string> {
  return new Promise<string>((resolve) => {
    let data = '';
    socket.on('data', (d: Buffer) => {
      data += d.toString();
      if (data.length >= n) resolve(data);
    });
  });
}

/** Channels pending and sessions held at a harness now. */
const counts = (harness: Harness) => ({ pending: harness.inner.pendingChannels, held: harness.inner.heldSessions });

/** A grant for `mode`, its stream records at the harness so far. */
const recordsOf = (harness: Harness, grantId: string) => harness.records.filter((r) => r.grantId === grantId);

describe('inner server: <mode>+go', () => {
  it('does not widen a grant: every held variant is refused for a grant without its mode, as the plain mode is', async () => {
    for (const held of GO_MODES) {
      for (const other of MODE_ALPNS.filter((m) => m !== held)) {
        for (const alpn of [GO_ALPNS[held], held]) {
          const before = h.refusals.length;
          const connections = echo.connections();
          const cred = client({ modes: [other] });
          const socket = await dialInner(world, h.port, cred, alpn, id);
          socket.write(Buffer.concat([GO, Buffer.from('must not arrive')]));
          await refusedWith(socket, 'E_GRANT_TARGET');
          await waitFor(() => h.refusals.length > before, 5000, 'refusal record');
          const refusal = h.refusals.at(-1);
          assert.match(
            refusal?.reason ?? '',
            new RegExp(`mode ${held}`),
            `${alpn} is mode ${held} for a ${other} grant`,
          );
          assert.equal(refusal?.mode, held, `${alpn} refused and audited as mode ${held}`);
          assert.equal(echo.connections(), connections, 'the target saw no connection');
          assert.equal(recordsOf(h, cred.grant.grantId).length, 0, 'no stream recorded');
        }
      }
    }
  });

  it('tcp+go is picked before tcp, dials the target only at GO, then carries the first bytes', async () => {
    const cred = client();
    const connections = echo.connections();
    const socket = await dialInner(world, h.port, cred, [GO_ALPNS.tcp, 'tcp'], id);
    assert.equal(socket.alpnProtocol, GO_ALPNS.tcp);
    await settle();
    assert.equal(echo.connections(), connections, 'no target connection before GO');
    assert.deepEqual(counts(h), { pending: 0, held: 1 }, 'held: one held session, not pending');
    socket.write(Buffer.concat([GO, Buffer.from('hello')]));
    const status = await readGatewayStatus(socket);
    assert.deepEqual(status, { ok: true });
    assert.equal(await firstBytes(socket, 5), 'hello');
    assert.equal(echo.connections(), connections + 1);
    assert.deepEqual(counts(h), { pending: 0, held: 0 }, 'GO released the held slot');
    socket.end();
    await waitFor(() => recordsOf(h, cred.grant.grantId).length > 0, 5000, 'stream record');
    assert.equal(recordsOf(h, cred.grant.grantId)[0]?.mode, 'tcp', 'audited as mode tcp');
  });

  it('ping+go is picked before ping, answers nothing before GO, then echoes the probe sent with GO', async () => {
    const cred = client({ modes: ['ping'] });
    const connections = echo.connections();
    const socket = await dialInner(world, h.port, cred, [GO_ALPNS.ping, 'ping'], id);
    assert.equal(socket.alpnProtocol, GO_ALPNS.ping);
    let early = 0;
    const countEarly = (d: Buffer) => {
      early += d.length;
    };
    socket.on('data', countEarly);
    await settle();
    socket.off('data', countEarly);
    assert.equal(early, 0, 'no status line and no echo before GO');
    assert.deepEqual(counts(h), { pending: 0, held: 1 }, 'held: one held session, not pending');
    assert.equal(recordsOf(h, cred.grant.grantId).length, 0, 'no stream before GO');
    socket.write(Buffer.concat([GO, Buffer.from('probe')]));
    assert.deepEqual(await readGatewayStatus(socket), { ok: true });
    assert.equal(await firstBytes(socket, 5), 'probe', 'the probe sent with GO is echoed');
    assert.deepEqual(counts(h), { pending: 0, held: 0 }, 'GO released the held slot');
    assert.equal(echo.connections(), connections, 'ping mode dials no target');
    socket.end();
    await waitFor(() => recordsOf(h, cred.grant.grantId).length > 0, 5000, 'stream record');
    assert.equal(recordsOf(h, cred.grant.grantId)[0]?.mode, 'ping', 'audited as mode ping');
  });

  for (const held of GO_MODES) {
    const alpn = GO_ALPNS[held];
    const cred = () => client({ modes: [held] as GoMode[] });

    it(`${alpn}: judges the grant again at GO: revoked while held, refused then, nothing served`, async () => {
      const c = cred();
      const connections = echo.connections();
      const socket = await dialInner(world, h.port, c, alpn, id);
      await settle();
      const before = h.refusals.length;
      h.revoked.add({ kind: 'grant', subject: c.grant.grantId, orgId: ORG });
      socket.write(Buffer.concat([GO, Buffer.from('must not arrive')]));
      await refusedWith(socket, 'E_CERT_REVOKED');
      await waitFor(() => h.refusals.length > before, 5000, 'refusal record');
      assert.equal(h.refusals.at(-1)?.code, 'E_CERT_REVOKED');
      assert.equal(h.refusals.at(-1)?.mode, held);
      assert.equal(echo.connections(), connections, 'the target saw no connection');
      await settle();
      assert.equal(recordsOf(h, c.grant.grantId).length, 0, 'no stream recorded');
    });

    it(`${alpn}: judges the certificate again at GO: expired or its serial revoked while held, refused then`, async () => {
      const connections = echo.connections();
      const expiring = cred();
      const socket = await dialInner(world, h.port, expiring, alpn, id);
      await settle();
      // The clock passes the certificate's end (and its grant's) while the session is held. The platform is told
      // its grant expired (the inner certificate is the grant: disclosure.ts); the record keeps the certificate's.
      const before = h.refusals.length;
      world.advance(LATER_MS);
      try {
        socket.write(Buffer.concat([GO, Buffer.from('must not arrive')]));
        await refusedWith(socket, 'E_GRANT_EXPIRED');
      } finally {
        world.advance(-LATER_MS);
      }
      await waitFor(() => h.refusals.length > before, 5000, 'refusal record');
      assert.equal(h.refusals.at(-1)?.code, 'E_CERT_EXPIRED');
      const revoking = cred();
      const other = await dialInner(world, h.port, revoking, alpn, id);
      await settle();
      h.revoked.add({ kind: 'certificate', subject: revoking.issued.serialHex });
      other.write(Buffer.concat([GO, Buffer.from('must not arrive')]));
      await refusedWith(other, 'E_CERT_REVOKED');
      assert.equal(echo.connections(), connections, 'the target saw no connection');
      await settle();
      assert.equal(recordsOf(h, expiring.grant.grantId).length + recordsOf(h, revoking.grant.grantId).length, 0);
    });

    it(`${alpn}: held across a reload that changed the client CAs, judged in full on the new ones at GO`, async () => {
      const r = await startHarness(world, { orgId: ORG, gatewayId: GW, ports: [echo.port] });
      try {
        const connections = echo.connections();
        const socket = await dialInner(world, r.port, cred(), alpn, id);
        await settle();
        const server = world.gatewayInnerTls({ orgId: ORG, gatewayId: GW });
        // Another org's gateway client CA only: this org's inner client certificates chain to nothing now.
        const otherCa = world.org('org-other').gatewayClient.pem;
        r.inner.reload({ credentials: { key: server.keyPem, chain: server.certPem, clientCaPems: [otherCa] } });
        const before = r.refusals.length;
        socket.write(Buffer.concat([GO, Buffer.from('must not arrive')]));
        // A certificate not from this org's CAs is told nothing (disclosure.ts): the session just closes.
        assert.equal(await readGatewayStatus(socket), 'closed');
        await waitFor(() => r.refusals.length > before, 5000, 'refusal record');
        assert.equal(r.refusals.at(-1)?.code, 'E_CERT_UNTRUSTED');
        assert.equal(echo.connections(), connections, 'the target saw no connection');
      } finally {
        await r.close();
      }
    });

    it(`${alpn}: held across a reload that changed nothing of its credentials, judged again without a new verification`, async () => {
      const r = await startHarness(world, { orgId: ORG, gatewayId: GW, ports: [echo.port] });
      try {
        const socket = await dialInner(world, r.port, cred(), alpn, id);
        await settle();
        // Every SIGHUP passes the credentials again: the same ones keep the TLS context and its anchors, so the
        // held session is judged again on what was verified at its handshake (verifyAgain), not verified anew (a
        // new verification would look its chain up in the verifier's path cache: none is looked up here).
        r.inner.reload({ credentials: { ...r.credentials, clientCaPems: [...r.credentials.clientCaPems] } });
        const lookups = () => pathCacheStats().hits + pathCacheStats().misses;
        const before = lookups();
        socket.write(Buffer.concat([GO, Buffer.from(alpn === 'ping+go' ? 'p' : 'x')]));
        assert.deepEqual(await readGatewayStatus(socket), { ok: true });
        assert.equal(lookups(), before, 'no chain verified anew at GO');
        socket.destroy();
      } finally {
        await r.close();
      }
    });

    it(`${alpn}: a session ended before GO is no refusal, no target connection, no stream`, async () => {
      const before = h.refusals.length;
      const connections = echo.connections();
      const c = cred();
      const socket = await dialInner(world, h.port, c, alpn, id);
      await settle();
      assert.deepEqual(counts(h), { pending: 0, held: 1 });
      socket.end();
      await readAll(socket);
      await waitFor(() => h.inner.heldSessions === 0, 5000, 'the held session to go');
      assert.equal(h.inner.pendingChannels, 0);
      await settle();
      assert.equal(h.refusals.length, before, 'a platform that gave up is no refusal');
      assert.equal(echo.connections(), connections, 'the target saw no connection');
      assert.equal(recordsOf(h, c.grant.grantId).length, 0, 'nothing recorded');
    });

    it(`${alpn}: a session held past the handshake timeout is refused E_TIMEOUT, no target connection`, async () => {
      const before = slow.refusals.length;
      const connections = echo.connections();
      const socket = await dialInner(world, slow.port, cred(), alpn, id);
      await readAll(socket);
      await waitFor(() => slow.refusals.length > before, 5000, 'refusal record');
      assert.equal(slow.refusals.at(-1)?.code, 'E_TIMEOUT');
      await waitFor(() => slow.inner.heldSessions === 0, 5000, 'the held session to be released');
      assert.equal(slow.inner.pendingChannels, 0);
      assert.equal(echo.connections(), connections, 'the target saw no connection');
    });
  }
});

describe('inner server: hold_inner_sessions off', () => {
  it('offers the plain modes only: a platform offering [<mode>+go, <mode>] gets the plain mode, and it works', async () => {
    assert.equal(plain.inner.settings.holdSessions, false);
    for (const mode of GO_MODES) {
      const socket = await dialInner(world, plain.port, client({ modes: [mode] }), [GO_ALPNS[mode], mode], id);
      assert.equal(socket.alpnProtocol, mode, `${mode}: nothing held`);
      // No GO: the plain mode starts at once (tcp: the target dialled, its status line; ping: echoes).
      assert.deepEqual(await readGatewayStatus(socket), { ok: true });
      socket.write('plain');
      assert.equal(await firstBytes(socket, 5), 'plain');
      socket.destroy();
    }
  });

  it('a platform offering only a held variant (a session to hold ahead) finds no common mode, quietly', async () => {
    const before = plain.refusals.length;
    const connections = echo.connections();
    await assert.rejects(dialInner(world, plain.port, client(), GO_ALPNS.tcp, id));
    await waitFor(() => plain.inner.pendingChannels === 0, 5000, 'the channel to go');
    await settle();
    // Not a stream (the client dials its next stream in full, offering the plain mode too): nothing audited.
    assert.equal(plain.refusals.length, before, 'no refusal recorded');
    assert.equal(echo.connections(), connections, 'the target saw no connection');
  });

  it('a platform offering a plain mode it has no grant for beside a held variant is still refused and audited', async () => {
    const before = plain.refusals.length;
    await assert.rejects(dialInner(world, plain.port, client(), [GO_ALPNS.tcp, 'no-such-mode'], id));
    await waitFor(() => plain.refusals.length > before, 5000, 'refusal record');
    assert.equal(plain.refusals.at(-1)?.code, 'E_TARGET_NOT_ALLOWED');
  });

  it('is switched by reload, for new sessions', async () => {
    const offered = (hh: Harness) => dialInner(world, hh.port, client(), [GO_ALPNS.tcp, 'tcp'], id);
    plain.inner.reload({ holdSessions: true });
    const on = await offered(plain);
    assert.equal(on.alpnProtocol, GO_ALPNS.tcp, 'turned on: held again');
    on.destroy();
    plain.inner.reload({ holdSessions: false });
    const off = await offered(plain);
    assert.equal(off.alpnProtocol, 'tcp', 'turned off again: the plain mode');
    off.destroy();
  });
});
