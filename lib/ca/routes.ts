/**
 * The CA API route table: for each route its method, path, how the caller authenticates, the body schema, and
 * the Authority method it calls. Reading this file is reading the API (see lib/protocol/api.ts for the shapes).
 */

import { accept, type ErrorCode, refuse, type Verdict } from '../errors/codes.js';
import { isValidId } from '../pki/identity.js';
import {
  AddPolicyRequest,
  CreateEnrollmentTokenRequest,
  CreateIdentityRequest,
  CreateInstanceTokenRequest,
  CreateOrgRequest,
  FEED_MAX_WAIT_SEC,
  GatewayEnrollRequest,
  type GrantRequest,
  GrantRequest as GrantRequestSchema,
  LoginRequest,
  PATHS,
  ProxyEnrollRequest,
  parseBody,
  RenewRequest,
  RevokeRequest,
} from '../protocol/api.js';
import type { Schema } from '../protocol/validate.js';
import type { Authority, Caller, Peer, RequestInfo, SignedRequest } from './authority.js';

/**
 * public: no credential. bearer: an access token. enroll: an access token or an enrollment token in the body.
 * signed: the current certificate signs the body. feed: an access token, or the certificate signs the path.
 */
export type RouteAuth = 'public' | 'bearer' | 'enroll' | 'signed' | 'feed';

export interface RouteInput {
  params: Record<string, string>;
  query: URLSearchParams;
  body: unknown;
  caller: Caller | null;
  peer: Peer | null;
  signed: SignedRequest | null;
  info: RequestInfo;
  /**
   * Asks to hold this request up to `waitMs` (a long-poll): refused (E_LIMIT) when too many are held, else a
   * signal aborted when the client goes away or the server drains. The HTTP layer releases it after the answer.
   */
  hold(waitMs: number): Verdict<AbortSignal>;
}

export interface Route {
  name: string;
  method: 'GET' | 'POST' | 'DELETE';
  path: string;
  auth: RouteAuth;
  body?: Schema;
  /** 201 for creations. */
  status?: number;
  handle(ca: Authority, r: RouteInput): Verdict<unknown> | Promise<Verdict<unknown>>;
}

const ok = <T>(value: T): Verdict<T> => ({ ok: true, value });
const must = (r: RouteInput): Caller => r.caller as Caller;
const p = (r: RouteInput, name: string): string => r.params[name] as string;

export const ROUTES: readonly Route[] = [
  { name: 'health', method: 'GET', path: PATHS.health, auth: 'public', handle: (ca) => ok(ca.health()) },
  { name: 'ca-bundle', method: 'GET', path: PATHS.caBundle, auth: 'public', handle: (ca) => ok(ca.caBundle()) },
  {
    name: 'login',
    method: 'POST',
    path: PATHS.login,
    auth: 'public',
    body: LoginRequest,
    handle: (ca, r) => ca.login(r.body as never, r.info),
  },
  {
    name: 'org.create',
    method: 'POST',
    path: PATHS.orgs,
    auth: 'bearer',
    body: CreateOrgRequest,
    status: 201,
    handle: (ca, r) => ca.createOrg(must(r), (r.body as { orgId: string }).orgId),
  },
  { name: 'org.list', method: 'GET', path: PATHS.orgs, auth: 'bearer', handle: (ca, r) => ca.listOrgs(must(r)) },
  {
    name: 'org.delete',
    method: 'DELETE',
    path: PATHS.org,
    auth: 'bearer',
    handle: (ca, r) => ca.deleteOrg(must(r), p(r, 'orgId')),
  },
  {
    name: 'identity.create',
    method: 'POST',
    path: PATHS.identities,
    auth: 'bearer',
    body: CreateIdentityRequest,
    status: 201,
    handle: (ca, r) => ca.createIdentity(must(r), p(r, 'orgId'), r.body as never),
  },
  {
    name: 'enrollment-token.create',
    method: 'POST',
    path: PATHS.enrollmentTokens,
    auth: 'bearer',
    body: CreateEnrollmentTokenRequest,
    status: 201,
    handle: (ca, r) => ca.createEnrollmentToken(must(r), p(r, 'orgId'), r.body as never),
  },
  {
    name: 'enrollment-token.create-instance',
    method: 'POST',
    path: PATHS.instanceEnrollmentTokens,
    auth: 'bearer',
    body: CreateInstanceTokenRequest,
    status: 201,
    handle: (ca, r) => ca.createEnrollmentToken(must(r), null, r.body as never),
  },
  {
    name: 'policy.add',
    method: 'POST',
    path: PATHS.policies,
    auth: 'bearer',
    body: AddPolicyRequest,
    status: 201,
    handle: (ca, r) => ca.addPolicy(must(r), p(r, 'orgId'), r.body as never),
  },
  {
    name: 'policy.list',
    method: 'GET',
    path: PATHS.policies,
    auth: 'bearer',
    handle: (ca, r) => ca.listPolicies(must(r), p(r, 'orgId')),
  },
  {
    name: 'policy.delete',
    method: 'DELETE',
    path: PATHS.policy,
    auth: 'bearer',
    handle: (ca, r) => ca.deletePolicy(must(r), p(r, 'orgId'), p(r, 'ruleId')),
  },
  {
    name: 'gateway.list',
    method: 'GET',
    path: PATHS.gateways,
    auth: 'bearer',
    handle: (ca, r) => ca.listGateways(must(r), p(r, 'orgId')),
  },
  {
    name: 'proxy.list',
    method: 'GET',
    path: PATHS.proxies,
    auth: 'bearer',
    handle: (ca, r) => ca.listProxies(must(r)),
  },
  {
    name: 'proxy.enroll',
    method: 'POST',
    path: PATHS.proxyEnroll,
    auth: 'enroll',
    body: ProxyEnrollRequest,
    handle: (ca, r) => ca.enrollProxy(r.caller, r.body as never, r.info),
  },
  {
    name: 'gateway.enroll',
    method: 'POST',
    path: PATHS.gatewayEnroll,
    auth: 'enroll',
    body: GatewayEnrollRequest,
    handle: (ca, r) => ca.enrollGateway(r.caller, r.body as never, r.info),
  },
  {
    name: 'proxy.renew',
    method: 'POST',
    path: PATHS.proxyRenew,
    auth: 'signed',
    body: RenewRequest,
    handle: (ca, r) => ca.renewProxy(r.signed as SignedRequest, r.info),
  },
  {
    name: 'gateway.renew',
    method: 'POST',
    path: PATHS.gatewayRenew,
    auth: 'signed',
    body: RenewRequest,
    handle: (ca, r) => ca.renewGateway(r.signed as SignedRequest, r.info),
  },
  {
    name: 'grant.issue',
    method: 'POST',
    path: PATHS.grants,
    auth: 'bearer',
    body: GrantRequestSchema,
    handle: (ca, r) => ca.issueGrant(must(r), r.body as GrantRequest, r.info),
  },
  {
    name: 'revoke',
    method: 'POST',
    path: PATHS.revocations,
    auth: 'bearer',
    body: RevokeRequest,
    handle: (ca, r) => ca.revoke(must(r), r.body as never),
  },
  {
    name: 'revocations',
    method: 'GET',
    path: PATHS.revocations,
    auth: 'feed',
    handle: async (ca, r) => {
      const since = sinceOf(r.query);
      if (!since.ok) return since;
      const wait = waitOf(r.query);
      if (!wait.ok) return wait;
      const proxies = proxiesVersionOf(r.query);
      if (!proxies.ok) return proxies;
      const rotation = rotationOf(r.query);
      if (!rotation.ok) return rotation;
      const waitMs = wait.value * 1000;
      return ca.awaitRevocations(
        (r.caller ?? r.peer) as Caller | Peer,
        {
          since: since.value,
          ...(proxies.value !== undefined ? { proxiesVersion: proxies.value } : {}),
          ...(rotation.value !== undefined ? { rotation: rotation.value } : {}),
        },
        { waitMs, admit: () => r.hold(waitMs) },
      );
    },
  },
  {
    name: 'audit',
    method: 'GET',
    path: PATHS.audit,
    auth: 'bearer',
    handle: (ca, r) => {
      const since = sinceOf(r.query);
      return since.ok ? ca.audit(must(r), since.value) : since;
    },
  },
];

export function sinceOf(query: URLSearchParams): Verdict<number> {
  const raw = query.get('since') ?? '0';
  if (!/^\d{1,15}$/.test(raw)) return refuse('E_REQUEST_INVALID', 'since: expected a non-negative integer');
  return ok(Number(raw));
}

/** `wait`: whole seconds from 0 to FEED_MAX_WAIT_SEC (default 0: answer at once). */
export function waitOf(query: URLSearchParams): Verdict<number> {
  const raw = query.get('wait') ?? '0';
  if (!/^\d{1,3}$/.test(raw) || Number(raw) > FEED_MAX_WAIT_SEC) {
    return refuse('E_REQUEST_INVALID', `wait: expected whole seconds from 0 to ${FEED_MAX_WAIT_SEC}`);
  }
  return ok(Number(raw));
}

/** `proxies`: the proxy list version the reader holds (proxyListVersion), absent when it holds none. */
export function proxiesVersionOf(query: URLSearchParams): Verdict<string | undefined> {
  const raw = query.get('proxies');
  if (raw === null) return ok(undefined);
  if (!/^[A-Za-z0-9_-]{1,128}$/.test(raw)) return refuse('E_REQUEST_INVALID', 'proxies: expected a list version');
  return ok(raw);
}

/**
 * `rotation`: the rotation version a gateway or proxy has applied (rotation.ts), or "-" for none yet; absent
 * from readers that know nothing of rotation (they are sent no rotation, and their feed bytes are as before).
 */
export function rotationOf(query: URLSearchParams): Verdict<string | undefined> {
  const raw = query.get('rotation');
  if (raw === null) return ok(undefined);
  if (!/^(?:-|[0-9a-f]{1,64})$/.test(raw)) return refuse('E_REQUEST_INVALID', 'rotation: expected a rotation version');
  return ok(raw);
}

/** The rotation acknowledgement of a feed read, when it is well formed. */
export function rotationAckOf(query: URLSearchParams): string | undefined {
  const r = rotationOf(query);
  return r.ok ? r.value : undefined;
}

/** Finds the route for a path; `allowed` lists the methods of a path that exists with another method. */
export function matchRoute(
  method: string,
  pathname: string,
): { route: Route; params: Record<string, string> } | { allowed: string[] } | null {
  const parts = pathname.split('/');
  const allowed: string[] = [];
  for (const route of ROUTES) {
    const tpl = route.path.split('/');
    if (tpl.length !== parts.length) continue;
    const params: Record<string, string> = {};
    let match = true;
    for (let i = 0; i < tpl.length && match; i++) {
      const t = tpl[i]!;
      const v = parts[i]!;
      if (t.startsWith(':')) {
        if (isValidId(v)) params[t.slice(1)] = v;
        else match = false;
      } else if (t !== v) match = false;
    }
    if (!match) continue;
    if (route.method === method) return { route, params };
    allowed.push(route.method);
  }
  return allowed.length > 0 ? { allowed } : null;
}

/** What a request line resolves to: its route, or the refusal to answer (with `allowed` for a 405). */
export type RequestRoute =
  | { ok: true; route: Route; params: Record<string, string>; url: URL }
  | { ok: false; code: ErrorCode; reason: string; allowed?: string[] };

/**
 * Resolves a request's method and target (origin-form, "/v1/…?query"). The target is appended to a fixed
 * origin rather than parsed against it, so "//host…" stays a path (it cannot become an authority, and an
 * unparsable authority such as "//[" cannot make the URL parser throw).
 */
export function routeRequest(method: string, target: string): RequestRoute {
  const notFound = (reason: string): RequestRoute => ({ ok: false, code: 'E_NOT_FOUND', reason });
  if (!target.startsWith('/') || target.length > 2048) return notFound('bad request target');
  let url: URL;
  try {
    url = new URL(`https://ca.invalid${target}`);
  } catch {
    return notFound('bad request target');
  }
  const match = matchRoute(method, url.pathname);
  if (!match) return notFound(`no route ${url.pathname.slice(0, 200)}`);
  if ('allowed' in match) {
    return { ok: false, code: 'E_REQUEST_INVALID', reason: `method ${method} not allowed`, allowed: match.allowed };
  }
  return { ok: true, ...match, url };
}

/** The request body as the route wants it: JSON checked against its schema, or nothing for a route without one. */
export function parseRequestBody(route: Route, raw: Buffer): Verdict<unknown> {
  if (!route.body) {
    return raw.length > 0 ? refuse('E_REQUEST_INVALID', `${route.name} takes no body`) : accept(undefined);
  }
  let json: unknown;
  try {
    json = JSON.parse(raw.toString('utf8'));
  } catch (err) {
    return refuse('E_REQUEST_MALFORMED', (err as Error).message.slice(0, 200));
  }
  return parseBody(route.body, json);
}
