import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { SystemdNotifier, watchdogPingInterval } from '../../lib/runtime/systemd.js';

// A unix datagram listener (Node core has none): prints each datagram with its CLOCK_MONOTONIC arrival time.
const LISTENER = `
import json, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("bound", flush=True)
s.settimeout(50)
while True:
    data = s.recv(65536).decode()
    print(json.dumps({"data": data, "mono_us": time.monotonic_ns() // 1000}), flush=True)
    if data.startswith("STOPPING=1"):
        break
`;

function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

test('real sd_notify: READY, STATUS, RELOADING + MONOTONIC_USEC, WATCHDOG, STOPPING reach NOTIFY_SOCKET', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'notify-'));
  const socketPath = join(dir, 'notify.sock');
  const listener = spawn('python3', ['-c', LISTENER, socketPath], { stdio: ['ignore', 'pipe', 'inherit'] });
  const received: { data: string; mono_us: number }[] = [];
  const lines = createInterface({ input: listener.stdout! });
  const listenerDone = exited(listener);
  try {
    await new Promise<void>((resolve, reject) => {
      lines.once('line', (line) => (line === 'bound' ? resolve() : reject(new Error(line))));
      listener.once('exit', () => reject(new Error('listener exited early')));
    });
    lines.on('line', (line) => received.push(JSON.parse(line)));
    const childScript = fileURLToPath(new URL('./fixtures/notify-child.js', import.meta.url));
    const child = spawn(process.execPath, [childScript], {
      env: { ...process.env, NOTIFY_SOCKET: socketPath, WATCHDOG_USEC: '100000', WATCHDOG_PID: '' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout!.on('data', (chunk) => {
      out += chunk;
    });
    assert.equal(await exited(child), 0);
    assert.equal(await listenerDone, 0);
    const report = JSON.parse(out) as { before: string; after: string; interval: number };
    assert.equal(report.interval, 50);

    const messages = received.map((r) => r.data);
    const withoutPings = messages.filter((m) => m !== 'WATCHDOG=1');
    assert.deepEqual(withoutPings.slice(0, 2), ['READY=1', 'STATUS=serving: 2 tunnels INJECTED=1']);
    const reloading = withoutPings[2]!.split('\n');
    assert.equal(reloading[0], 'RELOADING=1');
    const usec = /^MONOTONIC_USEC=(\d+)$/.exec(reloading[1] ?? '');
    assert.ok(usec, `MONOTONIC_USEC missing in ${JSON.stringify(withoutPings[2])}`);
    // CLOCK_MONOTONIC: between the child's own readings, and not after the listener's arrival time.
    assert.ok(BigInt(report.before) <= BigInt(usec[1]!) && BigInt(usec[1]!) <= BigInt(report.after));
    const arrival = received.find((r) => r.data.startsWith('RELOADING=1'))!.mono_us;
    assert.ok(Number(usec[1]) <= arrival);
    assert.deepEqual(withoutPings.slice(3), ['READY=1\nSTATUS=reloaded', 'STOPPING=1\nSTATUS=draining']);
    assert.ok(messages.filter((m) => m === 'WATCHDOG=1').length >= 3);
  } finally {
    listener.kill();
    await listenerDone;
    rmSync(dir, { recursive: true, force: true });
  }
});

test('without NOTIFY_SOCKET every call is a no-op (the addon is never asked)', () => {
  const sent: string[] = [];
  const notifier = new SystemdNotifier({ env: { WATCHDOG_USEC: '1000000' }, send: (s) => sent.push(s) });
  notifier.ready();
  notifier.status('x');
  notifier.reloading();
  notifier.stopping();
  notifier.extendTimeout(5000);
  assert.equal(notifier.enabled, false);
  assert.equal(notifier.watchdogIntervalMs, undefined);
  assert.deepEqual(sent, []);
});

test('watchdog belongs to us only when WATCHDOG_PID is unset or our pid', () => {
  assert.equal(watchdogPingInterval({ WATCHDOG_USEC: '30000000' }, 42), 15_000);
  assert.equal(watchdogPingInterval({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '42' }, 42), 15_000);
  assert.equal(watchdogPingInterval({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '43' }, 42), undefined);
  assert.equal(watchdogPingInterval({ WATCHDOG_USEC: '0' }, 42), undefined);
  assert.equal(watchdogPingInterval({ WATCHDOG_USEC: 'abc' }, 42), undefined);
  assert.equal(watchdogPingInterval({}, 42), undefined);
  const sent: string[] = [];
  const other = new SystemdNotifier({
    env: { NOTIFY_SOCKET: '/x', WATCHDOG_USEC: '1000', WATCHDOG_PID: '1' },
    pid: 2,
    send: (s) => sent.push(s),
  });
  other.ready();
  assert.deepEqual(sent, ['READY=1']);
});

test('a stalled event loop stops the watchdog pings', async () => {
  const sent: string[] = [];
  const notifier = new SystemdNotifier({
    env: { NOTIFY_SOCKET: '/x', WATCHDOG_USEC: '20000' },
    send: (s) => sent.push(s),
  });
  notifier.startWatchdog();
  const first = sent.length;
  const until = Date.now() + 100;
  while (Date.now() < until) {
    // busy: the timer cannot fire while the loop is blocked
  }
  assert.equal(sent.length, first, 'no ping while the loop is stalled');
  await new Promise((r) => setTimeout(r, 30));
  assert.ok(sent.length > first, 'pings resume once the loop runs');
  notifier.stopWatchdog();
  assert.ok(sent.every((s) => s === 'WATCHDOG=1'));
});

test('extendTimeout sends microseconds', () => {
  const sent: string[] = [];
  new SystemdNotifier({ env: { NOTIFY_SOCKET: '/x' }, send: (s) => sent.push(s) }).extendTimeout(1500);
  assert.deepEqual(sent, ['EXTEND_TIMEOUT_USEC=1500000']);
});
