/**
 * The CA API's safe defaults, on the real `infisical-ca serve` (issue 14, secrets and defaults): without
 * --listen it binds 127.0.0.1:8443 only (seen in its own "serving" line and in the kernel's socket table), and
 * it speaks TLS 1.3 only: `openssl s_client -tls1_2` is refused. `tls_min_version = 1.2` admits TLS 1.2 with
 * forward-secret AEAD ciphers only: a CBC suite is refused even then. The suite's own client (Node TLS) logs in
 * either way.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { CaClient } from '../../lib/protocol/ca-client.js';
import { cleanEnv, waitFor } from '../lifecycle/process.js';
import { cli, cliJson, DAEMON } from './daemon-helpers.js';
import { TempDir } from './helpers.js';

const dir = new TempDir();
const running = new Set<ChildProcess>();
after(() => {
  for (const child of running) child.kill('SIGKILL');
  dir.remove();
});

interface Init {
  adminClientId: string;
  adminClientSecret: string;
  apiFingerprint: string;
}

async function initialized(name: string): Promise<{ state: string; init: Init }> {
  const state = join(dir.path, name);
  return { state, init: await cliJson<Init>(['init', '--state-dir', state]) };
}

/** `serve` with exactly these flags (no --listen unless given); resolves with its "serving" line. */
function serve(state: string, flags: string[]): Promise<{ child: ChildProcess; url: string; log: () => string }> {
  const child = spawn(
    process.execPath,
    [DAEMON, 'serve', '--state-dir', state, '--ops-listen', '127.0.0.1:0', ...flags],
    { stdio: ['ignore', 'pipe', 'pipe'], env: cleanEnv() },
  );
  running.add(child);
  let out = '';
  child.stderr!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start:\n${out}`)), 20_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n').find((l) => l.includes('"msg":"serving"'));
      if (line) {
        clearTimeout(timer);
        resolve({ child, url: String((JSON.parse(line) as { url: string }).url), log: () => out });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`serve exited ${code}:\n${out}`));
    });
  });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode === null) {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
  running.delete(child);
}

/** The TCP sockets process `pid` listens on, as "address:port" from /proc (IPv4 and IPv6 tables). */
function listeningSockets(pid: number): string[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      // closed meanwhile
    }
  }
  const found: string[] = [];
  for (const table of ['tcp', 'tcp6']) {
    for (const line of readFileSync(`/proc/${pid}/net/${table}`, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== '0A' || !inodes.has(f[9]!)) continue; // 0A: LISTEN
      const [hex, port] = f[1]!.split(':') as [string, string];
      const address =
        table === 'tcp'
          ? Buffer.from(hex, 'hex').reverse().join('.')
          : `[${(hex.match(/.{8}/g) ?? []).map((w) => Buffer.from(w, 'hex').reverse().toString('hex')).join('')}]`;
      found.push(`${address}:${Number.parseInt(port, 16)}`);
    }
  }
  return found;
}

/** `openssl s_client` against `url`: the negotiated protocol and cipher, or undefined when refused. */
function handshake(url: string, flags: string[]): { protocol: string; cipher: string } | undefined {
  const { hostname, port } = new URL(url);
  const r = spawnSync('openssl', ['s_client', '-connect', `${hostname}:${port}`, ...flags], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 15_000,
  });
  const m = /^New, (TLSv[\d.]+), Cipher is (\S+)/m.exec(r.stdout);
  if (r.status === 0 && m && m[2] !== '(NONE)') return { protocol: m[1]!, cipher: m[2]! };
  assert.match(`${r.stdout}${r.stderr}`, /alert|handshake failure|no protocols available|no ciphers available/);
  return undefined;
}

async function loginWorks(url: string, init: Init): Promise<void> {
  const client = new CaClient({ url, fingerprint: init.apiFingerprint });
  const { session } = await client.loginAs({ clientId: init.adminClientId, clientSecret: init.adminClientSecret });
  assert.ok(session.accessToken, 'the suite’s own client logs in');
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '0.0.0.0', () => s.close(() => resolve(true)));
  });
}

test('without --listen the API binds 127.0.0.1:8443 only, and refuses TLS 1.2', async (t) => {
  if (!(await portFree(8443))) return t.skip('port 8443 is taken on this host: the default cannot be tried');
  const { state, init } = await initialized('default');
  const { child, url, log } = await serve(state, []);
  try {
    assert.equal(url, 'https://127.0.0.1:8443');
    await waitFor(() => log().includes('the API answers on loopback only: set listen'), {
      what: 'the log to say why other hosts cannot reach it',
    });
    const sockets = listeningSockets(child.pid!).filter((s) => s.endsWith(':8443'));
    assert.deepEqual(sockets, ['127.0.0.1:8443'], 'the kernel shows one loopback listener, no wildcard');

    assert.equal(handshake(url, ['-tls1_2']), undefined, 'TLS 1.2 is refused by default');
    assert.equal(handshake(url, ['-tls1_3'])?.protocol, 'TLSv1.3');
    await loginWorks(url, init);
  } finally {
    await stop(child);
  }
});

test('tls_min_version 1.2 admits TLS 1.2 with AEAD ciphers only; a CBC cipher is still refused', async () => {
  const { state, init } = await initialized('tls12');
  const { child, url } = await serve(state, ['--listen', '127.0.0.1:0', '--tls-min-version', '1.2']);
  try {
    const tls12 = handshake(url, ['-tls1_2']);
    assert.equal(tls12?.protocol, 'TLSv1.2');
    assert.match(tls12.cipher, /^ECDHE-(ECDSA|RSA)-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305)$/);
    assert.equal(handshake(url, ['-tls1_2', '-cipher', 'ECDHE-ECDSA-CHACHA20-POLY1305'])?.protocol, 'TLSv1.2');
    for (const cbc of ['ECDHE-ECDSA-AES128-SHA256', 'ECDHE-ECDSA-AES256-SHA384', 'ECDHE-ECDSA-AES128-SHA']) {
      assert.equal(handshake(url, ['-tls1_2', '-cipher', cbc]), undefined, `${cbc} is refused`);
    }
    assert.equal(handshake(url, ['-tls1_3'])?.protocol, 'TLSv1.3', 'TLS 1.3 stays on');
    await loginWorks(url, init);
  } finally {
    await stop(child);
  }
});

test('tls_min_version accepts 1.2 and 1.3 only', async () => {
  const { state } = await initialized('bad-version');
  const r = await cli(['serve', '--state-dir', state, '--listen', '127.0.0.1:0', '--tls-min-version', '1.1']);
  assert.equal(r.code, 78, r.stderr);
  assert.match(
    r.stderr,
    /E_CONFIG_INVALID: .*flag --tls-min-version: key "tls_min_version": expected one of 1\.2, 1\.3/,
  );
});
