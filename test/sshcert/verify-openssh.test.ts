/**
 * The verifier against certificates made by the real `ssh-keygen -s`: it accepts what OpenSSH issues and
 * refuses each defect with its own code. Every refusal case is built so that all other checks pass, so
 * removing the check under test turns the refusal into an acceptance (or another code) and fails the test.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { SshCertificate, VerifyOptions } from '../../lib/sshcert/index.js';
import { parseCertificate, parsePublicKey, verifyCertificate } from '../../lib/sshcert/index.js';
import { HOUR, hex, keygen, keygenSign, NOW, TempDir } from './helpers.js';

const dir = new TempDir();
let edCa: string;
let rsaCa: string;
let otherCa: string;
let weakRsaCa: string;
let userPub: string;
let weakUserPub: string;
const caBlob = (path: string): Buffer => {
  const v = parsePublicKey(dir.read(`${path.split('/').pop()}.pub`));
  assert.ok(v.ok);
  return v.value;
};
const window = ['-V', `${hex(NOW - HOUR)}:${hex(NOW + HOUR)}`];

function sign(ca: string, args: string[], pub = userPub): SshCertificate {
  const parsed = parseCertificate(keygenSign(ca, pub, args));
  assert.ok(parsed.ok, parsed.ok ? '' : parsed.reason);
  return parsed.value;
}

function opts(over: Partial<VerifyOptions> = {}): VerifyOptions {
  return { trustedCaKeys: [caBlob(edCa), caBlob(rsaCa)], type: 'user', principal: 'p1', now: NOW, ...over };
}

function refused(v: ReturnType<typeof verifyCertificate>, code: string): void {
  assert.equal(v.ok, false, 'expected a refusal');
  if (!v.ok) assert.equal(v.code, code, v.reason);
}

before(() => {
  edCa = keygen(dir, 'ed_ca', 'ed25519');
  rsaCa = keygen(dir, 'rsa_ca', 'rsa', 3072);
  otherCa = keygen(dir, 'other_ca', 'ed25519');
  weakRsaCa = keygen(dir, 'weak_ca', 'rsa', 1024);
  userPub = `${keygen(dir, 'user', 'ed25519')}.pub`;
  weakUserPub = `${keygen(dir, 'weak_user', 'rsa', 1024)}.pub`;
});
after(() => dir.remove());

describe('verifyCertificate accepts ssh-keygen certificates', () => {
  for (const [name, ca] of [
    ['ed25519 CA', () => edCa],
    ['RSA CA (rsa-sha2-512)', () => rsaCa],
  ] as const) {
    it(`user cert from an ${name}`, () => {
      const cert = sign(ca(), [
        '-I',
        'gw-uri',
        '-n',
        'p1,p2',
        ...window,
        '-O',
        'clear',
        '-O',
        'permit-port-forwarding',
      ]);
      const v = verifyCertificate(cert, opts());
      assert.ok(v.ok, v.ok ? '' : v.reason);
      assert.deepEqual(v.value.principals, ['p1', 'p2']);
      assert.equal(v.value.keyId, 'gw-uri');
      assert.deepEqual(Object.keys(v.value.extensions), ['permit-port-forwarding']);
      assert.equal(v.value.validAfter, BigInt(NOW - HOUR));
    });
    it(`host cert from an ${name}`, () => {
      const cert = sign(ca(), ['-h', '-I', 'proxy', '-n', 'proxy.example,10.0.0.1', ...window]);
      assert.ok(verifyCertificate(cert, opts({ type: 'host', principal: 'proxy.example' })).ok);
    });
  }
  it('RSA CA signing with rsa-sha2-256', () => {
    const cert = sign(rsaCa, ['-t', 'rsa-sha2-256', '-I', 'id', '-n', 'p1', ...window]);
    assert.equal(cert.signatureBlob.subarray(4, 16).toString(), 'rsa-sha2-256');
    assert.ok(verifyCertificate(cert, opts()).ok);
  });
  it('known critical options are accepted and exposed unwrapped', () => {
    const cert = sign(edCa, ['-I', 'id', '-n', 'p1', ...window, '-O', 'force-command=/bin/true']);
    const v = verifyCertificate(cert, opts({ knownCriticalOptions: ['force-command'] }));
    assert.ok(v.ok);
    assert.equal(v.value.criticalOptions['force-command']?.toString(), '/bin/true');
  });
});

describe('verifyCertificate refuses', () => {
  const good = () => sign(edCa, ['-I', 'id', '-n', 'p1,p2', ...window]);

  it('a byte flipped in the signed part', () => {
    const cert = good();
    assert.ok(verifyCertificate(cert, opts()).ok);
    const blob = Buffer.from(cert.blob);
    blob[40]! ^= 0x01; // inside the nonce: still parses, no longer matches the signature
    const p = parseCertificate(blob);
    assert.ok(p.ok);
    refused(verifyCertificate(p.value, opts()), 'E_CERT_SIGNATURE');
  });
  it('a byte flipped in the signature (ed25519 and RSA CA)', () => {
    for (const cert of [good(), sign(rsaCa, ['-I', 'id', '-n', 'p1', ...window])]) {
      const blob = Buffer.from(cert.blob);
      blob[blob.length - 5]! ^= 0x80;
      const p = parseCertificate(blob);
      assert.ok(p.ok);
      refused(verifyCertificate(p.value, opts()), 'E_CERT_SIGNATURE');
    }
  });
  it('an expired certificate, valid_before being exclusive', () => {
    const cert = good();
    refused(verifyCertificate(cert, opts({ now: NOW + HOUR })), 'E_CERT_EXPIRED');
    assert.ok(verifyCertificate(cert, opts({ now: NOW + HOUR - 1 })).ok);
  });
  it('a certificate that is not yet valid', () => {
    const cert = good();
    refused(verifyCertificate(cert, opts({ now: NOW - HOUR - 1 })), 'E_CERT_NOT_YET_VALID');
    assert.ok(verifyCertificate(cert, opts({ now: NOW - HOUR })).ok);
  });
  it('a certificate from a CA that is not trusted', () => {
    const cert = sign(otherCa, ['-I', 'id', '-n', 'p1', ...window]);
    refused(verifyCertificate(cert, opts()), 'E_CERT_UNTRUSTED');
  });
  it('a host certificate used as a user certificate, and the reverse', () => {
    const host = sign(edCa, ['-h', '-I', 'id', '-n', 'p1', ...window]);
    refused(verifyCertificate(host, opts({ type: 'user' })), 'E_CERT_WRONG_TYPE');
    refused(verifyCertificate(good(), opts({ type: 'host' })), 'E_CERT_WRONG_TYPE');
  });
  it('a principal that is not listed', () => {
    refused(verifyCertificate(good(), opts({ principal: 'p3' })), 'E_CERT_WRONG_PRINCIPAL');
  });
  it('an empty principal list, even when no principal is asked for', () => {
    const cert = sign(edCa, ['-I', 'id', ...window]);
    assert.deepEqual(cert.principals, []);
    refused(verifyCertificate(cert, opts({ principal: undefined })), 'E_CERT_WRONG_PRINCIPAL');
  });
  it('force-command, which OpenSSH knows but this caller did not list', () => {
    const cert = sign(edCa, ['-I', 'id', '-n', 'p1', ...window, '-O', 'force-command=/bin/true']);
    refused(verifyCertificate(cert, opts()), 'E_CERT_CRITICAL_OPTION');
  });
  it('a custom critical option', () => {
    const cert = sign(edCa, ['-I', 'id', '-n', 'p1', ...window, '-O', 'critical:deny@example.com=x']);
    refused(verifyCertificate(cert, opts({ knownCriticalOptions: ['force-command'] })), 'E_CERT_CRITICAL_OPTION');
  });
  it('unknown extensions are ignored, as OpenSSH does', () => {
    const cert = sign(edCa, ['-I', 'id', '-n', 'p1', ...window, '-O', 'extension:note@example.com=x']);
    assert.ok(verifyCertificate(cert, opts()).ok);
  });
  it('a CA signature made with SHA-1 ssh-rsa', () => {
    const cert = sign(rsaCa, ['-t', 'ssh-rsa', '-I', 'id', '-n', 'p1', ...window]);
    assert.equal(cert.signatureBlob.subarray(4, 11).toString(), 'ssh-rsa');
    refused(verifyCertificate(cert, opts()), 'E_CERT_WEAK_ALGORITHM');
  });
  it('an RSA CA key below 2048 bits', () => {
    const cert = sign(weakRsaCa, ['-I', 'id', '-n', 'p1', ...window]);
    refused(verifyCertificate(cert, opts({ trustedCaKeys: [caBlob(weakRsaCa)] })), 'E_CERT_WEAK_ALGORITHM');
  });
  it('a certified RSA key below 2048 bits', () => {
    const cert = sign(edCa, ['-I', 'id', '-n', 'p1', ...window], weakUserPub);
    refused(verifyCertificate(cert, opts()), 'E_CERT_WEAK_ALGORITHM');
  });
  it('a revoked certificate', () => {
    const cert = sign(edCa, ['-I', 'id', '-n', 'p1', '-z', '42', ...window]);
    assert.ok(verifyCertificate(cert, opts({ isRevoked: (c) => c.serial === 41n })).ok);
    refused(verifyCertificate(cert, opts({ isRevoked: (c) => c.serial === 42n })), 'E_CERT_REVOKED');
  });
  it('truncated or extended blobs', () => {
    const cert = good();
    for (const blob of [cert.blob.subarray(0, cert.blob.length - 1), Buffer.concat([cert.blob, Buffer.from([0])])]) {
      const p = parseCertificate(blob);
      assert.equal(p.ok, false);
      if (!p.ok) assert.equal(p.code, 'E_CERT_MALFORMED');
      // The verifier re-parses the blob, so a parsed object cannot smuggle one in either.
      refused(verifyCertificate({ ...cert, blob }, opts()), 'E_CERT_MALFORMED');
    }
  });
  it('fields edited after parsing (the verifier decides on the signed bytes only)', () => {
    const cert = good();
    const edited = { ...cert, principals: ['root'], type: 'host' as const };
    refused(verifyCertificate(edited, opts({ principal: 'root', type: 'host' })), 'E_CERT_WRONG_TYPE');
  });
});
