/**
 * Building blocks shared by the CSR writer and the issuer: names, extensions, SANs, and native signing of a
 * to-be-signed structure (forge builds the ASN.1, Node's crypto.sign signs it: ~20x faster than forge's JS RSA
 * and the only way to get ECDSA).
 */
import { createHash, type KeyObject, sign } from 'node:crypto';
import { isIP } from 'node:net';
import { refuse, type Verdict } from '../errors/codes.js';
import * as der from './der.js';
import { type SignatureAlgorithm, signatureAlgorithmFor } from './keys.js';
import { KeyUsage, type KeyUsageName, OID } from './x509.js';

export interface NameSpec {
  commonName?: string;
  organization?: string;
}

const MAX_NAME_ATTR = 64; // RFC 5280 upper bound for commonName (ub-common-name)

/** A distinguished name with optional O and CN (UTF8String), in that order. */
export function buildName(spec: NameSpec): der.Node {
  const rdns: der.Node[] = [];
  for (const [type, value] of [
    [OID.organization, spec.organization],
    [OID.commonName, spec.commonName],
  ] as const) {
    if (value === undefined) continue;
    if (value.length === 0 || value.length > MAX_NAME_ATTR || [...value].some((ch) => ch.charCodeAt(0) < 0x20)) {
      throw new RangeError(`bad name attribute ${JSON.stringify(value)}`);
    }
    rdns.push(der.set(der.seq(der.oid(type), der.utf8(value))));
  }
  return der.seq(...rdns);
}

export function algorithmIdentifier(alg: SignatureAlgorithm): der.Node {
  return der.seq(der.oid(alg.oid), ...(alg.nullParams ? [der.nul()] : []));
}

/** Extension ::= SEQUENCE { extnID, critical DEFAULT FALSE (omitted when false, as DER requires), extnValue } */
export function extension(id: string, critical: boolean, value: der.Node | Buffer): der.Node {
  const bytes = Buffer.isBuffer(value) ? value : der.encode(value);
  return der.seq(der.oid(id), ...(critical ? [der.bool(true)] : []), der.octets(bytes));
}

export function basicConstraints(ca: boolean, pathLen?: number): der.Node {
  const fields = ca ? [der.bool(true)] : [];
  if (ca && pathLen !== undefined) fields.push(der.uint(pathLen));
  return extension(OID.basicConstraints, true, der.seq(...fields));
}

export function keyUsage(names: KeyUsageName[]): der.Node {
  let mask = 0;
  for (const n of names) mask |= 1 << KeyUsage[n];
  // Bit 0 is the most significant bit of the first byte; DER drops trailing zero bits.
  const highest = Math.max(...names.map((n) => KeyUsage[n]));
  const nbytes = (highest >> 3) + 1;
  const bytes = Buffer.alloc(nbytes);
  for (let bit = 0; bit <= highest; bit++) if (mask & (1 << bit)) bytes[bit >> 3]! |= 0x80 >> (bit & 7);
  const unused = nbytes * 8 - 1 - highest;
  const node = der.bits(bytes);
  node.value = String.fromCharCode(unused) + (node.value as string).slice(1);
  return extension(OID.keyUsage, true, node);
}

export function extKeyUsage(oids: string[]): der.Node {
  return extension(OID.extKeyUsage, false, der.seq(...oids.map((o) => der.oid(o))));
}

export interface SanSpec {
  uris?: string[];
  dnsNames?: string[];
  ipAddresses?: string[];
}

/** GeneralNames: URI [6], dNSName [2], iPAddress [7]. Refuses non-ASCII or malformed entries. */
export function generalNames(spec: SanSpec): Verdict<der.Node> {
  const names: der.Node[] = [];
  for (const u of spec.uris ?? []) {
    if (!/^[\x21-\x7e]{1,1024}$/.test(u)) return refuse('E_CERT_IDENTITY', `bad URI ${JSON.stringify(u)}`);
    names.push(der.ctx(6, Buffer.from(u, 'latin1')));
  }
  for (const d of spec.dnsNames ?? []) {
    if (!/^(\*\.)?[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$/.test(d) || d.includes('..')) {
      return refuse('E_CERT_IDENTITY', `bad DNS name ${JSON.stringify(d)}`);
    }
    names.push(der.ctx(2, Buffer.from(d.toLowerCase(), 'latin1')));
  }
  for (const ip of spec.ipAddresses ?? []) {
    const bytes = ipBytes(ip);
    if (!bytes) return refuse('E_CERT_IDENTITY', `bad IP address ${JSON.stringify(ip)}`);
    names.push(der.ctx(7, bytes));
  }
  return { ok: true, value: der.seq(...names) };
}

export function ipBytes(ip: string): Buffer | undefined {
  const kind = isIP(ip);
  if (kind === 4) return Buffer.from(ip.split('.').map(Number));
  if (kind !== 6 || ip.includes('.') || ip.includes('%')) return undefined;
  const [head, tail] = ip.includes('::') ? ip.split('::') : [ip, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => {
    out.writeUInt16BE(Number.parseInt(g, 16), i * 2);
  });
  return out;
}

/** SubjectKeyIdentifier method 1 (RFC 5280 §4.2.1.2): SHA-1 of the subjectPublicKey BIT STRING contents. */
export function keyIdentifier(spki: Buffer): Buffer {
  const fields = der.readSeq(der.decode(spki, 4096), 'subjectPublicKeyInfo', 2, 2);
  const { bytes } = der.readBits(fields[1], 'subjectPublicKey');
  return createHash('sha1').update(bytes).digest();
}

/**
 * Signs a to-be-signed structure natively and wraps it as SEQUENCE { tbs, algorithm, BIT STRING signature }
 * (the shape of both a Certificate and a CertificationRequest).
 */
export function signStructure(tbs: der.Node, key: KeyObject, alg?: SignatureAlgorithm): Buffer {
  const algorithm = alg ?? unwrapAlg(key);
  const tbsBytes = der.encode(tbs);
  const signature = sign(algorithm.hash, tbsBytes, key);
  // Concatenated rather than re-parsed: the signed bytes go out exactly as signed, and it is faster.
  const body = Buffer.concat([tbsBytes, der.encode(algorithmIdentifier(algorithm)), der.encode(der.bits(signature))]);
  return Buffer.concat([der.header(0x30, body.length), body]);
}

function unwrapAlg(key: KeyObject): SignatureAlgorithm {
  const v = signatureAlgorithmFor(key);
  if (!v.ok) throw new RangeError(v.reason);
  return v.value;
}
