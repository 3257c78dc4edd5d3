/**
 * The environment of the suite's programs: the daemons read INFISICAL_<DAEMON>_<KEY> for every key of their
 * schema and refuse a misspelt one with their prefix, but never a variable another program of the suite
 * documents (INFISICAL_CA_FINGERPRINT is infisical-connect's, and starts like infisical-ca's own).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { caConfigSchema } from '../../lib/ca/config.js';
import { gatewayConfigSchema } from '../../lib/gateway/config.js';
import { proxyConfigSchema } from '../../lib/proxy/config.js';
import { loadConfig } from '../../lib/runtime/config.js';
import { type ConfigSchema, envName, formatValue } from '../../lib/runtime/config-schema.js';
import { NON_DAEMON_ENV } from '../../lib/runtime/program-env.js';

const SCHEMAS: ConfigSchema[] = [caConfigSchema, proxyConfigSchema, gatewayConfigSchema];
const CA = resolve(fileURLToPath(import.meta.url), '../../../daemons/ca.js');
const noFile = () => undefined;

/** Values to try for a key with neither a default nor an example (one of them fits each such key). */
const CANDIDATES = [
  '127.0.0.1:9000',
  `sha256:${'ab'.repeat(32)}`,
  'https://ca.example:8443',
  'instance',
  'example.test',
  '/tmp/infisical-test',
  '10.0.0.0/8',
  '443',
  'pg=db.internal:5432',
];

/** A value the key accepts, as text: its default, else its sample-config example, else a fitting candidate. */
function sampleValue(schema: ConfigSchema, key: string): string | undefined {
  const spec = schema.keys[key]!;
  const text = spec.default === undefined ? undefined : formatValue(spec.type, spec.default);
  if (text || spec.example) return text || spec.example;
  return CANDIDATES.find((value) => {
    try {
      loadConfig(schema, { env: { ...requiredEnv(schema), [envName(schema, key)]: value }, readFile: noFile });
      return true;
    } catch {
      return false;
    }
  });
}

test('every key of every daemon is read from its INFISICAL_<DAEMON>_<KEY> variable', () => {
  for (const schema of SCHEMAS) {
    for (const key of Object.keys(schema.keys)) {
      const name = envName(schema, key);
      const value = sampleValue(schema, key);
      assert.ok(value, `${schema.daemon} key ${key}: no value to try`);
      const loaded = loadConfig(schema, { env: { ...requiredEnv(schema), [name]: value }, readFile: noFile });
      assert.deepEqual((loaded.origins as Record<string, unknown>)[key], { source: 'env', name }, name);
    }
  }
});

/** The required keys (none today), each set to its example. */
function requiredEnv(schema: ConfigSchema): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, spec] of Object.entries(schema.keys)) {
    if (spec.default === undefined && !spec.optional) env[envName(schema, key)] = spec.example ?? '';
  }
  return env;
}

test("no daemon key's variable is also another program's", () => {
  for (const schema of SCHEMAS) {
    for (const key of Object.keys(schema.keys)) assert.ok(!NON_DAEMON_ENV.has(envName(schema, key)), key);
  }
});

test("other programs' variables are not refused by a daemon; a misspelt one of its own still is", () => {
  for (const schema of SCHEMAS) {
    const env = Object.fromEntries([...NON_DAEMON_ENV].map((name) => [name, 'x']));
    assert.doesNotThrow(() =>
      loadConfig(schema, { env: { ...env, ...requiredEnv(schema), INFISICAL_FOO: '1' }, readFile: noFile }),
    );
    const misspelt = `INFISICAL_${schema.daemon.toUpperCase()}_LOG_LEVLE`;
    assert.throws(
      () => loadConfig(schema, { env: { ...requiredEnv(schema), [misspelt]: 'debug' }, readFile: noFile }),
      (err: Error) => err.message.includes(`environment ${misspelt}: unknown variable`),
    );
  }
});

test("infisical-ca runs with infisical-connect's variables and a stranger in its environment", () => {
  const dir = mkdtempSync(join(tmpdir(), 'program-env-'));
  try {
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('INFISICAL_') && v) env[k] = v;
    Object.assign(env, {
      INFISICAL_CA: 'https://ca.example:8443',
      INFISICAL_CA_FINGERPRINT: `sha256:${'ab'.repeat(32)}`,
      INFISICAL_CLIENT_SECRET: 'secret',
      INFISICAL_QUICKSTART_PORT_BASE: '26000',
      INFISICAL_FOO: 'bar',
    });
    const run = (args: string[]) =>
      spawnSync(process.execPath, [CA, ...args, '--state-dir', join(dir, 'ca')], { env, encoding: 'utf8' });
    const init = run(['init', '--json']);
    assert.equal(init.status, 0, init.stderr);
    const misspelt = spawnSync(process.execPath, [CA, 'org', 'list', '--state-dir', join(dir, 'ca')], {
      env: { ...env, INFISICAL_CA_STATE_DIRECTROY: '/tmp' },
      encoding: 'utf8',
    });
    assert.equal(misspelt.status, 78, misspelt.stderr);
    assert.match(misspelt.stderr, /environment INFISICAL_CA_STATE_DIRECTROY: unknown variable/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
