/**
 * The platform side of the relay protocol, spoken from the test process to a real proxy process: a grant
 * obtained from the real CA through lib/client (login with the identity's client secret, our own key and CSRs),
 * and one outer mTLS connection to a proxy's TLS port with that grant's outer certificate (ALPN
 * infisical-relay/1), reading every byte the proxy sends until it closes (or until its success line).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import { CaGrantSource } from '../../lib/client/ca-source.js';
import { type ClientGrant, obtainGrant } from '../../lib/client/grant.js';
import { grantTls } from '../../lib/client/grant-tls.js';
import { parseTcpTarget } from '../../lib/client/target.js';
import { certificateInputs, parseCertificate } from '../../lib/pki/x509.js';
import { CaClient } from '../../lib/protocol/ca-client.js';
import { decodeStatus, RELAY_ALPN } from '../../lib/protocol/relay.js';
import type { Deployment, Identity } from './deploy.js';

export const OK_LINE = '{"ok":true}';

export interface OuterGrant extends ClientGrant {
  /** notAfter of the instance-scope outer leaf, ms since the epoch (a whole second). */
  outerNotAfterMs: number;
}

/** A tcp grant to the deployment's echo target through `gatewayId`, from the CA, as lib/client gets one. */
export async function grantFromCa(
  d: Deployment,
  o: { gatewayId: string; ttlSeconds: number; identity?: Identity },
): Promise<OuterGrant> {
  const identity = o.identity ?? d.app;
  const source = new CaGrantSource({
    ca: new CaClient({ url: d.ca.url, fingerprint: d.ca.fingerprint }),
    clientId: identity.clientId,
    clientSecret: readFileSync(identity.secretFile, 'utf8').trim(),
  });
  const target = parseTcpTarget(d.target.address);
  assert.ok(target.ok, `target ${d.target.address}`);
  const grant = await obtainGrant(source, {
    orgId: d.org,
    gatewayId: o.gatewayId,
    target: target.value,
    mode: 'tcp',
    ttlSeconds: o.ttlSeconds,
  });
  const chain = grant.outerChain.instance;
  assert.ok(chain, 'the grant carries an outer chain for instance proxies');
  const [leaf] = certificateInputs(chain, 8);
  assert.ok(leaf, 'outer chain has a leaf');
  return Object.assign(grant, { outerNotAfterMs: parseCertificate(leaf).notAfter.getTime() });
}

export interface OuterDial {
  /** Every byte the proxy sent (up to and including its success line, or until it closed). */
  bytes: Buffer;
  /** The TLS session was established. */
  handshook: boolean;
  /** The error the client socket met (e.g. ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED), if any. */
  error?: string;
  timedOut: boolean;
}

/**
 * One outer connection to a proxy's TLS port with the grant's outer certificate. Ends as soon as a success
 * line arrived (then closes: no inner session is attempted), else reads until the proxy closes.
 */
export function dialOuter(port: number, grant: ClientGrant, timeoutMs = 10_000): Promise<OuterDial> {
  return new Promise((resolve) => {
    const secureContext = grantTls(grant).outer('instance');
    const socket = tls.connect({
      ...(secureContext ? { secureContext } : {}),
      host: '127.0.0.1',
      port,
      ALPNProtocols: [RELAY_ALPN],
      // Who the proxy is does not matter here; what it sends does.
      rejectUnauthorized: false,
      checkServerIdentity: () => undefined,
    });
    const parts: Buffer[] = [];
    let handshook = false;
    let error: string | undefined;
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      socket.destroy();
    }, timeoutMs);
    socket.once('secureConnect', () => {
      handshook = true;
    });
    socket.on('data', (d: Buffer) => {
      parts.push(d);
      const decoded = decodeStatus(Buffer.concat(parts));
      if (decoded?.status.ok) socket.destroy();
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      error ??= err.code ?? err.message;
    });
    socket.once('close', () => {
      clearTimeout(timer);
      resolve({ bytes: Buffer.concat(parts), handshook, ...(error ? { error } : {}), timedOut });
    });
  });
}

/** The proxy answered exactly its success line. */
export function assertAdmitted(r: OuterDial, what: string): void {
  const decoded = decodeStatus(r.bytes);
  assert.ok(decoded, `${what}: no status line (${JSON.stringify(r)})`);
  assert.deepEqual(decoded.status, { ok: true }, `${what}: ${r.bytes.toString()}`);
}

/**
 * The proxy refused as expired: every byte it sent is exactly one refusal line with E_CERT_EXPIRED, or it
 * sent nothing and the handshake met a certificate_expired alert. Either way, not one byte of a success line.
 */
export function assertRefusedExpired(r: OuterDial, what: string): void {
  const text = r.bytes.toString('latin1');
  assert.ok(!text.includes(OK_LINE), `${what}: the proxy sent a success line: ${JSON.stringify(text)}`);
  assert.ok(!r.timedOut, `${what}: the proxy neither answered nor closed (${JSON.stringify(text)})`);
  if (r.bytes.length === 0) {
    assert.match(r.error ?? '', /CERTIFICATE_EXPIRED/, `${what}: closed with no refusal line and no expiry alert`);
    return;
  }
  const decoded = decodeStatus(r.bytes);
  assert.ok(decoded, `${what}: not a status line: ${JSON.stringify(text)}`);
  assert.equal(decoded.status.ok ? 'ok' : decoded.status.code, 'E_CERT_EXPIRED', `${what}: ${text}`);
  assert.equal(decoded.rest.length, 0, `${what}: bytes after the refusal line: ${JSON.stringify(text)}`);
}

/** Sleeps until the wall clock reaches `atMs` (at once if it has). */
export async function sleepUntil(atMs: number): Promise<void> {
  const left = atMs - Date.now();
  if (left > 0) await new Promise((r) => setTimeout(r, left));
}
