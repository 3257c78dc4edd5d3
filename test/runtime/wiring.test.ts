/**
 * The parts composed the way a daemon's main wires them: config → logger → store → metrics/ops →
 * systemd notifier → lifecycle. Checks that the pieces fit (types and behaviour), not each piece again.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadConfig } from '../../lib/runtime/config.js';
import { defineSchema, hostPort, keys } from '../../lib/runtime/config-schema.js';
import { Lifecycle } from '../../lib/runtime/lifecycle.js';
import { createAudit, createLogger } from '../../lib/runtime/log.js';
import { DaemonMetrics } from '../../lib/runtime/metrics.js';
import { startOpsServer } from '../../lib/runtime/ops.js';
import { runtimeKeys } from '../../lib/runtime/runtime-keys.js';
import { SystemdNotifier } from '../../lib/runtime/systemd.js';
import { openDatabase, stateDirectory } from '../../lib/store/db.js';

const schema = defineSchema('proxy', 'wiring test', {
  ...runtimeKeys({ opsListen: '127.0.0.1:0' }),
  ssh_listen: keys.string({
    reload: 'live',
    default: '0.0.0.0:2222',
    description: 'SSH listener.',
    validate: hostPort,
  }),
});

test('a daemon main wired from the runtime and store parts', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wiring-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const { config } = loadConfig(schema, {
    flags: { 'log-level': 'debug', 'drain-timeout': '2s' },
    env: { STATE_DIRECTORY: dir },
    readFile: () => undefined,
  });
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({
    daemon: 'proxy',
    version: '0.0.0',
    level: config.log_level,
    destination: { write: (s: string) => void lines.push(JSON.parse(s)) },
  });
  const db = openDatabase({
    path: join(
      stateDirectory('proxy', { override: config.state_directory, env: { STATE_DIRECTORY: dir } }),
      'proxy.db',
    ),
    migrations: [
      {
        version: 1,
        name: 'audit',
        sql: 'CREATE TABLE audit (time TEXT NOT NULL, event TEXT NOT NULL, fields TEXT NOT NULL)',
      },
    ],
  });
  const insertAudit = db.prepare('INSERT INTO audit VALUES (?, ?, ?)');
  const audit = createAudit(log, { sink: (r) => void insertAudit.run(r.time, r.event, JSON.stringify(r.fields)) });
  const metrics = new DaemonMetrics('proxy', { processMetrics: false });
  const reloads = metrics.counter('infisical_proxy_reloads_total', 'Reloads by outcome.', ['outcome']);
  let tunnels = 0;
  const ops = await startOpsServer({
    listen: config.ops_listen,
    allowNonLoopback: config.ops_allow_remote,
    metrics,
    readiness: () => (tunnels > 0 ? { ready: true } : { ready: false, reason: 'no tunnel up' }),
  });
  const sent: string[] = [];
  const notifier = new SystemdNotifier({ env: { NOTIFY_SOCKET: '/run/x' }, send: (s) => sent.push(s) });
  let exitCode: number | undefined;
  const lifecycle = new Lifecycle({
    notifier,
    log,
    drainTimeoutMs: config.drain_timeout,
    exit: (code) => {
      exitCode = code;
    },
    hooks: {
      reload: () => void reloads.inc({ outcome: 'ok' }),
      drain: async () => {
        await ops.close();
        db.close();
      },
    },
  });

  assert.equal((await fetch(`${ops.url}/readyz`)).status, 503);
  tunnels = 1;
  lifecycle.ready('serving');
  assert.equal((await fetch(`${ops.url}/readyz`)).status, 200);
  audit('stream.carried', { gatewayId: 'gw1', bytes: 42 });
  assert.equal(await lifecycle.reload(), 'reloaded');
  assert.match(await (await fetch(`${ops.url}/metrics`)).text(), /infisical_proxy_reloads_total\{outcome="ok"\} 1/);
  const stored = db.prepare('SELECT event, fields FROM audit').all();
  assert.deepEqual(stored, [{ event: 'stream.carried', fields: '{"gatewayId":"gw1","bytes":42}' }]);
  await lifecycle.stop('SIGTERM');
  assert.equal(exitCode, 0);
  assert.deepEqual(
    sent.map((s) => s.split('\n')[0]),
    ['READY=1', 'RELOADING=1', 'READY=1', 'STOPPING=1'],
  );
  assert.ok(lines.some((l) => l.audit === true && l.event === 'stream.carried'));
  assert.ok(lines.some((l) => l.msg === 'drained'));
});
