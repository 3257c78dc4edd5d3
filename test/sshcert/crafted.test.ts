/**
 * Hostile and malformed certificates that ssh-keygen would never make, crafted with the encoder, and the
 * strict wire rules. Each case is validly signed by a trusted CA, so only the check under test refuses it.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import { describe, it } from 'node:test';
import { type CertificateBody, encodeCertificateBody, optionEntries } from '../../lib/sshcert/cert.js';
import {
  formatCertificate,
  parseCertificate,
  parsePublicKey,
  publicKeyBlob,
  signCertificate,
  signSsh,
  verifyCertificate,
  verifySshSignature,
} from '../../lib/sshcert/index.js';
import { SshReader, SshWriter } from '../../lib/sshcert/wire.js';
import { HOUR, NOW } from './helpers.js';

const ca = generateKeyPairSync('ed25519');
const caBlob = publicKeyBlob(ca.publicKey);
const subject = publicKeyBlob(generateKeyPairSync('ed25519').publicKey);
const opts = { trustedCaKeys: [caBlob], type: 'user' as const, principal: 'p1', now: NOW };

function body(over: Partial<CertificateBody> = {}): CertificateBody {
  return {
    certAlgorithm: 'ssh-ed25519-cert-v01@openssh.com',
    nonce: Buffer.alloc(32, 7),
    publicKeyBlob: subject,
    serial: 1n,
    type: 'user',
    keyId: 'id',
    principals: ['p1'],
    validAfter: BigInt(NOW - HOUR),
    validBefore: BigInt(NOW + HOUR),
    criticalOptions: [],
    extensions: [],
    signatureKeyBlob: caBlob,
    ...over,
  };
}

function craft(over: Partial<CertificateBody> = {}, signer: KeyObject = ca.privateKey): Buffer {
  const tbs = encodeCertificateBody(body(over));
  return new SshWriter().raw(tbs).string(signSsh(signer, tbs)).toBuffer();
}

function code(blob: Buffer, o: Partial<typeof opts> & { trustedCaKeys?: Buffer[] } = {}): string {
  const p = parseCertificate(blob);
  if (!p.ok) return p.code;
  const v = verifyCertificate(p.value, { ...opts, ...o });
  return v.ok ? 'accepted' : v.code;
}

describe('crafted certificates', () => {
  it('the baseline crafted certificate is accepted', () => {
    assert.equal(code(craft()), 'accepted');
  });
  it('a certificate as CA key is refused even when that blob is listed as trusted', () => {
    const nested = craft();
    const tbs = encodeCertificateBody(body({ signatureKeyBlob: nested }));
    const blob = new SshWriter().raw(tbs).string(signSsh(ca.privateKey, tbs)).toBuffer();
    assert.equal(code(blob, { trustedCaKeys: [nested, caBlob] }), 'E_CERT_UNTRUSTED');
  });
  it('options out of order or repeated are malformed', () => {
    const e = Buffer.alloc(0);
    assert.equal(
      code(
        craft({
          extensions: [
            ['permit-pty', e],
            ['permit-port-forwarding', e],
          ],
        }),
      ),
      'E_CERT_MALFORMED',
    );
    assert.equal(
      code(
        craft({
          extensions: [
            ['permit-pty', e],
            ['permit-pty', e],
          ],
        }),
      ),
      'E_CERT_MALFORMED',
    );
    assert.equal(
      code(
        craft({
          criticalOptions: [
            ['b', e],
            ['a', e],
          ],
        }),
        { knownCriticalOptions: ['a', 'b'] } as never,
      ),
      'E_CERT_MALFORMED',
    );
  });
  it('an option value that is not exactly one nested string is malformed', () => {
    const raw = Buffer.from('not-nested');
    assert.equal(code(craft({ extensions: [['x@example.com', raw]] })), 'E_CERT_MALFORMED');
    const trailing = Buffer.concat([new SshWriter().string('v').toBuffer(), Buffer.from([0])]);
    assert.equal(code(craft({ extensions: [['x@example.com', trailing]] })), 'E_CERT_MALFORMED');
  });
  it('a name with an embedded NUL is malformed', () => {
    assert.equal(code(craft({ principals: ['p1\0root'] })), 'E_CERT_MALFORMED');
  });
  it('more than 256 principals are malformed', () => {
    const many = Array.from({ length: 257 }, (_, i) => `p${i}`);
    assert.equal(code(craft({ principals: many })), 'E_CERT_MALFORMED');
    assert.equal(code(craft({ principals: many.slice(0, 256) })), 'accepted');
  });
  it('an unknown certificate type code is malformed', () => {
    assert.equal(code(craft({ type: 3 })), 'E_CERT_MALFORMED');
  });
  it('a certified key field of the wrong size is malformed', () => {
    const bad = new SshWriter().string('ssh-ed25519').string(Buffer.alloc(31)).toBuffer();
    assert.equal(code(craft({ publicKeyBlob: bad })), 'E_CERT_MALFORMED');
  });
  it('an unsupported certificate type is E_KEY_UNSUPPORTED', () => {
    const blob = Buffer.from(craft());
    const dss = new SshWriter().string('ssh-dss-cert-v01@openssh.com').raw(blob.subarray(36)).toBuffer();
    assert.equal(code(dss), 'E_KEY_UNSUPPORTED');
  });
  it('a length prefix longer than the data is malformed, not an over-read', () => {
    const blob = Buffer.from(craft());
    blob.writeUInt32BE(0xfffffff0, 0);
    assert.equal(code(blob), 'E_CERT_MALFORMED');
  });
  it('an oversized blob is refused before parsing', () => {
    assert.equal(code(craft({ keyId: 'x'.repeat(40_000) })), 'E_CERT_MALFORMED');
  });
  it('a signature algorithm that does not fit the CA key is refused', () => {
    const blob = craft();
    const p = parseCertificate(blob);
    assert.ok(p.ok);
    const r = new SshReader(p.value.signatureBlob);
    r.text();
    const renamed = new SshWriter().string('rsa-sha2-256').string(r.string()).toBuffer();
    const forged = new SshWriter().raw(p.value.signedBytes).string(renamed).toBuffer();
    assert.equal(code(forged), 'E_CERT_WEAK_ALGORITHM');
  });
  it('the text form must name the same algorithm as the blob and use canonical base64', () => {
    const line = formatCertificate(craft());
    assert.ok(parseCertificate(line).ok);
    assert.equal(code(Buffer.alloc(0)), 'E_CERT_MALFORMED');
    const wrong = parseCertificate(line.replace('ssh-ed25519-cert-v01', 'ssh-rsa-cert-v01'));
    assert.equal(wrong.ok, false);
    // A blob whose length is 1 mod 3 ends in "==": its last data character carries 4 unused bits.
    const padded = ['i', 'id', 'idx'].map((keyId) => craft({ keyId })).find((b) => b.length % 3 === 1)!;
    const b64 = padded.toString('base64');
    assert.ok(parseCertificate(`ssh-ed25519-cert-v01@openssh.com ${b64}`).ok);
    const last = b64.length - 3;
    const abc = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
    const flipped = abc[abc.indexOf(b64[last]!) ^ 1]!;
    const tweaked = `${b64.slice(0, last)}${flipped}${b64.slice(last + 1)}`;
    assert.ok(Buffer.from(tweaked, 'base64').equals(padded), 'same bytes, different text');
    const p = parseCertificate(`ssh-ed25519-cert-v01@openssh.com ${tweaked}`);
    assert.equal(p.ok, false);
  });
});

describe('wire reader', () => {
  const mp = (bytes: number[]) => new SshReader(new SshWriter().string(Buffer.from(bytes)).toBuffer());
  it('refuses negative and non-minimal mpints', () => {
    assert.throws(() => mp([0x80]).mpint());
    assert.throws(() => mp([0x00, 0x01]).mpint());
    assert.throws(() => mp([0x00]).mpint());
    assert.deepEqual(mp([0x00, 0x80]).mpint(), Buffer.from([0x80]));
  });
  it('refuses trailing bytes', () => {
    const r = new SshReader(Buffer.from([0, 0, 0, 0, 1]));
    r.string();
    assert.throws(() => r.end());
  });
});

describe('signCertificate', () => {
  const req = {
    publicKey: subject,
    type: 'user' as const,
    keyId: 'id',
    principals: ['p1'],
    validAfter: BigInt(NOW - HOUR),
    validBefore: BigInt(NOW + HOUR),
  };
  it('sorts options and extensions by name and nests values', () => {
    const blob = signCertificate(
      { ...req, extensions: { 'permit-pty': '', 'permit-port-forwarding': '', 'a@x': 'v' } },
      ca.privateKey,
    );
    const p = parseCertificate(blob);
    assert.ok(p.ok);
    assert.deepEqual(Object.keys(p.value.extensions), ['a@x', 'permit-port-forwarding', 'permit-pty']);
    assert.equal(p.value.extensions['a@x']?.toString(), 'v');
    assert.deepEqual(optionEntries({ b: '', a: 'x' })[0], ['a', Buffer.from([0, 0, 0, 1, 0x78])]);
  });
  it('uses a fresh random 32-byte nonce', () => {
    const a = parseCertificate(signCertificate(req, ca.privateKey));
    const b = parseCertificate(signCertificate(req, ca.privateKey));
    assert.ok(a.ok && b.ok);
    assert.equal(a.value.nonce.length, 32);
    assert.notDeepEqual(a.value.nonce, b.value.nonce);
  });
  it('accepts the OpenSSH text form of the key and honours the RSA signature algorithm', () => {
    const rsaCa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const text = `ssh-ed25519 ${subject.toString('base64')} someone@host`;
    const blob = signCertificate({ ...req, publicKey: text, signatureAlgorithm: 'rsa-sha2-256' }, rsaCa.privateKey);
    const p = parseCertificate(blob);
    assert.ok(p.ok);
    assert.equal(new SshReader(p.value.signatureBlob).text(), 'rsa-sha2-256');
    assert.ok(p.value.publicKeyBlob.equals(subject));
  });
  it('refuses requests it should not sign', () => {
    assert.throws(() => signCertificate({ ...req, principals: [] }, ca.privateKey), /E_CERT_MALFORMED|principals/);
    assert.throws(() => signCertificate({ ...req, validBefore: req.validAfter }, ca.privateKey), {
      code: 'E_CERT_MALFORMED',
    });
    assert.throws(() => signCertificate(req, ca.privateKey, NOW + HOUR), { code: 'E_CERT_EXPIRED' });
    const ed448 = generateKeyPairSync('ed448');
    assert.throws(() => signCertificate(req, ed448.privateKey), { code: 'E_KEY_UNSUPPORTED' });
    assert.throws(() => signCertificate({ ...req, publicKey: 'ssh-dss AAAAB3NzaC1kc3M=' }, ca.privateKey), {
      code: 'E_KEY_UNSUPPORTED',
    });
  });
});

describe('verifySshSignature', () => {
  const data = Buffer.from('exchange hash');
  it('accepts rsa-sha2-256/512, ed25519 and ecdsa signatures, also through a certificate blob', () => {
    for (const k of [
      generateKeyPairSync('rsa', { modulusLength: 2048 }),
      generateKeyPairSync('ed25519'),
      generateKeyPairSync('ec', { namedCurve: 'P-256' }),
    ]) {
      const blob = publicKeyBlob(k.publicKey);
      assert.ok(verifySshSignature(blob, signSsh(k.privateKey, data), data).ok);
      const cert = signCertificate({ ...{ publicKey: blob }, ...baseReq() }, ca.privateKey);
      assert.ok(verifySshSignature(cert, signSsh(k.privateKey, data), data).ok);
    }
  });
  it('refuses a valid SHA-1 ssh-rsa signature', () => {
    const k = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const sha1 = new SshWriter()
      .string('ssh-rsa')
      .string(sign('sha1', data, k.privateKey))
      .toBuffer();
    const v = verifySshSignature(publicKeyBlob(k.publicKey), sha1, data);
    assert.equal(v.ok ? 'accepted' : v.code, 'E_CERT_WEAK_ALGORITHM');
  });
  it('refuses an ed25519 signature of the wrong length as malformed', () => {
    const k = generateKeyPairSync('ed25519');
    const r = new SshReader(signSsh(k.privateKey, data));
    r.text();
    const short = new SshWriter().string('ssh-ed25519').string(r.string().subarray(0, 63)).toBuffer();
    const v = verifySshSignature(publicKeyBlob(k.publicKey), short, data);
    assert.equal(v.ok ? 'accepted' : v.code, 'E_CERT_MALFORMED');
  });
  it('refuses other data, another key, and trailing bytes', () => {
    const k = generateKeyPairSync('ed25519');
    const sig = signSsh(k.privateKey, data);
    const blob = publicKeyBlob(k.publicKey);
    const c = (v: ReturnType<typeof verifySshSignature>) => (v.ok ? 'accepted' : v.code);
    assert.equal(c(verifySshSignature(blob, sig, Buffer.from('other'))), 'E_SSH_SIGNATURE');
    assert.equal(c(verifySshSignature(caBlob, sig, data)), 'E_SSH_SIGNATURE');
    assert.equal(c(verifySshSignature(blob, Buffer.concat([sig, Buffer.from([0])]), data)), 'E_CERT_MALFORMED');
  });
  it('parsePublicKey reads a certificate line as its certified key', () => {
    const cert = signCertificate({ publicKey: subject, ...baseReq() }, ca.privateKey);
    const v = parsePublicKey(formatCertificate(cert, 'comment'));
    assert.ok(v.ok && v.value.equals(subject));
  });
});

function baseReq() {
  return {
    type: 'user' as const,
    keyId: 'id',
    principals: ['p1'],
    validAfter: BigInt(NOW - HOUR),
    validBefore: BigInt(NOW + HOUR),
  };
}
