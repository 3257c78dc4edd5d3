/**
 * What the fuzz suite found (issue 14), each kept as a fixed input: the parser now refuses it with a stable code
 * and a bounded message, where before it threw another exception, passed an inherited name off as a code,
 * accepted what it should refuse, or spent seconds on it.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, sign } from 'node:crypto';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { type CaServer, startCaServer } from '../../lib/ca/http.js';
import { gatewayConfigSchema } from '../../lib/gateway/config.js';
import { revocationFeedBytes, verifyRevocationFeed } from '../../lib/protocol/api.js';
import { CaApiError, CaClient } from '../../lib/protocol/ca-client.js';
import { decodeStatus } from '../../lib/protocol/relay.js';
import { ConfigError, loadConfig } from '../../lib/runtime/config.js';
import { type Fixture, newAuthority } from '../ca/helpers.js';

const load = (text: string) => loadConfig(gatewayConfigSchema, { readFile: () => text, env: {}, cwd: '/' });
const configProblems = (text: string): readonly string[] => {
  try {
    load(text);
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err.problems;
  }
  assert.fail('the config was accepted');
};

test('config: a key named like an Object.prototype member is an unknown key, not a silently ignored one', () => {
  for (const key of ['constructor', '__proto__', 'toString', 'valueOf', 'hasOwnProperty']) {
    const problems = configProblems(`${key} = 1\n`);
    assert.equal(problems.length > 0, true);
    assert.match(problems[0]!, new RegExp(`line 1: unknown key "${key}"`));
  }
});

test('config: a 1 MiB key and 50 000 unknown keys give a bounded report (no "did you mean" over megabytes)', () => {
  const long = configProblems(`${'k'.repeat(1 << 20)} = 1`);
  assert.equal(long.length, 1);
  assert.ok(long[0]!.length < 200, `problem of ${long[0]!.length} characters`);
  const many = configProblems(Array.from({ length: 50_000 }, (_, i) => `unknown_key_${i} = 1`).join('\n'));
  assert.equal(many.length, 51);
  assert.match(many.at(-1)!, /and 49950 more problems/);
});

test('relay: a status line whose code is an inherited name ("toString") is a refusal with our fallback code', () => {
  for (const [from, fallback] of [
    ['gateway', 'E_STREAM_CLOSED'],
    ['proxy', 'E_ROUTE_FORBIDDEN'],
  ] as const) {
    const line = Buffer.from('{"ok":false,"code":"toString","message":"m"}\n');
    const r = decodeStatus(line, from);
    assert.ok(r && !r.status.ok);
    assert.equal(r.status.code, fallback);
    assert.equal(r.status.message, 'toString: m');
  }
});

test('relay: a line longer than MAX_STATUS_LINE is malformed even when its newline arrived in the same read', () => {
  const line = Buffer.from(`{"ok":true,"pad":"${'x'.repeat(600)}"}\nrest`);
  const r = decodeStatus(line, 'proxy');
  assert.ok(r && !r.status.ok);
  assert.equal(r.status.code, 'E_ROUTE_FORBIDDEN');
  assert.match(r.status.message, /too long/);
  assert.equal(r.rest.toString(), 'rest');
});

test('feed: an answer that is not a feed object is refused with E_FEED_MALFORMED (it threw a TypeError)', () => {
  const { publicKey } = generateKeyPairSync('ed25519');
  for (const json of [null, 5, 'x', [], { signature: {} }, { since: 0, seq: 0, issuedAt: 'x', entries: null }]) {
    const v = verifyRevocationFeed(json as never, publicKey);
    assert.ok(!v.ok);
    assert.equal(v.code, 'E_FEED_MALFORMED', JSON.stringify(json));
  }
});

test('feed: a correctly signed feed with fields of the wrong type is refused, not handed to the follower', () => {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const bad = [
    { since: null, seq: '9', issuedAt: 'x', entries: [] },
    { since: 0, seq: 1, issuedAt: 'x', entries: [{ seq: null, kind: 'proxy', orgId: 7, subject: 1, at: 2 }] },
    {
      since: 0,
      seq: 1,
      issuedAt: 'x',
      entries: [],
      proxies: {
        version: 'v',
        list: [{ proxyId: 'p', scope: 'other', hostname: 'h', hostnames: [], sshAddress: 'a', tlsAddress: 'b' }],
      },
    },
  ];
  for (const feed of bad) {
    const signature = sign(null, revocationFeedBytes(feed as never), privateKey).toString('base64');
    const v = verifyRevocationFeed({ ...feed, signature } as never, publicKey);
    assert.ok(!v.ok, JSON.stringify(feed));
    assert.equal(v.code, 'E_FEED_MALFORMED');
  }
  const good = {
    since: 0,
    seq: 1,
    issuedAt: 'x',
    entries: [{ seq: 1, kind: 'proxy', orgId: null, subject: 'p', at: 'a' }],
  };
  const signature = sign(null, revocationFeedBytes(good as never), privateKey).toString('base64');
  assert.ok(verifyRevocationFeed({ ...good, signature } as never, publicKey).ok);
});

let f: Fixture;
let server: CaServer;
let creds: ReturnType<Fixture['ca']['issueApiServerCertificate']>;
before(async () => {
  f = await newAuthority();
  creds = f.ca.issueApiServerCertificate({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  server = await startCaServer({ authority: f.ca, host: '127.0.0.1', port: 0, tls: creds });
});
after(() => server.drain(Date.now() + 2000));

function rawGet(path: string): Promise<{ status: number; body: { code?: string } }> {
  return new Promise((resolve, reject) => {
    // A raw TLS write: Node's http client would refuse to send such a request target.
    import('node:tls').then(({ connect }) => {
      const s = connect({ host: '127.0.0.1', port: server.port, rejectUnauthorized: false }, () => {
        s.end(`GET ${path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`);
      });
      let text = '';
      s.on('data', (c: Buffer) => {
        text += c.toString();
      });
      s.on('error', reject);
      s.on('end', () => {
        const status = Number(/^HTTP\/1\.1 (\d+)/.exec(text)?.[1]);
        resolve({ status, body: JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)) });
      });
    }, reject);
  });
}

test('CA API: a request target whose authority cannot be parsed ("//[") is 404 E_NOT_FOUND, not a 500', async () => {
  for (const path of ['//[', '//a:b@[/v1/health', '//x:99999/v1/health']) {
    const r = await rawGet(path);
    assert.equal(r.status, 404, path);
    assert.equal(r.body.code, 'E_NOT_FOUND');
  }
  // "//host/path" is a path, not an authority: it names no route.
  assert.equal((await rawGet('//evil.example/v1/health')).status, 404);
  assert.equal((await rawGet('/v1/health')).status, 200);
});

test('CA client: an error body whose code is an inherited name, or null, is E_INTERNAL with the HTTP status', async () => {
  const answers = ['{"code":"constructor","message":"m"}', 'null', '{"code":"E_NOT_FOUND","message":"m"}'];
  const srv = createServer({ cert: creds.certificateChainPem, key: creds.privateKeyPem }, (_req, res) => {
    res.writeHead(400, { 'content-type': 'application/json' }).end(answers.shift());
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  try {
    const url = `https://127.0.0.1:${(srv.address() as AddressInfo).port}`;
    const client = new CaClient({ url, fingerprint: creds.fingerprint256, now: f.clock.now });
    for (const expected of ['E_INTERNAL', 'E_INTERNAL', 'E_NOT_FOUND']) {
      await assert.rejects(client.health(), (err: unknown) => {
        assert.ok(err instanceof CaApiError);
        assert.equal(err.code, expected);
        assert.equal(err.status, 400);
        return true;
      });
    }
  } finally {
    srv.close();
  }
});
