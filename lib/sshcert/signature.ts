/**
 * SSH signature blobs (RFC 4253 §6.6, RFC 8332, RFC 5656 §3.1.2, RFC 8709): making them with Node's
 * native crypto and checking them against a parsed key. SHA-1 `ssh-rsa` signatures are refused:
 * SHA-1 is broken for collisions (SHAttered, 2017) and OpenSSH itself disabled it by default in 8.8.
 */
import { type KeyObject, sign, verify } from 'node:crypto';
import { accept, GatewayError, refuse, type Verdict } from '../errors/codes.js';
import { type KeyAlgorithm, keyAlgorithmOf, type ParsedKey, RSA_MIN_BITS } from './keys.js';
import { SshReader, SshWriter } from './wire.js';

export type SignatureAlgorithm = 'ssh-ed25519' | 'rsa-sha2-256' | 'rsa-sha2-512' | 'ecdsa-sha2-nistp256';

/** Signature algorithms each key type may produce; anything else is refused before any crypto runs. */
const ALLOWED: Record<KeyAlgorithm, readonly SignatureAlgorithm[]> = {
  'ssh-ed25519': ['ssh-ed25519'],
  'ssh-rsa': ['rsa-sha2-256', 'rsa-sha2-512'],
  'ecdsa-sha2-nistp256': ['ecdsa-sha2-nistp256'],
};

const HASH: Record<SignatureAlgorithm, string | null> = {
  'ssh-ed25519': null,
  'rsa-sha2-256': 'sha256',
  'rsa-sha2-512': 'sha512',
  'ecdsa-sha2-nistp256': 'sha256',
};

/** The signature algorithm OpenSSH picks by default for a key type (ssh-keygen -s signs RSA with SHA-512). */
export function defaultSignatureAlgorithm(algorithm: KeyAlgorithm): SignatureAlgorithm {
  return algorithm === 'ssh-rsa' ? 'rsa-sha2-512' : algorithm;
}

/**
 * Signs `data` with a Node private key and returns the SSH signature blob (string algorithm +
 * string signature). RSA signs with rsa-sha2-512 unless told otherwise. Throws GatewayError
 * E_KEY_UNSUPPORTED for other key types or an algorithm that does not fit the key.
 */
export function signSsh(privateKey: KeyObject, data: Buffer, algorithm?: SignatureAlgorithm): Buffer {
  let keyAlgorithm: KeyAlgorithm;
  try {
    keyAlgorithm = keyAlgorithmOf(privateKey);
  } catch (err) {
    throw new GatewayError('E_KEY_UNSUPPORTED', (err as Error).message);
  }
  const alg = algorithm ?? defaultSignatureAlgorithm(keyAlgorithm);
  if (!ALLOWED[keyAlgorithm].includes(alg)) {
    throw new GatewayError('E_KEY_UNSUPPORTED', `signature algorithm ${alg} does not fit a ${keyAlgorithm} key`);
  }
  const w = new SshWriter().string(alg);
  if (keyAlgorithm === 'ecdsa-sha2-nistp256') {
    const rs = sign('sha256', data, { key: privateKey, dsaEncoding: 'ieee-p1363' });
    const inner = new SshWriter().mpint(rs.subarray(0, 32)).mpint(rs.subarray(32)).toBuffer();
    return w.string(inner).toBuffer();
  }
  return w.string(sign(HASH[alg], data, privateKey)).toBuffer();
}

/**
 * Checks an SSH signature blob over `data` against an already parsed key. Codes: E_CERT_MALFORMED
 * (unreadable blob), E_CERT_WEAK_ALGORITHM (SHA-1 ssh-rsa, small RSA key, algorithm not fitting the
 * key), `badSignature` when the signature does not verify.
 */
export function verifyWithKey(
  key: ParsedKey,
  signatureBlob: Buffer,
  data: Buffer,
  badSignature: 'E_CERT_SIGNATURE' | 'E_SSH_SIGNATURE',
): Verdict<true> {
  let algorithm: string;
  let sig: Buffer;
  try {
    const r = new SshReader(signatureBlob);
    algorithm = r.text();
    sig = r.string();
    r.end('signature');
  } catch (err) {
    return refuse('E_CERT_MALFORMED', `signature blob: ${(err as Error).message}`);
  }
  // ssh-rsa (SHA-1) is absent from ALLOWED, so this one check refuses it and any key/algorithm mismatch.
  if (!(ALLOWED[key.algorithm] as readonly string[]).includes(algorithm)) {
    const why =
      algorithm === 'ssh-rsa' ? 'SHA-1 ssh-rsa signatures are refused' : `does not fit a ${key.algorithm} key`;
    return refuse('E_CERT_WEAK_ALGORITHM', `signature algorithm ${algorithm}: ${why}`);
  }
  if (key.algorithm === 'ssh-rsa' && key.bits < RSA_MIN_BITS) {
    return refuse('E_CERT_WEAK_ALGORITHM', `RSA key of ${key.bits} bits is below ${RSA_MIN_BITS}`);
  }
  const alg = algorithm as SignatureAlgorithm;
  let ok: boolean;
  try {
    if (alg === 'ecdsa-sha2-nistp256') {
      const r = new SshReader(sig);
      const rr = r.mpint();
      const ss = r.mpint();
      r.end('ecdsa signature');
      if (rr.length > 32 || ss.length > 32) return refuse('E_CERT_MALFORMED', 'ecdsa r or s too long');
      const p1363 = Buffer.alloc(64);
      rr.copy(p1363, 32 - rr.length);
      ss.copy(p1363, 64 - ss.length);
      ok = verify('sha256', data, { key: key.key, dsaEncoding: 'ieee-p1363' }, p1363);
    } else if (alg === 'ssh-ed25519') {
      if (sig.length !== 64) return refuse('E_CERT_MALFORMED', 'ed25519 signature must be 64 bytes');
      ok = verify(null, data, key.key, sig);
    } else {
      // OpenSSH tolerates RSA signatures shorter than the modulus (leading zeros dropped); longer is invalid.
      const modBytes = Math.ceil(key.bits / 8);
      if (sig.length > modBytes) return refuse('E_CERT_MALFORMED', 'RSA signature longer than the modulus');
      const padded = sig.length < modBytes ? Buffer.concat([Buffer.alloc(modBytes - sig.length), sig]) : sig;
      ok = verify(HASH[alg], data, key.key, padded);
    }
  } catch (err) {
    return refuse('E_CERT_MALFORMED', `signature: ${(err as Error).message}`);
  }
  return ok ? accept(true) : refuse(badSignature, `${alg} signature does not verify`);
}
