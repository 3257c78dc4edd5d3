/**
 * Reading X.509 certificates with forge.asn1 (forge's pki API cannot read EC certs): one strict parser that
 * yields every field the verifier and the issuer need, with the raw bytes that signatures cover.
 */
import { createHash } from 'node:crypto';
import * as der from './der.js';

export const MAX_CERT_DER = 16 * 1024;

export const OID = {
  commonName: '2.5.4.3',
  organization: '2.5.4.10',
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectAltName: '2.5.29.17',
  subjectKeyId: '2.5.29.14',
  authorityKeyId: '2.5.29.35',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
  anyExtendedKeyUsage: '2.5.29.37.0',
  extensionRequest: '1.2.840.113549.1.9.14',
} as const;

/** keyUsage bit positions (RFC 5280 §4.2.1.3). */
export const KeyUsage = {
  digitalSignature: 0,
  nonRepudiation: 1,
  keyEncipherment: 2,
  dataEncipherment: 3,
  keyAgreement: 4,
  keyCertSign: 5,
  cRLSign: 6,
  encipherOnly: 7,
  decipherOnly: 8,
} as const;
export type KeyUsageName = keyof typeof KeyUsage;

export interface Extension {
  critical: boolean;
  value: Buffer;
}

export interface SubjectAltNames {
  uris: string[];
  dns: string[];
  ips: string[];
}

export interface ParsedCert {
  der: Buffer;
  /** The TBSCertificate bytes exactly as signed. */
  tbs: Buffer;
  /** Lowercase hex of the serial's magnitude (no leading 00). */
  serialHex: string;
  serialNegative: boolean;
  /** Outer signatureAlgorithm OID (checked equal to the TBS one). */
  signatureAlgorithm: string;
  signatureParams: 'absent' | 'null' | 'other';
  signature: Buffer;
  issuer: Buffer;
  subject: Buffer;
  subjectCn?: string;
  notBefore: Date;
  notAfter: Date;
  spki: Buffer;
  extensions: Map<string, Extension>;
  basicConstraints?: { ca: boolean; pathLen?: number };
  keyUsage?: Set<KeyUsageName>;
  extKeyUsage?: string[];
  san: SubjectAltNames;
  subjectKeyId?: Buffer;
  authorityKeyId?: Buffer;
  /** SHA-256 of the DER, lowercase hex. */
  fingerprint256: string;
}

/** Parses one DER certificate; throws der.DerError on anything malformed. */
export function parseCertificate(input: Buffer): ParsedCert {
  const root = der.decode(input, MAX_CERT_DER);
  const [tbsNode, sigAlgNode, sigNode] = der.readSeq(root, 'Certificate', 3, 3);
  const tbs = der.readSeq(tbsNode, 'TBSCertificate', 6, 10);
  let i = 0;
  const v = der.isCtx(tbs[0], 0) ? (der.readCtx(tbs[i++], 0, true, 'version').value as der.Node[]) : undefined;
  if (v?.length !== 1 || der.readUint(v[0], 'version') !== 2) throw new der.DerError('only X.509 v3 is accepted');
  const serial = der.readIntBytes(tbs[i++], 'serial');
  const tbsSigAlg = der.encode(tbs[i++]!);
  const issuer = nameBytes(tbs[i++], 'issuer');
  const validity = der.readSeq(tbs[i++], 'validity', 2, 2);
  const subjectNode = tbs[i++];
  const subject = nameBytes(subjectNode, 'subject');
  const spkiNode = tbs[i++];
  der.readSeq(spkiNode, 'subjectPublicKeyInfo', 2, 2);
  if (der.isCtx(tbs[i], 1) || der.isCtx(tbs[i], 2)) throw new der.DerError('unique identifiers are not accepted');
  const extensions = new Map<string, Extension>();
  if (i < tbs.length) {
    const wrapper = der.readCtx(tbs[i++], 3, true, 'extensions').value as der.Node[];
    if (wrapper.length !== 1) throw new der.DerError('extensions: bad wrapper');
    const list = der.readSeq(wrapper[0], 'extensions', 1, 64);
    for (const e of list) {
      const parts = der.readSeq(e, 'extension', 2, 3);
      const id = der.readOid(parts[0], 'extnID');
      const critical = parts.length === 3 ? der.readBool(parts[1], 'critical') : false;
      const value = der.readOctets(parts[parts.length - 1], 'extnValue');
      if (extensions.has(id)) throw new der.DerError(`duplicate extension ${id}`);
      extensions.set(id, { critical, value });
    }
  }
  if (i !== tbs.length) throw new der.DerError('unexpected fields in TBSCertificate');
  if (!der.encode(sigAlgNode!).equals(tbsSigAlg)) throw new der.DerError('signature algorithms differ');
  const alg = der.readSeq(sigAlgNode, 'signatureAlgorithm', 1, 2);
  const negative = (serial[0]! & 0x80) !== 0;
  const magnitude = serial[0] === 0 && serial.length > 1 ? serial.subarray(1) : serial;
  const cert: ParsedCert = {
    der: input,
    tbs: der.firstElementBytes(input),
    serialHex: magnitude.toString('hex'),
    serialNegative: negative,
    signatureAlgorithm: der.readOid(alg[0], 'signatureAlgorithm'),
    signatureParams: alg.length === 1 ? 'absent' : alg[1]!.type === 5 && !alg[1]!.constructed ? 'null' : 'other',
    signature: der.readBits(sigNode, 'signature').bytes,
    issuer,
    subject,
    subjectCn: commonName(subjectNode!),
    notBefore: der.readTime(validity[0], 'notBefore'),
    notAfter: der.readTime(validity[1], 'notAfter'),
    spki: der.encode(spkiNode!),
    extensions,
    san: { uris: [], dns: [], ips: [] },
    fingerprint256: createHash('sha256').update(input).digest('hex'),
  };
  readKnownExtensions(cert);
  return cert;
}

function readKnownExtensions(cert: ParsedCert): void {
  const ext = (id: string) => {
    const e = cert.extensions.get(id);
    return e ? der.decode(e.value, MAX_CERT_DER) : undefined;
  };
  const bc = ext(OID.basicConstraints);
  if (bc) {
    const f = der.readSeq(bc, 'basicConstraints', 0, 2);
    let j = 0;
    const ca = f[j]?.type === 1 ? der.readBool(f[j++], 'cA') : false;
    const pathLen = j < f.length ? der.readUint(f[j++], 'pathLen') : undefined;
    if (j !== f.length) throw new der.DerError('basicConstraints: unexpected fields');
    cert.basicConstraints = pathLen === undefined ? { ca } : { ca, pathLen };
  }
  const ku = ext(OID.keyUsage);
  if (ku) {
    const { bytes } = der.readBits(ku, 'keyUsage');
    const set = new Set<KeyUsageName>();
    for (const [name, bit] of Object.entries(KeyUsage) as [KeyUsageName, number][]) {
      const byte = bytes[bit >> 3];
      if (byte !== undefined && byte & (0x80 >> (bit & 7))) set.add(name);
    }
    cert.keyUsage = set;
  }
  const eku = ext(OID.extKeyUsage);
  if (eku) cert.extKeyUsage = der.readSeq(eku, 'extKeyUsage', 1, 32).map((n) => der.readOid(n, 'keyPurpose'));
  const san = ext(OID.subjectAltName);
  if (san) cert.san = readGeneralNames(der.readSeq(san, 'subjectAltName', 1, 64));
  const ski = ext(OID.subjectKeyId);
  if (ski) cert.subjectKeyId = der.readOctets(ski, 'subjectKeyIdentifier');
  const aki = ext(OID.authorityKeyId);
  if (aki) {
    const f = der.readSeq(aki, 'authorityKeyIdentifier', 0, 3);
    if (f[0] && der.isCtx(f[0], 0)) cert.authorityKeyId = der.content(der.readCtx(f[0], 0, false, 'keyIdentifier'));
  }
}

/** Reads dNSName, URI and iPAddress entries; other GeneralName kinds are kept out of the result. */
export function readGeneralNames(list: der.Node[]): SubjectAltNames {
  const out: SubjectAltNames = { uris: [], dns: [], ips: [] };
  for (const n of list) {
    if (der.isCtx(n, 2)) out.dns.push(ia5(der.content(n), 'dNSName'));
    else if (der.isCtx(n, 6)) out.uris.push(ia5(der.content(n), 'URI'));
    else if (der.isCtx(n, 7)) out.ips.push(ipText(der.content(n)));
    else if (n.tagClass !== 0x80) throw new der.DerError('GeneralName: not context-specific');
  }
  return out;
}

function ia5(b: Buffer, what: string): string {
  if (b.length === 0 || b.length > 1024) throw new der.DerError(`${what}: bad length`);
  for (const c of b) if (c < 0x21 || c > 0x7e) throw new der.DerError(`${what}: bad character`);
  return b.toString('latin1');
}

function ipText(b: Buffer): string {
  if (b.length === 4) return [...b].join('.');
  if (b.length === 16) {
    const groups: string[] = [];
    for (let k = 0; k < 16; k += 2) groups.push(b.readUInt16BE(k).toString(16));
    return compressIpv6(groups);
  }
  throw new der.DerError('iPAddress: bad length');
}

function compressIpv6(groups: string[]): string {
  // Longest run of zero groups (length >= 2) becomes "::", as Node and OpenSSL print it.
  let best = -1;
  let bestLen = 1;
  for (let s = 0; s < 8; s++) {
    let e = s;
    while (e < 8 && groups[e] === '0') e++;
    if (e - s > bestLen) {
      best = s;
      bestLen = e - s;
    }
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

function nameBytes(n: der.Node | undefined, what: string): Buffer {
  const rdns = der.readSeq(n, what, 0, 64);
  for (const rdn of rdns) {
    for (const atv of der.children(rdn, `${what} RDN`, 1, 16)) der.readSeq(atv, `${what} attribute`, 2, 2);
  }
  return der.encode(n!);
}

function commonName(name: der.Node): string | undefined {
  for (const rdn of name.value as der.Node[]) {
    for (const atv of rdn.value as der.Node[]) {
      const [type, value] = atv.value as der.Node[];
      if (der.readOid(type, 'attribute type') === OID.commonName && value && !value.constructed) {
        return Buffer.from(value.value as string, 'latin1').toString('utf8');
      }
    }
  }
  return undefined;
}

/** Splits PEM text into DER blocks of the given label. Bounded: at most `max` blocks. */
export function pemBlocks(text: string, label: string, max = 16): Buffer[] {
  if (text.length > max * 32 * 1024) throw new der.DerError('PEM input too large');
  const re = new RegExp(`-----BEGIN ${label}-----([A-Za-z0-9+/=\\r\\n\\t ]*?)-----END ${label}-----`, 'g');
  const out: Buffer[] = [];
  for (const m of text.matchAll(re)) {
    if (out.length >= max) throw new der.DerError(`more than ${max} PEM blocks`);
    const b64 = m[1]!.replace(/\s+/g, '');
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64) || b64.length % 4 !== 0) throw new der.DerError('bad PEM base64');
    out.push(Buffer.from(b64, 'base64'));
  }
  return out;
}

export function toPem(derBytes: Buffer, label = 'CERTIFICATE'): string {
  const b64 = derBytes.toString('base64').replace(/(.{64})/g, '$1\n');
  return `-----BEGIN ${label}-----\n${b64}${b64.endsWith('\n') ? '' : '\n'}-----END ${label}-----\n`;
}

/** Certificates given as one PEM bundle, one DER buffer, or a list of either, as DER buffers. */
export function certificateInputs(input: string | Buffer | readonly (string | Buffer)[], max = 16): Buffer[] {
  const list = typeof input === 'string' || Buffer.isBuffer(input) ? [input] : [...input];
  const out: Buffer[] = [];
  for (const item of list) {
    if (Buffer.isBuffer(item) && item[0] === 0x30) out.push(item);
    else out.push(...pemBlocks(item.toString('latin1'), 'CERTIFICATE', max));
    if (out.length > max) throw new der.DerError(`more than ${max} certificates`);
  }
  return out;
}
