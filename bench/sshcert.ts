/**
 * lib/sshcert benchmarks: OpenSSH certificate issuance and verification with Node's native crypto, beside
 * sshpk (pure-JS tweetnacl for ed25519; SHA-1 for RSA certs) and `ssh-keygen -s` per invocation.
 * Answers: should sshpk do our encoding? (No: see the notes on each row.)
 */
import { execFileSync } from 'node:child_process';
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import sshpk from 'sshpk';
import {
  formatPublicKey,
  parseCertificate,
  publicKeyBlob,
  signCertificate,
  toOpenSshPrivateKey,
  verifyCertificate,
} from '../lib/sshcert/index.js';
import { type BenchRow, fmt, rate, renderTable } from './table.js';

/** Keys through PEM so no KeyObject shares state with a KeyGenJob (see lib/sshcert/der.ts). */
function keyPair(type: 'ed25519' | 'rsa'): { privateKey: KeyObject; publicKey: KeyObject } {
  const pem = generateKeyPairSync(type as 'rsa', {
    modulusLength: 3072,
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  });
  return { privateKey: createPrivateKey(pem.privateKey), publicKey: createPublicKey(pem.publicKey) };
}

const now = Math.floor(Date.now() / 1000);

function request(subject: Buffer) {
  return {
    publicKey: subject,
    type: 'user' as const,
    keyId: 'spiffe://bench.example/org/o1/gateway/gw1',
    principals: ['gw1'],
    validAfter: BigInt(now - 60),
    validBefore: BigInt(now + 86_400),
    extensions: { 'permit-port-forwarding': '' },
  };
}

async function caRows(type: 'ed25519' | 'rsa'): Promise<BenchRow[]> {
  const label = type === 'rsa' ? 'RSA-3072 CA' : 'ed25519 CA';
  const ca = keyPair(type);
  const subject = publicKeyBlob(keyPair('ed25519').publicKey);
  const ours = await rate(() => signCertificate(request(subject), ca.privateKey), 1500);

  // sshpk reads our OpenSSH private key text, which also shows the format is interoperable.
  const sshpkCa = sshpk.parsePrivateKey(toOpenSshPrivateKey(ca.privateKey), 'ssh');
  const sshpkSubject = sshpk.parseKey(formatPublicKey(subject), 'ssh');
  const who = sshpk.identityForUser('gw1');
  const issuer = sshpk.identityForUser('ca');
  const makeSshpk = () =>
    sshpk.createCertificate(who, sshpkSubject, issuer, sshpkCa, { lifetime: 86_400 }).toString('openssh');
  const sshpkRate = await rate(makeSshpk, 1500);
  const sshpkText = makeSshpk();
  const sshpkCert = parseCertificate(sshpkText);
  const caBlob = publicKeyBlob(ca.publicKey);
  const opts = { trustedCaKeys: [caBlob], type: 'user' as const, principal: 'gw1', now };
  // sshpk stamps valid-from with the current second, so judge its cert at a fresh clock.
  const sshpkOpts = { ...opts, now: Math.floor(Date.now() / 1000) + 1 };
  const sshpkVerdict = sshpkCert.ok ? verifyCertificate(sshpkCert.value, sshpkOpts) : sshpkCert;

  const blob = signCertificate(request(subject), ca.privateKey);
  const parsed = parseCertificate(blob);
  if (!parsed.ok) throw new Error(parsed.reason);
  const verifyRate = await rate(() => {
    const p = parseCertificate(blob);
    if (!p.ok || !verifyCertificate(p.value, opts).ok) throw new Error('verify failed');
  }, 1500);
  // sshpk has no real OpenSSH cert verifier: isSignedByKey only compares the CA key embedded in the cert
  // (a tampered cert passes, checked below), so the reference is its raw signature check (tweetnacl / RSA).
  const sshpkCaPublic = sshpkCa.toPublic();
  const tampered = Buffer.from(parsed.value.blob);
  tampered[tampered.length - 3]! ^= 1;
  const sshpkFooled = sshpk
    .parseCertificate(Buffer.from(formatPublicKey(tampered)), 'openssh')
    .isSignedByKey(sshpkCaPublic);
  const sshpkSig = sshpk.parseSignature(parsed.value.signatureBlob, type, 'ssh');
  const sshpkVerify = () => {
    const v = sshpkCaPublic.createVerify(type === 'rsa' ? 'sha512' : undefined);
    v.update(parsed.value.signedBytes);
    return v.verify(sshpkSig);
  };
  if (!sshpkVerify()) throw new Error('sshpk signature check failed');
  const sshpkVerifyRate = await rate(sshpkVerify, 1500);

  return [
    {
      area: 'sshcert',
      metric: `issue/s, user cert, ${label}`,
      ours: fmt.perSec(ours),
      reference: `${fmt.perSec(sshpkRate)} (sshpk createCertificate)`,
      note:
        (type === 'ed25519'
          ? 'sshpk: tweetnacl pure JS, also signs an X.509 form; '
          : 'sshpk: signs ssh-rsa (SHA-1); ') +
        `our verifier on sshpk's cert: ${sshpkVerdict.ok ? 'accepted' : sshpkVerdict.code}`,
    },
    {
      area: 'sshcert',
      metric: `parse+verify/s, ${label}`,
      ours: fmt.perSec(verifyRate),
      reference: `${fmt.perSec(sshpkVerifyRate)} (sshpk raw signature check only)`,
      note: `ours: parse+all checks; sshpk isSignedByKey on a tampered cert: ${sshpkFooled}`,
    },
  ];
}

/** ssh-keygen -s per invocation: what shelling out to OpenSSH for each certificate would cost. */
function sshKeygenMs(n: number): number {
  const dir = mkdtempSync(join(tmpdir(), 'bench-sshcert-'));
  try {
    const ca = keyPair('ed25519');
    const caPath = join(dir, 'ca');
    writeFileSync(caPath, toOpenSshPrivateKey(ca.privateKey), { mode: 0o600 });
    const pubPath = join(dir, 'user.pub');
    writeFileSync(pubPath, `${formatPublicKey(publicKeyBlob(keyPair('ed25519').publicKey))}\n`);
    const start = performance.now();
    for (let i = 0; i < n; i++) {
      execFileSync('ssh-keygen', ['-q', '-s', caPath, '-I', 'id', '-n', 'gw1', '-V', '+1d', pubPath], {
        stdio: 'pipe',
      });
    }
    return (performance.now() - start) / n;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function benchSshcert(): Promise<BenchRow[]> {
  const rows = [...(await caRows('ed25519')), ...(await caRows('rsa'))];
  const ms = sshKeygenMs(30);
  rows.push({
    area: 'sshcert',
    metric: 'issue, ed25519 CA, via ssh-keygen -s',
    ours: '-',
    reference: `${fmt.ms(ms)} per invocation (${fmt.perSec(1000 / ms)})`,
    note: 'process spawn + file I/O',
  });
  return rows;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  console.log(renderTable(await benchSshcert()));
}
