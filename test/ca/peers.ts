/**
 * What an enrolled gateway or proxy sends the CA, built in-process for the Authority tests (supersede, replicas):
 * its signed renewal request and its signed feed read, the serials of what it holds, and the feed's retirements.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { Peer, SignedRequest } from '../../lib/ca/authority.js';
import { type ErrorCode, unwrap, type Verdict } from '../../lib/errors/codes.js';
import { parseCertificate, pemBlocks } from '../../lib/pki/x509.js';
import { signRequestBytes } from '../../lib/protocol/api.js';
import { parseCertificate as parseSsh } from '../../lib/sshcert/index.js';
import type { ClientKeys, Fixture } from './helpers.js';

/** A component's current TLS chain and the keys behind it. */
export interface Held {
  chain: string;
  keys: ClientKeys;
}

/** Asserts a refusal with `code`; returns its reason. */
export function refused(v: Verdict<unknown>, code: ErrorCode, why: string): string {
  assert.equal(v.ok, false, `${why}: expected a refusal`);
  assert.equal(!v.ok && v.code, code, `${why}: ${!v.ok ? v.reason : ''}`);
  return !v.ok ? v.reason : '';
}

export const leafDer = (chain: string): Buffer => pemBlocks(chain, 'CERTIFICATE')[0]!;
export const tlsSerial = (chain: string): string => parseCertificate(leafDer(chain)).serialHex;
export const sshSerial = (cert: string): string => unwrap(parseSsh(cert)).serial.toString(16).padStart(16, '0');

/** A renewal request signed by `current`, asking for `next`'s keys; `over` replaces body fields (bad inputs). */
export function renewal(
  f: Fixture,
  current: Held,
  next: ClientKeys,
  over: Record<string, unknown> = {},
): SignedRequest {
  const body = Buffer.from(
    JSON.stringify({
      csr: next.csr,
      sshPublicKey: next.sshPublicKey,
      timestamp: Math.floor(f.clock.ms / 1000),
      nonce: randomBytes(16).toString('base64url'),
      ...over,
    }),
  );
  return {
    certificate: leafDer(current.chain),
    signature: Buffer.from(signRequestBytes(body, current.keys.tlsKey), 'base64'),
    signed: body,
  };
}

/** A signed feed read by `who` (what the HTTP layer authenticates before reading the feed). */
export function feedRead(f: Fixture, who: Held): Verdict<Peer> {
  const nonce = randomBytes(16).toString('base64url');
  const target = `/v1/revocations?since=0&timestamp=${Math.floor(f.clock.ms / 1000)}&nonce=${nonce}`;
  return f.ca.authenticatePeer(
    {
      certificate: leafDer(who.chain),
      signature: Buffer.from(signRequestBytes(Buffer.from(target), who.keys.tlsKey), 'base64'),
      signed: Buffer.from(target),
    },
    { timestamp: Math.floor(f.clock.ms / 1000), nonce },
  );
}

/** Certificate serials retired or revoked so far (the admin's view of the feed). */
export const revokedCerts = (f: Fixture): string[] =>
  f.ca
    .revocationsSince(f.admin, 0)
    .entries.filter((e) => e.kind === 'certificate')
    .map((e) => e.subject)
    .sort();
