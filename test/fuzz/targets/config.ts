/** The config file format and command line (lib/runtime/config.ts, config-schema.ts). */
import fc from 'fast-check';
import { caConfigSchema } from '../../../lib/ca/config.js';
import { gatewayConfigSchema } from '../../../lib/gateway/config.js';
import { proxyConfigSchema } from '../../../lib/proxy/config.js';
import { type LoadedConfig, loadConfig } from '../../../lib/runtime/config.js';
import { type ConfigSchema, formatValue, type KeySpec, parseValue } from '../../../lib/runtime/config-schema.js';
import { HOSTILE_WORDS, hostileString, textMutants } from '../mutate.js';
import type { FuzzTarget, Seeds } from '../target.js';

const SCHEMAS = { ca: caConfigSchema, proxy: proxyConfigSchema, gateway: gatewayConfigSchema } as const;
type Daemon = keyof typeof SCHEMAS;
const schemaOf = (d: Daemon) => SCHEMAS[d] as unknown as ConfigSchema;

const PLACEHOLDERS: Record<string, string> = {
  'https://host:port': 'https://127.0.0.1:8443',
  'host:port': '127.0.0.1:2222',
  'sha256:hex': `sha256:${'ab'.repeat(32)}`,
  'instance|org': 'instance',
  path: '/var/lib/infisical',
};

/** The sample config with every key uncommented and each <placeholder> filled: a complete, valid file. */
export const uncommented = (text: string): string =>
  text.replace(/^#([a-z][a-z0-9_]* = )(.*)$/gm, (_line, key: string, value: string) => {
    const inner = /^<(.*)>$/.exec(value)?.[1];
    return key + (inner === undefined ? value : (PLACEHOLDERS[inner] ?? 'fuzz-1'));
  });

const value = fc.oneof(
  fc.constantFrom('30s', '1h30m', '0', 'true', 'off', '127.0.0.1:22', '[::1]:9', '/tmp/x', 'a,b,,c', '"  quoted  "'),
  fc.constantFrom('99999999999999999999d', '1e3', '-1', '0x10', 'x #comment', '""', '"', `${'1'.repeat(40)}ms`),
  hostileString,
);

const line = (d: Daemon) =>
  fc.oneof(
    fc.tuple(fc.constantFrom(...Object.keys(SCHEMAS[d].keys)), value).map(([k, v]) => `${k} = ${v}`),
    fc
      .tuple(fc.constantFrom(...HOSTILE_WORDS, 'config', 'ssh_listen_', 'Ssh_listen'), value)
      .map(([k, v]) => `${k} = ${v}`),
    fc.constantFrom('', '# comment', '   ', '=', '= x', '\uFEFFkey = 1', 'no equals sign'),
    fc.string({ maxLength: 60 }),
  );

interface ConfigInput {
  daemon: Daemon;
  text: string;
}

export const configFile: FuzzTarget<ConfigInput> = {
  name: 'config-file',
  covers: 'lib/runtime/config loadConfig/parseConfigText, config-schema parseValue and validators',
  arbitrary: (s: Seeds) => {
    const daemon = fc.constantFrom<Daemon>('ca', 'proxy', 'gateway');
    return fc.oneof(
      {
        weight: 3,
        arbitrary: fc.nat({ max: s.configs.length - 1 }).chain((i) => {
          const seed = s.configs[i]!;
          return textMutants([uncommented(seed.text)]).map((text) => ({ daemon: seed.daemon, text }));
        }),
      },
      {
        weight: 4,
        arbitrary: daemon.chain((d) =>
          fc.array(line(d), { maxLength: 30 }).map((lines) => ({ daemon: d, text: lines.join('\n') })),
        ),
      },
      {
        // Large files (up to half the 1 MiB the loader reads): one huge key, or thousands of unknown ones.
        weight: 1,
        arbitrary: fc.tuple(daemon, fc.nat({ max: 1 << 19 }), fc.boolean()).map(([d, n, one]) => ({
          daemon: d,
          text: one
            ? `${'k'.repeat(n)} = 1`
            : Array.from({ length: Math.floor(n / 20) }, (_, k) => `unknown_key_${k} = 1`).join('\n'),
        })),
      },
      {
        weight: 4,
        arbitrary: fc.nat({ max: s.configs.length - 1 }).chain((i) => {
          const seed = s.configs[i]!;
          return fc.tuple(fc.array(line(seed.daemon), { maxLength: 3 }), fc.nat()).map(([extra, at]) => {
            const lines = uncommented(seed.text).split('\n');
            lines.splice(at % (lines.length + 1), 0, ...extra);
            return { daemon: seed.daemon, text: lines.join('\n') };
          });
        }),
      },
    );
  },
  run: (c) => loadConfig(schemaOf(c.daemon), { readFile: () => c.text, env: {}, cwd: '/' }),
  check: (c, outcome) => {
    if (outcome.threw) return undefined;
    const loaded = outcome.value as LoadedConfig<Record<string, KeySpec>>;
    const schema = schemaOf(c.daemon);
    for (const raw of c.text.replace(/^\uFEFF/, '').split(/\r?\n/)) {
      const t = raw.trim();
      if (t === '' || t.startsWith('#')) continue;
      const key = t.slice(0, t.indexOf('=')).trim();
      if (!Object.hasOwn(schema.keys, key)) return `unknown key ${JSON.stringify(key)} accepted`;
    }
    for (const [key, spec] of Object.entries(schema.keys)) {
      const v = (loaded.config as Record<string, unknown>)[key];
      if (v === undefined) continue;
      const again = parseValue(spec.type, formatValue(spec.type, v), '/');
      if (!again.ok || JSON.stringify(again.value) !== JSON.stringify(v)) return `key ${key} does not round-trip`;
    }
    return undefined;
  },
};

/** Flags as yargs collects them (text, a list flag's repeats as an array, `--no-x` as false), parsed by the schema. */
export const commandLine: FuzzTarget<{ daemon: Daemon; flags: Record<string, unknown> }> = {
  name: 'config-argv',
  covers: 'lib/runtime/config loadConfig from collected flags',
  arbitrary: () =>
    fc.constantFrom<Daemon>('ca', 'proxy', 'gateway').chain((daemon) =>
      fc.record({
        daemon: fc.constant(daemon),
        flags: fc.dictionary(
          fc.oneof(
            fc.constantFrom(...Object.keys(SCHEMAS[daemon].keys).map((k) => k.replaceAll('_', '-')), 'ca', 'org'),
            hostileString,
          ),
          fc.oneof(value, fc.array(value, { maxLength: 3 }), fc.constantFrom(false, true, '')),
          { maxKeys: 8 },
        ),
      }),
    ),
  run: (c) => loadConfig(schemaOf(c.daemon), { flags: c.flags, env: {}, readFile: () => undefined }),
};

export const CONFIG_TARGETS = [configFile, commandLine];
