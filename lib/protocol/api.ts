/**
 * The CA API in one place: every route's method, path, request schema and response type. The server
 * (lib/ca/http) validates bodies against these schemas before anything else; the client (ca-client.ts) is typed
 * by them. Schemas are strict: unknown fields are refused, strings and arrays are bounded.
 */
import { createHash, createPublicKey, type KeyObject, sign, verify } from 'node:crypto';
import { accept, refuse, type Verdict } from '../errors/codes.js';
import { GRANT_MODES, type GrantMode, type GrantTarget, isValidHost } from '../pki/grant.js';
import { ID_PATTERN, isValidId, MAX_ID_LENGTH } from '../pki/identity.js';
import { type Infer, type Schema, validate } from './validate.js';

/** Largest request body the server reads; beyond it answers 413. */
export const MAX_BODY_BYTES = 64 * 1024;
/** Base64 DER of the caller's current certificate (renewal, revocation feed). */
export const HEADER_CERT = 'x-infisical-cert';
/** Base64 signature by the current certificate's key over the exact body bytes (or, for GET, the request path). */
export const HEADER_SIGNATURE = 'x-infisical-signature';
/** How far a signed request's timestamp may be from the server's clock. */
export const SIGNED_REQUEST_SKEW_SEC = 5 * 60;

// ---- building blocks --------------------------------------------------------------------------------------

const id = { type: 'string', max: MAX_ID_LENGTH, pattern: ID_PATTERN } as const;
const optionalId = { ...id, optional: true } as const;
const pem = { type: 'string', max: 16 * 1024 } as const;
const sshKey = { type: 'string', max: 8 * 1024 } as const;
const token = { type: 'string', min: 16, max: 256, pattern: /^[A-Za-z0-9_-]+$/ } as const;
const hostPort = { type: 'string', max: 300, pattern: /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/ } as const;
const hostname = { type: 'string', max: 253, pattern: /^[A-Za-z0-9.:-]+$/ } as const;
const ttl = { type: 'int', min: 1, max: 366 * 24 * 3600, optional: true } as const;

export const ROLES = ['admin', 'org-admin', 'member'] as const;
export type Role = (typeof ROLES)[number];
export const PROXY_SCOPES = ['instance', 'org'] as const;
export type ProxyScope = (typeof PROXY_SCOPES)[number];
export const REVOCATION_KINDS = ['gateway', 'proxy', 'identity', 'grant', 'certificate'] as const;
export type RevocationKind = (typeof REVOCATION_KINDS)[number];

// ---- request schemas --------------------------------------------------------------------------------------

export const LoginRequest = {
  type: 'object',
  fields: { clientId: { type: 'string', max: 128, pattern: ID_PATTERN }, clientSecret: { type: 'string', max: 256 } },
} as const;

export const CreateOrgRequest = { type: 'object', fields: { orgId: id } } as const;

export const CreateIdentityRequest = {
  type: 'object',
  fields: {
    identityId: id,
    role: { type: 'enum', values: ['member', 'org-admin'] },
    groups: { type: 'array', items: id, max: 32, optional: true },
  },
} as const;

export const CreateEnrollmentTokenRequest = {
  type: 'object',
  fields: { kind: { type: 'enum', values: ['gateway', 'proxy'] }, subjectId: id, ttlSeconds: ttl },
} as const;

/** Instance-proxy enrollment tokens (admin): POST /v1/enrollment-tokens. */
export const CreateInstanceTokenRequest = {
  type: 'object',
  fields: { kind: { type: 'enum', values: ['proxy'] }, subjectId: id, ttlSeconds: ttl },
} as const;

export const AddPolicyRequest = {
  type: 'object',
  fields: {
    id: optionalId,
    subject: { type: 'string', max: 200 },
    gateways: { type: 'array', items: { type: 'string', max: 128 }, min: 1, max: 64 },
    targets: { type: 'array', items: { type: 'string', max: 300 }, min: 1, max: 64 },
    modes: { type: 'array', items: { type: 'enum', values: GRANT_MODES }, min: 1, max: 4 },
  },
} as const;

/** What every enrollment carries: the keys to certify, and a one-time token when no access token is sent. */
const enrolling = { csr: pem, sshPublicKey: sshKey, enrollmentToken: { ...token, optional: true } } as const;

export const ProxyEnrollRequest = {
  type: 'object',
  fields: {
    scope: { type: 'enum', values: PROXY_SCOPES },
    orgId: optionalId,
    proxyId: id,
    hostnames: { type: 'array', items: hostname, min: 1, max: 16 },
    sshAddress: hostPort,
    tlsAddress: hostPort,
    ...enrolling,
  },
} as const;

export const GatewayEnrollRequest = {
  type: 'object',
  fields: {
    orgId: id,
    gatewayId: id,
    /** A replica of the gateway (infisical-gateway enroll --replica): replaces only that replica's enrollment. */
    replica: optionalId,
    ...enrolling,
  },
} as const;

export const GrantRequest = {
  type: 'object',
  fields: {
    orgId: id,
    gatewayId: id,
    target: {
      type: 'object',
      fields: {
        host: { type: 'string', max: 253, optional: true },
        port: { type: 'int', min: 1, max: 65535, optional: true },
        name: { ...id, optional: true },
      },
    },
    mode: { type: 'enum', values: GRANT_MODES },
    outerCsr: pem,
    innerCsr: pem,
    ttlSeconds: { type: 'int', min: 10, max: 24 * 3600, optional: true },
  },
} as const;

export const RenewRequest = {
  type: 'object',
  fields: {
    csr: pem,
    sshPublicKey: sshKey,
    timestamp: { type: 'int', min: 0, max: 2 ** 40 },
    nonce: { type: 'string', min: 16, max: 128, pattern: /^[A-Za-z0-9_-]+$/ },
  },
} as const;

export const RevokeRequest = {
  type: 'object',
  fields: {
    kind: { type: 'enum', values: REVOCATION_KINDS },
    orgId: optionalId,
    subject: { type: 'string', max: 128, pattern: ID_PATTERN },
    reason: { type: 'string', max: 500, optional: true },
  },
} as const;

export type LoginRequest = Infer<typeof LoginRequest>;
export type CreateOrgRequest = Infer<typeof CreateOrgRequest>;
export type CreateIdentityRequest = Infer<typeof CreateIdentityRequest>;
export type CreateEnrollmentTokenRequest = Infer<typeof CreateEnrollmentTokenRequest>;
export type AddPolicyRequest = Infer<typeof AddPolicyRequest>;
export type ProxyEnrollRequest = Infer<typeof ProxyEnrollRequest>;
export type GatewayEnrollRequest = Infer<typeof GatewayEnrollRequest>;
export type RenewRequest = Infer<typeof RenewRequest>;
export type RevokeRequest = Infer<typeof RevokeRequest>;
/** The grant request after refinement: the target is exactly one of {host, port} or {name}. */
export type GrantRequest = Omit<Infer<typeof GrantRequest>, 'target'> & { target: GrantTarget };

/**
 * A request body's validator: its schema (the shape, for the server, the client and the fuzzer) and the parse
 * that checks it plus the cross-field rules a schema cannot say, typed by what it yields.
 */
export interface BodyValidator<T> {
  readonly schema: Schema;
  parse(value: unknown): Verdict<T>;
}

function body<S extends Schema>(schema: S): BodyValidator<Infer<S>>;
function body<S extends Schema, T>(schema: S, refine: (value: Infer<S>) => Verdict<T>): BodyValidator<T>;
function body<S extends Schema, T>(schema: S, refine?: (value: Infer<S>) => Verdict<T>) {
  if (!refine) return { schema, parse: (value: unknown) => validate(schema, value) };
  return {
    schema,
    parse: (value: unknown): Verdict<T> => {
      const v = validate(schema, value);
      return v.ok ? refine(v.value) : v;
    },
  };
}

/** Every request body the API takes, each typed once by its validator (the CA's route table pairs them). */
export const BODIES = {
  login: body(LoginRequest),
  createOrg: body(CreateOrgRequest),
  createIdentity: body(CreateIdentityRequest),
  createEnrollmentToken: body(CreateEnrollmentTokenRequest),
  createInstanceToken: body(CreateInstanceTokenRequest),
  addPolicy: body(AddPolicyRequest),
  proxyEnroll: body(ProxyEnrollRequest, refineProxyEnroll),
  gatewayEnroll: body(GatewayEnrollRequest),
  grant: body(GrantRequest, refineGrant),
  renew: body(RenewRequest),
  revoke: body(RevokeRequest),
} as const;

function refineGrant(body: Infer<typeof GrantRequest>): Verdict<GrantRequest> {
  const t = body.target;
  let target: GrantTarget;
  if (t.name !== undefined && t.host === undefined && t.port === undefined) target = { name: t.name };
  else if (t.name === undefined && t.host !== undefined && t.port !== undefined) {
    if (!isValidHost(t.host)) return refuse('E_REQUEST_INVALID', '$.target.host: not a DNS name or IP address');
    target = { host: t.host, port: t.port };
  } else return refuse('E_REQUEST_INVALID', '$.target: expected {host, port} or {name}');
  return accept({ ...body, target });
}

function refineProxyEnroll(body: ProxyEnrollRequest): Verdict<ProxyEnrollRequest> {
  if (body.scope === 'org' && body.orgId === undefined) return refuse('E_REQUEST_INVALID', '$.orgId: required');
  if (body.scope === 'instance' && body.orgId !== undefined) {
    return refuse('E_REQUEST_INVALID', '$.orgId: an instance proxy belongs to no org');
  }
  for (const h of body.hostnames) {
    if (!isValidHost(h)) return refuse('E_REQUEST_INVALID', `$.hostnames: ${JSON.stringify(h)} is not a host name`);
  }
  return accept(body);
}

// ---- responses ----------------------------------------------------------------------------------------------

export interface ErrorBody {
  code: string;
  message: string;
}
export interface HealthResponse {
  ok: true;
  version: string;
}
export interface CaBundle {
  trustDomain: string;
  instance: {
    proxySshClientCaKey: string;
    proxySshServerCaKey: string;
    proxyPkiClientCaCert: string;
    proxyPkiServerCaCert: string;
  };
  revocationFeedKey: string;
}
export interface LoginResponse {
  accessToken: string;
  expiresAt: string;
  identity: { orgId: string | null; identityId: string; role: Role };
}
export interface OrgInfo {
  orgId: string;
  createdAt: string;
}
export interface ListOrgsResponse {
  orgs: OrgInfo[];
}
export interface CreateIdentityResponse {
  orgId: string;
  identityId: string;
  role: Role;
  clientId: string;
  clientSecret: string;
}
export interface EnrollmentTokenResponse {
  token: string;
  expiresAt: string;
}
export interface PolicyRuleBody {
  id: string;
  orgId: string;
  subject: string;
  gateways: string[];
  targets: string[];
  modes: GrantMode[];
}
export interface ListPoliciesResponse {
  rules: PolicyRuleBody[];
}
export interface ProxyInfo {
  proxyId: string;
  scope: ProxyScope;
  hostname: string;
  hostnames: string[];
  sshAddress: string;
  tlsAddress: string;
}
export interface ProxyEnrollResponse {
  proxyUri: string;
  tlsCertificateChain: string;
  sshHostCertificate: string;
  trust: { sshUserCaKeys: string[]; pkiClientCaCerts: string[] };
  revocationFeedKey: string;
  notAfter: string;
  /** The CA rotation version these certificates and trust lists belong to (absent from older CAs). */
  rotation?: string;
}
export interface GatewayEnrollResponse {
  gatewayUri: string;
  tlsCertificateChain: string;
  sshCertificates: { scope: ProxyScope; certificate: string }[];
  trust: { sshHostCaKeys: { scope: ProxyScope; key: string }[]; gatewayClientCaCerts: string[] };
  proxies: ProxyInfo[];
  revocationFeedKey: string;
  notAfter: string;
  /** The CA rotation version these certificates and trust lists belong to (absent from older CAs). */
  rotation?: string;
}
export interface GrantResponse {
  grantId: string;
  expiresAt: string;
  /** The org-scope chain when org proxies exist, else the instance one (see outerCertificateChains). */
  outerCertificateChain: string;
  outerCertificateChains: { instance?: string; org?: string };
  innerCertificateChain: string;
  gatewayUri: string;
  trust: { proxyServerCaCerts: string[]; gatewayServerCaCerts: string[] };
  proxies: Omit<ProxyInfo, 'sshAddress'>[];
}
export interface RevokeResponse {
  seq: number;
}
export interface RevocationEntry {
  seq: number;
  kind: RevocationKind;
  orgId: string | null;
  subject: string;
  at: string;
}
/**
 * The proxies a component of some scope should keep tunnels to (a gateway: the instance proxies and its org's
 * own, none revoked or deleted), carried by the signed feed. `version` is a digest of `list` (proxyListVersion),
 * so a client that passes the version it holds is answered at once only when the list changed.
 */
export interface FeedProxyList {
  version: string;
  list: ProxyInfo[];
}
/** The rotation version a gateway or proxy should hold (changes at every phase of a CA it depends on). */
export interface FeedRotation {
  version: string;
  /** SHA-256 fingerprints of the CA API roots trusted now (two while the API root rotates): pin each. */
  apiRoots: string[];
}
export interface RevocationFeed {
  since: number;
  seq: number;
  issuedAt: string;
  entries: RevocationEntry[];
  /** For gateways only: the proxy list of their scope (absent for proxies and admin readers). */
  proxies?: FeedProxyList;
  /** For gateways and proxies that sent `rotation`: the version to hold; renew at once when it changes. */
  rotation?: FeedRotation;
  /** Base64 Ed25519 signature over revocationFeedBytes(...). */
  signature: string;
}
/** Longest a feed read may wait for news (`wait` query parameter, seconds). */
export const FEED_MAX_WAIT_SEC = 30;
export interface AuditEntry {
  seq: number;
  at: string;
  actor: string;
  subject: string;
  action: string;
  outcome: 'ok' | 'refused';
  code: string | null;
  reason: string | null;
  orgId: string | null;
}
export interface AuditResponse {
  seq: number;
  entries: AuditEntry[];
}
/**
 * Where an enrolled gateway or proxy stands: its current TLS certificate (serial and notAfter; null when it was
 * enrolled before the CA recorded generations and has not renewed since) and when it last renewed.
 */
export interface ComponentStatus {
  currentSerial: string | null;
  notAfter: string | null;
  enrolledAt: string;
  renewedAt: string | null;
  /** Its last feed read the CA recorded (written at most once a minute), null if never since this was added. */
  lastSeenAt: string | null;
  /** The version its User-Agent named at that read (infisical-gateway/0.1.0 → "0.1.0"), null if none. */
  version: string | null;
}
/** One replica of a gateway (enrolled with --replica), as the gateway list shows it. */
export interface GatewayReplicaStatus extends ComponentStatus {
  replica: string;
}
export interface ListGatewaysResponse {
  gateways: ({
    orgId: string;
    gatewayId: string;
    uri: string;
    revoked: boolean;
    /** Its replicas by name (none when it runs as one process, enrolled without --replica). */
    replicas?: GatewayReplicaStatus[];
  } & ComponentStatus)[];
}
export interface ListProxiesResponse {
  proxies: (ProxyInfo & { orgId: string | null; uri: string; revoked: boolean } & ComponentStatus)[];
}

// ---- revocation feed signature ------------------------------------------------------------------------------

/** The exact bytes the feed key signs: canonical JSON with a fixed key order. */
export function revocationFeedBytes(feed: Omit<RevocationFeed, 'signature'>): Buffer {
  const entries = feed.entries.map((e) => ({
    seq: e.seq,
    kind: e.kind,
    orgId: e.orgId,
    subject: e.subject,
    at: e.at,
  }));
  const canonical = {
    since: feed.since,
    seq: feed.seq,
    issuedAt: feed.issuedAt,
    entries,
    proxies: feed.proxies ? { version: feed.proxies.version, list: feed.proxies.list.map(canonicalProxy) } : null,
    // Only in feeds sent to readers that asked for it: the bytes of every other feed are as before.
    ...(feed.rotation ? { rotation: { version: feed.rotation.version, apiRoots: [...feed.rotation.apiRoots] } } : {}),
  };
  return Buffer.from(`infisical-revocations-v2\n${JSON.stringify(canonical)}`, 'utf8');
}

function canonicalProxy(p: ProxyInfo): ProxyInfo {
  return {
    proxyId: p.proxyId,
    scope: p.scope,
    hostname: p.hostname,
    hostnames: [...p.hostnames],
    sshAddress: p.sshAddress,
    tlsAddress: p.tlsAddress,
  };
}

/** The version of a proxy list: a digest of its canonical form, sorted by scope and id (order-independent). */
export function proxyListVersion(list: readonly ProxyInfo[]): string {
  const sorted = [...list]
    .map(canonicalProxy)
    .sort((a, b) => `${a.scope}/${a.proxyId}`.localeCompare(`${b.scope}/${b.proxyId}`));
  return createHash('sha256').update(JSON.stringify(sorted)).digest('hex').slice(0, 32);
}

/**
 * Checks a feed answer: first its shape (every field the follower and the stores read, with its type), then its
 * signature with the revocationFeedKey (PEM SPKI of an Ed25519 key). `feed` is the parsed JSON as it came: a
 * malformed one is refused (E_FEED_MALFORMED) before any field is read, so a feed is either whole or refused.
 */
export function verifyRevocationFeed(feed: unknown, feedKey: string | KeyObject): Verdict<RevocationFeed> {
  const problem = feedProblem(feed);
  if (problem) return refuse('E_FEED_MALFORMED', problem);
  const shaped = feed as RevocationFeed;
  let key: KeyObject;
  try {
    key = typeof feedKey === 'string' ? createPublicKey(feedKey) : feedKey;
  } catch {
    return refuse('E_KEY_UNSUPPORTED', 'revocation feed key cannot be loaded');
  }
  if (key.asymmetricKeyType !== 'ed25519') return refuse('E_KEY_UNSUPPORTED', 'revocation feed key is not Ed25519');
  const sig = Buffer.from(shaped.signature, 'base64');
  let ok = false;
  try {
    ok = verify(null, revocationFeedBytes(shaped), key, sig);
  } catch {
    ok = false;
  }
  return ok ? accept(shaped) : refuse('E_CERT_SIGNATURE', 'revocation feed signature does not verify');
}

/** Entries in one feed answer, at most: a page is far smaller (the CA pages by a few hundred). */
const MAX_FEED_ENTRIES = 100_000;

/** What is wrong with the shape of a feed answer, or undefined when it is a RevocationFeed. */
function feedProblem(value: unknown): string | undefined {
  const isRecord = (v: unknown): v is Record<string, unknown> =>
    typeof v === 'object' && v !== null && !Array.isArray(v);
  const isCount = (v: unknown) => Number.isSafeInteger(v) && (v as number) >= 0;
  const isText = (v: unknown) => typeof v === 'string';
  if (!isRecord(value)) return 'not an object';
  if (!isCount(value['since']) || !isCount(value['seq'])) return 'since and seq must be non-negative integers';
  if (!isText(value['issuedAt']) || !isText(value['signature'])) return 'issuedAt and signature must be strings';
  const entries = value['entries'];
  if (!Array.isArray(entries) || entries.length > MAX_FEED_ENTRIES) return 'entries must be a list';
  for (const e of entries) {
    if (!isRecord(e) || !isCount(e['seq']) || !isText(e['subject']) || !isText(e['at'])) return 'malformed entry';
    if (!(REVOCATION_KINDS as readonly unknown[]).includes(e['kind'])) return 'entry of an unknown kind';
    if (e['orgId'] !== null && !isText(e['orgId'])) return 'entry orgId must be a string or null';
  }
  const proxies = value['proxies'];
  if (proxies === undefined) return undefined;
  if (!isRecord(proxies) || !isText(proxies['version']) || !Array.isArray(proxies['list'])) return 'malformed proxies';
  for (const p of proxies['list'] as unknown[]) {
    if (!isRecord(p) || !(PROXY_SCOPES as readonly unknown[]).includes(p['scope'])) return 'malformed proxy';
    const texts = [p['proxyId'], p['hostname'], p['sshAddress'], p['tlsAddress']];
    if (!texts.every(isText) || !Array.isArray(p['hostnames']) || !p['hostnames'].every(isText)) {
      return 'malformed proxy';
    }
  }
  return undefined;
}

// ---- signed requests (renewal, revocation feed) ----------------------------------------------------------

/** The digest a request signature uses with this key: SHA-256 for ECDSA and RSA (PKCS#1 v1.5), none for Ed25519. */
export function requestSignatureHash(key: KeyObject): 'sha256' | null {
  return key.asymmetricKeyType === 'ed25519' ? null : 'sha256';
}

/** Base64 signature of `bytes` with the current certificate's private key (X-Infisical-Signature). */
export function signRequestBytes(bytes: Buffer, privateKey: KeyObject): string {
  return sign(requestSignatureHash(privateKey), bytes, privateKey).toString('base64');
}

// ---- routes -------------------------------------------------------------------------------------------------

/** Path templates; `:name` segments are ids. */
export const PATHS = {
  health: '/v1/health',
  caBundle: '/v1/ca-bundle',
  login: '/v1/auth/login',
  orgs: '/v1/orgs',
  org: '/v1/orgs/:orgId',
  identities: '/v1/orgs/:orgId/identities',
  enrollmentTokens: '/v1/orgs/:orgId/enrollment-tokens',
  instanceEnrollmentTokens: '/v1/enrollment-tokens',
  policies: '/v1/orgs/:orgId/policies',
  policy: '/v1/orgs/:orgId/policies/:ruleId',
  gateways: '/v1/orgs/:orgId/gateways',
  proxies: '/v1/proxies',
  proxyEnroll: '/v1/proxies/enroll',
  proxyRenew: '/v1/proxies/renew',
  gatewayEnroll: '/v1/gateways/enroll',
  gatewayRenew: '/v1/gateways/renew',
  grants: '/v1/grants',
  revocations: '/v1/revocations',
  audit: '/v1/audit',
} as const;

/** Fills a path template; ids are checked so a caller cannot smuggle "/" or "..". */
export function pathFor(template: string, params: Record<string, string> = {}): string {
  return template.replace(/:([A-Za-z]+)/g, (_, name: string) => {
    const value = params[name];
    if (value === undefined || !isValidId(value)) throw new RangeError(`bad path parameter ${name}`);
    return value;
  });
}

export type { GrantMode, GrantTarget };
