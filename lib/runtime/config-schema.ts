/**
 * How a daemon declares its configuration keys, once: name, type, default, environment variable, description,
 * optional validation. The loader (config.ts), the help text and the sample config (config-doc.ts) all read
 * the same declaration, so they cannot drift apart.
 */
import { isAbsolute, resolve } from 'node:path';

export type ValueType = 'string' | 'int' | 'bool' | 'duration' | 'list' | 'path';

/** The TypeScript type each value type loads as. Durations are milliseconds; paths are absolute. */
export interface ValueTypes {
  string: string;
  int: number;
  bool: boolean;
  duration: number;
  list: readonly string[];
  path: string;
}

/** Returns undefined when the value is acceptable, else what was expected (e.g. "expected host:port"). */
export type Validator<T> = (value: T) => string | undefined;

/**
 * What SIGHUP does with a key of a running `serve`: `live`, the new value is applied to the running daemon;
 * `restart`, it takes effect at the next start (a change is logged "<key> changed, takes effect at restart");
 * `command`, serve never reads it (enroll, init, api-cert do), so a reload has nothing to apply.
 */
export type Reload = 'live' | 'restart' | 'command';

export interface KeySpec<K extends ValueType = ValueType, O extends boolean = boolean, R extends Reload = Reload> {
  readonly type: K;
  /** Applied by SIGHUP, at restart, or by commands only (see Reload); docs/config.md prints it per key. */
  readonly reload: R;
  /** One or two sentences for --help and the sample config. */
  readonly description: string;
  /** Built-in default; a key with neither default nor `optional: true` is required. */
  readonly default?: ValueTypes[K];
  /** The key may stay unset; it then loads as undefined. */
  readonly optional?: O;
  /** Environment variable; defaults to INFISICAL_<DAEMON>_<KEY>. */
  readonly env?: string;
  /**
   * The daemon's command-line flag for this key, without the dashes: default the key with dashes
   * (`max_streams` → `max-streams`); null when only the file and the environment set it. The daemons register
   * exactly these flags (`configFlags`), and the docs print them, so the two agree.
   */
  readonly flag?: string | null;
  /** Shown in --help for the flag's argument, e.g. "host:port". */
  readonly placeholder?: string;
  /** Shown in the sample config for a key without a default. */
  readonly example?: string;
  /** Value is never echoed in errors or the effective-config log. */
  readonly secret?: boolean;
  // Method syntax on purpose: keeps KeySpec<'int'> assignable to KeySpec<ValueType> (parameter bivariance).
  validate?(value: ValueTypes[K]): string | undefined;
}

export type KeyValue<S> =
  S extends KeySpec<infer K, infer O> ? (O extends true ? ValueTypes[K] | undefined : ValueTypes[K]) : never;

export type Keys = Record<string, KeySpec<ValueType, boolean, Reload>>;

/** The keys of a schema that SIGHUP applies to the running daemon. */
export type LiveKeys<S extends Keys> = { [N in keyof S]: S[N]['reload'] extends 'live' ? N : never }[keyof S];

/** The frozen, typed object a daemon receives. */
export type ConfigOf<S extends Keys> = { readonly [N in keyof S]: KeyValue<S[N]> };

export interface ConfigSchema<S extends Keys = Keys> {
  /** Short daemon name: "ca", "proxy", "gateway". */
  readonly daemon: string;
  /** One line for --help. */
  readonly summary: string;
  readonly keys: S;
}

type KeyOptions<K extends ValueType, O extends boolean> = Omit<KeySpec<K, O, Reload>, 'type'>;

/** Whether a key's options say `optional: true`: decides if its value may load as undefined. */
type OptionalOf<P> = P extends { readonly optional: true } ? true : false;

function keyOf<K extends ValueType>(type: K) {
  // Generic over the whole options object (not over `optional` alone, which inference through Omit widened to
  // boolean): `ConfigOf` then knows which keys may be undefined, so daemons need no hand-written config type.
  return <P extends KeyOptions<K, boolean>>(spec: P): KeySpec<K, OptionalOf<P>, P['reload']> =>
    ({ ...spec, type }) as KeySpec<K, OptionalOf<P>, P['reload']>;
}

/** Key builders: `keys.duration({ default: 30_000, description: '...' })`. */
export const keys = {
  string: keyOf('string'),
  int: keyOf('int'),
  bool: keyOf('bool'),
  duration: keyOf('duration'),
  list: keyOf('list'),
  path: keyOf('path'),
};

const KEY_NAME = /^[a-z][a-z0-9_]*$/;
const DAEMON_NAME = /^[a-z][a-z0-9-]*$/;

/** Declares a daemon's schema; throws (a programming error) on bad names or defaults that fail validation. */
export function defineSchema<S extends Keys>(daemon: string, summary: string, keySpecs: S): ConfigSchema<S> {
  if (!DAEMON_NAME.test(daemon)) throw new Error(`config schema: bad daemon name "${daemon}"`);
  for (const [name, spec] of Object.entries(keySpecs)) {
    if (!KEY_NAME.test(name) || name === 'config') throw new Error(`config schema: bad key name "${name}"`);
    if (spec.optional && spec.default !== undefined) {
      throw new Error(`config schema: key "${name}" is both optional and defaulted`);
    }
    if (spec.default !== undefined) {
      const problem = spec.validate?.(spec.default);
      if (problem) throw new Error(`config schema: default of key "${name}" fails validation: ${problem}`);
    }
  }
  return Object.freeze({ daemon, summary, keys: Object.freeze({ ...keySpecs }) });
}

export function envName(schema: ConfigSchema, key: string): string {
  return schema.keys[key]?.env ?? `INFISICAL_${schema.daemon}_${key}`.toUpperCase().replaceAll('-', '_');
}

export function flagName(key: string): string {
  return `--${key.replaceAll('_', '-')}`;
}

/** The flag that sets a key (`--max-streams`), or undefined when the key has none. */
export function flagOf(key: string, spec: KeySpec): string | undefined {
  if (spec.flag === null) return undefined;
  return spec.flag === undefined ? flagName(key) : `--${spec.flag}`;
}

/** Every key that has a flag, by flag name without the dashes: what a daemon's command line maps to keys. */
export function configFlags(schema: ConfigSchema): ReadonlyMap<string, string> {
  const flags = new Map<string, string>();
  for (const [key, spec] of Object.entries(schema.keys)) {
    const flag = flagOf(key, spec);
    if (flag) flags.set(flag.slice(2), key);
  }
  return flags;
}

export function configEnvName(schema: ConfigSchema): string {
  return `INFISICAL_${schema.daemon.toUpperCase().replaceAll('-', '_')}_CONFIG`;
}

export function defaultConfigPath(schema: ConfigSchema): string {
  return `/etc/infisical/${schema.daemon}.conf`;
}

export type Parsed<T> = { ok: true; value: T } | { ok: false; expected: string };

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const TRUE_WORDS = new Set(['true', 'yes', 'on', '1']);
const FALSE_WORDS = new Set(['false', 'no', 'off', '0']);

/** "30s", "5m", "24h", "1h30m", "250ms", "0" → milliseconds. Bare numbers are refused: the unit is never guessed. */
export function parseDuration(raw: string): number | undefined {
  if (raw === '0') return 0;
  if (!/^(\d+(ms|s|m|h|d))+$/.test(raw)) return undefined;
  let total = 0;
  for (const [, digits, unit] of raw.matchAll(/(\d+)(ms|s|m|h|d)/g)) {
    total += Number(digits) * DURATION_UNITS[unit!]!;
  }
  return Number.isSafeInteger(total) ? total : undefined;
}

/** Renders milliseconds in the same syntax parseDuration reads. */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0';
  let rest = ms;
  let out = '';
  for (const unit of ['d', 'h', 'm', 's', 'ms']) {
    const size = DURATION_UNITS[unit]!;
    if (rest >= size) {
      out += `${Math.floor(rest / size)}${unit}`;
      rest %= size;
    }
  }
  return out;
}

/** Turns the text of one source into a typed value. `baseDir` anchors relative paths. */
export function parseValue<K extends ValueType>(type: K, raw: string, baseDir: string): Parsed<ValueTypes[K]> {
  const ok = (value: unknown): Parsed<ValueTypes[K]> => ({ ok: true, value: value as ValueTypes[K] });
  switch (type) {
    case 'string':
      return ok(raw);
    case 'int':
      return /^-?\d+$/.test(raw) && Number.isSafeInteger(Number(raw))
        ? ok(Number(raw))
        : { ok: false, expected: 'expected an integer' };
    case 'bool': {
      const word = raw.toLowerCase();
      if (TRUE_WORDS.has(word)) return ok(true);
      if (FALSE_WORDS.has(word)) return ok(false);
      return { ok: false, expected: 'expected true or false' };
    }
    case 'duration': {
      const ms = parseDuration(raw);
      return ms === undefined ? { ok: false, expected: 'expected a duration like 30s, 5m, 24h or 1h30m' } : ok(ms);
    }
    case 'list':
      return ok(
        Object.freeze(
          raw
            .split(',')
            .map((item) => item.trim())
            .filter((item) => item.length > 0),
        ),
      );
    case 'path':
      if (raw.length === 0 || raw.includes('\0')) return { ok: false, expected: 'expected a file system path' };
      return ok(isAbsolute(raw) ? resolve(raw) : resolve(baseDir, raw));
  }
  return { ok: false, expected: `unknown type ${type}` };
}

/** Renders a typed value back to config-file text (for the sample config and help). */
export function formatValue(type: ValueType, value: unknown): string {
  if (type === 'duration') return formatDuration(value as number);
  if (type === 'list') return (value as readonly string[]).join(', ');
  return String(value);
}

// ---- validators --------------------------------------------------------------------------------------------

export interface HostPort {
  host: string;
  port: number;
}

/** "127.0.0.1:9464", "[::1]:9464", "proxy.example:443" → host and port; undefined if not host:port. */
export function parseHostPort(raw: string): HostPort | undefined {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(raw);
  if (!match) return undefined;
  const port = Number(match[3]);
  if (port > 65535) return undefined;
  return { host: (match[1] ?? match[2])!, port };
}

export const hostPort: Validator<string> = (value) =>
  parseHostPort(value) ? undefined : 'expected host:port (IPv6 as [addr]:port)';

export function oneOf(...allowed: string[]): Validator<string> {
  return (value) => (allowed.includes(value) ? undefined : `expected one of ${allowed.join(', ')}`);
}

export function intRange(min: number, max: number): Validator<number> {
  return (value) => (value >= min && value <= max ? undefined : `expected an integer from ${min} to ${max}`);
}

export function durationRange(minMs: number, maxMs: number): Validator<number> {
  return (value) =>
    value >= minMs && value <= maxMs
      ? undefined
      : `expected a duration from ${formatDuration(minMs)} to ${formatDuration(maxMs)}`;
}

/** Applies an item validator to every element of a list. */
export function each(validator: Validator<string>): Validator<readonly string[]> {
  return (items) => {
    for (const item of items) {
      const problem = validator(item);
      if (problem) return `${problem} in every item (item "${item}")`;
    }
    return undefined;
  };
}

export function httpsUrl(value: string): string | undefined {
  try {
    return new URL(value).protocol === 'https:' ? undefined : 'expected an https:// URL';
  } catch {
    return 'expected an https:// URL';
  }
}

/** One https:// URL or a comma-separated list of them (the replicas of one CA, tried in order). */
export function httpsUrls(value: string): string | undefined {
  const parts = value.split(',').map((p) => p.trim());
  if (parts.some((p) => p === '')) return 'expected https:// URLs separated by commas';
  for (const p of parts) {
    const problem = httpsUrl(p);
    if (problem) return `${problem} (${JSON.stringify(p)})`;
  }
  return undefined;
}
