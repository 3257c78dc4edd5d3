/**
 * --help never breaks a word: yargs' ESM build wraps columns with cliui's character wrap, which cut "state" into
 * "st" / "ate" at the column edge; patches/cliui+8.0.1.patch makes it break at spaces.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';

const root = join(import.meta.dirname, '..', '..', '..');

function help(program: string, args: string[] = []): string {
  return execFileSync(process.execPath, [join(root, 'build', 'daemons', `${program}.js`), ...args, '--help'], {
    encoding: 'utf8',
    env: { ...process.env, COLUMNS: '' },
  });
}

/** Every word of `text` (its descriptions, as written in the source) must appear whole in the help output. */
function assertWordsWhole(output: string, descriptions: string[]): void {
  const words = new Set(output.split(/\s+/));
  for (const d of descriptions) {
    for (const w of d.split(/\s+/)) assert.ok(words.has(w), `"${w}" of "${d}" is broken in:\n${output}`);
  }
}

test('long command descriptions wrap between words, in every program', () => {
  assertWordsWhole(help('gateway'), [
    'enroll with the CA (keys are made here; certificates, trust anchors and proxies go to the state database)',
    'keep tunnels to every proxy and serve streams (READY=1 once a tunnel is up, SIGHUP reload, SIGTERM drain)',
  ]);
  assertWordsWhole(help('proxy'), [
    'what this state directory is enrolled as, its certificates, revoked or not, and what a running serve reports',
  ]);
  assertWordsWhole(help('ca'), [
    'revoke a gateway, proxy, identity, grant or certificate (published in the signed feed)',
  ]);
  for (const line of help('gateway', ['serve']).split('\n')) assert.ok(line.length <= 120, line);
});
