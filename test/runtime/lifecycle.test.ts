import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { installSignalHandlers, Lifecycle, type LifecycleHooks } from '../../lib/runtime/lifecycle.js';

function deferred<T = void>() {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** A lifecycle whose notifier, log, hooks and exit all append to one ordered event list. */
function harness(hooks: Partial<LifecycleHooks> = {}, drainTimeoutMs = 10_000) {
  const events: string[] = [];
  const exited = deferred<number>();
  let clock = 1_000;
  const lifecycle = new Lifecycle({
    notifier: {
      ready: (s) => events.push(`READY${s ? `:${s}` : ''}`),
      reloading: () => events.push('RELOADING'),
      stopping: () => events.push('STOPPING'),
    },
    log: {
      info: (_f, m) => events.push(`info:${m}`),
      warn: (_f, m) => events.push(`warn:${m}`),
      error: (_f, m) => events.push(`error:${m}`),
    },
    hooks: {
      reload: hooks.reload ?? (() => void events.push('reload')),
      drain: hooks.drain ?? (() => void events.push('drain')),
    },
    drainTimeoutMs,
    now: () => clock++,
    exit: (code) => {
      events.push(`exit:${code}`);
      exited.resolve(code);
    },
  });
  return { lifecycle, events, exited: exited.promise };
}

test('reload runs between RELOADING and READY', async () => {
  const { lifecycle, events } = harness();
  lifecycle.ready('serving');
  assert.equal(await lifecycle.reload(), 'reloaded');
  assert.deepEqual(events, ['READY:serving', 'RELOADING', 'reload', 'info:reloaded', 'READY:running (reloaded)']);
});

test('a failed reload is logged, keeps running and still ends with READY', async () => {
  const { lifecycle, events } = harness({
    reload: () => {
      throw new Error('bad cert');
    },
  });
  lifecycle.ready();
  assert.equal(await lifecycle.reload(), 'failed');
  assert.deepEqual(events, [
    'READY',
    'RELOADING',
    'error:reload failed; keeping the previous configuration',
    'READY:running (last reload failed; see logs)',
  ]);
  assert.equal(lifecycle.state, 'running');
});

test('one reload at a time: requests during a reload fold into exactly one more run', async () => {
  let active = 0;
  let maxActive = 0;
  let runs = 0;
  const gates = [deferred(), deferred()];
  const { lifecycle, events } = harness({
    reload: async () => {
      active++;
      maxActive = Math.max(maxActive, active);
      await gates[runs++]!.promise;
      active--;
    },
  });
  lifecycle.ready();
  const first = lifecycle.reload();
  const second = lifecycle.reload();
  const third = lifecycle.reload();
  gates[0]!.resolve();
  gates[1]!.resolve();
  assert.equal(await first, 'reloaded');
  assert.equal(await second, 'coalesced');
  assert.equal(await third, 'coalesced');
  assert.equal(runs, 2);
  assert.equal(maxActive, 1);
  assert.deepEqual(
    events.filter((e) => e === 'RELOADING' || e.startsWith('READY')),
    ['READY', 'RELOADING', 'READY:running (reloaded)', 'RELOADING', 'READY:running (reloaded)'],
  );
});

test('a reload asked for during startup runs once ready', async () => {
  const { lifecycle, events } = harness();
  assert.equal(await lifecycle.reload(), 'deferred');
  assert.ok(!events.includes('reload'));
  lifecycle.ready();
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(events.slice(0, 4), [
    'info:reload requested during startup; will run once ready',
    'READY',
    'RELOADING',
    'reload',
  ]);
});

test('stop: STOPPING, drain with the deadline, exit 0; reloads are then ignored', async () => {
  let seen: { deadline: number; aborted: boolean } | undefined;
  const { lifecycle, events, exited } = harness(
    {
      drain: (deadline, signal) => {
        seen = { deadline, aborted: signal.aborted };
        events.push('drain');
      },
    },
    5000,
  );
  lifecycle.ready();
  await lifecycle.stop('SIGTERM');
  assert.equal(await exited, 0);
  assert.deepEqual(seen, { deadline: 1_000 + 5000, aborted: false });
  assert.deepEqual(events, [
    'READY',
    'STOPPING',
    'info:stopping: draining connections',
    'drain',
    'info:drained',
    'exit:0',
  ]);
  assert.equal(await lifecycle.reload(), 'ignored');
});

test('a drain past its deadline is aborted and the daemon still exits 0', async () => {
  let signal: AbortSignal | undefined;
  const { lifecycle, events, exited } = harness(
    {
      drain: (_d, s) => {
        signal = s;
        return new Promise<void>(() => {});
      },
    },
    20,
  );
  lifecycle.ready();
  void lifecycle.stop('SIGTERM');
  assert.equal(await exited, 0);
  assert.equal(signal?.aborted, true);
  assert.ok(events.includes('warn:drain deadline passed; closing what is left'));
});

test('past the deadline the drain hook still closes what is left (its records) before the exit', async () => {
  const { lifecycle, events, exited } = harness(
    {
      // Like the gateway: waits for streams until the deadline, then ends the rest and writes their audit rows.
      drain: (_d, signal) =>
        new Promise<void>((resolve) => {
          signal.addEventListener('abort', () =>
            setTimeout(() => {
              events.push('closed what was left');
              resolve();
            }, 50),
          );
        }),
    },
    20,
  );
  lifecycle.ready();
  void lifecycle.stop('SIGTERM');
  assert.equal(await exited, 0);
  assert.ok(events.indexOf('closed what was left') >= 0, events.join(' '));
  assert.ok(events.indexOf('closed what was left') < events.indexOf('exit:0'), events.join(' '));
});

test('a second stop exits at once with 128+signal', async () => {
  const { lifecycle, events, exited } = harness({ drain: () => new Promise<void>(() => {}) });
  lifecycle.ready();
  void lifecycle.stop('SIGTERM');
  await lifecycle.stop('SIGTERM');
  assert.equal(await exited, 143);
  assert.equal(events.filter((e) => e.startsWith('exit')).length, 1);
});

test('a throwing drain exits 1', async () => {
  const { lifecycle, exited } = harness({
    drain: () => {
      throw new Error('bug');
    },
  });
  await lifecycle.stop('SIGINT');
  assert.equal(await exited, 1);
});

test('stop during a reload: drain waits for the reload, and no READY follows STOPPING', async () => {
  const gate = deferred();
  const { lifecycle, events, exited } = harness({
    reload: async () => {
      events.push('reload:start');
      await gate.promise;
      events.push('reload:end');
    },
  });
  lifecycle.ready();
  const reloading = lifecycle.reload();
  await new Promise((r) => setImmediate(r));
  const stopping = lifecycle.stop('SIGTERM');
  await new Promise((r) => setImmediate(r));
  assert.ok(!events.includes('drain'), 'drain must wait for the in-flight reload');
  gate.resolve();
  await Promise.all([reloading, stopping]);
  assert.equal(await exited, 0);
  const afterStopping = events.slice(events.indexOf('STOPPING'));
  assert.ok(!afterStopping.some((e) => e.startsWith('READY')), afterStopping.join(','));
  assert.ok(events.indexOf('reload:end') < events.indexOf('drain'));
});

test('installSignalHandlers maps signals and uninstalls', () => {
  const handlers = new Map<string, () => void>();
  const source = {
    on: (s: string, l: () => void) => handlers.set(s, l),
    off: (s: string) => handlers.delete(s),
  };
  const { lifecycle } = harness();
  const uninstall = installSignalHandlers(lifecycle, source);
  assert.deepEqual([...handlers.keys()].sort(), ['SIGHUP', 'SIGINT', 'SIGTERM']);
  uninstall();
  assert.equal(handlers.size, 0);
});

async function runChild(
  mode: string,
  drive: (send: (s: NodeJS.Signals) => void, next: () => Promise<string>) => Promise<void>,
) {
  const script = fileURLToPath(new URL('./fixtures/lifecycle-child.js', import.meta.url));
  const child = spawn(process.execPath, [script, mode], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exit = once(child, 'exit');
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const seen: string[] = [];
  const next = async () => {
    const { value, done } = await lines.next();
    if (done) throw new Error(`child output ended after ${seen.join(' | ')}`);
    seen.push(value);
    return value as string;
  };
  await drive((s) => child.kill(s), next);
  const [code] = await exit;
  return code as number;
}

test('real signals: SIGHUP reloads, SIGTERM drains and exits 0', async () => {
  const code = await runChild('ok', async (send, next) => {
    assert.equal(await next(), 'notify READY serving');
    send('SIGHUP');
    assert.equal(await next(), 'notify RELOADING');
    assert.equal(await next(), 'hook reload');
    assert.equal(await next(), 'notify READY running (reloaded)');
    send('SIGTERM');
    assert.equal(await next(), 'notify STOPPING');
    assert.equal(await next(), 'hook drain');
    assert.equal(await next(), 'exit 0');
  });
  assert.equal(code, 0);
});

test('real signals: a second SIGTERM during a hung drain exits at once', async () => {
  const code = await runChild('hang', async (send, next) => {
    assert.equal(await next(), 'notify READY serving');
    send('SIGTERM');
    assert.equal(await next(), 'notify STOPPING');
    assert.equal(await next(), 'hook drain');
    send('SIGTERM');
    assert.equal(await next(), 'exit 143');
  });
  assert.equal(code, 143);
});
