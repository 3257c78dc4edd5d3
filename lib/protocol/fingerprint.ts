/**
 * The CA API pin's text form. Its own module, free of TLS and PKI imports, because the config schemas validate
 * ca_fingerprint with it and the packaging renders the sample configs from the schemas bundled alone.
 */
import { GatewayError } from '../errors/codes.js';

/** "sha256:AB:CD…" or plain hex → 64 lowercase hex digits; anything else is E_CONFIG_INVALID. */
export function normalizeFingerprint(fp: string): string {
  const hex = fp
    .trim()
    .replace(/^sha256:/i, '')
    .replaceAll(':', '')
    .toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new GatewayError('E_CONFIG_INVALID', 'fingerprint must be 64 hex digits');
  return hex;
}
