/**
 * Plain SSH public key blobs (RFC 4253 §6.6, RFC 5656 §3.1, RFC 8709) and their conversion to and
 * from Node KeyObjects. Only the three key types this project uses are known: anything else is
 * E_KEY_UNSUPPORTED, so no caller ever falls back to a key type nobody reviewed.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { accept, refuse, type Verdict } from '../errors/codes.js';
import { ed25519Public, p256Point, rsaParts } from './der.js';
import { SshReader, SshWriter, WireError } from './wire.js';

export type KeyAlgorithm = 'ssh-ed25519' | 'ssh-rsa' | 'ecdsa-sha2-nistp256';

export const KEY_ALGORITHMS: readonly KeyAlgorithm[] = ['ssh-ed25519', 'ssh-rsa', 'ecdsa-sha2-nistp256'];

/** Certificate algorithm name → the plain key algorithm it certifies. */
export const CERT_ALGORITHMS: Readonly<Record<string, KeyAlgorithm>> = {
  'ssh-ed25519-cert-v01@openssh.com': 'ssh-ed25519',
  'ssh-rsa-cert-v01@openssh.com': 'ssh-rsa',
  'ecdsa-sha2-nistp256-cert-v01@openssh.com': 'ecdsa-sha2-nistp256',
};

/** RSA keys below this size are refused as weak (OpenSSH's own floor is 1024; we follow NIST's 2048). */
export const RSA_MIN_BITS = 2048;

export function isKeyAlgorithm(name: string): name is KeyAlgorithm {
  return (KEY_ALGORITHMS as readonly string[]).includes(name);
}

export interface ParsedKey {
  algorithm: KeyAlgorithm;
  /** The plain public key blob (string algorithm + key fields). */
  blob: Buffer;
  key: KeyObject;
  /** Modulus size for RSA, curve size otherwise. */
  bits: number;
}

const b64u = (b: Buffer): string => b.toString('base64url');

function bitLength(magnitude: Buffer): number {
  if (magnitude.length === 0) return 0;
  return (magnitude.length - 1) * 8 + (32 - Math.clz32(magnitude[0]!));
}

/**
 * Reads the key fields of `algorithm` from `r` (the part after the algorithm name, as found in a plain
 * blob or inside a certificate after the nonce). Throws WireError on malformed fields.
 */
export function readKeyFields(r: SshReader, algorithm: KeyAlgorithm): ParsedKey {
  const w = new SshWriter().string(algorithm);
  let key: KeyObject;
  let bits: number;
  try {
    if (algorithm === 'ssh-ed25519') {
      const pk = r.string();
      if (pk.length !== 32) throw new WireError('ed25519 public key must be 32 bytes');
      w.string(pk);
      key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: b64u(pk) }, format: 'jwk' });
      bits = 256;
    } else if (algorithm === 'ssh-rsa') {
      const e = r.mpint();
      const n = r.mpint();
      if (e.length === 0 || n.length === 0) throw new WireError('RSA e and n must be positive');
      w.mpint(e).mpint(n);
      bits = bitLength(n);
      key = createPublicKey({ key: { kty: 'RSA', n: b64u(n), e: b64u(e) }, format: 'jwk' });
    } else {
      const curve = r.text();
      if (curve !== 'nistp256') throw new WireError(`curve ${curve} does not match ${algorithm}`);
      const q = r.string();
      if (q.length !== 65 || q[0] !== 0x04) throw new WireError('nistp256 point must be 65 bytes, uncompressed');
      w.string(curve).string(q);
      // Node checks that the point is on the curve when it builds the key.
      key = createPublicKey({
        key: { kty: 'EC', crv: 'P-256', x: b64u(q.subarray(1, 33)), y: b64u(q.subarray(33)) },
        format: 'jwk',
      });
      bits = 256;
    }
  } catch (err) {
    if (err instanceof WireError) throw err;
    throw new WireError(`invalid ${algorithm} key: ${(err as Error).message}`);
  }
  return { algorithm, blob: w.toBuffer(), key, bits };
}

/** Parses a plain public key blob; certificates and unknown types are refused. */
export function parseKeyBlob(blob: Buffer): Verdict<ParsedKey> {
  try {
    const r = new SshReader(blob);
    const algorithm = r.text();
    if (!isKeyAlgorithm(algorithm)) {
      if (algorithm in CERT_ALGORITHMS) return refuse('E_KEY_UNSUPPORTED', 'a certificate is not a plain public key');
      return refuse('E_KEY_UNSUPPORTED', `key type ${algorithm} is not supported`);
    }
    const parsed = readKeyFields(r, algorithm);
    r.end('public key');
    return accept(parsed);
  } catch (err) {
    return refuse('E_CERT_MALFORMED', `public key blob: ${(err as Error).message}`);
  }
}

/** The SSH key algorithm of a Node key (public or private); throws E_KEY_UNSUPPORTED otherwise. */
export function keyAlgorithmOf(key: KeyObject): KeyAlgorithm {
  const t = key.asymmetricKeyType;
  if (t === 'ed25519') return 'ssh-ed25519';
  if (t === 'rsa') return 'ssh-rsa';
  if (t === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ecdsa-sha2-nistp256';
  throw new KeyUnsupportedError(`${t ?? 'unknown'} ${key.asymmetricKeyDetails?.namedCurve ?? ''}`.trim());
}

/** Internal signal for keyAlgorithmOf; the public wrappers turn it into a GatewayError or verdict. */
export class KeyUnsupportedError extends Error {
  override name = 'KeyUnsupportedError';
}

/** Plain SSH public key blob for a Node KeyObject (ed25519, RSA, ECDSA P-256); private keys give their public half. */
export function publicKeyBlob(key: KeyObject): Buffer {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  const algorithm = keyAlgorithmOf(pub);
  const w = new SshWriter().string(algorithm);
  if (algorithm === 'ssh-ed25519') return w.string(ed25519Public(pub)).toBuffer();
  if (algorithm === 'ssh-rsa') {
    const { n, e } = rsaParts(pub);
    return w.mpint(e).mpint(n).toBuffer();
  }
  return w.string('nistp256').string(p256Point(pub)).toBuffer();
}

/** The algorithm name at the start of any blob (plain key or certificate), or undefined if unreadable. */
export function blobAlgorithm(blob: Buffer): string | undefined {
  try {
    return new SshReader(blob).text();
  } catch {
    return undefined;
  }
}
