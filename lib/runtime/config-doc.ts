/**
 * Renders a config schema for people: `--help` text and a documented sample config file (for docs/ and
 * packaging). Both come from the same declaration the loader enforces, so they stay true.
 */
import {
  type ConfigSchema,
  defaultConfigPath,
  envName,
  flagOf,
  formatValue,
  type KeySpec,
  type Reload,
  type ValueType,
} from './config-schema.js';

const PLACEHOLDERS: Record<ValueType, string> = {
  string: 'text',
  int: 'n',
  bool: '',
  duration: 'duration',
  list: 'a,b,...',
  path: 'path',
};

const RELOAD_TEXT: Record<Reload, string> = {
  live: 'live (SIGHUP applies it to the running daemon).',
  restart: 'restart (SIGHUP logs a change; it takes effect at the next start).',
  command: 'commands only (enroll, init, api-cert read it; serve does not).',
};

function placeholder(spec: KeySpec): string {
  return spec.placeholder ?? PLACEHOLDERS[spec.type];
}

function defaultText(spec: KeySpec): string {
  if (spec.default !== undefined) return `default: ${formatValue(spec.type, spec.default) || '(empty)'}`;
  return spec.optional ? 'optional' : 'required';
}

function wrap(text: string, width: number, indent: string): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(indent + line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(indent + line);
  return lines;
}

/** A complete, commented sample config file; every key is commented out at its default. */
export function renderSampleConfig(schema: ConfigSchema, program = `infisical-${schema.daemon}`): string {
  const out: string[] = [
    `# ${defaultConfigPath(schema)}: configuration of ${program}.`,
    `# ${schema.summary}`,
    '#',
    '# Format: one "key = value" per line. Lines starting with # are comments; a # after a value is not',
    '# (quote the value with "..." to keep blanks). Lists are comma-separated; durations read 250ms, 30s,',
    "# 5m, 24h, 7d or 1h30m; relative paths are resolved against this file's directory. Unknown keys are",
    '# refused at start with the line number.',
    '# Precedence: command-line flags > environment variables > this file > built-in defaults.',
    '# Reload (systemctl reload, SIGHUP): each key says whether a running serve applies it (live), needs a',
    '# restart (a change is logged "<key> changed, takes effect at restart") or is read by commands only.',
  ];
  for (const [key, spec] of Object.entries(schema.keys)) {
    out.push('');
    out.push(...wrap(spec.description, 110, '# '));
    const flag = flagOf(key, spec);
    const env = `Environment: ${envName(schema, key)}. ${flag ? `Flag: ${flag}.` : 'No flag.'}`;
    const kind = spec.placeholder ?? spec.type;
    out.push(
      `# Type: ${kind}. ${spec.default === undefined ? (spec.optional ? 'Optional. ' : 'Required. ') : ''}${env}`,
    );
    out.push(`# Reload: ${RELOAD_TEXT[spec.reload]}`);
    if (spec.secret)
      out.push('# Secret: prefer a systemd credential or an environment file readable only by the service.');
    const shown =
      spec.default !== undefined ? formatValue(spec.type, spec.default) : (spec.example ?? `<${placeholder(spec)}>`);
    out.push(`#${key} = ${shown}`);
  }
  out.push('');
  return out.join('\n');
}

export interface FlagOption {
  type: 'string' | 'array';
  string: true;
  describe: string;
}

/**
 * Command-line options (yargs' `.options()`) for these config keys, named and described from the schema, so
 * `--help`, the sample config and the loader agree. Every one collects text only (a list flag: one text per
 * use): the schema parses it as it parses the environment and the file, so the three accept the same input.
 * No default is set: an absent flag must stay absent, or it would hide the environment and the config file.
 */
export function flagOptions(schema: ConfigSchema, keys: readonly string[]): Record<string, FlagOption> {
  const options: Record<string, FlagOption> = {};
  for (const key of keys) {
    const spec = schema.keys[key];
    const flag = spec && flagOf(key, spec);
    if (!spec || !flag) throw new Error(`config key ${key} of ${schema.daemon} has no flag`);
    const bare = spec.type === 'bool' ? `; ${flag} alone means true, --no-${flag.slice(2)} false` : '';
    const describe = `${spec.description} (${defaultText(spec)}${bare})`;
    options[flag.slice(2)] = { type: spec.type === 'list' ? 'array' : 'string', string: true, describe };
  }
  return options;
}
