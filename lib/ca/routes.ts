/**
 * The CA API route table: for each route its method, path, how the caller authenticates, the body schema, and
 * the Authority method it calls. Reading this file is reading the API (see lib/protocol/api.ts for the shapes).
 */

import { accept, type ErrorCode, refuse, type Verdict } from '../errors/codes.js';
import { isValidId } from '../pki/identity.js';
import { BODIES, type BodyValidator, FEED_MAX_WAIT_SEC, PATHS } from '../protocol/api.js';
import type { Schema } from '../protocol/validate.js';
import type { Authority, Caller, Peer, RequestInfo, SignedRequest } from './authority.js';

/**
 * public: no credential. bearer: an access token. enroll: an access token or an enrollment token in the body.
 * signed: the current certificate signs the body. feed: an access token, or the certificate signs the path.
 */
export type RouteAuth = 'public' | 'bearer' | 'enroll' | 'signed' | 'feed';

/** What a handler is given besides its body: the request as the HTTP layer authenticated it. */
export interface RouteInput {
  params: Record<string, string>;
  query: URLSearchParams;
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

type Answer = Verdict<unknown> | Promise<Verdict<unknown>>;

interface RouteHead {
  name: string;
  method: 'GET' | 'POST' | 'DELETE';
  path: string;
  auth: RouteAuth;
  /** 201 for creations. */
  status?: number;
}

/** A request whose body passed its route's validator, bound to the route's handler (typed by that body). */
export interface BoundRequest {
  body: unknown;
  handle(ca: Authority, r: RouteInput): Answer;
}

export interface Route extends RouteHead {
  /** The body's schema; absent when the route takes no body. */
  body?: Schema;
  /** Parses a raw body for this route (JSON, then its validator) and binds it to the handler. */
  accept(raw: Buffer): Verdict<BoundRequest>;
}

/** A route that takes a body: the handler is typed by the validator's output, so no body is ever cast. */
function withBody<T>(
  def: RouteHead & { body: BodyValidator<T>; handle: (ca: Authority, r: RouteInput, body: T) => Answer },
): Route {
  const { body, handle, ...head } = def;
  return {
    ...head,
    body: body.schema,
    accept(raw) {
      let json: unknown;
      try {
        json = JSON.parse(raw.toString('utf8'));
      } catch (err) {
        return refuse('E_REQUEST_MALFORMED', (err as Error).message.slice(0, 200));
      }
      const parsed = body.parse(json);
      if (!parsed.ok) return parsed;
      const value = parsed.value;
      return accept({ body: value, handle: (ca, r) => handle(ca, r, value) });
    },
  };
}

/** A route that takes no body (a GET or DELETE). */
function noBody(def: RouteHead & { handle: (ca: Authority, r: RouteInput) => Answer }): Route {
  const { handle, ...head } = def;
  return {
    ...head,
    accept: (raw) =>
      raw.length > 0 ? refuse('E_REQUEST_INVALID', `${head.name} takes no body`) : accept({ body: undefined, handle }),
  };
}

const ok = <T>(value: T): Verdict<T> => ({ ok: true, value });
const must = (r: RouteInput): Caller => r.caller as Caller;
const p = (r: RouteInput, name: string): string => r.params[name] as string;

export const ROUTES: readonly Route[] = [
  noBody({ name: 'health', method: 'GET', path: PATHS.health, auth: 'public', handle: (ca) => ok(ca.health()) }),
  noBody({ name: 'ca-bundle', method: 'GET', path: PATHS.caBundle, auth: 'public', handle: (ca) => ok(ca.caBundle()) }),
  withBody({
    name: 'login',
    method: 'POST',
    path: PATHS.login,
    auth: 'public',
    body: BODIES.login,
    handle: (ca, r, body) => ca.login(body, r.info),
  }),
  withBody({
    name: 'org.create',
    method: 'POST',
    path: PATHS.orgs,
    auth: 'bearer',
    body: BODIES.createOrg,
    status: 201,
    handle: (ca, r, body) => ca.createOrg(must(r), body.orgId),
  }),
  noBody({
    name: 'org.list',
    method: 'GET',
    path: PATHS.orgs,
    auth: 'bearer',
    handle: (ca, r) => ca.listOrgs(must(r)),
  }),
  noBody({
    name: 'org.delete',
    method: 'DELETE',
    path: PATHS.org,
    auth: 'bearer',
    handle: (ca, r) => ca.deleteOrg(must(r), p(r, 'orgId')),
  }),
  withBody({
    name: 'identity.create',
    method: 'POST',
    path: PATHS.identities,
    auth: 'bearer',
    body: BODIES.createIdentity,
    status: 201,
    handle: (ca, r, body) => ca.createIdentity(must(r), p(r, 'orgId'), body),
  }),
  withBody({
    name: 'enrollment-token.create',
    method: 'POST',
    path: PATHS.enrollmentTokens,
    auth: 'bearer',
    body: BODIES.createEnrollmentToken,
    status: 201,
    handle: (ca, r, body) => ca.createEnrollmentToken(must(r), p(r, 'orgId'), body),
  }),
  withBody({
    name: 'enrollment-token.create-instance',
    method: 'POST',
    path: PATHS.instanceEnrollmentTokens,
    auth: 'bearer',
    body: BODIES.createInstanceToken,
    status: 201,
    handle: (ca, r, body) => ca.createEnrollmentToken(must(r), null, body),
  }),
  withBody({
    name: 'policy.add',
    method: 'POST',
    path: PATHS.policies,
    auth: 'bearer',
    body: BODIES.addPolicy,
    status: 201,
    handle: (ca, r, body) => ca.addPolicy(must(r), p(r, 'orgId'), body),
  }),
  noBody({
    name: 'policy.list',
    method: 'GET',
    path: PATHS.policies,
    auth: 'bearer',
    handle: (ca, r) => ca.listPolicies(must(r), p(r, 'orgId')),
  }),
  noBody({
    name: 'policy.delete',
    method: 'DELETE',
    path: PATHS.policy,
    auth: 'bearer',
    handle: (ca, r) => ca.deletePolicy(must(r), p(r, 'orgId'), p(r, 'ruleId')),
  }),
  noBody({
    name: 'gateway.list',
    method: 'GET',
    path: PATHS.gateways,
    auth: 'bearer',
    handle: (ca, r) => ca.listGateways(must(r), p(r, 'orgId')),
  }),
  noBody({
    name: 'proxy.list',
    method: 'GET',
    path: PATHS.proxies,
    auth: 'bearer',
    handle: (ca, r) => ca.listProxies(must(r)),
  }),
  withBody({
    name: 'proxy.enroll',
    method: 'POST',
    path: PATHS.proxyEnroll,
    auth: 'enroll',
    body: BODIES.proxyEnroll,
    handle: (ca, r, body) => ca.enrollProxy(r.caller, body, r.info),
  }),
  withBody({
    name: 'gateway.enroll',
    method: 'POST',
    path: PATHS.gatewayEnroll,
    auth: 'enroll',
    body: BODIES.gatewayEnroll,
    handle: (ca, r, body) => ca.enrollGateway(r.caller, body, r.info),
  }),
  // Renewal reads its body itself (renew.ts): it is the signed bytes, checked against the signature first.
  withBody({
    name: 'proxy.renew',
    method: 'POST',
    path: PATHS.proxyRenew,
    auth: 'signed',
    body: BODIES.renew,
    handle: (ca, r) => ca.renewProxy(r.signed as SignedRequest, r.info),
  }),
  withBody({
    name: 'gateway.renew',
    method: 'POST',
    path: PATHS.gatewayRenew,
    auth: 'signed',
    body: BODIES.renew,
    handle: (ca, r) => ca.renewGateway(r.signed as SignedRequest, r.info),
  }),
  withBody({
    name: 'grant.issue',
    method: 'POST',
    path: PATHS.grants,
    auth: 'bearer',
    body: BODIES.grant,
    handle: (ca, r, body) => ca.issueGrant(must(r), body, r.info),
  }),
  withBody({
    name: 'revoke',
    method: 'POST',
    path: PATHS.revocations,
    auth: 'bearer',
    body: BODIES.revoke,
    handle: (ca, r, body) => ca.revoke(must(r), body),
  }),
  noBody({
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
  }),
  noBody({
    name: 'audit',
    method: 'GET',
    path: PATHS.audit,
    auth: 'bearer',
    handle: (ca, r) => {
      const since = sinceOf(r.query);
      return since.ok ? ca.audit(must(r), since.value) : since;
    },
  }),
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

/** The request body as the route wants it: JSON checked against its validator, or nothing for a route without one. */
export function parseRequestBody(route: Route, raw: Buffer): Verdict<unknown> {
  const bound = route.accept(raw);
  return bound.ok ? accept(bound.value.body) : bound;
}
