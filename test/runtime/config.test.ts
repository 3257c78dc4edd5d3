import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ConfigError, describeConfig, loadConfig, loadFromArgv, readConfigFile } from '../../lib/runtime/config.js';
import { flagOptions, renderSampleConfig } from '../../lib/runtime/config-doc.js';
import {
  defineSchema,
  each,
  formatDuration,
  hostPort,
  intRange,
  keys,
  parseDuration,
  parseHostPort,
} from '../../lib/runtime/config-schema.js';
import { runtimeKeys } from '../../lib/runtime/runtime-keys.js';

const schema = defineSchema('proxy', 'test proxy', {
  ...runtimeKeys({ opsListen: '127.0.0.1:9464' }),
  ssh_listen: keys.string({
    reload: 'live',
    default: '0.0.0.0:2222',
    description: 'SSH listener.',
    validate: hostPort,
  }),
  max_streams: keys.int({
    reload: 'live',
    default: 100,
    description: 'Streams per tunnel.',
    validate: intRange(1, 10_000),
  }),
  keepalive: keys.duration({ reload: 'live', default: 15_000, description: 'Keepalive interval.' }),
  strict: keys.bool({ reload: 'live', default: true, description: 'Be strict.' }),
  proxies: keys.list({ reload: 'live', default: [], description: 'Peers.', validate: each(hostPort) }),
  ca_file: keys.path({ reload: 'live', optional: true, description: 'CA bundle.' }),
  ca_url: keys.string({ reload: 'live', description: 'CA URL.', example: 'https://ca.example:8443' }),
  token: keys.string({
    reload: 'live',
    optional: true,
    secret: true,
    description: 'Enrollment token.',
    validate: (v) => (v.length >= 8 ? undefined : 'expected at least 8 characters'),
  }),
  listen_alias: keys.string({ reload: 'live', optional: true, env: 'PROXY_LISTEN', description: 'Custom env name.' }),
});

const PATH = '/etc/infisical/proxy.conf';
const files = (text: string | undefined) => (p: string) => (p === PATH ? text : undefined);

function refusal(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${err}`);
    assert.equal(err.code, 'E_CONFIG_INVALID');
    return err;
  }
  assert.fail('expected a refusal');
}

test('precedence: defaults < file < environment < flags, with origins', () => {
  const text = ['# comment', 'ca_url = https://file', 'max_streams = 7', 'keepalive = 1m', 'strict = no', ''].join(
    '\n',
  );
  // As yargs collects `--keepalive 5s --no-strict`.
  const { config, origins, configFileFound } = loadConfig(schema, {
    flags: { keepalive: '5s', strict: false },
    env: { INFISICAL_PROXY_MAX_STREAMS: '9', INFISICAL_PROXY_KEEPALIVE: '2m', INFISICAL_PROXY_SSH_LISTEN: '' },
    readFile: files(text),
  });
  assert.equal(configFileFound, true);
  assert.equal(config.ca_url, 'https://file');
  assert.deepEqual(origins.ca_url, { source: 'file', path: PATH, line: 2 });
  assert.equal(config.max_streams, 9);
  assert.deepEqual(origins.max_streams, { source: 'env', name: 'INFISICAL_PROXY_MAX_STREAMS' });
  assert.equal(config.keepalive, 5000);
  assert.deepEqual(origins.keepalive, { source: 'flag', flag: '--keepalive' });
  assert.equal(config.strict, false);
  // empty environment variable counts as unset
  assert.equal(config.ssh_listen, '0.0.0.0:2222');
  assert.deepEqual(origins.ssh_listen, { source: 'default' });
  assert.equal(config.ca_file, undefined);
  assert.equal(origins.ca_file, undefined);
  assert.ok(Object.isFrozen(config));
  assert.throws(() => {
    (config as { max_streams: number }).max_streams = 1;
  });
});

test('typed values: durations, lists, paths relative to the config file, custom env name', () => {
  const text = 'ca_url = x\nproxies = a.example:1, [::1]:2 ,\nca_file = certs/ca.pem\n';
  const { config } = loadConfig(schema, {
    flags: { 'ca-url': 'y' },
    env: { PROXY_LISTEN: 'alias' },
    readFile: files(text),
  });
  assert.deepEqual(config.proxies, ['a.example:1', '[::1]:2']);
  assert.equal(config.ca_file, '/etc/infisical/certs/ca.pem');
  assert.equal(config.ca_url, 'y');
  assert.equal(config.listen_alias, 'alias');
  assert.equal(parseDuration('1h30m'), 5_400_000);
  assert.equal(parseDuration('250ms'), 250);
  assert.equal(parseDuration('24h'), 86_400_000);
  assert.equal(parseDuration('30'), undefined);
  assert.equal(parseDuration('5 m'), undefined);
  assert.equal(formatDuration(5_400_000), '1h30m');
  assert.deepEqual(parseHostPort('[::1]:9464'), { host: '::1', port: 9464 });
  assert.equal(parseHostPort('host:70000'), undefined);
  const flagPath = loadConfig(schema, {
    flags: { 'ca-file': 'rel.pem', 'ca-url': 'z' },
    cwd: '/srv',
    readFile: files(undefined),
  });
  assert.equal(flagPath.config.ca_file, '/srv/rel.pem');
  assert.equal(flagPath.configFileFound, false);
});

test('a bad file value names the file, line, key and expectation', () => {
  const text = '\n\n\n\n\nca_url = x\nssh_listen = 2222\n';
  const err = refusal(() => loadConfig(schema, { readFile: files(text) }));
  assert.deepEqual(err.problems, [
    '/etc/infisical/proxy.conf line 7: key "ssh_listen": expected host:port (IPv6 as [addr]:port) (got "2222")',
  ]);
  assert.match(err.message, /^configuration is invalid: \/etc\/infisical\/proxy.conf line 7: key "ssh_listen"/);
});

test('bad environment and flag values name their source', () => {
  const err = refusal(() =>
    loadConfig(schema, {
      flags: { 'max-streams': '0', 'ca-url': 'x' },
      env: { INFISICAL_PROXY_KEEPALIVE: '15' },
      readFile: files(undefined),
    }),
  );
  assert.deepEqual(err.problems, [
    'flag --max-streams: key "max_streams": expected an integer from 1 to 10000 (got "0")',
    'environment INFISICAL_PROXY_KEEPALIVE: key "keepalive": expected a duration like 30s, 5m, 24h or 1h30m (got "15")',
  ]);
});

test('every file problem is reported at once: unknown, repeated, malformed, inline comment', () => {
  const text = [
    'ca_url = x',
    'ssh_lisen = 1.2.3.4:5',
    'ca_url = y',
    'just words',
    'log_level = info # loud',
    'strict = maybe',
  ].join('\n');
  const err = refusal(() => loadConfig(schema, { readFile: files(text) }));
  assert.deepEqual(err.problems, [
    `${PATH} line 2: unknown key "ssh_lisen" (did you mean "ssh_listen"?)`,
    `${PATH} line 3: key "ca_url": already set on line 1`,
    `${PATH} line 4: expected "key = value"`,
    `${PATH} line 5: key "log_level": inline comments are not supported (put the comment on its own line)`,
    `${PATH} line 6: key "strict": expected true or false (got "maybe")`,
  ]);
  // quoting keeps a # and blanks
  const quoted = loadConfig(schema, { readFile: files('ca_url = " a # b "\n') });
  assert.equal(quoted.config.ca_url, ' a # b ');
});

test('required keys, missing explicit files and unknown variables are refused', () => {
  const missing = refusal(() => loadConfig(schema, { readFile: files(undefined) }));
  assert.deepEqual(missing.problems, [
    'key "ca_url": required; set it in /etc/infisical/proxy.conf, INFISICAL_PROXY_CA_URL or --ca-url',
  ]);
  const explicit = refusal(() =>
    loadConfig(schema, {
      env: { INFISICAL_PROXY_CONFIG: '/nope.conf', INFISICAL_PROXY_CA_URL: 'x' },
      readFile: files(undefined),
    }),
  );
  assert.deepEqual(explicit.problems, ['/nope.conf: config file not found']);
  const typo = refusal(() =>
    loadConfig(schema, {
      env: { INFISICAL_PROXY_CA_UR: 'x', INFISICAL_PROXY_CA_URL: 'x' },
      readFile: files(undefined),
    }),
  );
  assert.deepEqual(typo.problems, ['environment INFISICAL_PROXY_CA_UR: unknown variable']);
});

test('secret values are never echoed', () => {
  const err = refusal(() => loadConfig(schema, { readFile: files('ca_url = x\ntoken = hunter2\n') }));
  assert.deepEqual(err.problems, [`${PATH} line 2: key "token": expected at least 8 characters`]);
  const loaded = loadConfig(schema, { readFile: files('ca_url = x\ntoken = hunter2hunter2\n') });
  const described = describeConfig(schema, loaded);
  assert.deepEqual(described.token, { value: '<redacted>', from: `${PATH} line 2` });
  assert.deepEqual(described.keepalive, { value: '15s', from: 'built-in default' });
  assert.ok(!JSON.stringify(described).includes('hunter2'));
});

test('one key reads the same from a flag, the environment and the file: the schema parses all three', () => {
  const cases: { key: 'keepalive' | 'strict' | 'max_streams' | 'proxies'; text: string; want: unknown }[] = [
    { key: 'keepalive', text: '1h30m', want: 5_400_000 },
    { key: 'strict', text: 'yes', want: true },
    { key: 'strict', text: 'off', want: false },
    { key: 'max_streams', text: '0042', want: 42 },
    { key: 'proxies', text: 'a:1, b:2', want: ['a:1', 'b:2'] },
  ];
  for (const { key, text, want } of cases) {
    const flag = key.replaceAll('_', '-');
    const env = `INFISICAL_PROXY_${key.toUpperCase()}`;
    const base = { env: { INFISICAL_PROXY_CA_URL: 'x' } as Record<string, string> };
    const fromFlag = loadConfig(schema, { ...base, flags: { [flag]: text }, readFile: files(undefined) });
    const fromEnv = loadConfig(schema, { env: { ...base.env, [env]: text }, readFile: files(undefined) });
    const fromFile = loadConfig(schema, { ...base, readFile: files(`${key} = ${text}\n`) });
    for (const [source, loaded] of [
      ['flag', fromFlag],
      ['env', fromEnv],
      ['file', fromFile],
    ] as const) {
      assert.deepEqual(loaded.config[key], want, `${key} = ${text} from ${source}`);
      assert.equal(loaded.origins[key]?.source, source);
    }
  }
  // What the file refuses, the flag refuses with the same words (yargs no longer coerces "0x10" to 16).
  for (const [key, text] of [
    ['max_streams', '0x10'],
    ['keepalive', '15'],
    ['strict', 'maybe'],
  ] as const) {
    const fromFlag = refusal(() =>
      loadConfig(schema, { flags: { [key.replaceAll('_', '-')]: text, 'ca-url': 'x' }, readFile: files(undefined) }),
    );
    const fromFile = refusal(() => loadConfig(schema, { readFile: files(`ca_url = x\n${key} = ${text}\n`) }));
    assert.equal(
      fromFlag.problems[0]!.replace(/^flag --[a-z-]+: /, ''),
      fromFile.problems[0]!.replace(/^.* line 2: /, ''),
    );
  }
  // As yargs collects them: a bare boolean flag is "", --no-flag is false, a repeated list flag an array.
  const collected = loadConfig(schema, {
    flags: { strict: '', proxies: ['a:1', 'b:2'], config: '/x.conf' },
    env: { INFISICAL_PROXY_CA_URL: 'x' },
    readFile: (p) => (p === '/x.conf' ? '' : undefined),
  });
  assert.equal(collected.config.strict, true);
  assert.deepEqual(collected.config.proxies, ['a:1', 'b:2']);
  assert.equal(collected.configPath, '/x.conf');
  assert.equal(
    loadConfig(schema, { flags: { strict: false, 'ca-url': 'x' }, readFile: files(undefined) }).config.strict,
    false,
  );
});

test('schema definitions refuse bad names and defaults that fail their own validation', () => {
  assert.throws(
    () =>
      defineSchema('proxy', 's', {
        bad: keys.string({ reload: 'live', default: 'nope', description: 'd', validate: hostPort }),
      }),
    /default of key "bad"/,
  );
  assert.throws(
    () => defineSchema('proxy', 's', { BadName: keys.string({ reload: 'live', description: 'd' }) }),
    /bad key name/,
  );
  assert.throws(
    () => defineSchema('proxy', 's', { config: keys.string({ reload: 'live', description: 'd' }) }),
    /bad key name/,
  );
});

test('the sample config documents every key and, uncommented, loads as the defaults', () => {
  const sample = renderSampleConfig(schema);
  for (const key of Object.keys(schema.keys)) assert.match(sample, new RegExp(`^#${key} = `, 'm'));
  assert.match(sample, /Environment: INFISICAL_PROXY_SSH_LISTEN\. Flag: --ssh-listen\./);
  // Uncomment the keys that have defaults; the example for the required one; drop the optional ones.
  const optional = new Set(['ca_file', 'token', 'listen_alias', 'state_directory']);
  const uncommented = sample
    .split('\n')
    .filter((line) => !optional.has(/^#([a-z_]+) = /.exec(line)?.[1] ?? ''))
    .map((line) => line.replace(/^#([a-z_]+ = )/, '$1'))
    .join('\n');
  const dir = mkdtempSync(join(tmpdir(), 'cfg-'));
  const path = join(dir, 'proxy.conf');
  writeFileSync(path, uncommented);
  const fromFile = loadConfig(schema, {
    flags: { config: path },
    readFile: readConfigFile,
  });
  const fromDefaults = loadConfig(schema, {
    env: { INFISICAL_PROXY_CA_URL: 'https://ca.example:8443' },
    readFile: () => undefined,
  });
  assert.deepEqual({ ...fromFile.config }, { ...fromDefaults.config });
  assert.equal(fromFile.origins.keepalive?.source, 'file');
});

test('readConfigFile: absent is undefined, unreadable is refused', () => {
  assert.equal(readConfigFile('/nonexistent/infisical.conf'), undefined);
  const dir = mkdtempSync(join(tmpdir(), 'cfg-'));
  assert.deepEqual(refusal(() => readConfigFile(dir)).problems, [`${dir}: cannot read (EISDIR)`]);
});

test('flags come from the schema: a declared name, the dashed key by default, or none', () => {
  const flagged = defineSchema('gateway', 'flag names', {
    ...runtimeKeys({ opsListen: '127.0.0.1:9472' }),
    ca_url: keys.string({ reload: 'live', flag: 'ca', description: 'CA URL.' }),
    max_streams: keys.int({ reload: 'live', default: 10, description: 'Streams.' }),
    renew: keys.bool({ reload: 'live', default: true, flag: null, description: 'Renew.' }),
  });
  const argv = { ca: 'https://flag', 'max-streams': 3, renew: false, 'ca-url': 'ignored', 'state-dir': '/srv/gw' };
  const none = { env: {}, readFile: () => undefined };
  const loaded = loadFromArgv(flagged, argv, none);
  assert.equal(loaded.config.ca_url, 'https://flag');
  assert.deepEqual(loaded.origins.ca_url, { source: 'flag', flag: '--ca' });
  assert.equal(loaded.config.max_streams, 3);
  assert.equal(loaded.config.renew, true, 'a key without a flag is not set from argv');
  assert.equal(loaded.config.state_directory, '/srv/gw', 'state_directory is --state-dir in every daemon');
  const sample = renderSampleConfig(flagged);
  assert.match(sample, /INFISICAL_GATEWAY_CA_URL\. Flag: --ca\.\n# Reload: live .*\n#ca_url = /);
  assert.match(sample, /INFISICAL_GATEWAY_RENEW\. No flag\.\n# Reload: live .*\n#renew = true/);
  assert.doesNotMatch(sample, /--ca-url|--state-directory|--renew/);
  const missing = refusal(() => loadFromArgv(flagged, {}, none));
  assert.match(
    missing.message,
    /key "ca_url": required; set it in \/etc\/infisical\/gateway\.conf, INFISICAL_GATEWAY_CA_URL or --ca/,
  );
});

test('flagOptions: yargs options named and described by the schema, text only, never with a default', () => {
  const options = flagOptions(schema, ['max_streams', 'strict', 'proxies', 'keepalive']);
  assert.deepEqual(options['max-streams'], {
    type: 'string',
    string: true,
    describe: 'Streams per tunnel. (default: 100)',
  });
  assert.deepEqual(options['strict'], {
    type: 'string',
    string: true,
    describe: 'Be strict. (default: true; --strict alone means true, --no-strict false)',
  });
  assert.deepEqual(options['proxies'], { type: 'array', string: true, describe: 'Peers. (default: (empty))' });
  assert.deepEqual(options['keepalive'], {
    type: 'string',
    string: true,
    describe: 'Keepalive interval. (default: 15s)',
  });
  const noFlag = defineSchema('gateway', 'x', {
    renew: keys.bool({ reload: 'live', default: true, flag: null, description: 'R.' }),
  });
  assert.throws(() => flagOptions(noFlag, ['renew']), /config key renew of gateway has no flag/);
  assert.throws(() => flagOptions(noFlag, ['nope']), /config key nope of gateway has no flag/);
});
