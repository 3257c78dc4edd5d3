/**
 * FeedFollower, the one feed client of gateways and proxies: long-poll reads, pages applied before the position
 * moves, the proxy list handed on only when its version changes, failures logged once at start and once at
 * recovery, staleness after staleAfterMs, and a CA refusal naming this component stopping it for good.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { it } from 'node:test';
import { FeedFollower, type FeedFollowerOptions } from '../../lib/enrolled/feed.js';
import type { FeedProxyList, RevocationEntry, RevocationFeed } from '../../lib/protocol/api.js';
import { CaApiError } from '../../lib/protocol/ca-client.js';

type Read = { since: number; waitSec: number | undefined; proxiesVersion: string | undefined };
type Answer = RevocationFeed | Error | (() => Promise<RevocationFeed>);

function entry(seq: number, kind: RevocationEntry['kind'] = 'grant'): RevocationEntry {
  return { seq, kind, orgId: 'org-a', subject: `s${seq}`, at: new Date(0).toISOString() };
}

function feed(since: number, entries: RevocationEntry[], proxies?: FeedProxyList): RevocationFeed {
  const seq = Math.max(since, ...entries.map((e) => e.seq));
  return { since, seq, issuedAt: new Date().toISOString(), entries, signature: '', ...(proxies ? { proxies } : {}) };
}

function harness(answers: Answer[], over: Partial<FeedFollowerOptions> = {}) {
  const reads: Read[] = [];
  const applied: RevocationEntry[] = [];
  const logs: { level: string; message: string }[] = [];
  let seq = 0;
  let idle: () => void = () => {};
  const drained = new Promise<void>((resolve) => {
    idle = resolve;
  });
  const key = generateKeyPairSync('ed25519').privateKey;
  const follower = new FeedFollower({
    client: {
      revocations: async (since, opts = {}) => {
        reads.push({ since, waitSec: opts.waitSec, proxiesVersion: opts.proxiesVersion });
        const next = answers.shift();
        if (next === undefined) {
          idle();
          // Hold like the CA does, until the follower stops.
          await new Promise((_, reject) =>
            opts.signal?.addEventListener('abort', () => reject(new CaApiError('E_TIMEOUT', 'cancelled', 0))),
          );
        }
        if (next instanceof Error) throw next;
        if (typeof next === 'function') return next();
        return next as RevocationFeed;
      },
    },
    current: () => ({ certificate: '', privateKey: key, feedKey: '' }),
    position: {
      seq: () => seq,
      setSeq: (n) => {
        seq = n;
      },
    },
    apply: (entries) => applied.push(...entries),
    retryMs: 5,
    staleAfterMs: 60_000,
    log: {
      info: (_f, message) => logs.push({ level: 'info', message }),
      warn: (_f, message) => logs.push({ level: 'warn', message }),
      error: (_f, message) => logs.push({ level: 'error', message }),
    },
    ...over,
  });
  return { follower, reads, applied, logs, drained, seq: () => seq };
}

it('catches up at once, then long-polls; applies each new entry once and moves the position after applying', async () => {
  const h = harness([feed(0, [entry(1), entry(2)]), feed(2, [entry(3)]), feed(3, [])]);
  h.follower.start();
  await h.drained;
  await h.follower.stop();
  assert.deepEqual(
    h.applied.map((e) => e.seq),
    [1, 2, 3],
  );
  assert.equal(h.seq(), 3);
  assert.deepEqual(
    h.reads.map((r) => [r.since, r.waitSec]),
    // The first round answers at once (a page with entries may be one of several: the next follows without
    // waiting); then each read is held by the CA.
    [
      [0, undefined],
      [2, undefined],
      [3, undefined],
      [3, 25],
    ],
  );
  assert.ok(h.follower.health().lastSuccessMs !== undefined);
});

it('never holds a read longer than half of staleAfterMs (a held read proves nothing until it returns)', async () => {
  const h = harness([feed(0, [])], { staleAfterMs: 5000 });
  h.follower.start();
  await h.drained;
  await h.follower.stop();
  assert.deepEqual(
    h.reads.map((r) => r.waitSec),
    [undefined, 2],
  );
});

it('hands on a proxy list only when its version changes, and sends the version it holds', async () => {
  const lists: FeedProxyList[] = [];
  let held: string | undefined;
  const v1: FeedProxyList = { version: 'v1', list: [] };
  const h = harness([feed(0, [], v1), feed(0, [], v1)], {
    proxies: {
      version: () => held,
      apply: (l) => {
        lists.push(l);
        held = l.version;
      },
    },
  });
  h.follower.start();
  await h.drained;
  await h.follower.stop();
  assert.equal(lists.length, 1);
  assert.deepEqual(
    h.reads.map((r) => r.proxiesVersion),
    [undefined, 'v1', 'v1'],
  );
});

it('logs a failure once when it starts and once when it ends, however many reads fail between', async () => {
  const down = () => new CaApiError('E_CA_UNREACHABLE', 'connect ECONNREFUSED', 0);
  const h = harness([down(), down(), down(), down(), feed(0, [entry(1)])]);
  h.follower.start();
  await h.drained;
  await h.follower.stop();
  assert.deepEqual(
    h.logs.map((l) => l.level),
    ['warn', 'info'],
  );
  assert.equal(h.applied.length, 1);
  assert.equal(h.follower.health().failing, false);
});

it('is stale after staleAfterMs without a success', async () => {
  let now = 1_000_000;
  const h = harness([new CaApiError('E_CA_UNREACHABLE', 'down', 0)], { now: () => now, staleAfterMs: 10_000 });
  h.follower.start();
  await h.drained;
  assert.equal(h.follower.health().stale, false);
  now += 10_001;
  assert.equal(h.follower.health().stale, true);
  assert.equal(h.follower.health().failing, true);
  await h.follower.stop();
});

it('a refusal naming this component stops the follower and reports it, without retrying', async () => {
  const revoked: string[] = [];
  const h = harness([new CaApiError('E_SUBJECT_REVOKED', 'gateway gw-1 was revoked', 403), feed(0, [entry(1)])], {
    onRevokedSelf: (err) => revoked.push(err.code),
  });
  h.follower.start();
  await new Promise((r) => setTimeout(r, 100));
  await h.follower.stop();
  assert.deepEqual(revoked, ['E_SUBJECT_REVOKED']);
  assert.equal(h.reads.length, 1);
  assert.equal(h.applied.length, 0);
});

it('a read that comes back at once with nothing new waits retryMs before the next (no spin)', async () => {
  const empty = () => feed(0, []);
  const h = harness([empty(), empty(), empty()], { retryMs: 100 });
  const started = Date.now();
  h.follower.start();
  await h.drained;
  await h.follower.stop();
  // The first (catch-up) read is not held; the two held reads that came back at once each cost a pause.
  assert.ok(Date.now() - started >= 190, `three immediate answers took ${Date.now() - started} ms`);
});
