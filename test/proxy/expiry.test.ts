/**
 * Outer certificate expiry at the edge (issue 11 item 5). The rule: an outer client cert is accepted iff
 * now <= notAfter + skew (ProxyLimits.certSkewMs, config `cert_skew`, default 5 s), at the handshake AND right
 * before the success line; a refusal never carries `{"ok":true}`; a live stream is cut at notAfter + skew.
 * Each World here has a fixed clock on a whole second, so notAfter lands exactly where a test puts it.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeStatus } from '../../lib/protocol/relay.js';
import { DEFAULT_CERT_SKEW_MS, outerCertLive } from '../../lib/proxy/admission.js';
import { proxyConfigSchema } from '../../lib/proxy/config.js';
import { DEFAULT_LIMITS, type ProxyLimits, type ProxyServer } from '../../lib/proxy/proxy.js';
import { loadConfig } from '../../lib/runtime/config.js';
import { World } from '../helpers/world.js';
import {
  closed,
  connectGateway,
  dialAll,
  dialProxy,
  eventually,
  type GatewaySpec,
  roundTrip,
  startProxy,
} from './harness.js';

const OK_LINE = '{"ok":true}';

function fixedWorld(): { world: World; t0: number } {
  const t0 = Math.floor(Date.now() / 1000) * 1000;
  return { world: new World({ at: new Date(t0) }), t0 };
}

/** An outer cert for org-a/gw-1 whose notAfter is t0 + offsetMs (a whole number of seconds). */
function outerEndingAt(world: World, t0: number, offsetMs: number) {
  return world.platformOuter({
    orgId: 'org-a',
    gatewayId: 'gw-1',
    scope: 'instance',
    at: new Date(t0 + offsetMs - 10_000),
    lifetimeSec: 10,
  });
}

async function withProxy(
  world: World,
  o: { limits?: Partial<ProxyLimits>; gateway?: Partial<GatewaySpec>; closedReasons?: string[] },
  body: (proxy: ProxyServer) => Promise<void>,
): Promise<void> {
  const reasons = o.closedReasons;
  const proxy = await startProxy(world, {
    scope: 'instance',
    ...(o.limits ? { limits: o.limits } : {}),
    ...(reasons
      ? {
          log: {
            info: (f: { event?: string; reason?: string }) => {
              if (f.event === 'stream.closed') reasons.push(f.reason ?? '');
            },
            warn: () => {},
          },
        }
      : {}),
  });
  try {
    const gw = await connectGateway(world, proxy, {
      orgId: 'org-a',
      gatewayId: 'gw-1',
      scope: 'instance',
      ...o.gateway,
    });
    await body(proxy);
    gw.close();
  } finally {
    await proxy.stop();
  }
}

/** Every byte the client got is exactly one refusal line with `code`; not one byte of a success line. */
function assertRefusedOnly(bytes: Buffer, code: string): void {
  assert.ok(!bytes.toString('latin1').includes(OK_LINE), `client received a success line: ${bytes}`);
  const decoded = decodeStatus(bytes);
  assert.ok(decoded, `no status line in ${JSON.stringify(bytes.toString('latin1'))}`);
  assert.equal(decoded.status.ok ? 'ok' : decoded.status.code, code);
  assert.equal(decoded.rest.length, 0, 'nothing after the refusal line');
}

describe('outer certificate expiry: the rule', () => {
  it('accepted iff now <= notAfter + skew, to the millisecond', () => {
    const notAfterMs = Date.UTC(2030, 0, 1);
    const at = (ms: number, skew: number) => outerCertLive({ notAfterMs }, notAfterMs + ms, skew);
    const code = (v: ReturnType<typeof at>) => (v.ok ? 'ok' : v.code);
    assert.equal(code(at(5000, 5000)), 'ok');
    assert.equal(code(at(5001, 5000)), 'E_CERT_EXPIRED');
    assert.equal(code(at(0, 0)), 'ok');
    assert.equal(code(at(1, 0)), 'E_CERT_EXPIRED');
    const live = at(-1000, 5000);
    assert.deepEqual(live.ok && live.value, { endsAtMs: notAfterMs + 5000 });
  });

  it('defaults to a skew of at most 5 s, from the config key cert_skew (0 makes it exact)', () => {
    assert.ok(DEFAULT_CERT_SKEW_MS <= 5000);
    assert.equal(DEFAULT_LIMITS.certSkewMs, DEFAULT_CERT_SKEW_MS);
    const load = (args: string[]) =>
      loadConfig(proxyConfigSchema, {
        flags: args.length === 0 ? {} : { [args[0]!.slice(2)]: args[1] },
        env: {},
        readFile: () => undefined,
      }).config;
    assert.equal(load([]).cert_skew, DEFAULT_CERT_SKEW_MS);
    assert.equal(load(['--cert-skew', '0s']).cert_skew, 0);
    assert.equal(load(['--cert-skew', '2s']).cert_skew, 2000);
    assert.throws(() => load(['--cert-skew', '5m']), /cert_skew/);
  });
});

describe('outer certificate expiry at the relay', () => {
  it('accepts a certificate 3 s past notAfter with the default 5 s skew, and carries its bytes', async () => {
    const { world, t0 } = fixedWorld();
    await withProxy(world, {}, async (proxy) => {
      const { status, socket } = await dialProxy(world, proxy, outerEndingAt(world, t0, -3000));
      assert.deepEqual(status, { ok: true });
      const data = Buffer.from('still inside the skew');
      assert.ok((await roundTrip(socket, data)).equals(data));
      socket.destroy();
      await eventually(() => proxy.stats().streams === 0);
    });
  });

  it('refuses a certificate 6 s past notAfter with E_CERT_EXPIRED and not one success byte', async () => {
    const { world, t0 } = fixedWorld();
    let channels = 0;
    const gateway: Partial<GatewaySpec> = {
      onStream: (ch) => {
        channels++;
        ch.destroy();
      },
    };
    await withProxy(world, { gateway }, async (proxy) => {
      const bytes = await dialAll(world, proxy, outerEndingAt(world, t0, -6000));
      assertRefusedOnly(bytes, 'E_CERT_EXPIRED');
      assert.equal(channels, 0, 'refused at the handshake: the gateway never saw a channel');
      assert.equal(proxy.refusals().get('tls:E_CERT_EXPIRED'), 1);
      assert.equal(proxy.stats().streams, 0);
    });
  });

  it('honours a skew of 0: exact expiry', async () => {
    const { world, t0 } = fixedWorld();
    await withProxy(world, { limits: { certSkewMs: 0 } }, async (proxy) => {
      assertRefusedOnly(await dialAll(world, proxy, outerEndingAt(world, t0, -1000)), 'E_CERT_EXPIRED');
      const { status, socket } = await dialProxy(world, proxy, outerEndingAt(world, t0, 60_000));
      assert.deepEqual(status, { ok: true });
      socket.destroy();
    });
  });

  it('refuses, without a success line, a certificate that expires while the gateway opens the channel', async () => {
    const { world, t0 } = fixedWorld();
    // Watched from the start: an ssh2 channel that has closed does not say so in `destroyed`.
    const channels: Promise<void>[] = [];
    const gateway: Partial<GatewaySpec> = {
      // The gateway is slow; meanwhile the clock passes notAfter + skew.
      beforeAccept: async () => world.advance(10_000),
      onStream: (ch) => {
        ch.on('error', () => {});
        ch.resume(); // an unread channel never reaches 'close'
        channels.push(closed(ch));
      },
    };
    await withProxy(world, { gateway }, async (proxy) => {
      const bytes = await dialAll(world, proxy, outerEndingAt(world, t0, 2000));
      assertRefusedOnly(bytes, 'E_CERT_EXPIRED');
      assert.equal(channels.length, 1, 'the handshake-time check passed; the channel was opened');
      await channels[0];
      assert.equal(proxy.stats().streams, 0);
      const tunnel = proxy.table.all()[0];
      assert.equal(tunnel?.streams, 0, 'the stream slot is given back');
    });
  });

  it('refuses, without a success line, a certificate revoked while the gateway opens the channel', async () => {
    const { world, t0 } = fixedWorld();
    const outer = outerEndingAt(world, t0, 60_000);
    let revoke: (() => void) | undefined;
    const gateway: Partial<GatewaySpec> = { beforeAccept: async () => revoke?.() };
    await withProxy(world, { gateway }, async (proxy) => {
      revoke = () => void proxy.revoke({ kind: 'certificate', subject: outer.issued.serialHex });
      assertRefusedOnly(await dialAll(world, proxy, outer), 'E_CERT_REVOKED');
      assert.equal(proxy.stats().streams, 0);
    });
  });

  it('cuts a live stream at notAfter + skew, not before', async () => {
    const { world, t0 } = fixedWorld();
    const reasons: string[] = [];
    await withProxy(world, { limits: { certSkewMs: 3000 }, closedReasons: reasons }, async (proxy) => {
      // notAfter in 1 s, so the stream must live 4 s (by the injected clock, which does not move: the timer does).
      const { status, socket } = await dialProxy(world, proxy, outerEndingAt(world, t0, 1000));
      const opened = Date.now();
      assert.deepEqual(status, { ok: true });
      socket.resume();
      await Promise.race([
        closed(socket),
        new Promise((_, reject) => setTimeout(() => reject(new Error('stream outlived its certificate')), 10_000)),
      ]);
      const lived = Date.now() - opened;
      assert.ok(lived >= 2500, `cut after ${lived} ms, before notAfter + skew`);
      await eventually(() => reasons.length === 1);
      assert.deepEqual(reasons, ['client certificate expired']);
    });
  });

  it('judges a resumed TLS session afresh: past notAfter + skew it is refused without a success line', async () => {
    const { world, t0 } = fixedWorld();
    await withProxy(world, { limits: { certSkewMs: 0 } }, async (proxy) => {
      const sessions: Buffer[] = [];
      const outer = outerEndingAt(world, t0, 2000);
      const first = await dialProxy(world, proxy, outer, { onSession: (s) => sessions.push(s) });
      assert.deepEqual(first.status, { ok: true });
      // Tickets come right after the handshake: a round trip later any would have arrived.
      const data = Buffer.from('ping');
      assert.ok((await roundTrip(first.socket, data)).equals(data));
      first.socket.destroy();
      world.advance(3000); // 1 s past notAfter, skew 0
      let reused: boolean | undefined;
      const bytes = await dialAll(world, proxy, outer, {
        ...(sessions.length ? { session: sessions.at(-1)! } : {}),
        onSecure: (s) => {
          reused = s.isSessionReused();
        },
      });
      assertRefusedOnly(bytes, 'E_CERT_EXPIRED');
      assert.ok(sessions.length > 0, 'the proxy issued a ticket (outer sessions are resumable)');
      assert.equal(reused, true, 'the session was resumed, and judged afresh');
    });
  });
});
