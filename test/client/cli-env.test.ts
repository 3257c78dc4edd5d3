/**
 * The environment `infisical-connect` reads: each variable its --help names, and nothing else. Before, it read
 * every INFISICAL_* variable (yargs .env) and refused the ones it did not know, so `make run` with
 * INFISICAL_QUICKSTART_PORT_BASE failed ("Unknown argument: quickstartPortBase"), and so did the documented
 * INFISICAL_CLIENT_SECRET ("Unknown argument: clientSecret").
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { freePort } from '../helpers/openssh.js';
import { runConnect, startConnect } from './connect-cli.js';
import { GATEWAY, type Installation, ORG, startInstallation } from './installation.js';

let inst: Installation;
let web: http.Server;
let webPort: number;
let dir: string;
/** Variables of other programs, and a stranger: none may break infisical-connect. */
const OTHERS = { INFISICAL_QUICKSTART_PORT_BASE: '26000', INFISICAL_FOO: 'bar', INFISICAL_PROXY_SSH_LISTEN: 'x' };

before(async () => {
  web = http.createServer((req, res) => res.end(`private ${req.url}`));
  web.listen(0, '127.0.0.1');
  await once(web, 'listening');
  webPort = (web.address() as AddressInfo).port;
  inst = await startInstallation({
    proxies: 1,
    policyTargets: [`127.0.0.1:${webPort}`, 'name:ping'],
    allowPorts: [webPort],
  });
  dir = await mkdtemp(join(tmpdir(), 'connect-env-'));
  writeFileSync(join(dir, 'secret'), `${inst.clientSecret}\n`, { mode: 0o600 });
});

after(async () => {
  await inst?.close();
  web?.closeAllConnections();
  web?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** The connection settings every command needs, as environment variables. */
function connection(): Record<string, string> {
  return {
    INFISICAL_CA: inst.caUrl,
    INFISICAL_CA_FINGERPRINT: `sha256:${inst.fingerprint}`,
    INFISICAL_ORG: ORG,
    INFISICAL_CLIENT_ID: inst.clientId,
  };
}

test('http from the environment alone: CA, fingerprint, org, client id and secret, gateway, target, listen, json, ttl', async () => {
  const port = await freePort();
  const cli = startConnect(['http'], {
    ...connection(),
    INFISICAL_CLIENT_SECRET: inst.clientSecret,
    INFISICAL_GATEWAY: GATEWAY,
    INFISICAL_TARGET: `http://127.0.0.1:${webPort}`,
    INFISICAL_LISTEN: `127.0.0.1:${port}`,
    INFISICAL_JSON: 'true',
    INFISICAL_TTL: '90',
    ...OTHERS,
  });
  try {
    const listening = await cli.next('listening'); // a JSON line: INFISICAL_JSON was read
    assert.equal(listening['port'], port);
    assert.equal(listening['gateway'], GATEWAY);
    const grant = await cli.next('grant');
    const lifetime = (Date.parse(String(grant['expiresAt'])) - Date.parse(String(grant['time']))) / 1000;
    assert.ok(
      lifetime > 30 && lifetime <= 91,
      `grant lifetime ${lifetime} s: INFISICAL_TTL=90 (the CA's default is 300)`,
    );
    const body = await new Promise<string>((resolve, reject) => {
      http
        .get(`http://127.0.0.1:${port}/env`, (res) => {
          let text = '';
          res.on('data', (d: Buffer) => {
            text += d.toString();
          });
          res.on('end', () => resolve(text));
        })
        .on('error', reject);
    });
    assert.equal(body, 'private /env');
  } finally {
    cli.child.kill('SIGTERM');
  }
  const { code } = await cli.exit;
  assert.equal(code, 0, cli.stderr());
});

test('ping from the environment: INFISICAL_CLIENT_SECRET_FILE, INFISICAL_TARGET and INFISICAL_COUNT', async () => {
  const r = await runConnect(['ping', '--json'], {
    ...connection(),
    INFISICAL_CLIENT_SECRET_FILE: join(dir, 'secret'),
    INFISICAL_GATEWAY: GATEWAY,
    INFISICAL_TARGET: `127.0.0.1:${webPort}`, // not the default name:ping
    INFISICAL_COUNT: '2',
    ...OTHERS,
  });
  assert.equal(r.code, 0, `${r.stderr} ${JSON.stringify(r.events)}`);
  const pings = r.events.filter((e) => e['event'] === 'ping');
  assert.deepEqual(
    pings.map((p) => [p['ok'], (p['rttMs'] as number[]).length]),
    [[true, 2]],
  );
});

test('a flag wins over its variable', async () => {
  const r = await runConnect(
    ['ping', '--json', '--org', ORG, '--count', '1', '--client-secret-file', join(dir, 'secret')],
    {
      ...connection(),
      INFISICAL_ORG: 'not-this-org',
      INFISICAL_CLIENT_SECRET: 'not-this-secret',
      INFISICAL_COUNT: '3',
      INFISICAL_GATEWAY: GATEWAY,
    },
  );
  assert.equal(r.code, 0, `${r.stderr} ${JSON.stringify(r.events)}`);
  assert.deepEqual(
    r.events.filter((e) => e['event'] === 'ping').map((p) => (p['rttMs'] as number[]).length),
    [1],
  );
});

test('INFISICAL_TIMEOUT bounds the wait for the CA', async () => {
  const silent = net.createServer(() => undefined); // accepts and never answers the TLS handshake
  silent.listen(0, '127.0.0.1');
  await once(silent, 'listening');
  try {
    const r = await runConnect(['tcp', '--json', '--target', '127.0.0.1:1'], {
      ...connection(),
      INFISICAL_CA: `https://127.0.0.1:${(silent.address() as AddressInfo).port}`,
      INFISICAL_CLIENT_SECRET: 'whatever',
      INFISICAL_GATEWAY: GATEWAY,
      INFISICAL_TIMEOUT: '1',
    });
    assert.equal(r.code, 10, r.stderr);
    const err = r.events.find((e) => e['event'] === 'error');
    assert.equal(err?.['code'], 'E_TIMEOUT');
    assert.equal(err?.['hop'], 'ca');
    assert.ok(r.ms < 8000, `gave up after ${r.ms} ms; INFISICAL_TIMEOUT=1 (the default is 10 s)`);
  } finally {
    silent.close();
  }
});

test('a missing setting names its flag and its variable; an unrelated INFISICAL_* is no error', async () => {
  const r = await runConnect(['tcp', '--target', '127.0.0.1:1'], {
    ...OTHERS,
    INFISICAL_CLIENT_SECRET: 's',
    INFISICAL_GATEWAY: GATEWAY,
  });
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /--ca is required \(or env INFISICAL_CA\)/);
  assert.doesNotMatch(r.stderr, /Unknown argument/);
});

test('human output counts in words: 1 proxy, not "1 proxies"', async () => {
  const r = await runConnect(['ping', '--count', '1', '--gateway', GATEWAY], {
    ...connection(),
    INFISICAL_CLIENT_SECRET: inst.clientSecret,
  });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /^grant g-\S+: valid \S+, 1 proxy \(/m);
  assert.match(r.stderr, new RegExp(`^pinging gateway ${GATEWAY} through 1 proxy…$`, 'm'));
  assert.match(r.stderr, new RegExp(`^1 of 1 proxy reaches gateway ${GATEWAY}$`, 'm'));
  assert.doesNotMatch(r.stderr, /\b1 proxies\b/);
});
