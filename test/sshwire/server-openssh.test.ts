/**
 * Real OpenSSH `ssh` against our ssh2 server (lib/sshwire/server): the server presents a host certificate
 * that ssh checks through `@cert-authority`, and accepts only user certificates that lib/sshcert verifies.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { ErrorCode } from '../../lib/errors/codes.js';
import type { SshCertificate } from '../../lib/sshcert/index.js';
import { createCertServer, listen } from '../../lib/sshwire/server.js';
import type { Server } from '../../lib/sshwire/ssh2.js';
import { type CertFiles, type KeyFiles, keygen, keygenSign, runSsh, TempDir } from '../helpers/openssh.js';
import { authenticateUser } from '../helpers/ssh-auth.js';

const dir = new TempDir();
let userCa: KeyFiles;
let otherCa: KeyFiles;
let hostCa: KeyFiles;
let gw: KeyFiles;
let gwCert: CertFiles;
const servers: Server[] = [];

/** What our server decided, per connection, in order. */
const outcomes: Array<{ ok: true; cert: SshCertificate } | { ok: false; code: ErrorCode }> = [];

/** Starts our server with a host key + certificate; it runs `exec` requests as "exit 0". */
async function startServer(hostKey: KeyFiles, hostCert: CertFiles): Promise<number> {
  const server = createCertServer({ hostKey: hostKey.privateKey, hostCertificate: hostCert.line }, (conn) => {
    conn.on('error', () => {});
    authenticateUser(conn, { trustedUserCaKeys: [userCa.blob] }).then(
      (cert) => outcomes.push({ ok: true, cert }),
      (err: { code: ErrorCode }) => outcomes.push({ ok: false, code: err.code }),
    );
    conn.on('session', (acceptSession) => {
      acceptSession().on('exec', (acceptExec) => {
        const ch = acceptExec();
        ch.exit(0);
        ch.end();
      });
    });
  });
  servers.push(server);
  return listen(server, 0);
}

let port: number;
let knownHosts: string;

before(async () => {
  userCa = keygen(dir, 'user_ca');
  otherCa = keygen(dir, 'other_ca');
  hostCa = keygen(dir, 'host_ca');
  const host = keygen(dir, 'host');
  port = await startServer(host, keygenSign(hostCa, host, { id: 'proxy-1', principals: ['127.0.0.1'], host: true }));
  knownHosts = `@cert-authority [127.0.0.1]:* ${hostCa.publicLine}\n`;
  gw = keygen(dir, 'gw');
  gwCert = keygenSign(userCa, gw, { id: 'gw-1', principals: ['gw1'], options: ['clear', 'permit-port-forwarding'] });
});

after(async () => {
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  dir.remove();
});

/** Runs ssh, then waits for our server's verdict on that connection. */
async function sshAndOutcome(run: Partial<Parameters<typeof runSsh>[0]> = {}) {
  const before = outcomes.length;
  const res = await runSsh({ port, user: 'gw1', identity: gw, certificate: gwCert, knownHosts, dir, ...run });
  for (let i = 0; i < 100 && outcomes.length === before; i++) await new Promise((r) => setTimeout(r, 20));
  return { res, outcome: outcomes[before] };
}

test('ssh with a user certificate from our CA authenticates, and accepts our host certificate', async () => {
  const { res, outcome } = await sshAndOutcome({ args: ['-v'] });
  assert.equal(res.code, 0, res.stderr);
  assert.match(res.stderr, /Host '\[127\.0\.0\.1\]:\d+' is known and matches the ED25519-CERT host certificate/);
  assert.ok(outcome?.ok);
  assert.equal(outcome.cert.keyId, 'gw-1');
  assert.deepEqual(outcome.cert.principals, ['gw1']);
});

test('ssh with a user certificate from another CA is refused', async () => {
  const key = keygen(dir, 'gw_other');
  const cert = keygenSign(otherCa, key, { id: 'gw-other', principals: ['gw1'] });
  const { res, outcome } = await sshAndOutcome({ identity: key, certificate: cert });
  assert.equal(res.code, 255);
  assert.match(res.stderr, /Permission denied \(publickey\)/);
  assert.deepEqual(outcome, { ok: false, code: 'E_CERT_UNTRUSTED' });
});

test('ssh with an expired user certificate is refused', async () => {
  const key = keygen(dir, 'gw_expired');
  const cert = keygenSign(userCa, key, { id: 'gw-old', principals: ['gw1'], validity: '20200101:20200102' });
  const { res, outcome } = await sshAndOutcome({ identity: key, certificate: cert });
  assert.equal(res.code, 255);
  assert.deepEqual(outcome, { ok: false, code: 'E_CERT_EXPIRED' });
});

test('ssh with a plain key (no certificate) is refused', async () => {
  const { res, outcome } = await sshAndOutcome({ certificate: undefined, args: ['-o', 'CertificateFile=none'] });
  assert.equal(res.code, 255);
  assert.match(res.stderr, /Permission denied \(publickey\)/);
  assert.deepEqual(outcome, { ok: false, code: 'E_SSH_AUTH' });
});

test('an RSA user certificate authenticates (rsa-sha2-512-cert-v01 from OpenSSH)', async () => {
  const rsa = keygen(dir, 'gw_rsa', 'rsa');
  const cert = keygenSign(userCa, rsa, { id: 'gw-rsa', principals: ['gw1'] });
  const { res, outcome } = await sshAndOutcome({ identity: rsa, certificate: cert, args: ['-v'] });
  assert.equal(res.code, 0, res.stderr);
  assert.ok(outcome?.ok);
  assert.equal(outcome.cert.keyId, 'gw-rsa');
});

test('ssh refuses a host certificate from a CA it does not trust', async () => {
  const foreignCa = keygen(dir, 'foreign_host_ca');
  const host = keygen(dir, 'host2');
  const foreignPort = await startServer(
    host,
    keygenSign(foreignCa, host, { id: 'proxy-x', principals: ['127.0.0.1'], host: true }),
  );
  const res = await runSsh({ port: foreignPort, user: 'gw1', identity: gw, certificate: gwCert, knownHosts, dir });
  assert.equal(res.code, 255);
  assert.match(res.stderr, /Host key verification failed/);
});

test('ssh accepts an RSA host certificate (rsa-sha2-512-cert-v01 signed with the base name)', async () => {
  const host = keygen(dir, 'host_rsa', 'rsa');
  const rsaPort = await startServer(
    host,
    keygenSign(hostCa, host, { id: 'proxy-rsa', principals: ['127.0.0.1'], host: true }),
  );
  const res = await runSsh({
    port: rsaPort,
    user: 'gw1',
    identity: gw,
    certificate: gwCert,
    knownHosts,
    dir,
    args: ['-v'],
  });
  assert.equal(res.code, 0, res.stderr);
  assert.match(res.stderr, /host key algorithm: rsa-sha2-512-cert-v01@openssh\.com/);
});

test('weak transport algorithms are not negotiated (no SHA-1 MAC or key exchange)', async () => {
  const mac = await runSsh({
    port,
    user: 'gw1',
    identity: gw,
    certificate: gwCert,
    knownHosts,
    dir,
    args: ['-o', 'MACs=hmac-sha1', '-o', 'Ciphers=aes128-ctr'],
  });
  assert.equal(mac.code, 255);
  assert.match(mac.stderr, /no matching MAC found/);
  const kex = await runSsh({
    port,
    user: 'gw1',
    identity: gw,
    certificate: gwCert,
    knownHosts,
    dir,
    args: ['-o', 'KexAlgorithms=diffie-hellman-group14-sha1'],
  });
  assert.equal(kex.code, 255);
  assert.match(kex.stderr, /no matching key exchange method found/);
});
