/**
 * A checkout is usable as an npm package: package.json's `bin` names the four programs, each a built file with a
 * `#!/usr/bin/env node` line, so `npm link` puts them on PATH and `npx infisical-ca …` runs them from the
 * checkout. Each is run here through its bin path (as npm links it) and through npx (offline), printing --help.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';

const ROOT = join(import.meta.dirname, '../../..');
const PROGRAMS = ['infisical-ca', 'infisical-proxy', 'infisical-gateway', 'infisical-connect'];
const run = promisify(execFile);
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { bin?: Record<string, string> };
// Help must not depend on who runs it.
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('INFISICAL_')));

test('package.json bin names the four programs, each a built file starting #!/usr/bin/env node', () => {
  assert.deepEqual(Object.keys(pkg.bin ?? {}).sort(), [...PROGRAMS].sort());
  for (const [name, file] of Object.entries(pkg.bin ?? {})) {
    assert.match(file, /^build\/daemons\/[a-z]+\.js$/, `${name}: ${file}`);
    const text = readFileSync(join(ROOT, file), 'utf8'); // throws when the file is not built
    assert.ok(text.startsWith('#!/usr/bin/env node\n'), `${name}: ${file} has no node shebang`);
  }
});

test('each program runs through its bin path, linked as npm links it, and prints --help', async () => {
  const bin = mkdtempSync(join(tmpdir(), 'infisical-bin-'));
  try {
    for (const [name, file] of Object.entries(pkg.bin ?? {})) {
      const target = join(ROOT, file);
      // What npm link / npm install do to a bin target: a symlink to it, the file made executable.
      chmodSync(target, statSync(target).mode | 0o755);
      symlinkSync(target, join(bin, name));
      // The shebang finds node on PATH: the one running the tests.
      const { stdout } = await run(join(bin, name), ['--help'], {
        env: { ...env, PATH: `${dirname(process.execPath)}:/usr/bin:/bin` },
      });
      assert.match(stdout, new RegExp(`^${name} `), `${name} --help`);
      assert.match(stdout, /--version/);
    }
  } finally {
    rmSync(bin, { recursive: true, force: true });
  }
  assert.equal(Object.keys(pkg.bin ?? {}).length, PROGRAMS.length);
});

test('npx runs each program from the checkout, offline', async () => {
  for (const name of PROGRAMS) {
    const { stdout } = await run('npx', ['--offline', '--no-install', name, '--help'], { cwd: ROOT, env });
    assert.match(stdout, new RegExp(`^${name} `), `npx ${name} --help`);
  }
});
