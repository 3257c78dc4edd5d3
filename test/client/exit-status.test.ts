/**
 * `infisical-connect` exits with the status its --help gives for the error: every error code belongs to exactly
 * one line of the table (or to the documented default, 1). Before, E_ORG_MISMATCH exited 5, which the help
 * gave to E_ROUTE_FORBIDDEN alone, and a busy --listen port came as E_INTERNAL (exit 11) after a grant had
 * already been fetched.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { exitCodeFor } from '../../lib/client/errors.js';
import { type ErrorCode, ErrorCodes } from '../../lib/errors/codes.js';
import { freePort } from '../helpers/openssh.js';
import { runConnect } from './connect-cli.js';
import { GATEWAY, type Installation, ORG, startInstallation } from './installation.js';

let inst: Installation;

before(async () => {
  inst = await startInstallation({ proxies: 1, policyTargets: ['127.0.0.1:9'], allowPorts: [9] });
});

after(async () => {
  await inst?.close();
});

/** The exit code table as `infisical-connect --help` prints it: status → the codes and prefixes named. */
async function helpTable(): Promise<Map<number, string[]>> {
  const r = await runConnect(['--help']);
  assert.equal(r.code, 0);
  const help = r.events.map((e) => String(e['line'] ?? '')).join('\n');
  const section = help.slice(help.indexOf('Exit codes:'));
  assert.ok(section.length > 20, help);
  const table = new Map<number, string[]>();
  for (const m of section.matchAll(/^(\d+) (.*)$/gm)) {
    table.set(
      Number(m[1]),
      [...(m[2] ?? '').matchAll(/\bE_[A-Z_]+\*?/g)].map((c) => c[0]),
    );
  }
  return table;
}

const matches = (pattern: string, code: string) =>
  pattern.endsWith('*') ? code.startsWith(pattern.slice(0, -1)) : code === pattern;

test('every error code is in exactly one line of the help, or the default 1, and exits with it', async () => {
  const table = await helpTable();
  assert.deepEqual(table.get(1), [], 'status 1 is the default for the codes named nowhere');
  for (const code of Object.keys(ErrorCodes) as ErrorCode[]) {
    const lines = [...table].filter(([, patterns]) => patterns.some((p) => matches(p, code))).map(([s]) => s);
    assert.ok(lines.length <= 1, `${code} is in lines ${lines.join(', ')}`);
    assert.equal(exitCodeFor(code), lines[0] ?? 1, `${code}: the help says ${lines[0] ?? 'nothing (so 1)'}`);
  }
  for (const [status, patterns] of table) {
    for (const p of patterns)
      assert.ok(
        Object.keys(ErrorCodes).some((c) => matches(p, c)),
        `${status}: ${p}`,
      );
  }
});

test('a busy --listen port fails before the CA is asked: its address, "in use", exit status 12', async () => {
  const busy = net.createServer();
  busy.listen(0, '127.0.0.1');
  await once(busy, 'listening');
  const port = (busy.address() as AddressInfo).port;
  const closedCa = await freePort(); // nothing listens: asking the CA would fail with E_CA_UNREACHABLE
  try {
    for (const [mode, target] of [
      ['tcp', '127.0.0.1:9'],
      ['http', 'http://127.0.0.1:9'],
    ]) {
      const r = await runConnect([mode!, '--target', target!, '--gateway', GATEWAY, '--listen', `127.0.0.1:${port}`], {
        INFISICAL_CA: `https://127.0.0.1:${closedCa}`,
        INFISICAL_CA_FINGERPRINT: `sha256:${'ab'.repeat(32)}`,
        INFISICAL_ORG: ORG,
        INFISICAL_CLIENT_ID: 'app',
        INFISICAL_CLIENT_SECRET: 'secret',
      });
      assert.equal(r.code, 12, r.stderr);
      assert.match(r.stderr, new RegExp(`E_ADDRESS_IN_USE: --listen 127\\.0\\.0\\.1:${port} is in use`));
      assert.doesNotMatch(r.stderr, /asking the CA/);
      assert.match((await helpTable()).get(12)?.join() ?? '', /E_ADDRESS_IN_USE/);
    }
  } finally {
    busy.close();
  }
});

test('the CA refusing another org (E_ORG_MISMATCH) and an unknown gateway (E_NOT_FOUND) exit as documented', async () => {
  const table = await helpTable();
  const base = {
    INFISICAL_CA: inst.caUrl,
    INFISICAL_CA_FINGERPRINT: `sha256:${inst.fingerprint}`,
    INFISICAL_CLIENT_ID: inst.clientId,
    INFISICAL_CLIENT_SECRET: inst.clientSecret,
  };
  const org = await runConnect(['ping', '--json', '--gateway', GATEWAY], { ...base, INFISICAL_ORG: 'another-org' });
  assert.equal(org.events.find((e) => e['event'] === 'error')?.['code'], 'E_ORG_MISMATCH', org.stderr);
  assert.equal(org.code, 5);
  assert.ok(table.get(5)?.includes('E_ORG_MISMATCH'));

  const gw = await runConnect(['ping', '--json', '--gateway', 'gw-nowhere'], { ...base, INFISICAL_ORG: ORG });
  assert.equal(gw.events.find((e) => e['event'] === 'error')?.['code'], 'E_NOT_FOUND', gw.stderr);
  assert.equal(gw.code, 4);
  assert.ok(table.get(4)?.includes('E_NOT_FOUND'));
});

test('bad flags exit 2, with the problem on one line', async () => {
  for (const args of [['tcp', '--gateway', 'g', '--target', '127.0.0.1:1', '--bogus'], ['nonsense'], []]) {
    const r = await runConnect(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /^(Unknown argument|name a command).*\(see infisical-connect --help\)\n$/);
  }
});
