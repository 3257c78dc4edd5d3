/** Key lines and fingerprints that must see through certificates to the key they certify. */
import { createHash } from 'node:crypto';
import { accept, type Verdict } from '../errors/codes.js';
import { parseCertificate } from './cert.js';
import { CERT_ALGORITHMS, parseKeyBlob } from './keys.js';
import { parseKeyLine } from './text.js';

/** Parses "ssh-ed25519 AAAA... comment" into a plain blob; for a certificate line, the certified key's blob. */
export function parsePublicKey(text: string): Verdict<Buffer> {
  const line = parseKeyLine(text);
  if (!line.ok) return line;
  if (line.value.algorithm in CERT_ALGORITHMS) {
    const cert = parseCertificate(line.value.blob);
    return cert.ok ? accept(cert.value.publicKeyBlob) : cert;
  }
  const key = parseKeyBlob(line.value.blob);
  return key.ok ? accept(key.value.blob) : key;
}

/**
 * "SHA256:<unpadded base64>" as `ssh-keygen -l` prints it. For a certificate blob this is the
 * certified key's fingerprint, as ssh-keygen shows it (OpenSSH hashes the plain key of a cert).
 */
export function fingerprint(blob: Buffer): string {
  let plain = blob;
  const cert = parseCertificate(blob);
  if (cert.ok) plain = cert.value.publicKeyBlob;
  return `SHA256:${createHash('sha256').update(plain).digest('base64').replace(/=+$/, '')}`;
}
