/**
 * The first `make run` installs and builds for minutes: it says which step runs. Run here on a copy of the
 * Makefile and scripts/deps.sh, with npm, npx, dpkg-query and node replaced by stand-ins on PATH that only
 * record that they ran (nothing is installed or built).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(fileURLToPath(import.meta.url), '../../../..');

function standIn(dir: string, name: string, body: string): void {
  writeFileSync(join(dir, name), `#!/bin/sh\n${body}\n`);
  chmodSync(join(dir, name), 0o755);
}

test('make run says what it is doing: npm ci (first run only), compiling TypeScript, then the quickstart', () => {
  const dir = mkdtempSync(join(tmpdir(), 'make-run-'));
  try {
    mkdirSync(join(dir, 'scripts'));
    mkdirSync(join(dir, 'patches'));
    mkdirSync(join(dir, 'bin'));
    copyFileSync(join(ROOT, 'Makefile'), join(dir, 'Makefile'));
    copyFileSync(join(ROOT, 'scripts/deps.sh'), join(dir, 'scripts/deps.sh'));
    chmodSync(join(dir, 'scripts/deps.sh'), 0o755);
    writeFileSync(join(dir, 'package.json'), '{}\n');
    writeFileSync(join(dir, 'package-lock.json'), '{}\n');
    const log = join(dir, 'ran.log');
    const bin = join(dir, 'bin');
    standIn(bin, 'dpkg-query', "printf 'install ok installed'"); // every Debian package present
    standIn(bin, 'npm', `echo "npm $*" >> ${log}; mkdir -p node_modules`);
    standIn(bin, 'npx', `echo "npx $*" >> ${log}`);
    standIn(bin, 'fake-node', `echo "node $*" >> ${log}; echo "quickstart output"`);
    const make = () =>
      spawnSync('make', ['--no-print-directory', 'run', `NODE=${join(bin, 'fake-node')}`], {
        cwd: dir,
        encoding: 'utf8',
        env: { ...process.env, PATH: `${bin}:${process.env['PATH']}` },
        timeout: 60_000,
      });

    const first = make();
    assert.equal(first.status, 0, first.stderr);
    const lines = first.stdout.split('\n');
    const at = (re: RegExp) => lines.findIndex((l) => re.test(l));
    const npm = at(/^npm ci: .*native addons.*…$/);
    const npmDone = at(/^ {2}npm packages ready \(\d+ s\)$/);
    const tsc = at(/^compiling TypeScript/);
    const quickstart = at(/^quickstart output$/);
    assert.ok(npm >= 0 && npmDone > npm && tsc > npmDone && quickstart > tsc, first.stdout);
    assert.deepEqual(readFileSync(log, 'utf8').trim().split('\n'), [
      'npm ci --no-audit --no-fund',
      'npx tsc -p tsconfig.json',
      'node build/daemons/quickstart.js',
    ]);

    const again = make(); // packages up to date: no npm step, still says it compiles
    assert.equal(again.status, 0, again.stderr);
    assert.doesNotMatch(again.stdout, /npm/);
    assert.match(again.stdout, /^compiling TypeScript into build\/…\nquickstart output\n$/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
