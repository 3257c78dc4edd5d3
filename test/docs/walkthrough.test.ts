/**
 * A new user's first minutes, as docs/getting-started.md writes them: the ```sh blocks of the guide are taken from
 * the document itself and run, so the guide cannot drift from what works. Every block is classified: RUN here
 * (the quickstart part) or SKIPPED with the reason (package installs and systemctl, which test/packaging runs
 * in a booted Debian); a new block fails the test until it is put in one list.
 *
 * Changed from the text, and only this: `make run` runs its Makefile recipe (the build is done already), with a
 * temporary state folder and a free port base (the guide says both move: --port-base, the state folder), and
 * the placeholders the quickstart prints (`sha256:…`, `--client-id …`) take the values it printed. Everything
 * started is stopped with Ctrl-C (SIGINT) as the guide says, and the test checks that no process is left.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';

const ROOT = join(import.meta.dirname, '../../..');
const GUIDE = readFileSync(join(ROOT, 'docs/getting-started.md'), 'utf8');
const DOC_PORT_BASE = 18400; // the guide's ports are the quickstart's defaults

/** Blocks by their first line. */
const RUN = ['make run', 'curl http://127.0.0.1:18481/'];
const SKIPPED: Record<string, string> = {
  'sudo runuser -u infisical-ca -- infisical-ca init': 'package install and systemctl: test/packaging',
  'ca="sudo runuser -u infisical-ca -- infisical-ca"': 'needs the installed CA under systemd: test/packaging',
  '$ca token --kind proxy': 'needs the installed CA: test/packaging',
  'sudo runuser -u infisical-proxy -- infisical-proxy enroll': 'separate hosts and systemctl: test/packaging',
  'sudo runuser -u infisical-gateway -- infisical-gateway enroll': 'separate hosts and systemctl: test/packaging',
  'infisical-connect tcp': 'needs a deployment with db.internal and psql: test/packaging runs connect tcp',
};

const blocks = [...GUIDE.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
const key = (block: string) => {
  const first = block
    .split('\n')[0]!
    .replace(/\s+#.*$/, '')
    .trim();
  return [...RUN, ...Object.keys(SKIPPED)].find((k) => first.startsWith(k)) ?? first;
};

test('every sh block of getting-started.md is either run here or skipped with a reason', () => {
  const unclassified = blocks.map(key).filter((k) => !RUN.includes(k) && !(k in SKIPPED));
  assert.deepEqual(unclassified, [], 'new blocks: add each to RUN or SKIPPED in test/docs/walkthrough.test.ts');
  for (const k of [...RUN, ...Object.keys(SKIPPED)]) {
    assert.ok(
      blocks.some((b) => key(b) === k),
      `"${k}" is listed but no longer in the guide`,
    );
  }
});

/** The processes whose command line names `marker` (the state folder), this one excepted. */
function processesNaming(marker: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p) && Number(p) !== process.pid)) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (cmd.includes(marker)) found.push(`${pid}: ${cmd}`);
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

/** `make run` as the Makefile runs it once built: its recipe, read from the Makefile. */
function makeRunRecipe(): string[] {
  const makefile = readFileSync(join(ROOT, 'Makefile'), 'utf8');
  const m = /^run: build\n\t@?(.+)$/m.exec(makefile);
  assert.ok(m, 'Makefile has no `run: build` target with a one-line recipe');
  return m[1]!.replace('$(NODE)', process.execPath).split(/\s+/).filter(Boolean);
}

test('the quickstart blocks run as written', { timeout: 150_000 }, async () => {
  const run = promisify(execFile);
  const state = mkdtempSync(join(tmpdir(), 'walkthrough-'));
  // below Linux's ephemeral range (32768+), so no outgoing connection of another test can hold one of our ports
  const base = 20000 + Math.floor(Math.random() * 12000);
  const adapt = (text: string, printed: { fingerprint: string; clientId: string }) =>
    text
      .replace(/\b18[45]\d\d\b/g, (port) => String(base + Number(port) - DOC_PORT_BASE))
      .replace(/\.state\/quickstart/g, state)
      .replace(/sha256:…/g, `sha256:${printed.fingerprint}`)
      .replace(/--client-id …/g, `--client-id ${printed.clientId}`);
  let quickstart: ChildProcess | undefined;
  try {
    const [makeRun, handRun] = RUN.map((k) => blocks.find((b) => key(b) === k)!);
    assert.equal(makeRun!.trim(), 'make run');
    const [cmd, ...args] = makeRunRecipe();
    quickstart = spawn(cmd!, [...args, '--state', state, '--port-base', String(base)], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true, // its own process group, so nothing of it can outlive the test
    });
    let output = '';
    quickstart.stdout!.on('data', (d: Buffer) => (output += d));
    quickstart.stderr!.on('data', (d: Buffer) => (output += d));
    const exited = new Promise<number | null>((resolve) => quickstart!.on('exit', (code) => resolve(code)));
    const deadline = Date.now() + 90_000;
    while (!/Press Ctrl-C to stop everything/.test(output)) {
      assert.ok(Date.now() < deadline, `make run did not come up within 90 s:\n${output}`);
      assert.equal(quickstart.exitCode, null, `make run exited:\n${output}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    // "You should see QUICKSTART OK"
    assert.match(output, /QUICKSTART OK/);
    const printed = {
      // the quickstart prints the bare hex; the guide writes sha256:…, which the programs take too
      fingerprint: /--ca-fingerprint (?:sha256:)?([0-9a-f]{64})\b/.exec(output)?.[1] ?? '',
      clientId: /--client-id (\S+)/.exec(output)?.[1] ?? '',
    };
    assert.ok(printed.fingerprint && printed.clientId, output);

    // The block's commands, one by one (continuation lines joined), each must succeed.
    const commands = adapt(handRun!, printed)
      .replace(/\\\n\s*/g, ' ')
      .split('\n')
      .filter((l) => l.trim());
    assert.equal(commands.length, 2, handRun);
    const curl = await run('bash', ['-c', commands[0]!], { cwd: ROOT });
    assert.match(curl.stdout, /hello from the private network/);
    const ping = await run('bash', ['-c', commands[1]!], { cwd: ROOT, timeout: 60_000 });
    assert.match(ping.stdout + ping.stderr, /\b1 of 1 proxy reaches gateway gw-demo\b/, ping.stdout + ping.stderr);

    // "Ctrl-C stops everything."
    quickstart.kill('SIGINT');
    const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r('timeout'), 30_000))]);
    assert.equal(code, 0, `make run did not stop on Ctrl-C within 30 s:\n${output}`);
    let left = processesNaming(state);
    for (let i = 0; i < 50 && left.length; i++) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      left = processesNaming(state);
    }
    assert.deepEqual(left, [], 'processes left after Ctrl-C');
  } finally {
    if (quickstart?.pid) {
      try {
        process.kill(-quickstart.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    rmSync(state, { recursive: true, force: true });
  }
});
