/**
 * Signing with a record: every certificate the CA signs is written to the certificates table (serial, kind,
 * subject URI, notAfter, requested_by) by the same call that signs it. Callers run these inside the
 * transaction that also writes the audit row, and return the certificate only after it commits.
 */
import { type KeyObject, randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import { GatewayError, refuse, unwrap, type Verdict } from '../errors/codes.js';
import type { IssuedCert } from '../pki/ca.js';
import { parseCsr } from '../pki/csr.js';
import { formatCertificate, parsePublicKey, signCertificate } from '../sshcert/index.js';
import { type AuthorityContext, ok, sha256Hex } from './context.js';
import type { SshAuthority } from './keyring.js';

export interface RecordMeta {
  kind: string;
  authorityId: string;
  orgId: string | null;
  subjectUri: string;
  requestedBy: string;
  grantId?: string;
  /** Collects the serials recorded (a bundle's generation). */
  issued?: string[];
}

/** Records an X.509 certificate just signed; returns its PEM. */
export function recordX509(ctx: AuthorityContext, issued: Verdict<IssuedCert>, meta: RecordMeta): string {
  const cert = unwrap(issued);
  ctx.store.issuance.insertCertificate({
    serial: cert.serialHex,
    kind: meta.kind,
    authorityId: meta.authorityId,
    orgId: meta.orgId,
    subjectUri: meta.subjectUri,
    fingerprint: sha256Hex(cert.der),
    notAfter: cert.notAfter.getTime(),
    requestedBy: meta.requestedBy,
    grantId: meta.grantId ?? null,
    createdAt: ctx.now().getTime(),
  });
  meta.issued?.push(cert.serialHex);
  return cert.pem;
}

export interface SshCertSpec {
  publicKey: Buffer;
  type: 'user' | 'host';
  keyId: string;
  principals: string[];
  lifetimeSec: number;
  extensions?: Record<string, string>;
}

/** Signs and records an OpenSSH certificate (random 64-bit serial); returns its one-line text form. */
export function signRecordedSsh(ctx: AuthorityContext, ca: SshAuthority, spec: SshCertSpec, meta: RecordMeta): string {
  const nowSec = Math.floor(ctx.now().getTime() / 1000);
  // Backdated a minute for peers whose clocks run a little behind; the whole window stays within lifetimeSec.
  const validAfter = BigInt(nowSec - 60);
  const validBefore = validAfter + BigInt(spec.lifetimeSec);
  let serial = 0n;
  while (serial === 0n) serial = randomBytes(8).readBigUInt64BE(0);
  const blob = signCertificate(
    {
      publicKey: spec.publicKey,
      type: spec.type,
      keyId: spec.keyId,
      principals: spec.principals,
      validAfter,
      validBefore,
      serial,
      ...(spec.extensions ? { extensions: spec.extensions } : {}),
    },
    ca.privateKey,
    nowSec,
  );
  const serialHex = serial.toString(16).padStart(16, '0');
  meta.issued?.push(serialHex);
  ctx.store.issuance.insertCertificate({
    serial: serialHex,
    kind: meta.kind,
    authorityId: meta.authorityId,
    orgId: meta.orgId,
    subjectUri: meta.subjectUri,
    fingerprint: sha256Hex(blob),
    notAfter: Number(validBefore) * 1000,
    requestedBy: meta.requestedBy,
    grantId: meta.grantId ?? null,
    createdAt: ctx.now().getTime(),
  });
  return formatCertificate(blob, meta.subjectUri);
}

export interface SubjectKeys {
  /** The key of the CSR (proof of possession checked). */
  tls: KeyObject;
  /** A plain SSH public key blob. */
  ssh: Buffer;
}

/** Parses the CSR and SSH public key of an enrollment or renewal; nothing from the CSR but its key is used. */
export function parseSubjectKeys(csr: string, sshPublicKey: string): Verdict<SubjectKeys> {
  const parsed = parseCsrKey(csr);
  if (!parsed.ok) return parsed;
  if (/-cert-v01@openssh\.com/.test(sshPublicKey.trim().split(/\s+/)[0] ?? '')) {
    return refuse('E_KEY_UNSUPPORTED', 'sshPublicKey must be a plain public key, not a certificate');
  }
  const ssh = parsePublicKey(sshPublicKey);
  if (!ssh.ok)
    return refuse(ssh.code === 'E_CERT_MALFORMED' ? 'E_REQUEST_INVALID' : ssh.code, `sshPublicKey: ${ssh.reason}`);
  return ok({ tls: parsed.value, ssh: ssh.value });
}

export function parseCsrKey(csr: string): Verdict<KeyObject> {
  const parsed = parseCsr(csr);
  return parsed.ok ? ok(parsed.value.publicKey) : parsed;
}

/** Host names as X.509 SANs: IP literals as iPAddress, the rest as dNSName. */
export function sanOf(hostnames: readonly string[]): { dnsNames: string[]; ipAddresses: string[] } {
  return {
    dnsNames: hostnames.filter((h) => isIP(h) === 0),
    ipAddresses: hostnames.filter((h) => isIP(h) !== 0),
  };
}

/** Turns a thrown GatewayError from a signer into a refusal (bad key types reach the signers). */
export function catchIssuance<T>(fn: () => Verdict<T>): Verdict<T> {
  try {
    return fn();
  } catch (err) {
    if (err instanceof GatewayError) return refuse(err.code, err.message);
    throw err;
  }
}
