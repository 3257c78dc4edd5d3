/**
 * What we issue, read by the real OpenSSH: ssh-keygen -L shows our fields, ssh-keygen -l and -y agree
 * with our fingerprints and private key format, ssh2 loads our private keys, and sshd + ssh accept our
 * user and host certificates end to end.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { after, describe, it } from 'node:test';
import ssh2 from 'ssh2';
import {
  fingerprint,
  formatCertificate,
  formatPublicKey,
  parseCertificate,
  parsePublicKey,
  publicKeyBlob,
  signCertificate,
  toOpenSshPrivateKey,
  verifyCertificate,
  verifySshSignature,
} from '../../lib/sshcert/index.js';
import { parseOpenSshPrivateKey } from '../helpers/openssh-key.js';
import { HOUR, keygen, NOW, sshKeygen, TempDir } from './helpers.js';

const dir = new TempDir();
after(() => dir.remove());

const keys = {
  ed25519: () => generateKeyPairSync('ed25519'),
  rsa: () => generateKeyPairSync('rsa', { modulusLength: 2048 }),
  ecdsa: () => generateKeyPairSync('ec', { namedCurve: 'P-256' }),
};

function issue(ca: KeyObject, type: 'user' | 'host', subject: KeyObject): Buffer {
  return signCertificate(
    {
      publicKey: publicKeyBlob(subject),
      type,
      keyId: 'spiffe://example.test/org/o1/gateway/gw1',
      principals: ['gw1', 'alt'],
      validAfter: BigInt(NOW),
      validBefore: BigInt(NOW + HOUR),
      serial: 77n,
      criticalOptions: type === 'user' ? { 'source-address': '127.0.0.1/32', 'force-command': '/bin/true' } : {},
      extensions: type === 'user' ? { 'permit-port-forwarding': '', 'permit-pty': '' } : {},
    },
    ca,
  );
}

describe('ssh-keygen -L reads our certificates', () => {
  for (const caType of ['ed25519', 'rsa'] as const) {
    for (const certType of ['user', 'host'] as const) {
      it(`${certType} cert from an ${caType} CA`, () => {
        const ca = keys[caType]();
        const blob = issue(ca.privateKey, certType, keys.ed25519().publicKey);
        const out = sshKeygen(['-L', '-f', dir.write(`${caType}-${certType}-cert.pub`, formatCertificate(blob))]);
        assert.match(out, new RegExp(`Type: ssh-ed25519-cert-v01@openssh.com ${certType} certificate`));
        const caFp = fingerprint(publicKeyBlob(ca.publicKey)).replace(/[+/]/g, '\\$&');
        const alg = caType === 'rsa' ? 'rsa-sha2-512' : 'ssh-ed25519';
        assert.match(out, new RegExp(`Signing CA: ${caType.toUpperCase()} ${caFp} \\(using ${alg}\\)`));
        assert.match(out, /Key ID: "spiffe:\/\/example.test\/org\/o1\/gateway\/gw1"/);
        assert.match(out, /Serial: 77/);
        assert.match(out, /Valid: from 2027-01-15T08:00:00 to 2027-01-15T09:00:00/);
        assert.match(out, /Principals: \n\s+gw1\n\s+alt\n/);
        if (certType === 'user') {
          assert.match(out, /Critical Options: \n\s+force-command \/bin\/true\n\s+source-address 127.0.0.1\/32\n/);
          assert.match(out, /Extensions: \n\s+permit-port-forwarding\n\s+permit-pty\n/);
        } else {
          assert.match(out, /Critical Options: \(none\)\n\s+Extensions: \(none\)/);
        }
      });
    }
  }
});

describe('keys agree with ssh-keygen', () => {
  for (const t of ['ed25519', 'rsa', 'ecdsa'] as const) {
    it(`${t}: ssh-keygen -l fingerprint, ssh-keygen -y on our private key`, () => {
      const k = keys[t]();
      const blob = publicKeyBlob(k.publicKey);
      const pubFile = dir.write(`fp-${t}.pub`, `${formatPublicKey(blob, 'c')}\n`);
      assert.equal(sshKeygen(['-l', '-f', pubFile]).split(' ')[1], fingerprint(blob));
      const privFile = dir.write(`priv-${t}`, toOpenSshPrivateKey(k.privateKey, 'c'));
      const derived = parsePublicKey(sshKeygen(['-y', '-f', privFile]));
      assert.ok(derived.ok);
      assert.ok(derived.value.equals(blob));
    });
    it(`${t}: we read ssh-keygen's private key`, () => {
      const path = keygen(dir, `gen-${t}`, t);
      const key = parseOpenSshPrivateKey(dir.read(`gen-${t}`));
      assert.ok(key.ok, key.ok ? '' : key.reason);
      const pub = parsePublicKey(dir.read(`gen-${t}.pub`));
      assert.ok(pub.ok);
      assert.ok(publicKeyBlob(key.value).equals(pub.value), path);
    });
    it(`${t}: ssh2 loads our private key and its signatures verify here`, () => {
      const k = keys[t]();
      const parsed = ssh2.utils.parseKey(toOpenSshPrivateKey(k.privateKey));
      assert.ok(!(parsed instanceof Error), String(parsed));
      const key = Array.isArray(parsed) ? parsed[0]! : parsed;
      assert.ok(key.getPublicSSH().equals(publicKeyBlob(k.publicKey)));
      const data = Buffer.from('session data');
      const algo = t === 'rsa' ? 'rsa-sha2-256' : key.type;
      const raw = key.sign(data, t === 'rsa' ? 'sha256' : undefined);
      assert.ok(!(raw instanceof Error));
      const sigBlob = sshString(algo, t === 'ecdsa' ? derToSshEcdsa(raw) : raw);
      assert.ok(verifySshSignature(publicKeyBlob(k.publicKey), sigBlob, data).ok);
    });
  }
  it('ssh-keygen -l on our certificate shows the certified key fingerprint', () => {
    const blob = issue(keys.ed25519().privateKey, 'user', keys.rsa().publicKey);
    const out = sshKeygen(['-l', '-f', dir.write('fp-cert.pub', formatCertificate(blob, 'c'))]);
    assert.equal(out.split(' ')[1], fingerprint(blob));
    assert.match(out, /\(RSA-CERT\)/);
  });
});

/** ssh2 returns ECDSA signatures in DER; SSH wants string(mpint r || mpint s). */
function derToSshEcdsa(der: Buffer): Buffer {
  // SEQUENCE { INTEGER r, INTEGER s }, short lengths only (P-256 fits).
  const rLen = der[3]!;
  const r = der.subarray(4, 4 + rLen);
  const s = der.subarray(6 + rLen, 6 + rLen + der[5 + rLen]!);
  const mp = (v: Buffer) => Buffer.concat([Buffer.from([0, 0, 0, v.length]), v]);
  return Buffer.concat([mp(r), mp(s)]);
}

/** SSH signature blob from an algorithm name and raw signature bytes (ssh2 returns the raw bytes). */
function sshString(algo: string, raw: Buffer): Buffer {
  const a = Buffer.from(algo);
  const out = Buffer.alloc(8 + a.length + raw.length);
  out.writeUInt32BE(a.length, 0);
  a.copy(out, 4);
  out.writeUInt32BE(raw.length, 4 + a.length);
  raw.copy(out, 8 + a.length);
  return out;
}

describe('our own certificates verify here', () => {
  for (const caType of ['ed25519', 'rsa', 'ecdsa'] as const) {
    it(`${caType} CA, every subject key type`, () => {
      const ca = keys[caType]();
      for (const sub of ['ed25519', 'rsa', 'ecdsa'] as const) {
        const p = parseCertificate(formatCertificate(issue(ca.privateKey, 'user', keys[sub]().publicKey)));
        assert.ok(p.ok);
        const v = verifyCertificate(p.value, {
          trustedCaKeys: [publicKeyBlob(ca.publicKey)],
          type: 'user',
          principal: 'gw1',
          now: NOW,
          knownCriticalOptions: ['force-command', 'source-address'],
        });
        assert.ok(v.ok, v.ok ? '' : v.reason);
      }
    });
  }
});
