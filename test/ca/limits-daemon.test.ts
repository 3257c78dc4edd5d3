/**
 * The CA API's per-source limits on the real daemon (`infisical-ca serve` on 127.0.0.1). The attacker's requests
 * leave from 127.0.0.2 (loopback takes any 127.x source), the legitimate ones from 127.0.0.1: a flood of wrong
 * secrets, bad enrollment tokens or unverifiable signatures makes its own source wait (E_RATE_LIMITED) and leaves
 * the real holder, from another source, untouched; no refusal of an unauthenticated caller writes an audit row;
 * each is counted in infisical_ca_unauthenticated_refusals_total and logged sampled (one line per source per
 * minute). Components that authenticate are never charged: 150 signed feed reads from one address, far past the
 * burst of failures allowed, are all served.
 *
 * The limits are set through the environment (the config keys), with minute-long waits, so nothing here depends
 * on how fast the machine is.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { request } from 'node:https';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import Database from 'better-sqlite3';
import { pemBlocks } from '../../lib/pki/x509.js';
import { HEADER_CERT, HEADER_SIGNATURE, signRequestBytes } from '../../lib/protocol/api.js';
import { CaClient } from '../../lib/protocol/ca-client.js';
import { metricValue, waitFor } from '../lifecycle/process.js';
import { cliJson, type Served, serve } from './daemon-helpers.js';
import { clientKeys, TempDir } from './helpers.js';

const ATTACKER = '127.0.0.2';
const REFUSALS = 'infisical_ca_unauthenticated_refusals_total';
const SAMPLED = 'unauthenticated request refused (first from this source this minute)';

const dir = new TempDir();
let state: string;
let s: Served;
let client: CaClient;
let alice: { clientId: string; clientSecret: string };
const tokens: Record<string, string> = {};

before(async () => {
  state = join(dir.path, 'ca');
  await cliJson(['init', '--state-dir', state, '--trust-domain', 'limits.test']);
  await cliJson(['org', 'create', 'acme', '--state-dir', state]);
  const created = await cliJson<typeof alice>(['identity', 'create', 'acme', 'alice', '--state-dir', state]);
  alice = { clientId: created.clientId, clientSecret: created.clientSecret };
  for (const gw of ['gw1', 'gw2']) {
    const t = await cliJson<{ token: string }>([
      'token',
      '--org',
      'acme',
      '--kind',
      'gateway',
      '--subject',
      gw,
      '--state-dir',
      state,
    ]);
    tokens[gw] = t.token;
  }
  s = await serve(state, [], {
    INFISICAL_CA_LOGIN_FAILURE_BURST: '5',
    INFISICAL_CA_LOGIN_FAILURE_REFILL: '1m',
    INFISICAL_CA_LOGIN_FAILURE_DELAY_MAX: '10m',
    INFISICAL_CA_ENROLL_FAILURE_BURST: '5',
    INFISICAL_CA_ENROLL_FAILURE_REFILL: '1m',
    INFISICAL_CA_SIGNED_FAILURE_BURST: '20',
    INFISICAL_CA_SIGNED_FAILURE_REFILL: '1m',
    INFISICAL_CA_MAX_CONNECTIONS_PER_SOURCE: '16',
  });
  client = new CaClient({ url: s.url, fingerprint: s.fingerprint });
});

after(async () => {
  s?.child.kill('SIGTERM');
  await s?.exited;
  dir.remove();
});

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: Record<string, unknown>;
}

/** One request from `from` (the client socket is bound to that address). The pin is not what this file tests:
 * the legitimate calls go through CaClient, which pins. */
function call(method: string, path: string, from: string, body?: Buffer, headers: Record<string, string> = {}) {
  const url = new URL(s.url);
  return new Promise<Reply>((resolve, reject) => {
    const req = request(
      {
        host: url.hostname,
        port: Number(url.port),
        method,
        path,
        localAddress: from,
        rejectUnauthorized: false,
        agent: false,
        headers: {
          ...(body ? { 'content-type': 'application/json', 'content-length': String(body.length) } : {}),
          ...headers,
        },
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (d: Buffer) => parts.push(d));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: JSON.parse(Buffer.concat(parts).toString()) as Record<string, unknown>,
          }),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const json = (value: unknown): Buffer => Buffer.from(JSON.stringify(value));

function auditRows(): number {
  const db = new Database(join(state, 'ca.db'), { readonly: true });
  try {
    return (db.prepare('SELECT count(*) AS n FROM audit').get() as { n: number }).n;
  } finally {
    db.close();
  }
}

async function refusals(labels: Record<string, string>): Promise<number> {
  const text = await (await fetch(`${s.ops}/metrics`)).text();
  return metricValue(text, REFUSALS, labels) ?? 0;
}

const tally = (codes: string[]) =>
  codes.reduce<Record<string, number>>((t, c) => Object.assign(t, { [c]: (t[c] ?? 0) + 1 }), {});

test('60 wrong secrets for a client id from one source: that source waits, the holder from another logs in', async () => {
  const rowsBefore = auditRows();
  const codes: string[] = [];
  for (let i = 0; i < 60; i++) {
    const r = await call(
      'POST',
      '/v1/auth/login',
      ATTACKER,
      json({ clientId: alice.clientId, clientSecret: `guess${i}` }),
    );
    codes.push(String(r.body['code']));
  }
  // The burst (5) and the failure that starts the wait are looked at; the rest are refused unseen.
  assert.deepEqual(tally(codes), { E_AUTH_INVALID: 6, E_RATE_LIMITED: 54 });
  assert.deepEqual(codes.slice(0, 6), Array(6).fill('E_AUTH_INVALID'));

  // (a) The real holder, from 127.0.0.1, logs in.
  const session = await client.login(alice);
  assert.match(session.accessToken, /^[A-Za-z0-9_-]{16,}$/);
  // (b) From the flooding source even the right secret waits, told for how long.
  const held = await call('POST', '/v1/auth/login', ATTACKER, json(alice));
  assert.deepEqual([held.status, held.body['code']], [429, 'E_RATE_LIMITED']);
  assert.match(String(held.headers['retry-after']), /^[1-9]\d*$/);
  // (c) One audit row: the holder's login. None for the 61 refusals.
  assert.equal(auditRows(), rowsBefore + 1);
  // (d) Every refusal is counted, by endpoint and code.
  assert.equal(await refusals({ endpoint: 'login', code: 'E_AUTH_INVALID' }), 6);
  assert.equal(await refusals({ endpoint: 'login', code: 'E_RATE_LIMITED' }), 55);
  // The CA saw the attacker's address, and logged one line for all of it.
  const lines = await waitFor(
    () => {
      const l = s.lines.filter((x) => x['msg'] === SAMPLED && x['source'] === ATTACKER);
      return l.length > 0 && l;
    },
    { what: `a sampled refusal line with source ${ATTACKER}` },
  );
  assert.equal(lines.length, 1, 'one line per source per minute, not one per refusal');
  assert.equal(lines[0]!['endpoint'], 'login');
});

test('enrollment: bad tokens from one source make it wait; a good token from another enrolls', async () => {
  const rowsBefore = auditRows();
  const keys = clientKeys();
  const codes: string[] = [];
  for (let i = 0; i < 20; i++) {
    const body = json({
      orgId: 'acme',
      gatewayId: 'gw2',
      csr: keys.csr,
      sshPublicKey: keys.sshPublicKey,
      enrollmentToken: randomBytes(32).toString('base64url'),
    });
    codes.push(String((await call('POST', '/v1/gateways/enroll', ATTACKER, body)).body['code']));
  }
  assert.deepEqual(tally(codes), { E_AUTH_INVALID: 6, E_RATE_LIMITED: 14 });
  // A real token for another gateway is no better: it does not admit this enrollment, and the source waits.
  const wrongSubject = await call(
    'POST',
    '/v1/gateways/enroll',
    ATTACKER,
    json({
      orgId: 'acme',
      gatewayId: 'gw2',
      csr: keys.csr,
      sshPublicKey: keys.sshPublicKey,
      enrollmentToken: tokens['gw1'],
    }),
  );
  assert.equal(wrongSubject.body['code'], 'E_RATE_LIMITED');
  assert.equal(auditRows(), rowsBefore, 'no audit row for a token that admits nothing');
  const enrolled = await client.enrollGateway({
    orgId: 'acme',
    gatewayId: 'gw2',
    csr: keys.csr,
    sshPublicKey: keys.sshPublicKey,
    enrollmentToken: tokens['gw2']!,
  });
  assert.match(enrolled.gatewayUri, /gw2$/);
  assert.equal(auditRows(), rowsBefore + 1);
  assert.equal(await refusals({ endpoint: 'gateway.enroll', code: 'E_RATE_LIMITED' }), 15);
});

test('signed requests: forged renewals make their source wait; the gateway renews and reads the feed 150 times', async () => {
  const keys = clientKeys();
  const enrolled = await client.enrollGateway({
    orgId: 'acme',
    gatewayId: 'gw1',
    csr: keys.csr,
    sshPublicKey: keys.sshPublicKey,
    enrollmentToken: tokens['gw1']!,
  });
  const leaf = pemBlocks(enrolled.tlsCertificateChain, 'CERTIFICATE')[0]!;
  const rowsBefore = auditRows();
  // The attacker has the gateway's certificate (it is no secret) but not its key.
  const thief = clientKeys();
  const codes: string[] = [];
  for (let i = 0; i < 40; i++) {
    const body = json({
      csr: thief.csr,
      sshPublicKey: thief.sshPublicKey,
      timestamp: Math.floor(Date.now() / 1000),
      nonce: randomBytes(16).toString('base64url'),
    });
    const headers = {
      [HEADER_CERT]: leaf.toString('base64'),
      [HEADER_SIGNATURE]: signRequestBytes(body, thief.tlsKey),
    };
    codes.push(String((await call('POST', '/v1/gateways/renew', ATTACKER, body, headers)).body['code']));
  }
  assert.deepEqual(tally(codes), { E_AUTH_INVALID: 21, E_RATE_LIMITED: 19 });
  assert.equal(auditRows(), rowsBefore, 'no audit row for a signature that does not verify');
  assert.equal(await refusals({ endpoint: 'gateway.renew', code: 'E_AUTH_INVALID' }), 21);
  assert.equal(await refusals({ endpoint: 'gateway.renew', code: 'E_RATE_LIMITED' }), 19);

  // The gateway itself, from 127.0.0.1, renews; then reads the feed far more often than the failure burst (20).
  const next = clientKeys();
  const renewed = await client.renewGateway(
    { csr: next.csr, sshPublicKey: next.sshPublicKey },
    { certificate: enrolled.tlsCertificateChain, privateKey: keys.tlsKey },
  );
  assert.equal(auditRows(), rowsBefore + 1, 'the renewal is audited');
  const current = { certificate: renewed.tlsCertificateChain, privateKey: next.tlsKey };
  let served = 0;
  await Promise.all(
    Array.from({ length: 10 }, async () => {
      for (let i = 0; i < 15; i++) {
        await client.revocations(0, { current, feedKey: renewed.revocationFeedKey });
        served++;
      }
    }),
  );
  assert.equal(served, 150);
  assert.equal(await refusals({ endpoint: 'revocations' }), 0);
});

test('connections: one source holding 16 open (no TLS handshake) gets no 17th; another source is served', async () => {
  const url = new URL(s.url);
  const open = (from: string) =>
    new Promise<Socket>((resolve, reject) => {
      const socket = connect({ host: url.hostname, port: Number(url.port), localAddress: from });
      socket.once('connect', () => resolve(socket));
      socket.once('error', reject);
    });
  const closed = (socket: Socket) => new Promise<void>((resolve) => socket.once('close', () => resolve()));
  const held: Socket[] = [];
  try {
    for (let i = 0; i < 16; i++) held.push(await open(ATTACKER));
    const extra = await open(ATTACKER);
    extra.on('error', () => {});
    await closed(extra); // closed by the CA at accept
    assert.ok(
      held.every((h) => !h.destroyed),
      'the 16 are still open',
    );
    const health = await client.health();
    assert.equal(health.ok, true, 'another source is served meanwhile');
    const text = await (await fetch(`${s.ops}/metrics`)).text();
    assert.equal(metricValue(text, 'infisical_ca_connections_refused_total', { limit: 'source' }), 1);
  } finally {
    for (const h of held) h.destroy();
  }
  // Once they close, the source has its places back.
  await waitFor(
    async () => {
      const again = await open(ATTACKER);
      const survived = await Promise.race([closed(again).then(() => false), sleep(300).then(() => true)]);
      again.destroy();
      return survived;
    },
    { what: 'a connection from the same source to be kept once the others closed' },
  );
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
