/**
 * OpenSSH certificate encoding and parsing (PROTOCOL.certkeys). Parsing is structural and strict
 * (bounded lengths, no trailing bytes, options sorted and unique, as OpenSSH's cert_parse demands);
 * it never decides trust: verify.ts does, and it re-parses the blob so no edited field can slip in.
 */
import { type KeyObject, randomBytes } from 'node:crypto';
import { accept, GatewayError, refuse, type Verdict } from '../errors/codes.js';
import {
  CERT_ALGORITHMS,
  isKeyAlgorithm,
  KeyUnsupportedError,
  parseKeyBlob,
  publicKeyBlob,
  readKeyFields,
} from './keys.js';
import { signSsh } from './signature.js';
import { parseKeyLine } from './text.js';
import type { CertificateRequest, CertType, SshCertificate } from './types.js';
import { SshReader, SshWriter, WireError } from './wire.js';

/** Upper bound on a certificate blob: three RSA-16384 values plus names fit well below it. */
export const MAX_CERT_BYTES = 32 * 1024;
/** OpenSSH's SSHKEY_CERT_MAX_PRINCIPALS. */
export const MAX_PRINCIPALS = 256;

const TYPE_CODE: Record<CertType, number> = { user: 1, host: 2 };

/** Everything a certificate holds except the signature, for encodeCertificateBody. */
export interface CertificateBody {
  certAlgorithm: string;
  nonce: Buffer;
  /** The certified key as a plain blob; its fields are copied after the nonce. */
  publicKeyBlob: Buffer;
  serial: bigint;
  type: CertType | number;
  keyId: string;
  principals: string[];
  validAfter: bigint;
  validBefore: bigint;
  /** Already in wire order: name → raw data field (empty, or a nested string). */
  criticalOptions: [string, Buffer][];
  extensions: [string, Buffer][];
  reserved?: Buffer;
  signatureKeyBlob: Buffer;
}

/** Encodes the signed part of a certificate. Exposed for tests that craft hostile certificates. */
export function encodeCertificateBody(b: CertificateBody): Buffer {
  const keyReader = new SshReader(b.publicKeyBlob);
  keyReader.string(); // skip the algorithm name: the cert carries only the key fields
  const keyFields = b.publicKeyBlob.subarray(keyReader.offset);
  const principals = new SshWriter();
  for (const p of b.principals) principals.string(p);
  return new SshWriter()
    .string(b.certAlgorithm)
    .string(b.nonce)
    .raw(keyFields)
    .u64(b.serial)
    .u32(typeof b.type === 'number' ? b.type : TYPE_CODE[b.type])
    .string(b.keyId)
    .string(principals.toBuffer())
    .u64(b.validAfter)
    .u64(b.validBefore)
    .string(encodeOptions(b.criticalOptions))
    .string(encodeOptions(b.extensions))
    .string(b.reserved ?? Buffer.alloc(0))
    .string(b.signatureKeyBlob)
    .toBuffer();
}

function encodeOptions(entries: [string, Buffer][]): Buffer {
  const w = new SshWriter();
  for (const [name, data] of entries) w.string(name).string(data);
  return w.toBuffer();
}

/** Sorts by name in byte order (OpenSSH compares with strcmp) and nests non-empty values in a string. */
export function optionEntries(options: Record<string, string> | undefined): [string, Buffer][] {
  return Object.entries(options ?? {})
    .map(([name, value]): [string, Buffer] => [
      name,
      value === '' ? Buffer.alloc(0) : new SshWriter().string(value).toBuffer(),
    ])
    .sort((a, b) => Buffer.compare(Buffer.from(a[0]), Buffer.from(b[0])));
}

const U64_MAX = 0xffff_ffff_ffff_ffffn;

/**
 * Signs an OpenSSH certificate with the CA's private key and returns the certificate blob.
 * Throws GatewayError: E_KEY_UNSUPPORTED (key or CA type), E_CERT_MALFORMED (bad request).
 * When `now` (seconds) is given, a certificate that would already be expired is refused.
 */
export function signCertificate(req: CertificateRequest, caPrivateKey: KeyObject, now?: number): Buffer {
  const keyBlob = resolveKey(req.publicKey);
  const key = parseKeyBlob(keyBlob);
  if (!key.ok) throw new GatewayError(key.code, key.reason);
  if (caPrivateKey.type !== 'private') throw new GatewayError('E_KEY_UNSUPPORTED', 'CA key must be a private key');
  let caBlob: Buffer;
  try {
    caBlob = publicKeyBlob(caPrivateKey);
  } catch (err) {
    if (err instanceof KeyUnsupportedError) throw new GatewayError('E_KEY_UNSUPPORTED', `CA key: ${err.message}`);
    throw err;
  }
  if (req.type !== 'user' && req.type !== 'host')
    throw new GatewayError('E_CERT_MALFORMED', 'type must be user or host');
  if (req.principals.length === 0) {
    throw new GatewayError('E_CERT_MALFORMED', 'a certificate without principals is refused by our verifier');
  }
  if (req.principals.length > MAX_PRINCIPALS) throw new GatewayError('E_CERT_MALFORMED', 'too many principals');
  const inRange = (v: bigint) => v >= 0n && v <= U64_MAX;
  if (!inRange(req.validAfter) || !inRange(req.validBefore) || req.validBefore <= req.validAfter) {
    throw new GatewayError('E_CERT_MALFORMED', 'validity window is empty or out of range');
  }
  if (now !== undefined && req.validBefore <= BigInt(Math.floor(now))) {
    throw new GatewayError('E_CERT_EXPIRED', 'requested certificate would already be expired');
  }
  const serial = req.serial ?? randomBytes(8).readBigUInt64BE(0);
  if (!inRange(serial)) throw new GatewayError('E_CERT_MALFORMED', 'serial out of range');
  const certAlgorithm = `${key.value.algorithm}-cert-v01@openssh.com`;
  const body = encodeCertificateBody({
    certAlgorithm,
    nonce: randomBytes(32),
    publicKeyBlob: keyBlob,
    serial,
    type: req.type,
    keyId: req.keyId,
    principals: req.principals,
    validAfter: req.validAfter,
    validBefore: req.validBefore,
    criticalOptions: optionEntries(req.criticalOptions),
    extensions: optionEntries(req.extensions),
    signatureKeyBlob: caBlob,
  });
  const sig = signSsh(caPrivateKey, body, req.signatureAlgorithm);
  return new SshWriter().raw(body).string(sig).toBuffer();
}

function resolveKey(publicKey: Buffer | string): Buffer {
  if (Buffer.isBuffer(publicKey)) return publicKey;
  const line = parseKeyLine(publicKey);
  if (!line.ok) throw new GatewayError(line.code, line.reason);
  if (!isKeyAlgorithm(line.value.algorithm)) {
    throw new GatewayError('E_KEY_UNSUPPORTED', `cannot certify a ${line.value.algorithm}`);
  }
  return line.value.blob;
}

/** Parses a certificate blob or its OpenSSH text form. Structural only: see verifyCertificate for trust. */
export function parseCertificate(blobOrText: Buffer | string): Verdict<SshCertificate> {
  let blob: Buffer;
  if (typeof blobOrText === 'string') {
    const line = parseKeyLine(blobOrText);
    if (!line.ok) return line;
    blob = line.value.blob;
  } else {
    blob = blobOrText;
  }
  if (blob.length > MAX_CERT_BYTES) return refuse('E_CERT_MALFORMED', `certificate exceeds ${MAX_CERT_BYTES} bytes`);
  try {
    const r = new SshReader(blob);
    const certAlgorithm = r.text();
    const keyAlgorithm = CERT_ALGORITHMS[certAlgorithm];
    if (keyAlgorithm === undefined) {
      if (isKeyAlgorithm(certAlgorithm)) return refuse('E_CERT_MALFORMED', `${certAlgorithm} is not a certificate`);
      return refuse('E_KEY_UNSUPPORTED', `certificate type ${certAlgorithm} is not supported`);
    }
    const nonce = r.string();
    const key = readKeyFields(r, keyAlgorithm);
    const serial = r.u64();
    const typeCode = r.u32();
    if (typeCode !== 1 && typeCode !== 2) throw new WireError(`unknown certificate type ${typeCode}`);
    const keyId = r.text();
    const principals = readPrincipals(r.string());
    const validAfter = r.u64();
    const validBefore = r.u64();
    const criticalOptions = readOptions(r.string(), 'critical option');
    const extensions = readOptions(r.string(), 'extension');
    r.string(); // reserved: PROTOCOL.certkeys says it is currently unused and ignored
    const signatureKeyBlob = r.string();
    const signedEnd = r.offset;
    const signatureBlob = r.string();
    r.end('certificate');
    return accept({
      certAlgorithm,
      keyAlgorithm,
      nonce,
      publicKeyBlob: key.blob,
      serial,
      type: typeCode === 1 ? 'user' : 'host',
      keyId,
      principals,
      validAfter,
      validBefore,
      criticalOptions,
      extensions,
      signatureKeyBlob,
      signatureBlob,
      signedBytes: blob.subarray(0, signedEnd),
      blob,
    });
  } catch (err) {
    if (err instanceof WireError) return refuse('E_CERT_MALFORMED', err.message);
    throw err;
  }
}

function readPrincipals(packed: Buffer): string[] {
  const r = new SshReader(packed);
  const out: string[] = [];
  while (r.remaining > 0) {
    if (out.length === MAX_PRINCIPALS) throw new WireError('too many principals');
    out.push(r.text());
  }
  return out;
}

/**
 * Reads critical options or extensions. Names must be strictly increasing (sorted, no duplicates),
 * as OpenSSH's cert_parse_options requires. A value is empty (a flag) or exactly one nested string,
 * whose content is returned.
 */
function readOptions(packed: Buffer, what: string): Record<string, Buffer> {
  const r = new SshReader(packed);
  const entries: [string, Buffer][] = [];
  let previous: Buffer | undefined;
  while (r.remaining > 0) {
    const name = r.text();
    const nameBytes = Buffer.from(name, 'utf8');
    if (previous !== undefined && Buffer.compare(previous, nameBytes) >= 0) {
      throw new WireError(`${what} ${name} is out of order or repeated`);
    }
    previous = nameBytes;
    const data = r.string();
    let value = data;
    if (data.length > 0) {
      const inner = new SshReader(data);
      value = inner.string();
      inner.end(`${what} ${name}`);
    }
    entries.push([name, value]);
  }
  // fromEntries defines own properties, so a name such as "__proto__" cannot touch the prototype.
  return Object.fromEntries(entries);
}

/** OpenSSH text form of a certificate blob: "<cert-algorithm> <base64> [comment]". */
export function formatCertificate(blob: Buffer, comment?: string): string {
  const algorithm = new SshReader(blob).text();
  return `${algorithm} ${blob.toString('base64')}${comment ? ` ${comment}` : ''}`;
}
