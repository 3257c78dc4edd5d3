/**
 * The commands the guides show are ones the programs take: every flag of every `infisical-*` command in a fenced
 * sh block of README.md and docs/ is one its (sub)command's --help lists (per docs/cli.md, itself checked
 * against the programs); proxy enrollment examples say where the proxy listens; and the operations guide answers
 * what deleting a policy rule does to live grants and how a proxy joins a running fleet.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';

const ROOT = join(import.meta.dirname, '../../..');
const read = (path: string) => readFileSync(join(ROOT, path), 'utf8');
const GUIDES = ['README.md', ...readdirSync(join(ROOT, 'docs')).map((f) => `docs/${f}`)].filter(
  (p) => p.endsWith('.md') && p !== 'docs/cli.md' && p !== 'docs/config.md',
);

/** `infisical-…` command lines of the guides' sh blocks, continuations joined, `$ca` and build paths resolved. */
function documentedCommands(): { page: string; words: string[] }[] {
  const out: { page: string; words: string[] }[] = [];
  for (const page of GUIDES) {
    for (const [, block] of read(page).matchAll(/^```sh\n([\s\S]*?)^```$/gm)) {
      const text = block!
        .replace(/\\\n\s*/g, ' ')
        .replace(/\$ca\b/g, 'infisical-ca')
        .replace(/runuser -u infisical-[a-z]+ --/g, 'runuser --')
        .replace(/node build\/daemons\/(ca|proxy|gateway|connect)\.js/g, 'infisical-$1');
      for (const line of text.split('\n')) {
        const code = line.replace(/\s#.*$/, '');
        for (const m of code.matchAll(/(?:^|[\s(])(infisical-(?:ca|proxy|gateway|connect))((?:\s+[^\s;|&#]+)*)/g)) {
          out.push({ page, words: [m[1]!, ...m[2]!.trim().split(/\s+/).filter(Boolean)] });
        }
      }
    }
  }
  return out;
}

/** docs/cli.md as help text per command path ('infisical-ca policy add' → its --help). */
function helpPages(): Map<string, string> {
  const cli = read('docs/cli.md');
  const pages = new Map<string, string>();
  for (const m of cli.matchAll(/^#{2,4} (infisical-[a-z]+(?: [a-z-]+)*)\n\n```text\n([\s\S]*?)^```$/gm)) {
    pages.set(m[1]!, m[2]!);
  }
  return pages;
}

test('every flag of a documented command is one its --help lists', () => {
  const pages = helpPages();
  const wrong: string[] = [];
  let checked = 0;
  for (const { page, words } of documentedCommands()) {
    // The command path the words name, global flags before it allowed: `infisical-connect --ca … ping --gateway`.
    let path = words[0]!;
    for (const w of words.slice(1)) if (pages.has(`${path} ${w}`)) path = `${path} ${w}`;
    const help = pages.get(path);
    if (!help) continue;
    for (const flag of words.filter((w) => /^--[a-z]/.test(w)).map((w) => w.replace(/=.*$/, ''))) {
      checked++;
      if (!new RegExp(`^\\s+${flag}\\s`, 'm').test(help)) wrong.push(`${page}: ${path} ${flag}`);
    }
  }
  assert.deepEqual(wrong, [], 'flags the programs do not take');
  assert.ok(checked > 40, `only ${checked} flags checked: did the guides' format change?`);
});

test('every proxy enrollment example says where the proxy listens', () => {
  const enrolls = documentedCommands().filter((c) => c.words[0] === 'infisical-proxy' && c.words[1] === 'enroll');
  assert.ok(enrolls.length >= 2, `${enrolls.length} proxy enroll examples found`);
  for (const { page, words } of enrolls) {
    for (const flag of ['--ssh-listen', '--tls-listen']) {
      assert.ok(words.includes(flag), `${page}: infisical-proxy enroll without ${flag}: ${words.join(' ')}`);
    }
  }
});

test('operations: what deleting a policy rule does to live grants, and how to end them now', () => {
  const page = read('docs/operations.md');
  const policy = page.slice(page.indexOf('## Policy'), page.indexOf('\n## ', page.indexOf('## Policy') + 1));
  assert.match(policy, /Deleting a rule ends no access already granted/);
  assert.match(policy, /stay valid until they expire \(`grant_ttl`/);
  assert.match(policy, /infisical-ca revoke grant /);
  assert.match(policy, /infisical-ca revoke identity /);
});

test('operations: adding a proxy to a running fleet is enroll and start, gateways follow the feed', () => {
  const page = read('docs/operations.md');
  const at = page.indexOf('### Add a proxy to a running fleet');
  assert.ok(at >= 0, 'no section on adding a proxy');
  const section = page.slice(at, page.indexOf('\n## ', at));
  assert.match(section, /infisical-proxy enroll/);
  assert.match(section, /within seconds/);
  assert.match(section, /no gateway is re-enrolled or restarted/);
  // The getting-started guide must not say gateways only learn proxies at enrollment or renewal.
  assert.doesNotMatch(read('docs/getting-started.md'), /listed at enrollment/);
});

test('no documented enroll puts its token on the command line (visible in ps): --token-file or the environment', () => {
  const enrolls = documentedCommands().filter((c) => c.words[1] === 'enroll');
  assert.ok(enrolls.length >= 4, `${enrolls.length} enroll examples found`);
  for (const { page, words } of enrolls) {
    assert.ok(!words.includes('--token'), `${page}: ${words.join(' ')}`);
  }
});
