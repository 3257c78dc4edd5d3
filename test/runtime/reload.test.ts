import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadConfig } from '../../lib/runtime/config.js';
import { defineSchema, keys } from '../../lib/runtime/config-schema.js';
import { DaemonMetrics } from '../../lib/runtime/metrics.js';
import { logRestartOnly, registerLiveSettings } from '../../lib/runtime/reload.js';
import { runtimeKeys } from '../../lib/runtime/runtime-keys.js';

const schema = defineSchema('proxy', 'reload test', {
  ...runtimeKeys({ opsListen: '127.0.0.1:9464' }),
  listen: keys.string({ reload: 'restart', default: '127.0.0.1:1', description: 'Listener.' }),
  peers: keys.list({ reload: 'restart', default: [], description: 'Peers.' }),
  max_streams: keys.int({ reload: 'live', default: 100, description: 'Streams.' }),
  keepalive: keys.duration({ reload: 'live', default: 15_000, description: 'Keepalive.' }),
  token: keys.string({ reload: 'live', optional: true, secret: true, description: 'Secret.' }),
  enroll_id: keys.string({ reload: 'command', optional: true, description: 'Enrollment only.' }),
});

const load = (text: string) => loadConfig(schema, { readFile: () => text, env: {} }).config;

test('logRestartOnly: each changed restart-only key is logged once; live and command keys are not', () => {
  const running = load('listen = 127.0.0.1:1\n');
  const lines: { fields: object; message: string }[] = [];
  const log = { warn: (fields: object, message: string) => void lines.push({ fields, message }) };
  const next = load('listen = 127.0.0.1:2\npeers = a, b\nmax_streams = 5\nenroll_id = x\nlog_level = debug\n');
  assert.deepEqual(logRestartOnly(schema, running, next, log), ['listen', 'peers']);
  assert.deepEqual(
    lines.map((l) => l.message),
    ['listen changed, takes effect at restart', 'peers changed, takes effect at restart'],
  );
  assert.deepEqual(lines[0]!.fields, { key: 'listen', reload: 'restart' });
  assert.deepEqual(logRestartOnly(schema, running, load('peers =\n'), log), [], 'an empty list equals the default');
});

test('registerLiveSettings: one series per live key, as the config file writes it, secrets redacted', async () => {
  const metrics = new DaemonMetrics('proxy', { processMetrics: false });
  let maxStreams = 100;
  registerLiveSettings(metrics, schema, () => ({ max_streams: maxStreams, keepalive: 90_000, token: 'hunter2' }), {
    logger: { level: 'warn' },
    drainTimeoutMs: () => 12_000,
  });
  maxStreams = 7;
  const text = await metrics.registry.metrics();
  const series = text.split('\n').filter((l) => l.startsWith('infisical_proxy_live_setting{'));
  assert.deepEqual(series.sort(), [
    'infisical_proxy_live_setting{key="drain_timeout",value="12s"} 1',
    'infisical_proxy_live_setting{key="keepalive",value="1m30s"} 1',
    'infisical_proxy_live_setting{key="log_level",value="warn"} 1',
    'infisical_proxy_live_setting{key="max_streams",value="7"} 1',
    'infisical_proxy_live_setting{key="token",value="<redacted>"} 1',
  ]);
});
