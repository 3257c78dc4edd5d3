/**
 * lib/client/warm.ts: the next relay opens after the refill delay, or at once when the stream that made it due
 * had its first answer (start) or another stream asks for it (take), so that its outer handshake does not compete
 * with the new stream's first round trip; one due relay at a time, none after close. (Real processes:
 * test/lifecycle/warm-relay.test.ts.)
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { test } from 'node:test';
import type tls from 'node:tls';
import type { OpenRelay } from '../../lib/client/dial.js';
import type { ClientGrant, ProxyEndpoint } from '../../lib/client/grant.js';
import { WarmRelay } from '../../lib/client/warm.js';

const grant = { grantId: 'g1' } as unknown as ClientGrant;
const proxy = { proxyId: 'p1' } as unknown as ProxyEndpoint;

function fakeOpen(): { opened: number; open: (g: ClientGrant, p: ProxyEndpoint, h: boolean) => Promise<OpenRelay> } {
  const state = {
    opened: 0,
    open: async (g: ClientGrant, p: ProxyEndpoint, halfOpen: boolean): Promise<OpenRelay> => {
      state.opened++;
      const outer = Object.assign(new EventEmitter(), {
        destroyed: false,
        ref: () => undefined,
        unref: () => undefined,
        end: () => undefined,
        destroy: () => undefined,
      }) as unknown as tls.TLSSocket;
      return {
        outer,
        rest: Buffer.alloc(0),
        grant: g,
        proxy: p,
        halfOpen,
        timings: { proxyMs: 0, statusMs: 0 },
        outerResumed: false,
      };
    },
  };
  return state;
}

const tick = () => new Promise((r) => setImmediate(r));

test('the next relay waits for the refill delay, and opens at once on start()', async () => {
  const f = fakeOpen();
  const w = new WarmRelay({ open: f.open, refillDelayMs: 60_000 });
  w.refill(grant, proxy, true);
  w.refill(grant, proxy, true); // one due relay at a time
  await tick();
  assert.equal(f.opened, 0, 'not opened while the stream that made it due runs its first round trip');
  w.start();
  await tick();
  assert.equal(f.opened, 1);
  const relay = await w.take(grant, true);
  assert.ok(relay, 'the relay opened at start() is held for the next stream');
  w.close();
});

test('a stream asking before the delay is over gets the due relay, opened now', async () => {
  const f = fakeOpen();
  const w = new WarmRelay({ open: f.open, refillDelayMs: 60_000 });
  w.refill(grant, proxy, true);
  assert.equal(await w.take(grant, false), undefined, 'not for another half-close setting');
  assert.equal(f.opened, 0);
  const relay = await w.take(grant, true);
  assert.equal(f.opened, 1);
  assert.equal(relay?.grant, grant);
  w.close();
});

test('after the delay it opens on its own; close() cancels one still due', async () => {
  const f = fakeOpen();
  const w = new WarmRelay({ open: f.open, refillDelayMs: 5 });
  w.refill(grant, proxy, false);
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(f.opened, 1);
  assert.ok(await w.take(grant, false));
  const g = fakeOpen();
  const closed = new WarmRelay({ open: g.open, refillDelayMs: 5 });
  closed.refill(grant, proxy, false);
  closed.close();
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(g.opened, 0, 'nothing opened after close');
  w.close();
});
