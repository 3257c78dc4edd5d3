/** OpenSSH certificates, public key lines, private keys and signatures (lib/sshcert) and the ssh2 glue (lib/sshwire). */
import { createPrivateKey, type KeyObject, randomBytes as nodeRandomBytes } from 'node:crypto';
import fc from 'fast-check';
import { encodeCertificateBody, MAX_PRINCIPALS } from '../../../lib/sshcert/cert.js';
import {
  formatCertificate,
  formatPublicKey,
  parseCertificate,
  parsePublicKey,
  publicKeyBlob,
  signSsh,
  toOpenSshPrivateKey,
  verifySshSignature,
} from '../../../lib/sshcert/index.js';
import type { SshCertificate } from '../../../lib/sshcert/types.js';
import { SshWriter } from '../../../lib/sshcert/wire.js';
import { verifyHostCertificate } from '../../../lib/sshwire/client.js';
import { verifyUserAuth } from '../../../lib/sshwire/server.js';
import { parseOpenSshPrivateKey } from '../../helpers/openssh-key.js';
import { hostileString, mutants, randomBytes, textMutants } from '../mutate.js';
import type { FuzzTarget, Seeds } from '../target.js';

const lineBlob = (line: string): Buffer => Buffer.from(line.split(/\s+/)[1] ?? '', 'base64');
const certBlobs = (s: Seeds) => s.ssh.certs.map((c) => new Uint8Array(lineBlob(c)));
const ok = (o: { threw: boolean; value?: unknown }): o is { threw: false; value: { ok: true; value: unknown } } =>
  !o.threw && (o.value as { ok?: boolean }).ok === true;

export const sshCertBlob: FuzzTarget<Buffer | string> = {
  name: 'ssh-cert-parse',
  covers: 'lib/sshcert parseCertificate (blob and text form), formatCertificate',
  arbitrary: (s) =>
    fc.oneof(
      { weight: 6, arbitrary: mutants(certBlobs(s)) },
      { weight: 2, arbitrary: textMutants(s.ssh.certs) },
      { weight: 1, arbitrary: randomBytes(2048) },
    ),
  run: (input) => parseCertificate(input),
  check: (input, outcome) => {
    if (!ok(outcome)) return undefined;
    const c = outcome.value.value as SshCertificate;
    if (c.principals.length > MAX_PRINCIPALS) return 'more principals than MAX_PRINCIPALS accepted';
    if (c.type !== 'user' && c.type !== 'host') return `type ${String(c.type)}`;
    const again = parseCertificate(formatCertificate(c.blob, 'x'));
    if (!again.ok || !again.value.blob.equals(c.blob)) return 'text form does not round-trip';
    if (!Buffer.concat([c.signedBytes, new SshWriter().string(c.signatureBlob).toBuffer()]).equals(c.blob)) {
      return 'signedBytes + signature is not the blob';
    }
    return typeof input === 'string' || c.blob.equals(input) ? undefined : 'blob differs from input';
  },
};

// ---- certificates generated from arbitraries, signed by the seed CA, then judged by the verifiers ----------

interface CertCase {
  blob: Buffer;
  now: number;
  principal: string;
  hostMode: boolean;
  /** Extra fields of a user-auth attempt. */
  algo: string;
  signature: Buffer | undefined;
  signedData: Buffer | undefined;
}

let caKey: KeyObject | undefined;
let subjectKey: KeyObject | undefined;
function keys(s: Seeds): { ca: KeyObject; subject: KeyObject } {
  caKey ??= createPrivateKey(s.ssh.caPrivateKeyPem);
  const sk = parseOpenSshPrivateKey(s.ssh.privateKeys[0]!);
  if (!sk.ok) throw new Error('seed key');
  subjectKey ??= sk.value;
  return { ca: caKey, subject: subjectKey };
}

const NOW = 1_800_000_000;
const optionName = fc.oneof(
  fc.constantFrom('force-command', 'source-address', 'verify-required', 'permit-pty', 'permit-port-forwarding'),
  hostileString,
);

export const sshCertVerify: FuzzTarget<CertCase> = {
  name: 'ssh-cert-verify',
  covers: 'lib/sshcert verifyCertificate/verifySshSignature through lib/sshwire verifyHostCertificate/verifyUserAuth',
  arbitrary: (s) => {
    const { ca, subject } = keys(s);
    const caBlob = publicKeyBlob(ca);
    const body = fc.record({
      type: fc.oneof(fc.constantFrom(1, 2), fc.nat({ max: 0xffffffff })),
      principals: fc.array(fc.oneof(fc.constantFrom('gw-1', 'proxy-1'), hostileString), { maxLength: 6 }),
      validAfter: fc.oneof(fc.constant(BigInt(NOW - 60)), fc.bigUint(0xffff_ffff_ffff_ffffn)),
      validBefore: fc.oneof(
        fc.constant(BigInt(NOW + 3600)),
        fc.constant(0xffff_ffff_ffff_ffffn),
        fc.bigUint(0xffff_ffff_ffff_ffffn),
      ),
      serial: fc.bigUint(0xffff_ffff_ffff_ffffn),
      keyId: fc.oneof(fc.constant('k'), hostileString),
      critical: fc.uniqueArray(fc.tuple(optionName, fc.oneof(fc.constant(''), hostileString)), {
        maxLength: 3,
        selector: (e) => e[0],
      }),
      extensions: fc.uniqueArray(fc.tuple(optionName, fc.constant('')), { maxLength: 3, selector: (e) => e[0] }),
      reserved: fc.oneof(fc.constant(Buffer.alloc(0)), randomBytes(8)),
      trustedSigner: fc.boolean(),
    });
    const made = body.map((b) => {
      const opts = (list: [string, string][]) =>
        list
          .map(([n, v]): [string, Buffer] => [n, v === '' ? Buffer.alloc(0) : new SshWriter().string(v).toBuffer()])
          .sort((x, y) => Buffer.compare(Buffer.from(x[0]), Buffer.from(y[0])));
      const signed = encodeCertificateBody({
        certAlgorithm: 'ssh-ed25519-cert-v01@openssh.com',
        nonce: nodeRandomBytes(8),
        publicKeyBlob: publicKeyBlob(subject),
        serial: b.serial,
        type: b.type,
        keyId: b.keyId,
        principals: b.principals,
        validAfter: b.validAfter,
        validBefore: b.validBefore,
        criticalOptions: opts(b.critical),
        extensions: opts(b.extensions),
        reserved: b.reserved,
        signatureKeyBlob: b.trustedSigner ? caBlob : publicKeyBlob(subject),
      });
      const signer = b.trustedSigner ? ca : subject;
      return new SshWriter().raw(signed).string(signSsh(signer, signed)).toBuffer();
    });
    const blob = fc.oneof({ weight: 3, arbitrary: made }, { weight: 2, arbitrary: mutants(certBlobs(s)) });
    const data = nodeRandomBytes(64);
    return fc.record({
      blob,
      now: fc.oneof(fc.constant(NOW), fc.constant(Math.floor(Date.now() / 1000)), fc.integer()),
      principal: fc.constantFrom('gw-1', 'proxy-1', 'alice', ''),
      hostMode: fc.boolean(),
      algo: fc.constantFrom(
        'ssh-ed25519-cert-v01@openssh.com',
        'rsa-sha2-512-cert-v01@openssh.com',
        'ssh-ed25519',
        'ecdsa-sha2-nistp256-cert-v01@openssh.com',
      ),
      signature: fc.oneof(
        fc.constant(undefined),
        fc.constant(signSsh(subject, data)),
        mutants([new Uint8Array(signSsh(subject, data))]),
      ),
      signedData: fc.constantFrom(undefined, data),
    });
  },
  run: (c, s) => {
    const trusted = [publicKeyBlob(keys(s).ca), ...s.ssh.caPublicKeys.map(lineBlob)];
    if (c.hostMode) {
      return verifyHostCertificate(c.blob, { trustedHostCaKeys: trusted, hostPrincipal: c.principal }, c.now * 1000);
    }
    const ctx = {
      method: 'publickey',
      username: 'u',
      key: { algo: c.algo, data: c.blob },
      ...(c.signature ? { signature: c.signature, blob: c.signedData } : {}),
    };
    return verifyUserAuth(ctx as never, trusted, c.now * 1000, { principal: c.principal });
  },
  check: (c, outcome) => {
    if (!ok(outcome)) return undefined;
    const v = outcome.value.value as SshCertificate;
    const now = BigInt(Math.floor(c.now));
    if (v.type !== (c.hostMode ? 'host' : 'user')) return 'accepted a certificate of the wrong type';
    if (!v.principals.includes(c.principal)) return 'accepted a certificate without the principal';
    if (now < v.validAfter || now >= v.validBefore) return 'accepted a certificate outside its validity';
    if (Object.keys(v.criticalOptions).length > 0) return 'accepted an unknown critical option';
    if (!c.hostMode && c.signature && c.signedData) {
      const sig = verifySshSignature(v.publicKeyBlob, c.signature, c.signedData);
      if (!sig.ok) return 'accepted a user auth whose signature does not verify';
    }
    return undefined;
  },
  show: (c) =>
    JSON.stringify({
      ...c,
      blob: c.blob.toString('hex'),
      signature: c.signature?.toString('hex'),
      signedData: c.signedData?.toString('hex'),
    }),
};

export const sshKeyLine: FuzzTarget<string> = {
  name: 'ssh-public-key',
  covers: 'lib/sshcert parsePublicKey (key and certificate lines), formatPublicKey',
  arbitrary: (s) =>
    fc.oneof(
      { weight: 4, arbitrary: textMutants([...s.ssh.publicKeys, ...s.ssh.caPublicKeys]) },
      {
        weight: 4,
        arbitrary: fc
          .tuple(
            fc.constantFrom(...s.ssh.publicKeys),
            mutants(s.ssh.publicKeys.map((l) => new Uint8Array(lineBlob(l)))),
          )
          .map(([line, blob]) => `${line.split(' ')[0]} ${blob.toString('base64')} c`),
      },
      { weight: 1, arbitrary: fc.string({ maxLength: 200 }) },
    ),
  run: (line) => parsePublicKey(line),
  check: (_line, outcome) => {
    if (!ok(outcome)) return undefined;
    const blob = outcome.value.value as Buffer;
    const again = parsePublicKey(formatPublicKey(blob));
    return again.ok && again.value.equals(blob) ? undefined : 'accepted key does not round-trip';
  },
};

const pemBody = (text: string): Uint8Array =>
  new Uint8Array(Buffer.from(text.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, ''), 'base64'));
const wrapPem = (b: Buffer): string =>
  `-----BEGIN OPENSSH PRIVATE KEY-----\n${(b.toString('base64').match(/.{1,70}/g) ?? []).join('\n')}\n-----END OPENSSH PRIVATE KEY-----\n`;

export const sshPrivateKey: FuzzTarget<string> = {
  name: 'ssh-private-key',
  covers: 'lib/sshcert toOpenSshPrivateKey, read back by test/helpers/openssh-key.ts parseOpenSshPrivateKey',
  arbitrary: (s) =>
    fc.oneof(
      { weight: 5, arbitrary: mutants(s.ssh.privateKeys.map(pemBody)).map(wrapPem) },
      { weight: 2, arbitrary: textMutants(s.ssh.privateKeys) },
    ),
  run: (text) => parseOpenSshPrivateKey(text),
  check: (_text, outcome) => {
    if (!ok(outcome)) return undefined;
    const key = outcome.value.value as KeyObject;
    const again = parseOpenSshPrivateKey(toOpenSshPrivateKey(key));
    return again.ok && publicKeyBlob(again.value).equals(publicKeyBlob(key)) ? undefined : 'key does not round-trip';
  },
};

interface SigCase {
  key: Buffer;
  signature: Buffer;
  data: Buffer;
}

export const sshSignature: FuzzTarget<SigCase> = {
  name: 'ssh-signature',
  covers: 'lib/sshcert verifySshSignature (plain keys and certificates, every signature algorithm)',
  arbitrary: (s) => {
    const parsed = s.ssh.certs.map((c) => parseCertificate(c)).filter((c) => c.ok);
    const cases = parsed.map((c) => ({
      key: c.value.signatureKeyBlob,
      signature: c.value.signatureBlob,
      data: c.value.signedBytes,
    }));
    return fc.nat({ max: cases.length - 1 }).chain((i) => {
      const base = cases[i]!;
      return fc.record({
        key: fc.oneof(fc.constant(base.key), mutants([new Uint8Array(base.key)]), mutants(certBlobs(s))),
        signature: fc.oneof(fc.constant(base.signature), mutants([new Uint8Array(base.signature)])),
        data: fc.oneof(fc.constant(base.data), mutants([new Uint8Array(base.data)])),
      });
    });
  },
  run: (c) => verifySshSignature(c.key, c.signature, c.data),
  show: (c) =>
    JSON.stringify({
      key: c.key.toString('hex'),
      signature: c.signature.toString('hex'),
      data: c.data.toString('hex'),
    }),
};

export const SSH_TARGETS = [sshCertBlob, sshCertVerify, sshKeyLine, sshPrivateKey, sshSignature];
