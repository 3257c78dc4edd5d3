/**
 * End to end with real OpenSSH: sshd trusts our user CA and presents our host certificate; ssh logs in
 * with our private key and user certificate and checks the host certificate against @cert-authority.
 * A certificate from a CA sshd does not trust is refused, so the test cannot pass by accident.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import {
  formatCertificate,
  formatPublicKey,
  publicKeyBlob,
  signCertificate,
  toOpenSshPrivateKey,
} from '../../lib/sshcert/index.js';
import { type RunningSshd, startSshd } from '../helpers/sshd.js';
import { TempDir } from './helpers.js';

const HOST_ALIAS = 'sshcert-test.invalid';
const dir = new TempDir();
const userCa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const hostCa = generateKeyPairSync('ed25519');
let sshd: RunningSshd | undefined;
let port = 0;

function certFor(ca: KeyObject, type: 'user' | 'host', subject: KeyObject, principal: string): string {
  const now = Math.floor(Date.now() / 1000);
  const blob = signCertificate(
    {
      publicKey: publicKeyBlob(subject),
      type,
      keyId: `test-${type}`,
      principals: [principal],
      validAfter: BigInt(now - 300),
      validBefore: BigInt(now + 3600),
      extensions: type === 'user' ? { 'permit-port-forwarding': '' } : {},
    },
    ca,
  );
  return `${formatCertificate(blob)}\n`;
}

before(async () => {
  const hostKey = generateKeyPairSync('ed25519');
  dir.write('host_key', toOpenSshPrivateKey(hostKey.privateKey, 'host'));
  dir.write('host_key-cert.pub', certFor(hostCa.privateKey, 'host', hostKey.publicKey, HOST_ALIAS));
  dir.write('user_ca.pub', `${formatPublicKey(publicKeyBlob(userCa.publicKey))}\n`);
  dir.write('known_hosts', `@cert-authority ${HOST_ALIAS} ${formatPublicKey(publicKeyBlob(hostCa.publicKey))}\n`);
  sshd = await startSshd({
    dir,
    hostKeyPath: dir.file('host_key'),
    hostCertPath: dir.file('host_key-cert.pub'),
    trustedUserCaKeysPath: dir.file('user_ca.pub'),
  });
  port = sshd.port;
});

after(async () => {
  await sshd?.stop();
  dir.remove();
});

function login(name: string, ca: KeyObject, type: 'ed25519' | 'rsa' | 'ec'): { status: number | null; out: string } {
  const user =
    type === 'rsa'
      ? generateKeyPairSync('rsa', { modulusLength: 2048 })
      : type === 'ec'
        ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
        : generateKeyPairSync('ed25519');
  const userName = sshd?.user ?? 'root';
  dir.write(name, toOpenSshPrivateKey(user.privateKey, name));
  dir.write(`${name}-cert.pub`, certFor(ca, 'user', user.publicKey, userName));
  const r = spawnSync(
    'ssh',
    [
      '-F',
      '/dev/null',
      '-i',
      dir.file(name),
      '-o',
      `CertificateFile=${dir.file(`${name}-cert.pub`)}`,
      '-o',
      'IdentitiesOnly=yes',
      '-o',
      'BatchMode=yes',
      '-o',
      `UserKnownHostsFile=${dir.file('known_hosts')}`,
      '-o',
      'GlobalKnownHostsFile=/dev/null',
      '-o',
      'StrictHostKeyChecking=yes',
      '-o',
      `HostKeyAlias=${HOST_ALIAS}`,
      '-o',
      'ConnectTimeout=10',
      '-p',
      String(port),
      `${userName}@127.0.0.1`,
      'echo logged-in',
    ],
    { encoding: 'utf8', timeout: 20_000 },
  );
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

describe('OpenSSH accepts what we issue', () => {
  it('ssh logs in with our ed25519 key + user cert from our RSA CA and checks our host cert', () => {
    const r = login('user_ed', userCa.privateKey, 'ed25519');
    assert.equal(r.status, 0, `${r.out}\n--- sshd ---\n${sshd?.log()}`);
    assert.match(r.out, /logged-in/);
  });
  it('the same with our RSA and ECDSA user keys', () => {
    for (const t of ['rsa', 'ec'] as const) {
      const r = login(`user_${t}`, userCa.privateKey, t);
      assert.equal(r.status, 0, `${t}: ${r.out}\n--- sshd ---\n${sshd?.log()}`);
    }
  });
  it('sshd refuses a user cert from a CA it does not trust', () => {
    const r = login('user_bad', generateKeyPairSync('ed25519').privateKey, 'ed25519');
    assert.notEqual(r.status, 0);
    assert.doesNotMatch(r.out, /logged-in/);
  });
});
