/**
 * The real daemons: `infisical-ca` (init, serve) and `infisical-proxy` (enroll with a one-time token, serve from
 * the state database alone). A gateway enrolled with the CA holds a tunnel; SIGHUP keeps it; revoking the
 * gateway at the CA reaches the proxy through the signed feed and closes it; SIGTERM exits 0. --help works.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createCsrPem } from '../../lib/pki/csr.js';
import { generateKeyPairSync as x509Pair } from '../../lib/pki/keys.js';
import { CaClient } from '../../lib/protocol/ca-client.js';
import { formatPublicKey, parsePublicKey, publicKeyBlob, toOpenSshPrivateKey } from '../../lib/sshcert/index.js';
import { connectWithCertificate } from '../../lib/sshwire/client.js';
import { cliJson, serve as serveCa } from '../ca/daemon-helpers.js';
import { freePort, TempDir } from '../helpers/openssh.js';
import { eventually } from './harness.js';

const PROXY = fileURLToPath(new URL('../../daemons/proxy.js', import.meta.url));
const cleanEnv = () => Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('INFISICAL_')));

function proxyCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [PROXY, ...args], { env: cleanEnv(), timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

interface RunningProxy {
  child: ChildProcess;
  lines: Record<string, unknown>[];
  exited: Promise<number | null>;
}

function serveProxy(stateDir: string, extra: string[]): Promise<RunningProxy> {
  const child = spawn(process.execPath, [PROXY, 'serve', '--state-dir', stateDir, ...extra], {
    env: cleanEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: Record<string, unknown>[] = [];
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  let buffer = '';
  child.stdout!.on('data', (c: Buffer) => {
    buffer += c.toString();
    for (let nl = buffer.indexOf('\n'); nl >= 0; nl = buffer.indexOf('\n')) {
      try {
        lines.push(JSON.parse(buffer.slice(0, nl)) as Record<string, unknown>);
      } catch {
        // not JSON
      }
      buffer = buffer.slice(nl + 1);
    }
  });
  return new Promise((resolve, reject) => {
    const poll = setInterval(() => {
      if (lines.some((l) => l['msg'] === 'serving')) {
        clearInterval(poll);
        resolve({ child, lines, exited });
      }
    }, 20);
    void exited.then((code) => {
      clearInterval(poll);
      reject(new Error(`proxy serve exited ${code}: ${stderr}`));
    });
  });
}

describe('infisical-proxy daemon', () => {
  const dir = new TempDir('proxy-daemon-');
  const children: ChildProcess[] = [];
  after(() => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    dir.remove();
  });

  it('--help for each command', async () => {
    for (const args of [['--help'], ['enroll', '--help'], ['serve', '--help']]) {
      const r = await proxyCli(args);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /infisical-proxy/);
    }
    assert.match(
      (await proxyCli(['enroll', '--help'])).stdout,
      /--ca-fingerprint[\s\S]*--admin-client-id[\s\S]*--scope/,
    );
    const r = await proxyCli(['serve', '--state-dir', join(dir.path, 'empty')]);
    assert.equal(r.code, 78);
    assert.match(r.stderr, /not enrolled/);
  });

  it('enrolls, serves from its store, keeps a tunnel over SIGHUP, closes it on a fed revocation', async () => {
    const caState = join(dir.path, 'ca');
    const init = await cliJson<{ adminClientId: string; adminClientSecret: string; apiFingerprint: string }>([
      'init',
      '--state-dir',
      caState,
      '--trust-domain',
      'proxy.test',
    ]);
    await cliJson(['org', 'create', 'acme', '--state-dir', caState]);
    const boss = await cliJson<{ clientId: string; clientSecret: string }>([
      'identity',
      'create',
      'acme',
      'boss',
      '--role',
      'org-admin',
      '--state-dir',
      caState,
    ]);
    const token = await cliJson<{ token: string }>([
      'token',
      '--kind',
      'proxy',
      '--subject',
      'p1',
      '--state-dir',
      caState,
    ]);
    const ca = await serveCa(caState);
    children.push(ca.child);

    const proxyState = join(dir.path, 'proxy');
    const [sshPort, tlsPort] = [await freePort(), await freePort()];
    const enrolled = await proxyCli([
      'enroll',
      '--ca',
      ca.url,
      '--ca-fingerprint',
      init.apiFingerprint,
      '--token',
      token.token,
      '--scope',
      'instance',
      '--proxy-id',
      'p1',
      '--hostname',
      '127.0.0.1',
      '--ssh-listen',
      `127.0.0.1:${sshPort}`,
      '--tls-listen',
      `127.0.0.1:${tlsPort}`,
      '--state-dir',
      proxyState,
      '--json',
    ]);
    assert.equal(enrolled.code, 0, enrolled.stderr + enrolled.stdout);
    assert.equal(JSON.parse(enrolled.stdout).proxyUri, 'spiffe://proxy.test/instance/proxy/p1');

    const proxy = await serveProxy(proxyState, ['--ops-listen', '127.0.0.1:0', '--revocation-poll', '300ms']);
    children.push(proxy.child);
    const serving = proxy.lines.find((l) => l['msg'] === 'serving')!;
    const ops = String(serving['ops']);
    assert.equal((await fetch(`${ops}/readyz`)).status, 200);

    // A gateway of org acme enrolls and holds a tunnel with the instance SSH cert the CA gave it.
    const client = (
      await new CaClient({ url: ca.url, fingerprint: init.apiFingerprint }).loginAs({
        clientId: boss.clientId,
        clientSecret: boss.clientSecret,
      })
    ).client;
    const sshKey = generateKeyPairSync('ed25519').privateKey;
    const gw = await client.enrollGateway({
      orgId: 'acme',
      gatewayId: 'gw1',
      csr: createCsrPem({ privateKey: x509Pair('ecdsa-p256').privateKey, commonName: 'gw1' }),
      sshPublicKey: formatPublicKey(publicKeyBlob(sshKey), 'gw1'),
    });
    const cert = gw.sshCertificates.find((c) => c.scope === 'instance')!.certificate;
    const hostCa = gw.trust.sshHostCaKeys.find((k) => k.scope === 'instance')!.key;
    const hostCaBlob = parsePublicKey(hostCa);
    assert.ok(hostCaBlob.ok);
    const { client: ssh } = await connectWithCertificate({
      host: '127.0.0.1',
      port: sshPort,
      username: 'gw1',
      privateKey: toOpenSshPrivateKey(sshKey),
      certificate: cert,
      trustedHostCaKeys: [hostCaBlob.value],
      hostPrincipal: '127.0.0.1',
    });
    ssh.on('error', () => {});
    let sshClosed = false;
    ssh.on('close', () => {
      sshClosed = true;
    });
    await new Promise<void>((resolve, reject) => ssh.forwardIn('gw1', 0, (err) => (err ? reject(err) : resolve())));
    const tunnels = async () => /infisical_proxy_tunnels (\d+)/.exec(await (await fetch(`${ops}/metrics`)).text())?.[1];
    assert.equal(await tunnels(), '1');

    // SIGHUP: reloaded from the store; the tunnel stays.
    proxy.child.kill('SIGHUP');
    await eventually(() => proxy.lines.some((l) => l['msg'] === 'reloaded'));
    assert.equal(sshClosed, false);
    assert.equal(await tunnels(), '1');

    // Revocation at the CA → signed feed → proxy closes the tunnel.
    await client.revoke({ kind: 'gateway', orgId: 'acme', subject: 'gw1' });
    await eventually(() => sshClosed, 15_000);
    assert.equal(await tunnels(), '0');
    assert.ok(proxy.lines.some((l) => l['msg'] === 'revocation closed connections'));

    proxy.child.kill('SIGTERM');
    assert.equal(await proxy.exited, 0);
    ca.child.kill('SIGTERM');
    await ca.exited;
  });
});
