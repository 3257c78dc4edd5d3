/**
 * The docs say what the code says: the generated references match the programs, every error code is
 * explained in the troubleshooting table (and nothing there is stale), every flag the config reference names is
 * one the program accepts, and every relative link leads to a file.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { ErrorCodes } from '../../lib/errors/codes.js';

const ROOT = join(import.meta.dirname, '../../..');
const read = (path: string) => readFileSync(join(ROOT, path), 'utf8');

test('docs/cli.md and docs/config.md are what the programs and schemas print (make docs)', async () => {
  const run = promisify(execFile);
  const result = await run(process.execPath, [join(ROOT, 'scripts/reference-docs.mjs'), '--check'], {
    cwd: ROOT,
  }).catch((err: { stderr?: string; code?: number }) => err);
  assert.ok(!('code' in result) || result.code === undefined, `stale reference: ${result.stderr}`);
});

test('troubleshooting explains every error code, and only codes that exist', () => {
  const page = read('docs/operations.md');
  const section = page.slice(page.indexOf('## Troubleshooting by error code'));
  const rows = new Set([...section.matchAll(/^\| `(E_[A-Z_]+)` /gm)].map((m) => m[1]));
  const known = new Set(Object.keys(ErrorCodes));
  assert.deepEqual(
    [...known].filter((c) => !rows.has(c)),
    [],
    'codes with no row in docs/operations.md',
  );
  assert.deepEqual(
    [...rows].filter((c) => !known.has(c!)),
    [],
    'rows for codes lib/errors/codes.ts does not have',
  );
});

test('every flag docs/config.md names is one the program accepts (per docs/cli.md)', () => {
  const config = read('docs/config.md');
  const cli = read('docs/cli.md');
  let checked = 0;
  for (const program of ['infisical-ca', 'infisical-proxy', 'infisical-gateway']) {
    const start = config.indexOf(`## ${program}:`);
    assert.ok(start >= 0, `${program} missing from docs/config.md`);
    const next = config.indexOf('\n## ', start + 1);
    const part = config.slice(start, next < 0 ? undefined : next);
    const cliStart = cli.indexOf(`\n## ${program}\n`);
    const cliNext = cli.indexOf('\n## ', cliStart + 1);
    const help = cli.slice(cliStart, cliNext < 0 ? undefined : cliNext);
    for (const [, flag] of part.matchAll(/Flag: (--[a-z0-9-]+)\./g)) {
      assert.match(
        help,
        new RegExp(`^\\s+${flag}\\s`, 'm'),
        `${program}: docs/config.md names ${flag}, --help has none`,
      );
      checked++;
    }
  }
  assert.ok(checked > 40, `only ${checked} flags found: did the format of docs/config.md change?`);
});

test('relative links in README.md and docs/ lead to files', () => {
  const pages = ['README.md', ...readdirSync(join(ROOT, 'docs')).map((f) => `docs/${f}`)].filter((p) =>
    p.endsWith('.md'),
  );
  const broken: string[] = [];
  for (const page of pages) {
    for (const [, target] of read(page).matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)) {
      if (/^[a-z]+:/.test(target!)) continue;
      if (!existsSync(join(ROOT, dirname(page), target!))) broken.push(`${page} → ${target}`);
    }
  }
  assert.deepEqual(broken, []);
});
