/**
 * The config loader: built-in defaults < config file < environment < flags, into a frozen typed object.
 * A refusal names the key and where the bad value came from, e.g.
 *   /etc/infisical/proxy.conf line 7: key "ssh_listen": expected host:port (got "2222")
 * and every problem is reported at once, so an operator fixes the file in one pass.
 *
 * File format (/etc/infisical/<daemon>.conf):
 *   - one `key = value` per line; keys are the snake_case names shown by --help;
 *   - lines whose first non-blank character is `#` are comments; blank lines are ignored;
 *   - no inline comments: ` #` inside an unquoted value is refused (quote the value if you mean it);
 *   - a value may be wrapped in double quotes to keep leading/trailing blanks (no escapes inside);
 *   - lists are comma-separated; durations read 250ms, 30s, 5m, 24h, 7d or 1h30m;
 *   - relative paths are resolved against the config file's directory (flags/env: the working directory);
 *   - unknown and repeated keys are refused.
 * Environment variables set to the empty string count as unset (container tools often pass empty ones).
 */
import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { GatewayError } from '../errors/codes.js';
import {
  type ConfigOf,
  type ConfigSchema,
  configEnvName,
  configFlags,
  defaultConfigPath,
  envName,
  flagOf,
  formatValue,
  type KeySpec,
  type Keys,
  parseValue,
} from './config-schema.js';
import { NON_DAEMON_ENV } from './program-env.js';

export type Origin =
  | { source: 'default' }
  | { source: 'file'; path: string; line: number }
  | { source: 'env'; name: string }
  | { source: 'flag'; flag: string };

export function describeOrigin(origin: Origin): string {
  switch (origin.source) {
    case 'default':
      return 'built-in default';
    case 'file':
      return `${origin.path} line ${origin.line}`;
    case 'env':
      return `environment ${origin.name}`;
    case 'flag':
      return `flag ${origin.flag}`;
  }
}

/** Problems reported at most: enough to fix a file in one pass, bounded for a file that is not a config at all. */
export const MAX_CONFIG_PROBLEMS = 50;

/** A refused configuration: `problems` lists each one (the first MAX_CONFIG_PROBLEMS), prefixed with its source. */
export class ConfigError extends GatewayError {
  readonly problems: readonly string[];
  constructor(all: readonly string[]) {
    const problems =
      all.length > MAX_CONFIG_PROBLEMS
        ? [...all.slice(0, MAX_CONFIG_PROBLEMS), `… and ${all.length - MAX_CONFIG_PROBLEMS} more problems`]
        : all;
    super('E_CONFIG_INVALID', problems.length === 1 ? problems[0] : `\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

interface RawValue {
  raw: string;
  origin: Origin;
}

const MAX_CONFIG_BYTES = 1 << 20;

/** Reads a config file; undefined when it does not exist. Other failures (permissions, size) are refused. */
export function readConfigFile(path: string): string | undefined {
  let data: Buffer;
  try {
    data = readFileSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    throw new ConfigError([`${path}: cannot read (${code ?? String(err)})`]);
  }
  if (data.length > MAX_CONFIG_BYTES) throw new ConfigError([`${path}: larger than ${MAX_CONFIG_BYTES} bytes`]);
  return data.toString('utf8');
}

/** Parses config file text into raw values by key; problems are appended, never thrown. */
export function parseConfigText(
  schema: ConfigSchema,
  text: string,
  path: string,
  problems: string[],
): Map<string, RawValue> {
  const values = new Map<string, RawValue>();
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  lines.forEach((line, index) => {
    const where = `${path} line ${index + 1}`;
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#')) return;
    const eq = trimmed.indexOf('=');
    if (eq === -1) {
      problems.push(`${where}: expected "key = value"`);
      return;
    }
    const key = trimmed.slice(0, eq).trim();
    let raw = trimmed.slice(eq + 1).trim();
    // An own key only: "constructor" or "__proto__" must be refused as unknown, not found on the prototype.
    const spec = Object.hasOwn(schema.keys, key) ? schema.keys[key] : undefined;
    if (!spec) {
      // Hints only for problems that will be shown (ConfigError keeps the first MAX_CONFIG_PROBLEMS).
      const hint = problems.length < MAX_CONFIG_PROBLEMS ? closestKey(key, Object.keys(schema.keys)) : undefined;
      problems.push(`${where}: unknown key ${quoted(key)}${hint ? ` (did you mean "${hint}"?)` : ''}`);
      return;
    }
    const previous = values.get(key);
    if (previous?.origin.source === 'file') {
      problems.push(`${where}: key "${key}": already set on line ${previous.origin.line}`);
      return;
    }
    if (raw.length >= 2 && raw.startsWith('"') && raw.endsWith('"')) raw = raw.slice(1, -1);
    else if (/\s#/.test(raw)) {
      problems.push(`${where}: key "${key}": inline comments are not supported (put the comment on its own line)`);
      return;
    }
    values.set(key, { raw, origin: { source: 'file', path, line: index + 1 } });
  });
  return values;
}

export interface LoadOptions {
  /**
   * The command line as collected (yargs' argv): flag name without dashes → the text given (a list flag may
   * repeat: an array). Only the flags the schema declares (`configFlags`) and `config` are read; their text is
   * parsed here, exactly like the same key's text in the environment or the file. Omit to ignore flags.
   */
  flags?: Readonly<Record<string, unknown>>;
  /** Environment; defaults to none (pass process.env explicitly). */
  env?: Readonly<Record<string, string | undefined>>;
  /** Working directory for relative paths from flags and environment. */
  cwd?: string;
  /** Injected for tests; returns undefined when the file does not exist. */
  readFile?: (path: string) => string | undefined;
}

export interface LoadedConfig<S extends Keys> {
  readonly config: ConfigOf<S>;
  /** Where each key's value came from; undefined for an optional key left unset. */
  readonly origins: { readonly [N in keyof S]: Origin | undefined };
  readonly configPath: string;
  readonly configFileFound: boolean;
}

/**
 * Merges defaults < file < environment < flags and validates every key. The config file path is
 * --config, else $INFISICAL_<DAEMON>_CONFIG, else /etc/infisical/<daemon>.conf; an explicitly named file
 * must exist, the default one may be absent. Throws ConfigError (E_CONFIG_INVALID) listing every problem.
 */
export function loadConfig<S extends Keys>(schema: ConfigSchema<S>, options: LoadOptions = {}): LoadedConfig<S> {
  const env = options.env ?? {};
  const cwd = options.cwd ?? process.cwd();
  const readFile = options.readFile ?? readConfigFile;
  const flags = flagValues(schema, options.flags ?? {});
  const problems: string[] = [];

  const flagPath = options.flags?.['config'];
  const explicitPath = (typeof flagPath === 'string' ? flagPath : undefined) ?? nonEmpty(env[configEnvName(schema)]);
  const configPath = explicitPath ?? defaultConfigPath(schema);
  const text = readFile(configPath);
  if (text === undefined && explicitPath !== undefined) problems.push(`${configPath}: config file not found`);
  const fileValues =
    text === undefined ? new Map<string, RawValue>() : parseConfigText(schema, text, configPath, problems);

  // A misspelt variable with our prefix would otherwise be silently ignored; another program's is not ours to judge.
  const prefix = `INFISICAL_${schema.daemon.toUpperCase().replaceAll('-', '_')}_`;
  const known = new Set([configEnvName(schema), ...Object.keys(schema.keys).map((key) => envName(schema, key))]);
  for (const name of Object.keys(env)) {
    if (name.startsWith(prefix) && !known.has(name) && !NON_DAEMON_ENV.has(name))
      problems.push(`environment ${name}: unknown variable`);
  }

  const config: Record<string, unknown> = {};
  const origins: Record<string, Origin | undefined> = {};
  for (const [key, spec] of Object.entries(schema.keys) as [string, KeySpec][]) {
    const name = envName(schema, key);
    const envRaw = nonEmpty(env[name]);
    const chosen: RawValue | undefined =
      flags.get(key) ??
      (envRaw !== undefined ? { raw: envRaw, origin: { source: 'env', name } } : undefined) ??
      fileValues.get(key);
    if (!chosen) {
      if (spec.default !== undefined) {
        config[key] = spec.default;
        origins[key] = { source: 'default' };
      } else if (spec.optional) {
        config[key] = undefined;
        origins[key] = undefined;
      } else {
        const flag = flagOf(key, spec);
        problems.push(`key "${key}": required; set it in ${configPath}, ${name}${flag ? ` or ${flag}` : ''}`);
      }
      continue;
    }
    const baseDir = chosen.origin.source === 'file' ? dirname(chosen.origin.path) : cwd;
    const parsed = parseValue(spec.type, chosen.raw, baseDir);
    const problem = parsed.ok ? spec.validate?.(parsed.value) : parsed.expected;
    if (problem) {
      const got = spec.secret ? '' : ` (got "${chosen.raw}")`;
      problems.push(`${describeOrigin(chosen.origin)}: key "${key}": ${problem}${got}`);
      continue;
    }
    if (parsed.ok) config[key] = parsed.value;
    origins[key] = chosen.origin;
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return Object.freeze({
    config: Object.freeze(config) as ConfigOf<S>,
    origins: Object.freeze(origins) as LoadedConfig<S>['origins'],
    configPath,
    configFileFound: text !== undefined,
  });
}

/** The effective configuration for a startup log line: secrets redacted, each value with its origin. */
export function describeConfig<S extends Keys>(
  schema: ConfigSchema<S>,
  loaded: LoadedConfig<S>,
): Record<string, { value: string | null; from: string }> {
  const out: Record<string, { value: string | null; from: string }> = {};
  for (const [key, spec] of Object.entries(schema.keys) as [string, KeySpec][]) {
    const value = (loaded.config as Record<string, unknown>)[key];
    const origin = (loaded.origins as Record<string, Origin | undefined>)[key];
    out[key] = {
      value: value === undefined ? null : spec.secret ? '<redacted>' : formatValue(spec.type, value),
      from: origin ? describeOrigin(origin) : 'unset',
    };
  }
  return out;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

/** A key as quoted in a problem: bounded, so a line of a megabyte does not become a message of one. */
function quoted(key: string): string {
  return JSON.stringify(key.length > 80 ? `${key.slice(0, 80)}…` : key);
}

/** Longest input worth a "did you mean": no key is this long, and edit distance costs length × length. */
const MAX_HINT_INPUT = 64;

/** A close key name for "did you mean", by edit distance ≤ 2. */
function closestKey(input: string, candidates: string[]): string | undefined {
  if (input.length > MAX_HINT_INPUT) return undefined;
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of candidates) {
    // The distance is at least the difference in length: skip what cannot beat the best.
    if (Math.abs(input.length - candidate.length) >= bestDistance) continue;
    const d = editDistance(input, candidate);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) {
      next[j] = Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    row = next;
  }
  return row[b.length]!;
}

/**
 * The raw text of every declared flag that was given. The command-line parser only collects text (the daemons
 * declare every config flag as a string, `flagOptions`): typing and validation are the schema's, the same as for
 * the environment and the file. A bare boolean flag (`--ops-allow-remote`) reads as "true", `--no-<flag>` as
 * "false"; a repeated list flag joins its items with commas.
 */
function flagValues(schema: ConfigSchema, argv: Readonly<Record<string, unknown>>): Map<string, RawValue> {
  const flags = new Map<string, RawValue>();
  for (const [flag, key] of configFlags(schema)) {
    const value = argv[flag];
    if (value === undefined) continue;
    let raw = Array.isArray(value) ? value.map(String).join(',') : String(value);
    if (raw === '' && schema.keys[key]?.type === 'bool') raw = 'true';
    flags.set(key, { raw, origin: { source: 'flag', flag: `--${flag}` } });
  }
  return flags;
}

/**
 * Loads a daemon's config from its collected command line (yargs' argv): every flag the schema declares
 * (`configFlags`) that was given, and `--config`. The three daemons share this, so the flags that set keys are
 * exactly the ones the schema, and so the docs and the sample config, name.
 */
export function loadFromArgv<S extends Keys>(
  schema: ConfigSchema<S>,
  argv: Readonly<Record<string, unknown>>,
  options: Omit<LoadOptions, 'flags'> = { env: process.env },
): LoadedConfig<S> {
  return loadConfig(schema, { ...options, flags: argv });
}
