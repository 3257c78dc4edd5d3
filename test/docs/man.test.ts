/**
 * Man pages and bash completion are generated from the programs' own --help (scripts/man-pages.mjs, the walk
 * docs/cli.md is made from): each page renders without a groff warning, has the sections a man page should,
 * names every command docs/cli.md has, and states the exit statuses the code uses; the completion offers the
 * subcommands and options the help lists.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { EXIT_CONFIG, EXIT_REVOKED } from '../../lib/runtime/exit-status.js';

const ROOT = join(import.meta.dirname, '../../..');
const PROGRAMS = ['infisical-ca', 'infisical-proxy', 'infisical-gateway', 'infisical-connect'];
const SECTIONS = ['NAME', 'SYNOPSIS', 'DESCRIPTION', 'COMMANDS', 'OPTIONS', 'EXIT STATUS', 'FILES', 'SEE ALSO'];
const run = promisify(execFile);

/** The command paths docs/cli.md has a heading for, per program ('infisical-ca policy add', …). */
function commandsInCliReference(program: string): string[] {
  const cli = readFileSync(join(ROOT, 'docs/cli.md'), 'utf8');
  return [...cli.matchAll(/^#{2,4} (infisical-[a-z]+(?: [a-z-]+)*)$/gm)]
    .map((m) => m[1]!)
    .filter((c) => c.startsWith(`${program} `));
}

describe('man pages and completion (scripts/man-pages.mjs)', () => {
  let out: string;
  before(() => {
    out = mkdtempSync(join(tmpdir(), 'infisical-man-'));
    execFileSync(process.execPath, [join(ROOT, 'scripts/man-pages.mjs'), '--out', out], { cwd: ROOT });
  });
  after(() => rmSync(out, { recursive: true, force: true }));

  it('every page renders with groff -man -ww without a warning, and through man -l', async () => {
    for (const program of PROGRAMS) {
      const page = join(out, 'man', `${program}.1`);
      const groff = await run('groff', ['-man', '-Tutf8', '-ww', '-z', page]);
      assert.equal(groff.stderr, '', `${program}: groff warnings`);
      const man = await run('man', ['--warnings', '-l', page], { env: { ...process.env, MANWIDTH: '100' } });
      assert.equal(man.stderr, '', `${program}: man -l warnings`);
      assert.match(man.stdout, new RegExp(`^${program.toUpperCase()}\\(1\\)`));
    }
  });

  it('each page has the sections and names every command of docs/cli.md', async () => {
    for (const program of PROGRAMS) {
      const page = join(out, 'man', `${program}.1`);
      // Wide enough that no heading wraps; backspace overstrikes (bold) removed.
      const rendered = await run('man', ['-l', page], { env: { ...process.env, MANWIDTH: '250' } });
      const text = rendered.stdout.replace(new RegExp(`.${String.fromCharCode(8)}`, 'g'), '');
      for (const section of SECTIONS) assert.match(text, new RegExp(`^${section}$`, 'm'), `${program}: ${section}`);
      const commands = commandsInCliReference(program);
      assert.ok(commands.length >= 3, `${program}: docs/cli.md lists only ${commands.length} commands`);
      const missing = commands.filter((c) => !new RegExp(`^ {3}${c}(?: [<[]|$)`, 'm').test(text));
      assert.deepEqual(missing, [], `${program}: commands missing from the man page`);
      for (const other of PROGRAMS.filter((p) => p !== program)) assert.match(text, new RegExp(`${other}\\(1\\)`));
    }
  });

  it('exit statuses are the ones the code uses', async () => {
    const text = (program: string) => readFileSync(join(out, 'man', `${program}.1`), 'utf8');
    for (const program of ['infisical-proxy', 'infisical-gateway']) {
      for (const code of [0, 1, EXIT_REVOKED, EXIT_CONFIG]) {
        assert.match(text(program), new RegExp(`^\\.B ${code}$`, 'm'), `${program}: exit ${code}`);
      }
    }
    assert.match(text('infisical-ca'), new RegExp(`^\\.B ${EXIT_CONFIG}$`, 'm'));
    // infisical-connect: its own table from --help, every row.
    const help = execFileSync(process.execPath, [join(ROOT, 'build/daemons/connect.js'), '--help'], {
      encoding: 'utf8',
    });
    const codes = [...help.slice(help.indexOf('Exit codes:')).matchAll(/^(\d+) /gm)].map((m) => m[1]);
    assert.ok(codes.length >= 10, help);
    for (const code of codes) assert.match(text('infisical-connect'), new RegExp(`^\\.B ${code}$`, 'm'));
  });

  it('bash completion offers subcommands and options, skipping option values', () => {
    const complete = (program: string, ...words: string[]) => {
      const script = [
        `source ${JSON.stringify(join(out, 'completion', program))}`,
        `COMP_WORDS=(${[program, ...words].map((w) => JSON.stringify(w)).join(' ')})`,
        `COMP_CWORD=${words.length}`,
        `_${program.replace(/-/g, '_')}`,
        `printf '%s\\n' "\${COMPREPLY[@]}"`,
      ].join('\n');
      return execFileSync('bash', ['-c', script], { encoding: 'utf8' }).split('\n').filter(Boolean);
    };
    assert.deepEqual(complete('infisical-ca', 'pol'), ['policy']);
    assert.deepEqual(
      complete('infisical-ca', 'policy', '').filter((w) => !w.startsWith('-')),
      ['add', 'list', 'delete'],
    );
    assert.deepEqual(complete('infisical-ca', '--state-dir', 'policy', 'policy', 'd'), ['delete']);
    assert.deepEqual(complete('infisical-proxy', 'enroll', '--ssh-l'), ['--ssh-listen']);
    assert.deepEqual(complete('infisical-connect', 't'), ['tcp']);
    assert.ok(complete('infisical-gateway', 'serve', '--').includes('--allow-cidr'));
  });
});
