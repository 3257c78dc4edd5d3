/** The per-source failure penalties and the log sampling, on an injected clock (lib/ca/throttle.ts). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FailureThrottle, MemoryPenaltyBook, SampledLog, sourceKey } from '../../lib/ca/throttle.js';
import { UnauthenticatedLimits } from '../../lib/ca/unauthenticated.js';

const policy = { burst: 3, refillMs: 1000, maxDelayMs: 8000 };

test('failure throttle: a burst, then waits that double up to the cap; a waiting key is refused with how long', () => {
  const t = new FailureThrottle(policy);
  const delays: number[] = [];
  let now = 0;
  for (let i = 0; i < 3; i++) delays.push(t.fail('a', now));
  assert.deepEqual(delays, [0, 0, 0]);
  assert.ok(t.check('a', now).ok, 'within the burst nothing waits');
  // Each further failure, made as soon as the previous wait ends, waits twice as long, up to maxDelayMs.
  for (let i = 0; i < 6; i++) {
    const d = t.fail('a', now);
    delays.push(d);
    const refused = t.check('a', now + d - 1);
    assert.equal(!refused.ok && refused.code, 'E_RATE_LIMITED');
    assert.ok(t.check('a', now + d).ok, 'the wait ends when it says');
    now += d;
  }
  assert.deepEqual(delays.slice(3), [1000, 2000, 4000, 8000, 8000, 8000]);
  const r = t.check('a', now - 500);
  assert.equal(!r.ok && r.reason, 'retry in 1 s');
  assert.ok(t.check('b', now).ok, 'another key has its own budget');
});

test('failure throttle: failures are forgotten one per refill of quiet, not while waiting', () => {
  const t = new FailureThrottle(policy);
  for (let i = 0; i < 4; i++) t.fail('a', 0); // level 4: a 1 s wait
  assert.equal(t.level('a', 1000), 4, 'nothing forgotten during the wait');
  assert.equal(t.level('a', 3000), 2, 'two forgotten in the 2 s after it');
  assert.equal(t.fail('a', 3000), 0, 'level 3: within the burst again');
  assert.equal(t.fail('a', 3000), 1000, 'level 4: the first wait again, not a longer one');
  assert.equal(t.level('a', 60_000), 0);
});

test('failure throttle: a key that keeps failing stays at the longest wait, and is forgiven within a bounded time', () => {
  const t = new FailureThrottle(policy);
  let now = 0;
  for (let i = 0; i < 100; i++) now += t.fail('a', now);
  assert.equal(t.fail('a', now), 8000);
  // The level is capped at burst + doublings to the cap + 1 = 7: the last 8 s wait and 7 s of quiet forgive it.
  assert.equal(t.level('a', now + 8000 + 6999) > 0, true);
  assert.equal(t.level('a', now + 8000 + 7000), 0);
});

test('failure throttle: a failure within the burst imposes nothing, and a clock set back never lengthens a wait', () => {
  const t = new FailureThrottle(policy);
  t.fail('a', 1_000_000);
  assert.ok(t.check('a', 0).ok, 'no wait from a failure within the burst, whatever the clock says later');
  for (let i = 0; i < 3; i++) t.fail('a', 1_000_000);
  assert.equal(t.waitMs('a', 1_000_000), 1000);
  assert.equal(t.waitMs('a', 0), 8000, 'at most maxDelayMs');
});

test('failure throttle: bounded memory (forgetting a key only forgives it)', () => {
  const book = new MemoryPenaltyBook(100);
  const t = new FailureThrottle(policy, book);
  for (let i = 0; i < 1000; i++) t.fail(`k${i}`, 0);
  assert.ok(book.size <= 100);
});

test('source keys: IPv4 as is (also mapped), IPv6 by /64, anything else as given', () => {
  assert.equal(sourceKey('10.0.0.1'), '10.0.0.1');
  assert.equal(sourceKey('::ffff:10.0.0.1'), '10.0.0.1');
  assert.equal(sourceKey('2001:db8:1:2:3:4:5:6'), '2001:db8:1:2::/64');
  assert.equal(sourceKey('2001:db8:1:2::ffff'), sourceKey('2001:db8:1:2:aaaa::1'));
  assert.notEqual(sourceKey('2001:db8:1:2::1'), sourceKey('2001:db8:1:3::1'));
  assert.equal(sourceKey('local'), 'local');
});

test('sampled log: the first event per key per window, then the count of the rest', () => {
  const log = new SampledLog(60_000);
  assert.deepEqual(log.note('a', 0), { log: true, suppressed: 0 });
  for (let i = 0; i < 5; i++) assert.equal(log.note('a', 1000 + i).log, false);
  assert.deepEqual(log.note('b', 2000), { log: true, suppressed: 0 });
  assert.deepEqual(log.sweep(59_999), []);
  assert.deepEqual(log.sweep(60_000), [{ key: 'a', suppressed: 5 }]);
  assert.deepEqual(log.note('a', 61_000), { log: true, suppressed: 0 }, 'the sweep reported them already');
  for (let i = 0; i < 2; i++) log.note('a', 62_000);
  assert.deepEqual(log.note('a', 121_000), { log: true, suppressed: 2 }, 'or the next logged event does');
});

test('unauthenticated limits: counted by endpoint and code, logged sampled per source, never per refusal', () => {
  const lines: Array<Record<string, unknown>> = [];
  const logger = { info: (fields: Record<string, unknown>) => lines.push(fields) } as never;
  const counted: string[] = [];
  let now = 0;
  const limits = new UnauthenticatedLimits({
    policies: { login: policy, enroll: policy, signed: { burst: 2, refillMs: 100, maxDelayMs: 1000 } },
    now: () => new Date(now),
    logger,
    counter: { inc: (l) => counted.push(`${l.endpoint} ${l.code}`) },
  });
  for (let i = 0; i < 50; i++) {
    if (limits.admit('signed', 'gateway.renew', '192.0.2.1').ok) {
      limits.refuse('signed', 'gateway.renew', '192.0.2.1', 'E_CERT_UNTRUSTED', 'not ours');
    }
  }
  assert.equal(counted.filter((c) => c === 'gateway.renew E_CERT_UNTRUSTED').length, 3);
  assert.equal(counted.filter((c) => c === 'gateway.renew E_RATE_LIMITED').length, 47);
  assert.equal(limits.count('gateway.renew'), 50);
  assert.equal(lines.length, 1, 'one line for 50 refusals from one source in a minute');
  assert.ok(limits.admit('signed', 'gateway.renew', '192.0.2.2').ok, 'another source is not waiting');
  assert.ok(limits.admit('enroll', 'gateway.enroll', '192.0.2.1').ok, 'nor is this source in another limit');
  now = 61_000;
  limits.flushLog();
  assert.deepEqual(lines.at(-1), { source: '192.0.2.1', refusals: 49 });
});

test('login turns: a woken login whose penalties cannot be read (store down) passes its turn on', async () => {
  const book = new MemoryPenaltyBook();
  let failReads = 0;
  const flaky = {
    get: (key: string) => {
      if (failReads > 0) {
        failReads--;
        throw new Error('store unavailable');
      }
      return book.get(key);
    },
    charge: (...args: Parameters<MemoryPenaltyBook['charge']>) => book.charge(...args),
  };
  const one = { burst: 1, refillMs: 1000, maxDelayMs: 8000 };
  const limits = new UnauthenticatedLimits({
    policies: { login: one, enroll: one, signed: one },
    now: () => new Date(0),
    books: (bucket) => (bucket === 'login' ? flaky : new MemoryPenaltyBook()),
  });
  const first = await limits.loginTurn('192.0.2.9');
  assert.ok(first.ok);
  const second = limits.loginTurn('192.0.2.9'); // waits: one login of this source hashes at a time
  const third = limits.loginTurn('192.0.2.9');
  failReads = 1; // the second is woken into a store outage; the third must still get its turn
  first.value();
  await assert.rejects(second, /store unavailable/);
  let timer: NodeJS.Timeout | undefined;
  const turn = await Promise.race([
    third,
    new Promise<'stuck'>((resolve) => {
      timer = setTimeout(() => resolve('stuck'), 2000);
    }),
  ]);
  clearTimeout(timer);
  assert.notEqual(turn, 'stuck', 'the third login was never woken');
  assert.ok(turn !== 'stuck' && turn.ok);
  turn.value();
});
