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
import { accept, refuse, type Verdict } from '../protocol/errors.js';

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
  const d = key.asymmetricKeyDetails ?? {};
  switch (key.asymmetricKeyType) {
    case 'ec': {
      const curve = { prime256v1: 'P-256', secp384r1: 'P-384', secp521r1: 'P-521' }[d.namedCurve ?? ''] as
        | 'P-256'
        | 'P-384'
        | 'P-521'
        | undefined;
      return curve
        ? accept({ type: 'ec', curve })
        : refuse('E_KEY_UNSUPPORTED', `EC curve ${d.namedCurve} is not allowed`);
    }
    case 'rsa': {
      const bits = d.modulusLength ?? 0;
      if (bits < MIN_RSA_BITS)
        return refuse('E_CERT_WEAK_ALGORITHM', `RSA key of ${bits} bits (minimum ${MIN_RSA_BITS})`);
      if (bits > MAX_RSA_BITS) return refuse('E_KEY_UNSUPPORTED', `RSA key of ${bits} bits (maximum ${MAX_RSA_BITS})`);
      return accept({ type: 'rsa', bits });
    }
    case 'ed25519':
      return accept({ type: 'ed25519' });
    default:
      return refuse('E_KEY_UNSUPPORTED', `key type ${String(key.asymmetricKeyType)} is not supported`);
  }
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
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  return pub.export({ type: 'spki', format: 'der' });
}

export function privateKeyPem(key: KeyObject): string {
  return key.export({ type: 'pkcs8', format: 'pem' }) as string;
}

/** Loads a private key from PEM (PKCS#8, SEC1 or PKCS#1) or passes a KeyObject through. */
export function loadPrivateKey(key: KeyObject | string | Buffer): KeyObject {
  return typeof key === 'string' || Buffer.isBuffer(key) ? createPrivateKey(key) : key;
}
