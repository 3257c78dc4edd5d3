import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ClientGrant, GrantSpec } from '../../lib/client/grant.js';
import { GrantCache, grantFreshness } from '../../lib/client/grant-cache.js';

const spec: GrantSpec = { orgId: 'org-a', gatewayId: 'gw-1', target: { host: '10.0.0.5', port: 5432 }, mode: 'tcp' };

function fakeGrant(expiresAtMs: number, n: number): ClientGrant {
  return { grantId: `g${n}`, spec, expiresAtMs } as unknown as ClientGrant;
}

test('grantFreshness: usable until 30 s before expiry, then E_GRANT_EXPIRED', () => {
  const g = { expiresAtMs: 1_000_000 };
  assert.equal(grantFreshness(g, 1_000_000 - 30_001).ok, true);
  const inside = grantFreshness(g, 1_000_000 - 30_000);
  assert.equal(inside.ok, false);
  assert.equal(!inside.ok && inside.code, 'E_GRANT_EXPIRED');
  assert.equal(grantFreshness(g, 2_000_000).ok, false);
  assert.equal(grantFreshness(g, 1_000_000 - 10_001, 10_000).ok, true);
});

test('GrantCache reuses a grant until ~30 s before expiry, then refreshes (injected clock)', async () => {
  let now = 0;
  let obtained = 0;
  const cache = new GrantCache({
    now: () => now,
    obtain: async () => fakeGrant(now + 300_000, ++obtained),
  });
  const a = await cache.get(spec);
  assert.equal(a.grantId, 'g1');
  now = 200_000;
  assert.equal((await cache.get(spec)).grantId, 'g1', 'fresh grant reused');
  now = 269_999;
  assert.equal((await cache.get(spec)).grantId, 'g1', '30.001 s left: still reused');
  now = 270_000;
  const b = await cache.get(spec);
  assert.equal(b.grantId, 'g2', '30 s left: refreshed');
  assert.equal(obtained, 2);
  // Another target or mode is another grant.
  await cache.get({ ...spec, target: { host: '10.0.0.6', port: 5432 } });
  await cache.get({ ...spec, mode: 'http' });
  assert.equal(obtained, 4);
  assert.equal(cache.size, 3);
});

test('GrantCache coalesces concurrent refreshes and does not cache failures', async () => {
  let obtained = 0;
  let fail = true;
  const cache = new GrantCache({
    now: () => 0,
    obtain: async () => {
      obtained++;
      await new Promise((r) => setTimeout(r, 10));
      if (fail) throw new Error('CA down');
      return fakeGrant(600_000, obtained);
    },
  });
  const burst = await Promise.allSettled([cache.get(spec), cache.get(spec), cache.get(spec)]);
  assert.equal(obtained, 1, 'one CA request for a burst');
  assert.ok(burst.every((r) => r.status === 'rejected'));
  fail = false;
  const [x, y] = await Promise.all([cache.get(spec), cache.get(spec)]);
  assert.equal(obtained, 2, 'the failure was not cached');
  assert.equal(x, y);
});

test('GrantCache.invalidate drops only the grant it was given', async () => {
  let n = 0;
  const cache = new GrantCache({ now: () => 0, obtain: async () => fakeGrant(600_000, ++n) });
  const first = await cache.get(spec);
  assert.equal(cache.invalidate(fakeGrant(600_000, 99)), false);
  assert.equal(await cache.get(spec), first);
  assert.equal(cache.invalidate(first), true);
  assert.equal((await cache.get(spec)).grantId, 'g2');
  assert.equal(cache.invalidate(first), false, 'dropped already: a second stream failing on it drops nothing');
});

test('many streams failing on one grant: one drop, one CA request for the replacement', async () => {
  let n = 0;
  const cache = new GrantCache({
    now: () => 0,
    obtain: async () => {
      n++;
      await new Promise((r) => setTimeout(r, 10));
      return fakeGrant(600_000, n);
    },
  });
  const revoked = await cache.get(spec);
  const replaced = await Promise.all(
    Array.from({ length: 8 }, async () => {
      const dropped = cache.invalidate(revoked);
      return { dropped, grant: await cache.get(spec) };
    }),
  );
  assert.equal(replaced.filter((r) => r.dropped).length, 1);
  assert.equal(n, 2, 'one request for the first grant, one for its replacement');
  assert.ok(replaced.every((r) => r.grant.grantId === 'g2'));
});
