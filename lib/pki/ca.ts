/**
 * Certificate authorities and the one generic issuer: roots (self-signed), intermediates, and any certificate
 * from a template. Profiles (profiles.ts) are thin templates over `issueCertificate`.
 *
 * TBSCertificate is built with forge.asn1; the SubjectPublicKeyInfo is Node's own DER export; the signature is
 * Node's native crypto.sign. Serials are 127 random bits, positive.
 */
import { createPublicKey, type KeyObject, randomBytes } from 'node:crypto';
import { accept, refuse, type Verdict } from '../errors/codes.js';
import {
  algorithmIdentifier,
  basicConstraints,
  buildName,
  extension,
  extKeyUsage,
  generalNames,
  keyIdentifier,
  keyUsage,
  type NameSpec,
  type SanSpec,
  signStructure,
} from './build.js';
import * as der from './der.js';
import { describeKey, loadPrivateKey, type SignatureAlgorithm, signatureAlgorithmFor, spkiDer } from './keys.js';
import { certificateInputs, type KeyUsageName, OID, type ParsedCert, parseCertificate, toPem } from './x509.js';

/** A CA ready to sign: its parsed certificate, its key, and what every child needs from it. */
export interface CaIssuer {
  certificate: ParsedCert;
  certificatePem: string;
  privateKey: KeyObject;
  algorithm: SignatureAlgorithm;
  keyId: Buffer;
}

export interface IssuedCert {
  der: Buffer;
  pem: string;
  serialHex: string;
  notBefore: Date;
  notAfter: Date;
}

export interface CertTemplate {
  /** The key being certified (from a parsed CSR, or a CA's own key). */
  subjectKey: KeyObject;
  subject: NameSpec;
  notBefore: Date;
  notAfter: Date;
  /** Present for CA certificates. */
  ca?: { pathLen?: number };
  keyUsage: KeyUsageName[];
  extKeyUsage?: string[];
  san?: SanSpec;
  /** Additional extensions (grant, route, or deliberately odd ones in tests). */
  extraExtensions?: { oid: string; critical: boolean; value: Buffer }[];
}

/** Validity as most callers say it: from `now` (backdated a little for peers with slow clocks) for a lifetime. */
export interface Lifetime {
  now: Date;
  lifetimeSec: number;
  /** Default 60 s, the verifier's default skew. */
  backdateSec?: number;
}

export function validity(l: Lifetime): { notBefore: Date; notAfter: Date } {
  const t = Math.floor(l.now.getTime() / 1000) * 1000;
  return { notBefore: new Date(t - (l.backdateSec ?? 60) * 1000), notAfter: new Date(t + l.lifetimeSec * 1000) };
}

/** Loads a CA certificate and its private key; refuses a non-CA, a CA without keyCertSign, or a mismatched key. */
export function loadIssuer(certificate: string | Buffer, privateKey: KeyObject | string | Buffer): Verdict<CaIssuer> {
  let cert: ParsedCert;
  let key: KeyObject;
  try {
    const ders = certificateInputs(certificate, 1);
    if (ders.length !== 1) return refuse('E_CERT_MALFORMED', 'expected exactly one CA certificate');
    cert = parseCertificate(ders[0]!);
    key = loadPrivateKey(privateKey);
  } catch (err) {
    return refuse('E_CERT_MALFORMED', (err as Error).message);
  }
  if (!cert.basicConstraints?.ca) return refuse('E_CERT_WRONG_TYPE', 'issuer certificate is not a CA');
  if (cert.keyUsage && !cert.keyUsage.has('keyCertSign')) return refuse('E_CERT_USAGE', 'issuer lacks keyCertSign');
  if (!spkiDer(createPublicKey(key)).equals(cert.spki))
    return refuse('E_CERT_SIGNATURE', 'private key does not match CA');
  const algorithm = signatureAlgorithmFor(key);
  if (!algorithm.ok) return algorithm;
  return accept({
    certificate: cert,
    certificatePem: toPem(cert.der),
    privateKey: key,
    algorithm: algorithm.value,
    keyId: cert.subjectKeyId ?? keyIdentifier(cert.spki),
  });
}

/** A self-signed root CA: CA:true (critical, with pathLen when given), keyCertSign+cRLSign (critical), SKI/AKI. */
export function createRootCa(
  spec: {
    privateKey: KeyObject;
    subject: NameSpec;
    pathLen?: number;
  } & Lifetime,
): Verdict<IssuedCert> {
  const alg = signatureAlgorithmFor(spec.privateKey);
  if (!alg.ok) return alg;
  const subjectKey = createPublicKey(spec.privateKey);
  let name: Buffer;
  try {
    name = der.encode(buildName(spec.subject));
  } catch (err) {
    return refuse('E_CERT_MALFORMED', (err as Error).message);
  }
  const self = { name, keyId: keyIdentifier(spkiDer(subjectKey)), privateKey: spec.privateKey, algorithm: alg.value };
  return sign(self, {
    subjectKey,
    subject: spec.subject,
    ...validity(spec),
    ca: spec.pathLen === undefined ? {} : { pathLen: spec.pathLen },
    keyUsage: ['keyCertSign', 'cRLSign'],
  });
}

/**
 * Issues any certificate from a template. notAfter is clamped to the issuer's notAfter: a child never
 * outlives its CA.
 */
export function issueCertificate(issuer: CaIssuer, template: CertTemplate): Verdict<IssuedCert> {
  const notAfter = new Date(Math.min(template.notAfter.getTime(), issuer.certificate.notAfter.getTime()));
  return sign(
    {
      name: issuer.certificate.subject,
      keyId: issuer.keyId,
      privateKey: issuer.privateKey,
      algorithm: issuer.algorithm,
    },
    { ...template, notAfter },
  );
}

interface Signer {
  name: Buffer;
  keyId: Buffer;
  privateKey: KeyObject;
  algorithm: SignatureAlgorithm;
}

function sign(signer: Signer, t: CertTemplate): Verdict<IssuedCert> {
  const key = describeKey(t.subjectKey);
  if (!key.ok) return key;
  if (t.subjectKey.type !== 'public') return refuse('E_KEY_UNSUPPORTED', 'subject key must be a public key');
  if (!(t.notAfter.getTime() > t.notBefore.getTime()))
    return refuse('E_CERT_EXPIRED', 'notAfter is not after notBefore');
  const spki = spkiDer(t.subjectKey);
  const exts: der.Node[] = [
    t.ca ? basicConstraints(true, t.ca.pathLen) : basicConstraints(false),
    keyUsage(t.keyUsage),
  ];
  if (t.extKeyUsage?.length) exts.push(extKeyUsage(t.extKeyUsage));
  if (t.san && (t.san.uris?.length || t.san.dnsNames?.length || t.san.ipAddresses?.length)) {
    const names = generalNames(t.san);
    if (!names.ok) return names;
    // RFC 5280: SAN is critical when the subject DN is empty.
    exts.push(extension(OID.subjectAltName, !t.subject.commonName && !t.subject.organization, names.value));
  }
  exts.push(extension(OID.subjectKeyId, false, der.octets(keyIdentifier(spki))));
  exts.push(extension(OID.authorityKeyId, false, der.seq(der.ctx(0, signer.keyId))));
  for (const e of t.extraExtensions ?? []) exts.push(extension(e.oid, e.critical, e.value));

  const serial = randomBytes(16);
  serial[0] = (serial[0]! & 0x7f) | 0x40; // positive, minimal encoding, 127 bits of entropy
  let subjectName: der.Node;
  try {
    subjectName = buildName(t.subject);
  } catch (err) {
    return refuse('E_CERT_MALFORMED', (err as Error).message);
  }
  const tbs = der.seq(
    der.ctx(0, [der.uint(2)]),
    der.uint(serial),
    algorithmIdentifier(signer.algorithm),
    der.raw(signer.name),
    der.seq(der.time(t.notBefore), der.time(t.notAfter)),
    subjectName,
    der.raw(spki),
    der.ctx(3, [der.seq(...exts)]),
  );
  const certDer = signStructure(tbs, signer.privateKey, signer.algorithm);
  const second = (d: Date) => new Date(Math.floor(d.getTime() / 1000) * 1000);
  return accept({
    der: certDer,
    pem: toPem(certDer),
    serialHex: serial.toString('hex'),
    notBefore: second(t.notBefore),
    notAfter: second(t.notAfter),
  });
}
