/**
 * THE OpenSSH certificate verifier: every certificate decision of the project is made here, in the
 * spirit of OpenSSH's sshkey_cert_check_authority, and every listener calls it instead of checking
 * fields inline. Pure: data and an injected clock in, a verdict with a stable code out.
 */
import { accept, refuse, type Verdict } from '../errors/codes.js';
import { parseCertificate } from './cert.js';
import { blobAlgorithm, CERT_ALGORITHMS, parseKeyBlob, RSA_MIN_BITS } from './keys.js';
import { verifyWithKey } from './signature.js';
import type { SshCertificate, VerifyOptions } from './types.js';

/**
 * Checks, in order: the signing key is a plain key (a certificate as CA key is refused), it is one of
 * `trustedCaKeys`, the CA signature is valid and uses an algorithm fitting the CA key (no SHA-1), the
 * certified key is not weak, the type, the validity window against `now`, the principals, the critical
 * options and finally the revocation callback.
 *
 * The certificate is re-parsed from `cert.blob`, so a caller that edited the parsed fields cannot make
 * us decide on values the CA never signed; the returned certificate is the re-parsed one.
 *
 * An empty principal list is refused (E_CERT_WRONG_PRINCIPAL) even when no principal is required.
 * OpenSSH 9.2 reads it as "any principal" for host certificates and for user certificates trusted
 * through a `cert-authority` line in authorized_keys (the shape of CVE-2024-7594). Here a certificate
 * names the gateway or proxy it is for, and a CA slip that omitted the names must not yield a key that
 * opens every gateway of the org; the signer (signCertificate) refuses to make such a certificate too.
 */
export function verifyCertificate(cert: SshCertificate, opts: VerifyOptions): Verdict<SshCertificate> {
  const parsed = parseCertificate(cert.blob);
  if (!parsed.ok) return parsed;
  const c = parsed.value;

  const caAlgorithm = blobAlgorithm(c.signatureKeyBlob);
  if (caAlgorithm !== undefined && caAlgorithm in CERT_ALGORITHMS) {
    return refuse('E_CERT_UNTRUSTED', 'the signing key is itself a certificate');
  }
  if (!opts.trustedCaKeys.some((k) => k.equals(c.signatureKeyBlob))) {
    return refuse('E_CERT_UNTRUSTED', 'signed by a CA key that is not trusted here');
  }
  const ca = parseKeyBlob(c.signatureKeyBlob);
  if (!ca.ok) return ca;
  const sig = verifyWithKey(ca.value, c.signatureBlob, c.signedBytes, 'E_CERT_SIGNATURE');
  if (!sig.ok) return sig;

  const subject = parseKeyBlob(c.publicKeyBlob);
  if (!subject.ok) return subject;
  if (subject.value.algorithm === 'ssh-rsa' && subject.value.bits < RSA_MIN_BITS) {
    return refuse('E_CERT_WEAK_ALGORITHM', `certified RSA key of ${subject.value.bits} bits`);
  }

  if (c.type !== opts.type)
    return refuse('E_CERT_WRONG_TYPE', `${c.type} certificate where a ${opts.type} one is needed`);

  const now = BigInt(Math.floor(opts.now));
  if (now < c.validAfter) return refuse('E_CERT_NOT_YET_VALID', `valid from ${c.validAfter}, now ${now}`);
  // valid_before is exclusive in OpenSSH: at that second the certificate is already expired.
  if (now >= c.validBefore) return refuse('E_CERT_EXPIRED', `valid before ${c.validBefore}, now ${now}`);

  if (c.principals.length === 0) return refuse('E_CERT_WRONG_PRINCIPAL', 'certificate lists no principal');
  if (opts.principal !== undefined && !c.principals.includes(opts.principal)) {
    return refuse('E_CERT_WRONG_PRINCIPAL', `"${opts.principal}" is not among the certificate's principals`);
  }

  const known = opts.knownCriticalOptions ?? [];
  for (const name of Object.keys(c.criticalOptions)) {
    if (!known.includes(name)) return refuse('E_CERT_CRITICAL_OPTION', `unknown critical option "${name}"`);
  }

  if (opts.isRevoked?.(c)) return refuse('E_CERT_REVOKED', `certificate "${c.keyId}" serial ${c.serial} is revoked`);
  return accept(c);
}

/**
 * Checks an SSH signature blob over `data` made by the key in `publicKeyBlob` (a plain key, or a
 * certificate whose certified key is used). Refuses SHA-1 `ssh-rsa` and any algorithm that does not
 * fit the key (E_CERT_WEAK_ALGORITHM); a signature that does not verify is E_SSH_SIGNATURE.
 */
export function verifySshSignature(publicKeyBlob: Buffer, signatureBlob: Buffer, data: Buffer): Verdict<true> {
  let plain = publicKeyBlob;
  const algorithm = blobAlgorithm(publicKeyBlob);
  if (algorithm !== undefined && algorithm in CERT_ALGORITHMS) {
    const cert = parseCertificate(publicKeyBlob);
    if (!cert.ok) return cert;
    plain = cert.value.publicKeyBlob;
  }
  const key = parseKeyBlob(plain);
  if (!key.ok) return key;
  return verifyWithKey(key.value, signatureBlob, data, 'E_SSH_SIGNATURE');
}
