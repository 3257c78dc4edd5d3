/**
 * A typed HTTPS client of the CA API (lib/protocol/api.ts), used by the proxy, the gateway and connect.
 *
 * Trust: the client pins the CA API server certificate by its SHA-256 fingerprint (printed by
 * `infisical-ca init`). The TLS handshake completes and the pin is checked BEFORE a byte of the request (which
 * may carry a secret or a token) is written. No CA store, host name or chain is consulted: the pin is the trust.
 *
 * Refusals from the server, and transport failures, are thrown as CaApiError (a GatewayError with the server's
 * code and the HTTP status; status 0 for transport failures).
 *
 * Failover: the client may know several URLs of one CA (replicas behind separate addresses), all held to the
 * same pins. It keeps using the one that last answered; when a connection to it cannot be made (refused, reset,
 * no route, or no TLS handshake within the connect timeout) it tries the next, before a byte of the request is
 * written. A request that reached a CA is never sent again elsewhere (it may have spent a token), and a CA that
 * answers with a certificate outside the pins is an error, never a reason to try another URL.
 */

import type { KeyObject } from 'node:crypto';
import { createHash, randomBytes } from 'node:crypto';
import { type IncomingMessage, request } from 'node:http';
import { isIP } from 'node:net';
import { connect, type TLSSocket } from 'node:tls';
import {
  accept,
  type ErrorCode,
  ErrorCodes,
  GatewayError,
  isErrorCode,
  refuse,
  type Verdict,
} from '../errors/codes.js';
import { peerChain } from '../pki/tls.js';
import { verifyCertificateChain } from '../pki/verify.js';
import {
  type AddPolicyRequest,
  type AuditResponse,
  type CaBundle,
  type CreateEnrollmentTokenRequest,
  type CreateIdentityRequest,
  type CreateIdentityResponse,
  type EnrollmentTokenResponse,
  FEED_MAX_WAIT_SEC,
  type GatewayEnrollRequest,
  type GatewayEnrollResponse,
  type GrantRequest,
  type GrantResponse,
  HEADER_CERT,
  HEADER_SIGNATURE,
  type HealthResponse,
  type ListGatewaysResponse,
  type ListOrgsResponse,
  type ListPoliciesResponse,
  type ListProxiesResponse,
  type LoginRequest,
  type LoginResponse,
  type OrgInfo,
  PATHS,
  type PolicyRuleBody,
  type ProxyEnrollRequest,
  type ProxyEnrollResponse,
  pathFor,
  type RevocationFeed,
  type RevokeRequest,
  type RevokeResponse,
  signRequestBytes,
  verifyRevocationFeed,
} from './api.js';
import { normalizeFingerprint } from './fingerprint.js';

/** Pins are read by the config schemas too, which must bundle without this module's dependencies. */
export { normalizeFingerprint };

export class CaApiError extends GatewayError {
  /** HTTP status; 0 when no response was received. */
  readonly status: number;
  constructor(code: ErrorCode, detail: string, status: number, options?: { cause?: unknown }) {
    super(code, detail, options);
    this.name = 'CaApiError';
    this.status = status;
  }
}

export interface CaClientOptions {
  /** "https://ca.example.com:8443", or several URLs of the same CA (a list, or one comma-separated string). */
  url: string | readonly string[];
  /** SHA-256 of the API server certificate: 64 hex digits, colons and a "sha256:" prefix allowed. Several
   * pins may be given (during a certificate change). */
  fingerprint: string | readonly string[];
  accessToken?: string;
  /** Whole-request timeout, default 15 s. */
  timeoutMs?: number;
  /** Largest response body accepted, default 4 MiB. */
  maxResponseBytes?: number;
  /** Clock for signed requests' timestamps (tests). */
  now?: () => Date;
  /**
   * Called when a pin named the API leaf (a client enrolled before root pinning) and the leaf verifies under the
   * root the CA sent: the root's fingerprint, for the caller to store beside its pin. The client trusts it from
   * then on too, so a later `api-cert` does not cut it off.
   */
  onRootLearned?: (rootFingerprint: string) => void;
  /** Sent as User-Agent ("infisical-gateway/0.1.0"): the CA lists the version of what reads its feed. */
  userAgent?: string;
  /** How long one URL gets to complete TCP + TLS before the next is tried; default 5 s with several URLs (with
   * one, the whole-request timeout applies). */
  connectTimeoutMs?: number;
  /** Called when a URL could not be reached and the next one is tried (for the caller's log). */
  onFailover?: (event: { from: string; to: string; code: ErrorCode; reason: string }) => void;
}

/**
 * The CA API URLs in a `--ca` / `ca_url` value: one URL, a comma-separated list, or a list of either. Each must
 * be https:// (the pin needs TLS); duplicates are dropped, order is kept (the first is tried first).
 */
export function parseCaUrls(value: string | readonly string[]): URL[] {
  const parts = (typeof value === 'string' ? [value] : value).flatMap((v) => v.split(','));
  const urls: URL[] = [];
  for (const raw of parts.map((p) => p.trim()).filter((p) => p !== '')) {
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      throw new GatewayError('E_CONFIG_INVALID', `CA API URL ${JSON.stringify(raw)} is not a URL`);
    }
    if (url.protocol !== 'https:') throw new GatewayError('E_CONFIG_INVALID', 'CA API URL must be https://');
    if (!urls.some((u) => u.href === url.href)) urls.push(url);
  }
  if (urls.length === 0) throw new GatewayError('E_CONFIG_INVALID', 'at least one CA API URL is required');
  return urls;
}

/** The current certificate and key a gateway or proxy signs renewals and feed reads with. */
export interface CurrentCredentials {
  /** The current leaf: DER, or PEM (the first block of a chain is used). */
  certificate: Buffer | string;
  privateKey: KeyObject;
}

export class CaClient {
  readonly #urls: readonly URL[];
  /** Which URL answered last; shared with clients made by withToken, so they keep to it too. */
  readonly #current: { index: number };
  readonly #pins: Set<string>;
  readonly #options: CaClientOptions;

  constructor(options: CaClientOptions, current?: { index: number }) {
    this.#urls = parseCaUrls(options.url);
    this.#current = current ?? { index: 0 };
    // A stored pin may be a comma-separated list (a leaf pin and the root learned beside it).
    const pins =
      typeof options.fingerprint === 'string'
        ? options.fingerprint.split(',')
        : options.fingerprint.flatMap((p) => p.split(','));
    if (pins.length === 0) throw new GatewayError('E_CONFIG_INVALID', 'at least one fingerprint is required');
    this.#pins = new Set(pins.map(normalizeFingerprint));
    this.#options = options;
  }

  /** Trusts one more pin from now on (a fingerprint an operator configured, or a learned root). */
  addPin(fingerprint: string): void {
    this.#pins.add(normalizeFingerprint(fingerprint));
  }

  /** The CA API URLs this client knows, in the order they are tried from the first. */
  get urls(): string[] {
    return this.#urls.map((u) => u.origin);
  }

  /** The URL that answered last (or will be tried first). */
  get currentUrl(): string {
    return this.#urls[this.#current.index % this.#urls.length]!.origin;
  }

  /** A client of the same server with this access token. */
  withToken(accessToken: string): CaClient {
    return new CaClient({ ...this.#options, accessToken }, this.#current);
  }

  /** Logs in and returns a client carrying the access token (and the login response). */
  async loginAs(req: LoginRequest): Promise<{ client: CaClient; session: LoginResponse }> {
    const session = await this.login(req);
    return { client: this.withToken(session.accessToken), session };
  }

  health = () => this.#call<HealthResponse>('GET', PATHS.health);
  caBundle = () => this.#call<CaBundle>('GET', PATHS.caBundle);
  login = (req: LoginRequest) => this.#call<LoginResponse>('POST', PATHS.login, req);
  createOrg = (orgId: string) => this.#call<OrgInfo>('POST', PATHS.orgs, { orgId });
  listOrgs = () => this.#call<ListOrgsResponse>('GET', PATHS.orgs);
  deleteOrg = (orgId: string) =>
    this.#call<{ orgId: string; revoked: number }>('DELETE', pathFor(PATHS.org, { orgId }));
  createIdentity = (orgId: string, req: CreateIdentityRequest) =>
    this.#call<CreateIdentityResponse>('POST', pathFor(PATHS.identities, { orgId }), req);
  createEnrollmentToken = (orgId: string, req: CreateEnrollmentTokenRequest) =>
    this.#call<EnrollmentTokenResponse>('POST', pathFor(PATHS.enrollmentTokens, { orgId }), req);
  /** An instance-proxy enrollment token (admin). */
  createInstanceEnrollmentToken = (req: { kind: 'proxy'; subjectId: string; ttlSeconds?: number }) =>
    this.#call<EnrollmentTokenResponse>('POST', PATHS.instanceEnrollmentTokens, req);
  addPolicy = (orgId: string, req: AddPolicyRequest) =>
    this.#call<PolicyRuleBody>('POST', pathFor(PATHS.policies, { orgId }), req);
  listPolicies = (orgId: string) => this.#call<ListPoliciesResponse>('GET', pathFor(PATHS.policies, { orgId }));
  deletePolicy = (orgId: string, ruleId: string) =>
    this.#call<{ deleted: string }>('DELETE', pathFor(PATHS.policy, { orgId, ruleId }));
  listGateways = (orgId: string) => this.#call<ListGatewaysResponse>('GET', pathFor(PATHS.gateways, { orgId }));
  listProxies = () => this.#call<ListProxiesResponse>('GET', PATHS.proxies);
  enrollProxy = (req: ProxyEnrollRequest) => this.#call<ProxyEnrollResponse>('POST', PATHS.proxyEnroll, req);
  enrollGateway = (req: GatewayEnrollRequest) => this.#call<GatewayEnrollResponse>('POST', PATHS.gatewayEnroll, req);
  issueGrant = (req: GrantRequest) => this.#call<GrantResponse>('POST', PATHS.grants, req);
  revoke = (req: RevokeRequest) => this.#call<RevokeResponse>('POST', PATHS.revocations, req);
  audit = (since = 0) => this.#call<AuditResponse>('GET', `${PATHS.audit}?since=${since}`);

  /** Renews a gateway's certs, authenticated by its current certificate and key. */
  renewGateway(
    req: { csr: string; sshPublicKey: string },
    current: CurrentCredentials,
  ): Promise<GatewayEnrollResponse> {
    return this.#signedPost<GatewayEnrollResponse>(PATHS.gatewayRenew, req, current);
  }

  renewProxy(req: { csr: string; sshPublicKey: string }, current: CurrentCredentials): Promise<ProxyEnrollResponse> {
    return this.#signedPost<ProxyEnrollResponse>(PATHS.proxyRenew, req, current);
  }

  /**
   * Revocations after `since`, authenticated by the current certificate (or, without one, the access token).
   * With `feedKey` (from enrollment), the feed's signature is checked and a bad one throws E_CERT_SIGNATURE.
   * With `waitSec`, the CA holds the request (a long-poll, at most FEED_MAX_WAIT_SEC) until there is a new entry
   * or the proxy list differs from `proxiesVersion`; `signal` aborts the wait (a daemon stopping).
   */
  async revocations(
    since: number,
    opts: {
      current?: CurrentCredentials;
      feedKey?: string;
      waitSec?: number;
      proxiesVersion?: string;
      /** The rotation version applied ("-": none yet): asks the CA to say the version to hold. */
      rotation?: string;
      signal?: AbortSignal;
    } = {},
  ): Promise<RevocationFeed> {
    let target = `${PATHS.revocations}?since=${Math.max(0, Math.floor(since))}`;
    const waitSec = Math.min(FEED_MAX_WAIT_SEC, Math.max(0, Math.floor(opts.waitSec ?? 0)));
    if (waitSec > 0) target += `&wait=${waitSec}`;
    if (opts.proxiesVersion) target += `&proxies=${encodeURIComponent(opts.proxiesVersion)}`;
    if (opts.rotation) target += `&rotation=${encodeURIComponent(opts.rotation)}`;
    let headers: Record<string, string> = {};
    if (opts.current) {
      target += `&timestamp=${this.#nowSec()}&nonce=${randomBytes(16).toString('base64url')}`;
      headers = this.#signatureHeaders(Buffer.from(target, 'utf8'), opts.current);
    }
    const timeoutMs = (this.#options.timeoutMs ?? 15_000) + waitSec * 1000;
    const feed = await this.#call<RevocationFeed>('GET', target, undefined, headers, {
      timeoutMs,
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    if (opts.feedKey) {
      const v = verifyRevocationFeed(feed, opts.feedKey);
      if (!v.ok) throw new CaApiError(v.code, v.reason, 200);
    }
    return feed;
  }

  #nowSec(): number {
    return Math.floor((this.#options.now?.() ?? new Date()).getTime() / 1000);
  }

  #signatureHeaders(signed: Buffer, current: CurrentCredentials): Record<string, string> {
    const der = typeof current.certificate === 'string' ? firstPemBlock(current.certificate) : current.certificate;
    return { [HEADER_CERT]: der.toString('base64'), [HEADER_SIGNATURE]: signRequestBytes(signed, current.privateKey) };
  }

  #signedPost<T>(path: string, req: { csr: string; sshPublicKey: string }, current: CurrentCredentials): Promise<T> {
    const body = Buffer.from(
      JSON.stringify({ ...req, timestamp: this.#nowSec(), nonce: randomBytes(16).toString('base64url') }),
      'utf8',
    );
    return this.#call<T>('POST', path, body, this.#signatureHeaders(body, current));
  }

  async #call<T>(
    method: string,
    path: string,
    body?: unknown,
    extra: Record<string, string> = {},
    call: { timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<T> {
    const payload = body === undefined ? undefined : Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body));
    const headers: Record<string, string> = {
      accept: 'application/json',
      ...(this.#options.userAgent ? { 'user-agent': this.#options.userAgent } : {}),
      ...extra,
    };
    if (payload) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(payload.length);
    }
    if (this.#options.accessToken && !extra[HEADER_CERT])
      headers['authorization'] = `Bearer ${this.#options.accessToken}`;
    const timeoutMs = call.timeoutMs ?? this.#options.timeoutMs ?? 15_000;
    const timeout = AbortSignal.timeout(timeoutMs);
    const deadline = call.signal ? AbortSignal.any([timeout, call.signal]) : timeout;
    const { socket, url } = await this.#connectAny(deadline);
    try {
      const res = await new Promise<IncomingMessage>((resolve, reject) => {
        const req = request({
          method,
          path,
          headers: { host: url.host, ...headers },
          createConnection: () => socket,
          signal: deadline,
        });
        req.once('response', resolve);
        req.once('error', reject);
        req.end(payload);
      });
      const text = await readLimited(res, this.#options.maxResponseBytes ?? 4 * 1024 * 1024);
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        throw new CaApiError(
          'E_INTERNAL',
          `CA answered ${res.statusCode} with a body that is not JSON`,
          res.statusCode ?? 0,
        );
      }
      const status = res.statusCode ?? 0;
      if (status >= 200 && status < 300) return json as T;
      const err = (typeof json === 'object' && json !== null ? json : {}) as { code?: unknown; message?: unknown };
      const code = isErrorCode(err.code) ? err.code : 'E_INTERNAL';
      // The CA's message already starts with the code's description; the error adds it again, so drop it here.
      const message = String(err.message ?? `HTTP ${status}`);
      const generic = `${ErrorCodes[code]}: `;
      throw new CaApiError(code, message.startsWith(generic) ? message.slice(generic.length) : message, status);
    } catch (err) {
      if (err instanceof CaApiError) throw err;
      if (call.signal?.aborted) throw new CaApiError('E_TIMEOUT', 'request cancelled', 0, { cause: err });
      if (deadline.aborted)
        throw new CaApiError('E_TIMEOUT', `no answer from the CA within ${timeoutMs} ms`, 0, { cause: err });
      throw new CaApiError('E_CA_UNREACHABLE', (err as Error).message, 0, { cause: err });
    } finally {
      socket.destroy();
    }
  }

  /** The root a leaf-pinned client was shown, once the leaf verifies under it: trusted from now on, and reported. */
  #learnRoot(chain: readonly Buffer[], now: Date): void {
    const root = chain.at(-1)!;
    const fp = createHash('sha256').update(root).digest('hex');
    if (this.#pins.has(fp)) return;
    if (!checkPin(chain, new Set([fp]), now).ok) return;
    this.#pins.add(fp);
    this.#options.onRootLearned?.(fp);
  }

  /**
   * A pinned connection to the current URL or, when it cannot be reached, to the next ones in turn (each at most
   * once per call). Only unreachability moves on: a pin mismatch or the caller's own deadline ends the call.
   */
  async #connectAny(deadline: AbortSignal): Promise<{ socket: TLSSocket; url: URL }> {
    const n = this.#urls.length;
    const perUrlMs = this.#options.connectTimeoutMs ?? (n > 1 ? 5_000 : undefined);
    const start = this.#current.index % n;
    let last: CaApiError | undefined;
    for (let i = 0; i < n; i++) {
      const index = (start + i) % n;
      const url = this.#urls[index]!;
      const signal = perUrlMs === undefined ? deadline : AbortSignal.any([deadline, AbortSignal.timeout(perUrlMs)]);
      try {
        const socket = await this.#connectPinned(url, signal);
        this.#current.index = index;
        return { socket, url };
      } catch (err) {
        const e = err as CaApiError;
        const unreachable = e.code === 'E_CA_UNREACHABLE' || (e.code === 'E_TIMEOUT' && !deadline.aborted);
        if (!unreachable || i === n - 1) throw last && n > 1 ? withTried(e, this.urls) : e;
        last = e;
        const next = this.#urls[(index + 1) % n]!;
        this.#options.onFailover?.({ from: url.origin, to: next.origin, code: e.code, reason: e.message });
      }
    }
    throw last ?? new CaApiError('E_CA_UNREACHABLE', 'no CA API URL', 0);
  }

  /** Connects, finishes the TLS handshake and checks the pin; only then is the socket handed to HTTP. */
  #connectPinned(url: URL, signal: AbortSignal): Promise<TLSSocket> {
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    const port = Number(url.port || 443);
    return new Promise((resolve, reject) => {
      const socket = connect({
        host,
        port,
        ...(isIP(host) === 0 ? { servername: host } : {}),
        // The pin replaces chain validation: the CA's API certificate is not in any public store.
        rejectUnauthorized: false,
        minVersion: 'TLSv1.2',
        ALPNProtocols: ['http/1.1'],
      });
      const onAbort = () => {
        socket.destroy();
        reject(new CaApiError('E_TIMEOUT', 'TLS connection to the CA timed out', 0));
      };
      signal.addEventListener('abort', onAbort, { once: true });
      socket.once('error', (err) => {
        signal.removeEventListener('abort', onAbort);
        reject(new CaApiError('E_CA_UNREACHABLE', err.message, 0, { cause: err }));
      });
      socket.once('secureConnect', () => {
        signal.removeEventListener('abort', onAbort);
        const chain = peerChain(socket);
        const now = this.#options.now?.() ?? new Date();
        const pinned = checkPin(chain, this.#pins, now);
        if (!pinned.ok) {
          socket.destroy();
          reject(new CaApiError(pinned.code, pinned.reason, 0));
          return;
        }
        if (pinned.value === 'leaf' && this.#options.onRootLearned && chain.length > 1) this.#learnRoot(chain, now);
        resolve(socket);
      });
    });
  }
}

/** The last failure of a call that tried every URL, saying so (the operator sees that none answered). */
function withTried(e: CaApiError, urls: readonly string[]): CaApiError {
  const generic = `${ErrorCodes[e.code]}: `;
  const detail = e.message.startsWith(generic) ? e.message.slice(generic.length) : e.message;
  return new CaApiError(e.code, `${detail} (tried ${urls.join(', ')})`, e.status, { cause: e });
}

/**
 * The pin replaces public-PKI validation (the CA's API certificate is in no public store). A pin names either
 * the API root (what `infisical-ca init` prints: it survives `api-cert`), in which case the leaf must chain to
 * that root, be valid now and be a server certificate (lib/pki's verifier decides); or, for clients enrolled
 * before root pinning, the leaf itself. The API root issues nothing but API server certificates.
 */
export function checkPin(chain: readonly Buffer[], pins: ReadonlySet<string>, now: Date): Verdict<'leaf' | 'root'> {
  const fingerprints = chain.map((der) => createHash('sha256').update(der).digest('hex'));
  if (fingerprints.length === 0) return refuse('E_CERT_UNTRUSTED', 'the CA API sent no certificate');
  if (pins.has(fingerprints[0]!)) return accept('leaf');
  const anchorAt = fingerprints.findIndex((fp, i) => i > 0 && pins.has(fp));
  if (anchorAt < 0) {
    return refuse(
      'E_CERT_UNTRUSTED',
      `CA API certificate ${fingerprints[0]} (root ${fingerprints.at(-1)}) does not match the pinned fingerprint`,
    );
  }
  const verified = verifyCertificateChain({
    chain: chain.slice(0, anchorAt),
    anchors: chain[anchorAt]!,
    now,
    purpose: 'serverAuth',
  });
  if (!verified.ok)
    return refuse('E_CERT_UNTRUSTED', `CA API certificate refused under the pinned root: ${verified.reason}`);
  return accept('root');
}

function readLimited(res: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    res.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        res.destroy();
        reject(new CaApiError('E_REQUEST_TOO_LARGE', `CA response exceeds ${limit} bytes`, res.statusCode ?? 0));
        return;
      }
      chunks.push(c);
    });
    res.once('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    res.once('error', reject);
  });
}

function firstPemBlock(pem: string): Buffer {
  const m = /-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+?)-----END CERTIFICATE-----/.exec(pem);
  if (!m) throw new GatewayError('E_CERT_MALFORMED', 'no PEM certificate');
  return Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64');
}
