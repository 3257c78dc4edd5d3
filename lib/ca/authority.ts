/**
 * The Authority: the CA's decisions and signatures, with no knowledge of HTTP. Usable in-process (tests, the
 * proxy and gateway fixtures) on an in-memory or temporary database with an injected clock:
 *
 *   const ca = Authority.open({ db: ':memory:', sealKey: randomBytes(32), trustDomain: 'example.test', now });
 *   const { clientId, clientSecret } = unwrap(await ca.init());
 *
 * Every method mirrors one API route and returns a Verdict (refusals carry stable codes); methods that hash
 * secrets are async. Certificates are returned only after their records have committed.
 */

import { GatewayError, refuse, unwrap, type Verdict } from '../errors/codes.js';
import { isValidTrustDomain } from '../pki/identity.js';
import type {
  AddPolicyRequest,
  AuditResponse,
  CaBundle,
  ComponentStatus,
  CreateEnrollmentTokenRequest,
  CreateIdentityRequest,
  CreateIdentityResponse,
  EnrollmentTokenResponse,
  GatewayEnrollRequest,
  GatewayEnrollResponse,
  GrantRequest,
  GrantResponse,
  HealthResponse,
  ListGatewaysResponse,
  ListOrgsResponse,
  ListPoliciesResponse,
  ListProxiesResponse,
  LoginRequest,
  LoginResponse,
  OrgInfo,
  PolicyRuleBody,
  ProxyEnrollRequest,
  ProxyEnrollResponse,
  RevocationFeed,
  RevokeRequest,
  RevokeResponse,
} from '../protocol/api.js';
import type { Logger } from '../runtime/log.js';
import { Sealer, SealingKey } from '../store/sealed.js';
import * as access from './access.js';
import { AuditTrail } from './audit.js';
import { ChangeSignal } from './changes.js';
import type { AuthorityContext, AuthorityLimits, Caller, RequestInfo } from './context.js';
import { iso, ok, requireOrgMember } from './context.js';
import { enrollGateway, enrollProxy, proxyInfo } from './enroll.js';
import { awaitFeed, type FeedQuery, feedFor } from './feed.js';
import { issueGrant } from './grants.js';
import { type ApiServerCredentials, Keyring } from './keyring.js';
import * as orgs from './orgs.js';
import { authenticateSigned, type Peer, renewGateway, renewProxy, type SignedRequest } from './renew.js';
import { auditSince, revoke } from './revocation.js';
import { DEFAULT_SCRYPT } from './secrets.js';
import { CaStore } from './store.js';
import type { ComponentRef } from './store-generations.js';
import { retireDue } from './supersede.js';
import {
  DEFAULT_UNAUTHENTICATED_POLICIES,
  type RefusalCounter,
  UnauthenticatedLimits,
  type UnauthenticatedPolicies,
} from './unauthenticated.js';

export type { ApiServerCredentials, AuthorityLimits, Caller, Peer, RequestInfo, SignedRequest };

export const DEFAULT_TRUST_DOMAIN = 'infisical.local';
export const VERSION = '0.1.0';

export const DEFAULT_LIMITS: AuthorityLimits = {
  tokenTtlSec: 15 * 60,
  enrollmentTokenTtlSec: 60 * 60,
  maxEnrollmentTokenTtlSec: 7 * 24 * 3600,
  grantTtlSec: 5 * 60,
  maxGrantTtlSec: 60 * 60,
  gatewayTlsLifetimeSec: 7 * 24 * 3600,
  gatewaySshLifetimeSec: 24 * 3600,
  proxyTlsLifetimeSec: 30 * 24 * 3600,
  proxySshLifetimeSec: 30 * 24 * 3600,
  supersedeGraceSec: 120,
  scrypt: DEFAULT_SCRYPT,
};

export interface AuthorityOptions {
  /** A CaStore, or a database path (':memory:' for tests). */
  db: CaStore | string;
  /** Seals the CA private keys at rest: a lib/store Sealer, or 32 raw key bytes (tests). */
  sealKey: Sealer | Buffer;
  /** Required to match the stored one once initialized; default "infisical.local" for a new instance. */
  trustDomain?: string;
  now?: () => Date;
  logger?: Logger;
  limits?: Partial<AuthorityLimits>;
  /** Per-source limits on failed authentication (login, enroll by token, signed requests). */
  rateLimits?: Partial<UnauthenticatedPolicies>;
  /** Counts refusals of unauthenticated callers by endpoint and code (the daemon's metrics). */
  refusalCounter?: RefusalCounter;
  version?: string;
}

export interface InitResult {
  trustDomain: string;
  adminClientId: string;
  /** Printed once; only its scrypt hash is stored. */
  adminClientSecret: string;
}

export class Authority {
  readonly ctx: AuthorityContext;

  private constructor(ctx: AuthorityContext) {
    this.ctx = ctx;
  }

  static open(options: AuthorityOptions): Authority {
    const store = typeof options.db === 'string' ? CaStore.open(options.db) : options.db;
    const stored = store.getMeta('trust_domain');
    const trustDomain = options.trustDomain ?? stored ?? DEFAULT_TRUST_DOMAIN;
    if (!isValidTrustDomain(trustDomain)) throw new GatewayError('E_CONFIG_INVALID', `bad trust domain ${trustDomain}`);
    if (stored !== undefined && stored !== trustDomain) {
      throw new GatewayError(
        'E_CONFIG_INVALID',
        `this CA was initialized for trust domain ${stored}, not ${trustDomain}`,
      );
    }
    const now = options.now ?? (() => new Date());
    return new Authority({
      store,
      keyring: new Keyring(
        store,
        options.sealKey instanceof Sealer ? options.sealKey : new Sealer(new SealingKey(options.sealKey, 'in-memory')),
      ),
      audit: new AuditTrail(store, now, options.logger),
      now,
      trustDomain,
      version: options.version ?? VERSION,
      limits: { ...DEFAULT_LIMITS, ...options.limits },
      unauthenticated: new UnauthenticatedLimits({
        policies: { ...DEFAULT_UNAUTHENTICATED_POLICIES, ...options.rateLimits },
        now,
        ...(options.logger ? { logger: options.logger } : {}),
        ...(options.refusalCounter ? { counter: options.refusalCounter } : {}),
        // Replicas on one PostgreSQL share the penalties, so a source cannot multiply its attempts by their number.
        ...(store.sql.engine === 'postgres' ? { books: (bucket) => store.penalties.book(bucket) } : {}),
      }),
      changes: new ChangeSignal(
        () => store.announceChange(),
        (err) =>
          options.logger?.warn(
            { reason: err instanceof Error ? err.message : String(err) },
            'the notice to the other CA replicas failed (the change stands if its transaction commits): their held feed reads see it when they end',
          ),
      ),
    });
  }

  get store(): CaStore {
    return this.ctx.store;
  }
  get trustDomain(): string {
    return this.ctx.trustDomain;
  }
  get initialized(): boolean {
    return this.ctx.store.getMeta('initialized_at') !== undefined;
  }

  /** Creates the instance CAs and the admin credential. Refused (E_CONFLICT) when already initialized. */
  async init(): Promise<Verdict<InitResult>> {
    if (this.initialized) return refuse('E_CONFLICT', 'this CA is already initialized');
    const ctx = this.ctx;
    const now = ctx.now();
    const admin = await access.prepareAdminIdentity(ctx);
    ctx.store.transaction(() => {
      if (ctx.store.getMeta('initialized_at') !== undefined) throw new GatewayError('E_CONFLICT', 'initialized twice');
      admin.insert();
      ctx.store.setMeta('trust_domain', ctx.trustDomain);
      ctx.store.setMeta('initialized_at', now.toISOString());
      ctx.keyring.createInstance(ctx.trustDomain, now);
      ctx.audit.insert({ actor: 'local-admin', subject: ctx.trustDomain, action: 'init', outcome: 'ok' });
    });
    return ok({ trustDomain: ctx.trustDomain, adminClientId: admin.clientId, adminClientSecret: admin.clientSecret });
  }

  /** Issues (or replaces) the HTTPS API server certificate; returns it with the fingerprint clients pin. */
  issueApiServerCertificate(
    names: { dnsNames: string[]; ipAddresses: string[] },
    lifetimeSec?: number,
  ): ApiServerCredentials {
    const creds = this.ctx.store.transaction(() =>
      this.ctx.keyring.issueApiServerCertificate(names, this.ctx.now(), lifetimeSec),
    );
    this.ctx.audit.record({
      actor: 'local-admin',
      subject: creds.fingerprint256,
      action: 'api-cert.issue',
      outcome: 'ok',
    });
    return creds;
  }

  apiServerCredentials(): ApiServerCredentials {
    return this.ctx.keyring.apiServerCredentials();
  }

  /** The caller the local CLI acts as (root on the CA host, with the state directory and seal key). */
  localAdmin(): Caller {
    return { orgId: null, identityId: 'local', role: 'admin', groups: [], rowId: 0 };
  }

  health(): HealthResponse {
    return { ok: true, version: this.ctx.version };
  }

  caBundle(): CaBundle {
    const k = this.ctx.keyring;
    return {
      trustDomain: this.ctx.trustDomain,
      instance: {
        proxySshClientCaKey: k.sshPublic(null, 'proxy-ssh-client'),
        proxySshServerCaKey: k.sshPublic(null, 'proxy-ssh-server'),
        proxyPkiClientCaCert: k.x509Pem(null, 'proxy-pki-client'),
        proxyPkiServerCaCert: k.x509Pem(null, 'proxy-pki-server'),
      },
      revocationFeedKey: k.feedPublicKeyPem(),
    };
  }

  // ---- identities and tokens ------------------------------------------------------------------------------

  login(req: LoginRequest, info: RequestInfo = {}): Promise<Verdict<LoginResponse>> {
    return access.login(this.ctx, req, info);
  }
  authenticate(accessToken: string | undefined): Verdict<Caller> {
    return access.authenticate(this.ctx, accessToken);
  }
  /** Logs in and resolves the token in one step (fixtures). */
  async callerFor(clientId: string, clientSecret: string): Promise<Verdict<Caller & { accessToken: string }>> {
    const session = await this.login({ clientId, clientSecret });
    if (!session.ok) return session;
    const caller = this.authenticate(session.value.accessToken);
    return caller.ok ? ok({ ...caller.value, accessToken: session.value.accessToken }) : caller;
  }
  revokeAccessToken(accessToken: string): boolean {
    return access.revokeAccessToken(this.ctx, accessToken);
  }
  createIdentity(caller: Caller, orgId: string, req: CreateIdentityRequest): Promise<Verdict<CreateIdentityResponse>> {
    return access.createIdentity(this.ctx, caller, orgId, req);
  }
  createEnrollmentToken(
    caller: Caller,
    orgId: string | null,
    req: CreateEnrollmentTokenRequest,
  ): Verdict<EnrollmentTokenResponse> {
    return access.createEnrollmentToken(this.ctx, caller, orgId, req);
  }

  // ---- orgs and policies ----------------------------------------------------------------------------------

  createOrg(caller: Caller, orgId: string): Verdict<OrgInfo> {
    return orgs.createOrg(this.ctx, caller, orgId);
  }
  listOrgs(caller: Caller): Verdict<ListOrgsResponse> {
    return orgs.listOrgs(this.ctx, caller);
  }
  deleteOrg(caller: Caller, orgId: string): Verdict<{ orgId: string; revoked: number }> {
    return orgs.deleteOrg(this.ctx, caller, orgId);
  }
  addPolicy(caller: Caller, orgId: string, req: AddPolicyRequest): Verdict<PolicyRuleBody> {
    return orgs.addPolicy(this.ctx, caller, orgId, req);
  }
  listPolicies(caller: Caller, orgId: string): Verdict<ListPoliciesResponse> {
    return orgs.listPolicies(this.ctx, caller, orgId);
  }
  deletePolicy(caller: Caller, orgId: string, ruleId: string): Verdict<{ deleted: string }> {
    return orgs.deletePolicy(this.ctx, caller, orgId, ruleId);
  }

  // ---- enrollment, renewal, grants --------------------------------------------------------------------------

  enrollProxy(caller: Caller | null, req: ProxyEnrollRequest, info: RequestInfo = {}): Verdict<ProxyEnrollResponse> {
    return enrollProxy(this.ctx, caller, req, info);
  }
  enrollGateway(
    caller: Caller | null,
    req: GatewayEnrollRequest,
    info: RequestInfo = {},
  ): Verdict<GatewayEnrollResponse> {
    return enrollGateway(this.ctx, caller, req, info);
  }
  renewGateway(req: SignedRequest, info: RequestInfo = {}): Verdict<GatewayEnrollResponse> {
    return renewGateway(this.ctx, req, info);
  }
  renewProxy(req: SignedRequest, info: RequestInfo = {}): Verdict<ProxyEnrollResponse> {
    return renewProxy(this.ctx, req, info);
  }
  /** A feed read signed by a gateway's or proxy's current certificate; failures count against the source. */
  authenticatePeer(
    req: SignedRequest,
    freshness: { timestamp: number; nonce: string },
    info: RequestInfo = {},
  ): Verdict<Peer> {
    return authenticateSigned(this.ctx, 'revocations', req, freshness, info);
  }
  /** Per-source limits on callers not yet authenticated, and the count of their refusals. */
  get unauthenticated(): UnauthenticatedLimits {
    return this.ctx.unauthenticated;
  }
  issueGrant(caller: Caller, req: GrantRequest, info: RequestInfo = {}): Verdict<GrantResponse> {
    return issueGrant(this.ctx, caller, req, info);
  }

  listGateways(caller: Caller, orgId: string): Verdict<ListGatewaysResponse> {
    const allowed = requireOrgMember(caller, orgId);
    if (!allowed.ok) return allowed;
    return ok({
      gateways: this.ctx.store.enrollment.listGateways(orgId).map((g) => ({
        orgId: g.orgId,
        gatewayId: g.gatewayId,
        uri: g.uri,
        revoked: g.revokedAt !== null,
        ...this.#status({ kind: 'gateway', orgId: g.orgId, id: g.gatewayId }, g),
        replicas: this.ctx.store.generations.replicas(g.orgId, g.gatewayId).map((r) => ({
          replica: r.replica,
          ...this.#status({ kind: 'gateway', orgId: g.orgId, id: g.gatewayId, replica: r.replica }, r),
        })),
      })),
    });
  }
  /** Every proxy for the admin; the instance's and its own org's for anyone else. */
  listProxies(caller: Caller): Verdict<ListProxiesResponse> {
    const rows = this.ctx.store.enrollment
      .listProxies()
      .filter((p) => caller.role === 'admin' || p.orgId === null || p.orgId === caller.orgId);
    return ok({
      proxies: rows.map((p) => ({
        ...proxyInfo(p),
        orgId: p.orgId,
        uri: p.uri,
        revoked: p.revokedAt !== null,
        ...this.#status({ kind: 'proxy', orgId: p.orgId, id: p.proxyId }, p),
      })),
    });
  }
  /** A component's current certificate and renewal times, for the lists. */
  #status(ref: ComponentRef, row: { enrolledAt: number; renewedAt?: number | null }): ComponentStatus {
    const serial = this.ctx.store.generations.of(ref)?.current?.serial ?? null;
    const cert = serial === null ? undefined : this.ctx.store.issuance.certificate(serial);
    const seen = this.ctx.store.seen.of(ref);
    return {
      currentSerial: serial,
      notAfter: cert ? iso(cert.notAfter) : null,
      enrolledAt: iso(row.enrolledAt),
      renewedAt: row.renewedAt == null ? null : iso(row.renewedAt),
      lastSeenAt: seen ? iso(seen.lastSeenAt) : null,
      version: seen?.version ?? null,
    };
  }

  /** A gateway or proxy read the feed (authenticated by its certificate): remember when, and its version. */
  noteSeen(peer: Peer, userAgent: string | undefined, rotationAck?: string): void {
    const kind = peer.kind === 'gateway' ? 'gateway' : 'proxy';
    const m = /^infisical-(?:gateway|proxy)\/([0-9A-Za-z.+-]{1,32})(?:\s|$)/.exec(userAgent ?? '');
    const ref = { kind, orgId: peer.orgId, id: peer.id } as const;
    const at = this.ctx.now().getTime();
    // A replica's read counts for its gateway's row (last seen, online) and for its own, which alone keeps its
    // rotation acknowledgement (rotation status asks each replica).
    if (peer.replica === null) this.ctx.store.seen.record(ref, at, m?.[1] ?? null, rotationAck);
    else {
      this.ctx.store.seen.record(ref, at, m?.[1] ?? null);
      this.ctx.store.seen.record({ ...ref, replica: peer.replica }, at, m?.[1] ?? null, rotationAck);
    }
  }

  // ---- revocation and audit ---------------------------------------------------------------------------------

  revoke(caller: Caller, req: RevokeRequest): Verdict<RevokeResponse> {
    return revoke(this.ctx, caller, req);
  }
  /**
   * The feed as a reader sees it: the admin everything; an org identity or peer its org's and the instance's;
   * a gateway peer also its proxy list (FeedProxyList).
   */
  revocationsSince(viewer: Caller | Peer, since: number, proxiesVersion?: string): RevocationFeed {
    retireDue(this.ctx);
    return feedFor(this.ctx, viewer, { since, ...(proxiesVersion !== undefined ? { proxiesVersion } : {}) }).feed;
  }
  /**
   * The feed, held up to `waitMs` (a long-poll) until there is news for this reader: an entry after `since`, or
   * for a gateway a proxy list other than `proxiesVersion`. `admit` is asked only when the read must wait: it may
   * refuse (E_LIMIT) or give the signal that ends the wait early with the current feed.
   */
  awaitRevocations(
    viewer: Caller | Peer,
    query: FeedQuery,
    wait: { waitMs: number; admit?: () => Verdict<AbortSignal | undefined> },
  ): Promise<Verdict<RevocationFeed>> {
    return awaitFeed(this.ctx, viewer, query, { ...wait, before: () => retireDue(this.ctx) });
  }
  /**
   * Retires the previous certificates of renewed components whose grace has passed (supersede.ts); feed reads
   * do it first, and the daemon every second, so retirement needs no request to arrive.
   */
  retireDue(): number {
    return retireDue(this.ctx);
  }
  /** Raised after every commit that may change a feed reader's answer. */
  get changes(): ChangeSignal {
    return this.ctx.changes;
  }
  /**
   * Wakes feed readers when another process (the admin CLI on the same database, another CA replica) changed data
   * since the last look: SQLite's data_version moves only for other connections' commits; on PostgreSQL it counts
   * the other connections' change notices. The daemon calls it every 100 ms.
   */
  noticeExternalChanges(): void {
    const version = this.ctx.store.dataVersion();
    if (this.#dataVersion !== undefined && version !== this.#dataVersion) this.ctx.changes.heard();
    this.#dataVersion = version;
  }
  #dataVersion: number | undefined;

  audit(caller: Caller, since: number): Verdict<AuditResponse> {
    return auditSince(this.ctx, caller, since);
  }

  /** Forgets expired tokens and nonces; the daemon calls it now and then. */
  prune(): void {
    this.ctx.store.pruneExpired(this.ctx.now().getTime());
  }

  close(): void {
    this.ctx.store.close();
  }
}

export { unwrap };
