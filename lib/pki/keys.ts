/**
 * Keys: generated with Node's native crypto where they are used (SPEC §3: private keys never leave their host),
 * described and vetted in one place so the CSR parser, the issuer and the verifier refuse the same weak keys.
 */
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPair as generateKeyPairCb,
  generateKeyPairSync as generateKeyPairNodeSync,
  type KeyObject,
} from 'node:crypto';
import { promisify } from 'node:util';
import { accept, refuse, type Verdict } from '../errors/codes.js';
import * as der from './der.js';

export type KeyAlgorithm = 'ecdsa-p256' | 'rsa-2048';
export interface KeyPair {
  privateKey: KeyObject;
  publicKey: KeyObject;
}

/** What a public key is, once vetted. */
export type KeyInfo =
  | { type: 'ec'; curve: 'P-256' | 'P-384' | 'P-521' }
  | { type: 'rsa'; bits: number }
  | { type: 'ed25519' };

/** How a key signs X.509 structures: the AlgorithmIdentifier and Node's digest name. */
export interface SignatureAlgorithm {
  oid: string;
  /** Digest for crypto.sign/verify; null for Ed25519 (no pre-hash). */
  hash: 'sha256' | 'sha384' | 'sha512' | null;
  /** RSA PKCS#1 v1.5 AlgorithmIdentifiers carry an explicit NULL parameter; ECDSA/EdDSA carry none. */
  nullParams: boolean;
}

export const MIN_RSA_BITS = 2048;
export const MAX_RSA_BITS = 8192;

const generateAsync = promisify(generateKeyPairCb);

/** Generates a key pair natively, off the main thread (RSA-2048 takes ~100-200 ms). */
export async function generateKeyPair(alg: KeyAlgorithm = 'ecdsa-p256'): Promise<KeyPair> {
  if (alg === 'ecdsa-p256') return generateAsync('ec', { namedCurve: 'P-256' });
  if (alg === 'rsa-2048') return generateAsync('rsa', { modulusLength: 2048, publicExponent: 0x10001 });
  throw new TypeError(`unsupported key algorithm ${String(alg)}`);
}

export function generateKeyPairSync(alg: KeyAlgorithm = 'ecdsa-p256'): KeyPair {
  if (alg === 'ecdsa-p256') return generateKeyPairNodeSync('ec', { namedCurve: 'P-256' });
  if (alg === 'rsa-2048') return generateKeyPairNodeSync('rsa', { modulusLength: 2048, publicExponent: 0x10001 });
  throw new TypeError(`unsupported key algorithm ${String(alg)}`);
}

/**
 * Vets a key (public or private): EC P-256/384/521, RSA 2048..8192 bits, Ed25519. Anything else is refused,
 * small RSA with E_CERT_WEAK_ALGORITHM, unknown kinds with E_KEY_UNSUPPORTED.
 */
export function describeKey(key: KeyObject): Verdict<KeyInfo> {
  const cached = infoCache.get(key);
  if (cached) return cached;
  const info = describeKeyUncached(key);
  infoCache.set(key, info);
  return info;
}

// Reading a KeyObject's details and exporting it cost OpenSSL decoder round trips; a KeyObject is immutable,
// so both are remembered per object.
const infoCache = new WeakMap<KeyObject, Verdict<KeyInfo>>();
const spkiCache = new WeakMap<KeyObject, Buffer>();

function describeKeyUncached(key: KeyObject): Verdict<KeyInfo> {
  const d = key.asymmetricKeyDetails ?? {};
  switch (key.asymmetricKeyType) {
    case 'ec':
      return ecInfo(d.namedCurve ?? '');
    case 'rsa':
      return rsaInfo(d.modulusLength ?? 0);
    case 'ed25519':
      return accept({ type: 'ed25519' });
    default:
      return refuse('E_KEY_UNSUPPORTED', `key type ${String(key.asymmetricKeyType)} is not supported`);
  }
}

function ecInfo(curveName: string): Verdict<KeyInfo> {
  const curve = (
    { prime256v1: 'P-256', secp384r1: 'P-384', secp521r1: 'P-521' } as Record<string, 'P-256' | 'P-384' | 'P-521'>
  )[curveName];
  return curve ? accept({ type: 'ec', curve }) : refuse('E_KEY_UNSUPPORTED', `EC curve ${curveName} is not allowed`);
}

function rsaInfo(bits: number): Verdict<KeyInfo> {
  if (bits < MIN_RSA_BITS) return refuse('E_CERT_WEAK_ALGORITHM', `RSA key of ${bits} bits (minimum ${MIN_RSA_BITS})`);
  if (bits > MAX_RSA_BITS) return refuse('E_KEY_UNSUPPORTED', `RSA key of ${bits} bits (maximum ${MAX_RSA_BITS})`);
  return accept({ type: 'rsa', bits });
}

const CURVE_OIDS: Record<string, string> = {
  '1.2.840.10045.3.1.7': 'prime256v1',
  '1.3.132.0.34': 'secp384r1',
  '1.3.132.0.35': 'secp521r1',
};

/**
 * Vets a SubjectPublicKeyInfo from its DER alone, with the same rules as describeKey. The verifier uses it for
 * leaf keys, which it never needs to load (the TLS handshake already proved the peer holds that key).
 */
export function describeSpki(spki: Buffer): Verdict<KeyInfo> {
  try {
    const [algId, bitString] = der.readSeq(der.decode(spki, 4096), 'subjectPublicKeyInfo', 2, 2);
    const alg = der.readSeq(algId, 'algorithm', 1, 2);
    const algOid = der.readOid(alg[0], 'algorithm');
    const key = der.readBits(bitString, 'subjectPublicKey');
    if (algOid === '1.2.840.10045.2.1') {
      const curve = alg[1] && alg[1].type === 6 ? CURVE_OIDS[der.readOid(alg[1], 'namedCurve')] : undefined;
      return ecInfo(curve ?? 'unknown');
    }
    if (algOid === '1.2.840.113549.1.1.1') {
      const [n] = der.readSeq(der.decode(key.bytes, 4096), 'RSAPublicKey', 2, 2);
      const mod = der.readIntBytes(n, 'modulus');
      const m = mod[0] === 0 ? mod.subarray(1) : mod;
      return rsaInfo(m.length === 0 ? 0 : (m.length - 1) * 8 + (32 - Math.clz32(m[0]!)));
    }
    if (algOid === '1.3.101.112' && alg.length === 1 && key.bytes.length === 32) return accept({ type: 'ed25519' });
    return refuse('E_KEY_UNSUPPORTED', `public key algorithm ${algOid} is not supported`);
  } catch (err) {
    if (err instanceof der.DerError) return refuse('E_CERT_MALFORMED', `public key: ${err.message}`);
    throw err;
  }
}

/** Public keys of issuers, by SPKI: the same few CAs sign every peer, so they are loaded once. Bounded. */
const issuerKeys = new Map<string, KeyObject>();
const MAX_CACHED_KEYS = 512;

export function publicKeyFromSpki(spki: Buffer): KeyObject {
  const id = spki.toString('latin1');
  let key = issuerKeys.get(id);
  if (!key) {
    key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
    if (issuerKeys.size >= MAX_CACHED_KEYS) issuerKeys.delete(issuerKeys.keys().next().value!);
    issuerKeys.set(id, key);
    spkiCache.set(key, spki);
  }
  return key;
}

/** Tells spkiDer and describeKey the SPKI a freshly loaded key came from (saves an export and a lookup). */
export function rememberSpki(key: KeyObject, spki: Buffer): void {
  spkiCache.set(key, spki);
  // Same rules, read from the DER: cheaper than asking OpenSSL for the key's details.
  infoCache.set(key, describeSpki(spki));
}

/** The signature algorithm an issuer key uses: ECDSA with the curve's matching SHA-2, RSA with SHA-256. */
export function signatureAlgorithmFor(key: KeyObject): Verdict<SignatureAlgorithm> {
  const info = describeKey(key);
  if (!info.ok) return info;
  const k = info.value;
  if (k.type === 'rsa') return accept(SIG_ALGS['1.2.840.113549.1.1.11']!);
  if (k.type === 'ed25519') return accept(SIG_ALGS['1.3.101.112']!);
  const oid = { 'P-256': '1.2.840.10045.4.3.2', 'P-384': '1.2.840.10045.4.3.3', 'P-521': '1.2.840.10045.4.3.4' }[
    k.curve
  ];
  return accept(SIG_ALGS[oid]!);
}

/** Signature algorithms the verifier accepts. SHA-1 and MD5 ones are listed apart to be refused by name. */
export const SIG_ALGS: Record<string, SignatureAlgorithm> = {
  '1.2.840.10045.4.3.2': { oid: '1.2.840.10045.4.3.2', hash: 'sha256', nullParams: false },
  '1.2.840.10045.4.3.3': { oid: '1.2.840.10045.4.3.3', hash: 'sha384', nullParams: false },
  '1.2.840.10045.4.3.4': { oid: '1.2.840.10045.4.3.4', hash: 'sha512', nullParams: false },
  '1.2.840.113549.1.1.11': { oid: '1.2.840.113549.1.1.11', hash: 'sha256', nullParams: true },
  '1.2.840.113549.1.1.12': { oid: '1.2.840.113549.1.1.12', hash: 'sha384', nullParams: true },
  '1.2.840.113549.1.1.13': { oid: '1.2.840.113549.1.1.13', hash: 'sha512', nullParams: true },
  '1.3.101.112': { oid: '1.3.101.112', hash: null, nullParams: false },
};

export const WEAK_SIG_ALGS: Record<string, string> = {
  '1.2.840.113549.1.1.4': 'md5WithRSAEncryption',
  '1.2.840.113549.1.1.5': 'sha1WithRSAEncryption',
  '1.2.840.10045.4.1': 'ecdsa-with-SHA1',
  '1.2.840.10040.4.3': 'dsa-with-sha1',
  '1.3.14.3.2.29': 'sha1WithRSASignature',
};

/** Does this signature algorithm fit this key kind (no RSA signature checked with an EC key, etc.)? */
export function algorithmFitsKey(alg: SignatureAlgorithm, key: KeyInfo): boolean {
  if (alg.oid.startsWith('1.2.840.10045.4.3.')) return key.type === 'ec';
  if (alg.oid.startsWith('1.2.840.113549.1.1.')) return key.type === 'rsa';
  return alg.oid === '1.3.101.112' && key.type === 'ed25519';
}

/** SubjectPublicKeyInfo DER, straight from Node (the bytes that go into certs and CSRs). */
export function spkiDer(key: KeyObject): Buffer {
  let spki = spkiCache.get(key);
  if (!spki) {
    const pub = key.type === 'private' ? createPublicKey(key) : key;
    spki = pub.export({ type: 'spki', format: 'der' });
    spkiCache.set(key, spki);
  }
  return spki;
}

export function privateKeyPem(key: KeyObject): string {
  return key.export({ type: 'pkcs8', format: 'pem' }) as string;
}

/** Loads a private key from PEM (PKCS#8, SEC1 or PKCS#1) or passes a KeyObject through. */
export function loadPrivateKey(key: KeyObject | string | Buffer): KeyObject {
  return typeof key === 'string' || Buffer.isBuffer(key) ? createPrivateKey(key) : key;
}
