/**
 * The pure decisions of lib/sshwire on hand-made inputs: verifyUserAuth on ssh2-shaped authentication
 * contexts, verifyHostCertificate on host key blobs. No sockets.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import type { Verdict } from '../../lib/errors/codes.js';
import { publicKeyBlob, signCertificate, signSsh } from '../../lib/sshcert/index.js';
import { verifyHostCertificate } from '../../lib/sshwire/client.js';
import { verifyUserAuth } from '../../lib/sshwire/server.js';
import type { AuthContext } from '../../lib/sshwire/ssh2.js';

const NOW_MS = 1_800_000_000_000;
const NOW = NOW_MS / 1000;

const ed = (): KeyObject => generateKeyPairSync('ed25519').privateKey;
const ca = ed();
const caBlob = publicKeyBlob(ca);
const user = ed();
const rsaUser = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;

function cert(subject: KeyObject, type: 'user' | 'host' = 'user', principals = ['gw1'], signer = ca): Buffer {
  return signCertificate(
    {
      publicKey: publicKeyBlob(subject),
      type,
      keyId: 'k',
      principals,
      validAfter: BigInt(NOW - 60),
      validBefore: BigInt(NOW + 3600),
    },
    signer,
  );
}

/** An ssh2 publickey AuthContext as the patched ssh2 builds it for a certificate. */
function ctx(o: { algo?: string; data?: Buffer; signed?: Buffer; signature?: Buffer | null } = {}): AuthContext {
  const data = o.data ?? cert(user);
  const signed = o.signed ?? randomBytes(64);
  const signature = o.signature === null ? undefined : (o.signature ?? signSsh(user, signed));
  return {
    method: 'publickey',
    username: 'gw1',
    key: { algo: o.algo ?? 'ssh-ed25519-cert-v01@openssh.com', data },
    signature,
    blob: signature ? signed : undefined,
  } as unknown as AuthContext;
}

function code<T>(v: Verdict<T>): string {
  return v.ok ? 'ok' : v.code;
}

test('a signed attempt with a valid user certificate is accepted and returns the certificate', () => {
  const v = verifyUserAuth(ctx(), [caBlob], NOW_MS);
  assert.ok(v.ok);
  assert.deepEqual(v.value.principals, ['gw1']);
});

test('an unsigned attempt (the client asking) is answered from the certificate alone', () => {
  assert.equal(code(verifyUserAuth(ctx({ signature: null }), [caBlob], NOW_MS)), 'ok');
  assert.equal(code(verifyUserAuth(ctx({ signature: null }), [publicKeyBlob(ed())], NOW_MS)), 'E_CERT_UNTRUSTED');
});

test('the signature must be by the certified key over the signed data', () => {
  const signed = randomBytes(64);
  assert.equal(
    code(verifyUserAuth(ctx({ signed, signature: signSsh(ed(), signed) }), [caBlob], NOW_MS)),
    'E_SSH_SIGNATURE',
  );
  const tampered = ctx({ signed });
  (tampered as { blob: Buffer }).blob = Buffer.concat([signed, Buffer.from([0])]);
  assert.equal(code(verifyUserAuth(tampered, [caBlob], NOW_MS)), 'E_SSH_SIGNATURE');
});

test('the signature algorithm must be the base of the requested certificate algorithm', () => {
  // ssh2 strips a signature named like the key algorithm: what remains is not a whole signature blob
  const signed = randomBytes(64);
  const raw = signSsh(user, signed).subarray(4 + 'ssh-ed25519'.length + 4);
  assert.equal(code(verifyUserAuth(ctx({ signed, signature: raw }), [caBlob], NOW_MS)), 'E_SSH_SIGNATURE');
});

test('RSA certificates: rsa-sha2-256/512-cert-v01 names, signatures with the matching hash only', () => {
  const data = cert(rsaUser);
  const signed = randomBytes(64);
  const ok256 = ctx({
    algo: 'rsa-sha2-256-cert-v01@openssh.com',
    data,
    signed,
    signature: signSsh(rsaUser, signed, 'rsa-sha2-256'),
  });
  assert.equal(code(verifyUserAuth(ok256, [caBlob], NOW_MS)), 'ok');
  const mixed = ctx({
    algo: 'rsa-sha2-512-cert-v01@openssh.com',
    data,
    signed,
    signature: signSsh(rsaUser, signed, 'rsa-sha2-256'),
  });
  assert.equal(code(verifyUserAuth(mixed, [caBlob], NOW_MS)), 'E_SSH_SIGNATURE');
});

test('the key algorithm must name the presented certificate', () => {
  assert.equal(
    code(verifyUserAuth(ctx({ algo: 'ecdsa-sha2-nistp256-cert-v01@openssh.com' }), [caBlob], NOW_MS)),
    'E_SSH_AUTH',
  );
});

test('plain keys and other methods are refused', () => {
  const plain = ctx({ algo: 'ssh-ed25519', data: publicKeyBlob(user) });
  assert.equal(code(verifyUserAuth(plain, [caBlob], NOW_MS)), 'E_SSH_AUTH');
  const password = { method: 'password', username: 'gw1', password: 'x' } as unknown as AuthContext;
  assert.equal(code(verifyUserAuth(password, [caBlob], NOW_MS)), 'E_SSH_AUTH');
});

test('certificate decisions come from lib/sshcert: type, validity, principal, revocation', () => {
  assert.equal(code(verifyUserAuth(ctx({ data: cert(user, 'host') }), [caBlob], NOW_MS)), 'E_CERT_WRONG_TYPE');
  assert.equal(code(verifyUserAuth(ctx(), [caBlob], NOW_MS + 2 * 3600_000)), 'E_CERT_EXPIRED');
  assert.equal(code(verifyUserAuth(ctx(), [caBlob], NOW_MS, { principal: 'gw2' })), 'E_CERT_WRONG_PRINCIPAL');
  assert.equal(code(verifyUserAuth(ctx(), [caBlob], NOW_MS, { isRevoked: () => true })), 'E_CERT_REVOKED');
  assert.equal(code(verifyUserAuth(ctx({ data: randomBytes(100) }), [caBlob], NOW_MS)), 'E_CERT_MALFORMED');
});

test('verifyHostCertificate: a host certificate for the dialled name, from a trusted CA, in time', () => {
  const host = ed();
  const blob = cert(host, 'host', ['proxy.test']);
  const policy = { trustedHostCaKeys: [caBlob], hostPrincipal: 'proxy.test' };
  assert.equal(code(verifyHostCertificate(blob, policy, NOW_MS)), 'ok');
  assert.equal(
    code(verifyHostCertificate(blob, { ...policy, hostPrincipal: 'other.test' }, NOW_MS)),
    'E_CERT_WRONG_PRINCIPAL',
  );
  assert.equal(
    code(verifyHostCertificate(blob, { ...policy, trustedHostCaKeys: [publicKeyBlob(ed())] }, NOW_MS)),
    'E_CERT_UNTRUSTED',
  );
  assert.equal(code(verifyHostCertificate(blob, policy, NOW_MS + 2 * 3600_000)), 'E_CERT_EXPIRED');
  assert.equal(code(verifyHostCertificate(cert(host, 'user', ['proxy.test']), policy, NOW_MS)), 'E_CERT_WRONG_TYPE');
  assert.equal(code(verifyHostCertificate(publicKeyBlob(host), policy, NOW_MS)), 'E_CERT_MALFORMED');
});
