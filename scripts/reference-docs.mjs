#!/usr/bin/env node
// Writes the reference pages from what the programs themselves declare (after `make build`), so they can only
// say what the code says:
//   docs/cli.md     every program's --help, walking every subcommand a help page lists (build/daemons/*.js);
//   docs/config.md  every config key with its type, default, variable and flag (build/lib/*/config.js, the
//                   schema the loader enforces, rendered as the packaged /etc/infisical/<name>.conf).
//   node scripts/reference-docs.mjs           rewrite both (`make docs`)
//   node scripts/reference-docs.mjs --check   exit 1, naming the page and the first difference, when one is stale
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { PROGRAMS, runner, walk } from './help-walk.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

function renderCli() {
  const parts = [
    '# CLI reference',
    '',
    "Generated from each program's own `--help` by `scripts/reference-docs.mjs` (`make docs`); a test fails when",
    'this page and the programs disagree. Every program also takes `--version`. Options that set configuration',
    'keys follow flags > environment (`INFISICAL_<NAME>_<KEY>`) > `/etc/infisical/<name>.conf` > defaults; the',
    'keys are in [config.md](config.md), a walk-through in [getting-started.md](getting-started.md).',
    '',
  ];
  for (const [program, , what] of PROGRAMS) parts.push(`- [\`${program}\`](#${program}): ${what}`);
  for (const [program, name] of PROGRAMS) {
    for (const { path, page } of walk(program, runner(ROOT, program, name))) {
      parts.push(
        '',
        `${'#'.repeat(Math.min(path.length + 2, 4))} ${[program, ...path].join(' ')}`,
        '',
        '```text',
        page,
        '```',
      );
    }
  }
  return `${parts.join('\n')}\n`;
}

async function renderConfig() {
  const { renderSampleConfig } = await import(pathToFileURL(join(ROOT, 'build/lib/runtime/config-doc.js')).href);
  const parts = [
    '# Configuration reference',
    '',
    'Each daemon reads `/etc/infisical/<name>.conf` (or `--config FILE`), then the environment, then its flags:',
    'flags > environment > file > built-in default. Unknown keys, bad values and missing required keys stop the',
    'daemon at start with a message naming the key, its source and the line (exit code 78, `E_CONFIG_INVALID`).',
    'Below is each file exactly as the packages install it, every key commented out at its default. Generated',
    'from the schemas the loader enforces (`lib/<name>/config.ts`) by `scripts/reference-docs.mjs`.',
    "Each key's `Reload:` line says what `systemctl reload` (SIGHUP) does with it: `live` keys are applied to the",
    "running daemon (each one's value in force is on `/metrics` as `infisical_<name>_live_setting{key,value}`),",
    'a changed `restart` key is logged as "<key> changed, takes effect at restart", and `commands only` keys are',
    'not read by `serve` at all.',
  ];
  for (const [program, name] of PROGRAMS) {
    if (name === 'connect') continue;
    const schema = Object.values(await import(pathToFileURL(join(ROOT, `build/lib/${name}/config.js`)).href)).find(
      (v) => v && typeof v === 'object' && 'keys' in v && 'daemon' in v,
    );
    parts.push(
      '',
      `## ${program}: /etc/infisical/${name}.conf`,
      '',
      '```ini',
      renderSampleConfig(schema).trimEnd(),
      '```',
    );
  }
  return `${parts.join('\n')}\n`;
}

const pages = { 'docs/cli.md': renderCli(), 'docs/config.md': await renderConfig() };
let stale = 0;
for (const [page, text] of Object.entries(pages)) {
  const file = join(ROOT, page);
  if (!process.argv.includes('--check')) {
    writeFileSync(file, text);
    process.stdout.write(`wrote ${page}\n`);
    continue;
  }
  const current = existsSync(file) ? readFileSync(file, 'utf8') : '';
  if (current === text) continue;
  const a = current.split('\n');
  const b = text.split('\n');
  const at = a.findIndex((line, i) => line !== b[i]);
  process.stderr.write(
    `${page} is stale: line ${at + 1} reads ${JSON.stringify(a[at] ?? '')}, the code says ` +
      `${JSON.stringify(b[at] ?? '')}; run make docs\n`,
  );
  stale++;
}
process.exit(stale ? 1 : 0);
